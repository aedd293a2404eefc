%% The tunnel stream's frame layout (couch_pgp_stream_frame), byte for byte as the README
%% specifies it, and a frame sealed and opened under channel keys.
-module(couch_pgp_stream_frame_tests).
-include_lib("eunit/include/eunit.hrl").

-define(ID, <<0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15>>).

layout_test() ->
    ?assertEqual(22, couch_pgp_stream_frame:header_size()),
    ?assertEqual(<<1, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15, 0,0,1,2, 0, "data">>,
                 iolist_to_binary(couch_pgp_stream_frame:plaintext(?ID, 258, false, <<"data">>))),
    ?assertEqual(<<1, ?ID/binary, 255,255,255,255, 1>>,
                 iolist_to_binary(couch_pgp_stream_frame:plaintext(?ID, 16#FFFFFFFF, true, []))),
    ?assertEqual(<<0,0,0,3, "abc">>, iolist_to_binary(couch_pgp_stream_frame:wire(<<"abc">>))).

parse_test() ->
    Plain = iolist_to_binary(couch_pgp_stream_frame:plaintext(?ID, 7, true, <<"{}">>)),
    ?assertEqual({ok, #{id => ?ID, seq => 7, final => true, payload => <<"{}">>}},
                 couch_pgp_stream_frame:parse(Plain)),
    ?assertEqual({error, malformed}, couch_pgp_stream_frame:parse(<<2, (binary:part(Plain, 1, 21))/binary>>)),
    ?assertEqual({error, malformed}, couch_pgp_stream_frame:parse(<<1, ?ID/binary, 0,0,0,1, 2>>)),
    ?assertEqual({error, malformed}, couch_pgp_stream_frame:parse(binary:part(Plain, 0, 21))).

bad_arguments_test() ->
    ?assertError(function_clause, couch_pgp_stream_frame:plaintext(<<1>>, 0, false, <<>>)),
    ?assertError(function_clause, couch_pgp_stream_frame:plaintext(?ID, 1 bsl 32, false, <<>>)).

ids_are_random_test() ->
    A = couch_pgp_stream_frame:new_id(),
    ?assertEqual(16, byte_size(A)),
    ?assertNotEqual(A, couch_pgp_stream_frame:new_id()).

sealed_frame_round_trip_test() ->
    {ok, Keys, _Secret} = couch_pgp_channel:new(),
    Plain = couch_pgp_stream_frame:plaintext(?ID, 1, false, binary:copy(<<"x">>, 65514)),
    {ok, Sealed} = couch_pgp_channel:seal(Keys, server_to_client, Plain),
    <<Len:32, Msg/binary>> = iolist_to_binary(couch_pgp_stream_frame:wire(Sealed)),
    ?assertEqual(Len, byte_size(Msg)),
    {ok, Opened} = couch_pgp_channel:open(Keys, server_to_client, Msg, 1 bsl 20),
    ?assertMatch({ok, #{seq := 1, final := false}}, couch_pgp_stream_frame:parse(Opened)),
    ?assertMatch({error, _}, couch_pgp_channel:open(Keys, client_to_server, Msg, 1 bsl 20)).

%% The README's worked example (test/vectors/stream_example.json, sealed by the JS client):
%% every frame opens under its s2c key with the NIF, and its plaintext is the layout above.
readme_example_test() ->
    {ok, Text} = file:read_file(filename:join([code:lib_dir(couch_pgp), "..", "..", "..", "..",
                                               "test", "vectors", "stream_example.json"])),
    {ok, {V}} = couch_pgp:json_decode(Text),
    S2C = binary:decode_hex(proplists:get_value(<<"s2c_hex">>, V)),
    Id = binary:decode_hex(proplists:get_value(<<"stream_id_hex">>, V)),
    {ok, Keys} = couch_pgp_channel:from_secret(<<0:256, S2C/binary>>),
    Frames = proplists:get_value(<<"frames">>, V),
    ?assertEqual(3, length(Frames)),
    lists:foreach(
        fun({F}) ->
            Get = fun(K) -> proplists:get_value(K, F) end,
            <<Len:32, Msg:Len/binary>> = binary:decode_hex(Get(<<"wire_hex">>)),
            {ok, Plain} = couch_pgp_channel:open(Keys, server_to_client, Msg, 1 bsl 20),
            ?assertEqual(binary:decode_hex(Get(<<"plaintext_hex">>)), Plain),
            ?assertEqual({ok, #{id => Id, seq => Get(<<"seq">>), final => Get(<<"final">>),
                                payload => Get(<<"payload">>)}},
                         couch_pgp_stream_frame:parse(Plain)),
            ?assertEqual(Plain, iolist_to_binary(couch_pgp_stream_frame:plaintext(
                Id, Get(<<"seq">>), Get(<<"final">>), Get(<<"payload">>))))
        end, Frames).
