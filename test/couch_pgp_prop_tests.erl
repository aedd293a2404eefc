%% Properties: round trips for random payloads; random and mutated bytes into every
%% decoding function give {error, _} (or, for mutations, never a different plaintext),
%% never a crash and never a hang (each property runs under an EUnit timeout).
-module(couch_pgp_prop_tests).
-include_lib("proper/include/proper.hrl").
-include_lib("eunit/include/eunit.hrl").

-define(RUN(Prop, N, Secs),
        {timeout, Secs, ?_assert(proper:quickcheck(Prop, [{numtests, N}, {to_file, user}]))}).

properties_test_() ->
    {setup, fun fixture/0, fun(_) -> ok end, fun(F) ->
        [
            ?RUN(prop_round_trip(F), 150, 120),
            ?RUN(prop_garbage_decrypt(F), 500, 120),
            ?RUN(prop_mutated_decrypt(F), 400, 120),
            ?RUN(prop_garbage_verify(F), 500, 60),
            ?RUN(prop_mutated_signature(F), 300, 60),
            ?RUN(prop_garbage_certs(), 500, 60),
            ?RUN(prop_garbage_secret(), 300, 60),
            ?RUN(prop_garbage_json(), 1000, 60),
            ?RUN(prop_canonical_is_a_fixed_point(), 300, 60)
        ]
    end}.

fixture() ->
    {ok, A} = couch_pgp:generate_key(),
    {ok, B} = couch_pgp:generate_key(),
    CA = couch_pgp:public_cert(A),
    CB = couch_pgp:public_cert(B),
    {ok, Msg} = couch_pgp:encrypt(<<"the original plaintext">>, [CB], #{sign_with => A, armor => false}),
    {ok, ArmoredMsg} = couch_pgp:encrypt(<<"the original plaintext">>, [CB], #{sign_with => A}),
    {ok, Sig} = couch_pgp:sign(<<"signed data">>, A, #{armor => false}),
    #{a => A, b => B, ca => CA, cb => CB, msg => Msg, armored => ArmoredMsg, sig => Sig}.

prop_round_trip(#{a := A, b := B, ca := CA, cb := CB}) ->
    ?FORALL({Plain, Armor}, {binary(), boolean()},
        begin
            {ok, Msg} = couch_pgp:encrypt(Plain, [CB], #{sign_with => A, armor => Armor}),
            {ok, Plain, [couch_pgp:fingerprint(A)]} =:=
                couch_pgp:decrypt(Msg, B, #{verify_with => [CA]})
        end).

prop_garbage_decrypt(#{b := B, ca := CA}) ->
    ?FORALL(Bytes, oneof([binary(), armored(binary())]),
        is_error(couch_pgp:decrypt(Bytes, B, #{}))
            andalso is_error(couch_pgp:decrypt(Bytes, B, #{verify_with => [CA]}))).

prop_mutated_decrypt(#{b := B, ca := CA, msg := Msg, armored := Armored}) ->
    ?FORALL(Mutated, oneof([mutation(Msg), mutation(Armored)]),
        case couch_pgp:decrypt(Mutated, B, #{verify_with => [CA]}) of
            {error, _} -> true;
            %% Only a mutation that did not change what is authenticated may pass (e.g. armor
            %% whitespace), and then it must yield exactly the original.
            {ok, Plain, _} -> Plain =:= <<"the original plaintext">>
        end).

prop_garbage_verify(#{ca := CA}) ->
    ?FORALL({Data, Sig}, {binary(), oneof([binary(), armored(binary())])},
        is_error(couch_pgp:verify(Data, Sig, [CA]))).

prop_mutated_signature(#{ca := CA, sig := Sig}) ->
    ?FORALL(Mutated, mutation(Sig),
        case couch_pgp:verify(<<"signed data">>, Mutated, [CA]) of
            {error, _} -> true;
            {ok, Fpr} -> Fpr =:= couch_pgp:fingerprint(CA)
        end).

prop_garbage_certs() ->
    ?FORALL(Bytes, oneof([binary(), armored(binary())]),
        is_error(couch_pgp:import_cert(Bytes))
            andalso is_error(couch_pgp:fingerprint(Bytes))
            andalso is_error(couch_pgp:encrypt(<<"x">>, [Bytes], #{}))).

prop_garbage_secret() ->
    ?FORALL(Bytes, binary(), is_error(couch_pgp:import_secret(Bytes, <<"pw">>))).

prop_garbage_json() ->
    ?FORALL(Bytes, oneof([binary(), json_like()]),
        case couch_pgp:json_decode(Bytes) of
            {ok, Json} -> element(1, couch_pgp:canonical_json(Json)) =:= ok;
            {error, {invalid_json, _}} -> true
        end).

prop_canonical_is_a_fixed_point() ->
    ?FORALL(Json, ejson(3),
        case couch_pgp:canonical_json(Json) of
            {ok, Canonical} ->
                {ok, Back} = couch_pgp:json_decode(Canonical),
                {ok, Canonical} =:= couch_pgp:canonical_json(Back);
            {error, {invalid_json, duplicate_key}} ->
                true
        end).

%% ----------------------------------------------------------------- generators

is_error({error, _}) -> true;
is_error(_) -> false.

armored(Gen) ->
    ?LET(B, Gen, iolist_to_binary(["-----BEGIN PGP MESSAGE-----\n\n", base64:encode(B),
                                   "\n-----END PGP MESSAGE-----\n"])).

%% Flip a byte, cut the tail, insert or delete bytes somewhere.
mutation(Bin) ->
    Size = byte_size(Bin),
    oneof([
        ?LET({Pos, X}, {range(0, Size - 1), range(1, 255)}, flip(Bin, Pos, X)),
        ?LET(Len, range(0, Size - 1), binary:part(Bin, 0, Len)),
        ?LET({Pos, Extra}, {range(0, Size), non_empty(binary())},
             <<(binary:part(Bin, 0, Pos))/binary, Extra/binary, (binary:part(Bin, Pos, Size - Pos))/binary>>),
        ?LET({Pos, Len}, {range(0, Size - 1), range(1, 16)},
             <<(binary:part(Bin, 0, Pos))/binary,
               (binary:part(Bin, min(Size, Pos + Len), Size - min(Size, Pos + Len)))/binary>>)
    ]).

flip(Bin, Pos, X) ->
    <<Head:Pos/binary, B, Tail/binary>> = Bin,
    <<Head/binary, (B bxor X), Tail/binary>>.

json_like() ->
    ?LET(Parts, list(oneof([<<"{">>, <<"}">>, <<"[">>, <<"]">>, <<"\"a\"">>, <<":">>, <<",">>,
                            <<"1">>, <<"-0.5e3">>, <<"null">>, <<"\"\\ud800\"">>, <<" ">>])),
         iolist_to_binary(Parts)).

ejson(0) ->
    oneof([null, true, false, utf8(), integer(), float()]);
ejson(N) ->
    frequency([
        {3, ejson(0)},
        {1, list(ejson(N - 1))},
        {1, ?LET(Members, list({utf8(), ejson(N - 1)}), {Members})},
        {1, ?LET(Members, list({utf8(), ejson(N - 1)}), maps:from_list(Members))}
    ]).
