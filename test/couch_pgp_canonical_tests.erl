%% The shared RFC 8785 vectors (test/vectors/canonical_json.json) through the NIF, from
%% EJSON as jiffy would produce it and from maps.
-module(couch_pgp_canonical_tests).
-include_lib("eunit/include/eunit.hrl").

vectors() ->
    {ok, Text} = file:read_file(filename:join([code:lib_dir(couch_pgp), "..", "..", "..", "..",
                                               "test", "vectors", "canonical_json.json"])),
    {ok, {Props}} = couch_pgp:json_decode(Text),
    Props.

field(Name, {Props}) -> proplists:get_value(Name, Props).

cases_test() ->
    Cases = field(<<"cases">>, {vectors()}),
    ?assert(length(Cases) >= 10),
    lists:foreach(
        fun(Case) ->
            {ok, Json} = couch_pgp:json_decode(field(<<"input">>, Case)),
            ?assertEqual({field(<<"name">>, Case), {ok, field(<<"canonical">>, Case)}},
                         {field(<<"name">>, Case), couch_pgp:canonical_json(Json)})
        end,
        Cases
    ).

numbers_test() ->
    Numbers = field(<<"numbers">>, {vectors()}),
    Finite = [N || N <- Numbers, field(<<"canonical">>, N) =/= null],
    ?assert(length(Finite) >= 25),
    lists:foreach(
        fun(N) ->
            Bits = binary_to_integer(field(<<"bits">>, N), 16),
            <<F/float>> = <<Bits:64>>,
            ?assertEqual({ok, <<"[", (field(<<"canonical">>, N))/binary, "]">>},
                         couch_pgp:canonical_json([F]))
        end,
        Finite
    ).

invalid_test() ->
    lists:foreach(
        fun(Case) ->
            Reason = binary_to_atom(field(<<"error">>, Case)),
            ?assertEqual({field(<<"name">>, Case), {error, {invalid_json, Reason}}},
                         {field(<<"name">>, Case), couch_pgp:json_decode(field(<<"input">>, Case))})
        end,
        field(<<"invalid">>, {vectors()})
    ).

maps_and_ejson_agree_test() ->
    Ejson = {[{<<"b">>, [1, 2.5, null]}, {<<"a">>, {[{<<"é"/utf8>>, true}]}}]},
    Map = #{<<"b">> => [1, 2.5, null], a => #{<<"é"/utf8>> => true}},
    Expected = {ok, <<"{\"a\":{\"é\":true},\"b\":[1,2.5,null]}"/utf8>>},
    ?assertEqual(Expected, couch_pgp:canonical_json(Ejson)),
    %% A latin-1 binary is not a JSON string.
    ?assertEqual({error, {invalid_json, invalid_utf8}},
                 couch_pgp:canonical_json({[{<<"a">>, <<"é">>}]})),
    ?assertEqual(Expected, couch_pgp:canonical_json(Map)).

term_refusals_test() ->
    ?assertEqual({error, {invalid_json, duplicate_key}},
                 couch_pgp:canonical_json({[{<<"a">>, 1}, {<<"a">>, 2}]})),
    %% An atom key and a binary key that name the same member.
    ?assertEqual({error, {invalid_json, duplicate_key}},
                 couch_pgp:canonical_json(#{a => 1, <<"a">> => 2})),
    ?assertEqual({error, {invalid_json, number_out_of_range}},
                 couch_pgp:canonical_json([9007199254740993])),
    ?assertEqual({error, {invalid_json, number_out_of_range}},
                 couch_pgp:canonical_json([1 bsl 70])),
    ?assertEqual({ok, <<"[9007199254740992,-9007199254740992]">>},
                 couch_pgp:canonical_json([9007199254740992, -9007199254740992])),
    ?assertEqual({error, {invalid_json, invalid_utf8}}, couch_pgp:canonical_json(<<255, 0>>)),
    ?assertEqual({error, {invalid_json, invalid_value}}, couch_pgp:canonical_json(undefined)),
    ?assertEqual({error, {invalid_json, invalid_value}}, couch_pgp:canonical_json({1, 2})),
    ?assertEqual({error, {invalid_json, invalid_value}}, couch_pgp:canonical_json([self()])),
    ?assertEqual({error, {invalid_json, invalid_value}}, couch_pgp:canonical_json({[{<<"a">>}]})),
    ok.

%% Nesting is bounded (64) so the NIF's recursion can never exhaust a dirty scheduler's
%% stack: before the bound, 300 levels took the whole VM down.
nesting_limit_test() ->
    Nest = fun(D) -> lists:foldl(fun(_, Acc) -> [Acc] end, 1, lists:seq(1, D)) end,
    NestMap = fun(D) -> lists:foldl(fun(_, Acc) -> #{<<"k">> => Acc} end, 1, lists:seq(1, D)) end,
    Text = fun(D) -> iolist_to_binary([lists:duplicate(D, $[), "1", lists:duplicate(D, $])]) end,
    ?assertMatch({ok, _}, couch_pgp:canonical_json(Nest(64))),
    ?assertMatch({ok, _}, couch_pgp:canonical_json(NestMap(64))),
    ?assertMatch({ok, _}, couch_pgp:json_decode(Text(64))),
    lists:foreach(
        fun(D) ->
            ?assertEqual({error, {invalid_json, invalid_value}}, couch_pgp:canonical_json(Nest(D))),
            ?assertEqual({error, {invalid_json, invalid_value}}, couch_pgp:canonical_json(NestMap(D))),
            ?assertEqual({error, {invalid_json, invalid_value}}, couch_pgp:json_decode(Text(D)))
        end,
        [65, 300, 100000]
    ),
    %% Brackets inside strings do not count.
    ?assertMatch({ok, _}, couch_pgp:json_decode(iolist_to_binary(["\"", lists:duplicate(1000, $[), "\""]))).
