%% The seed's workflow: two Security objects exchange public keys, then talk.
-module(couch_pgp_security_tests).
-include_lib("eunit/include/eunit.hrl").

seed_workflow_test() ->
    %% 1-2: the client makes its Security and sends its public key.
    {ok, C0} = couch_pgp_security:new(),
    CPub = couch_pgp_security:get_public_key(C0),
    %% 3: the server makes its own, bound to the client's key.
    {ok, S} = couch_pgp_security:new(#{remote => CPub}),
    %% 4-5: the server's key goes back; the client sets it.
    {ok, C} = couch_pgp_security:set_remote_public_key(C0, couch_pgp_security:get_public_key(S)),
    ?assertEqual(couch_pgp_security:fingerprint(S), couch_pgp_security:remote_fingerprint(C)),
    {ok, ToServer} = couch_pgp_security:encode(C, <<"{\"name\":\"Anna\"}">>),
    ?assertMatch(<<"-----BEGIN PGP MESSAGE-----", _/binary>>, ToServer),
    ?assertEqual({ok, <<"{\"name\":\"Anna\"}">>}, couch_pgp_security:decode(S, ToServer)),
    {ok, ToClient} = couch_pgp_security:encode(S, <<"saved">>),
    ?assertEqual({ok, <<"saved">>}, couch_pgp_security:decode(C, ToClient)),
    %% A party cannot read what it sent itself: it was encrypted to the other side.
    ?assertEqual({error, no_matching_key}, couch_pgp_security:decode(C, ToServer)),
    {ok, Doc} = couch_pgp_security:sign_doc(C, {[{<<"_id">>, <<"d">>}, {<<"v">>, 1}]}),
    ?assertEqual({ok, [couch_pgp_security:fingerprint(C)]}, couch_pgp_security:verify_doc(S, Doc)).

remote_key_at_most_once_test() ->
    {ok, A} = couch_pgp_security:new(),
    {ok, B} = couch_pgp_security:new(),
    {ok, Eve} = couch_pgp_security:new(),
    {ok, A1} = couch_pgp_security:set_remote_public_key(A, couch_pgp_security:get_public_key(B)),
    ?assertEqual({error, remote_key_already_set},
                 couch_pgp_security:set_remote_public_key(A1, couch_pgp_security:get_public_key(Eve))),
    ?assertEqual({error, bad_cert}, couch_pgp_security:set_remote_public_key(A, <<"junk">>)).

no_remote_key_test() ->
    {ok, A} = couch_pgp_security:new(),
    ?assertEqual({error, no_remote_key}, couch_pgp_security:encode(A, <<"x">>)),
    ?assertEqual({error, no_remote_key}, couch_pgp_security:decode(A, <<"x">>)),
    ?assertEqual(undefined, couch_pgp_security:remote_fingerprint(A)).

decode_requires_the_remote_signature_test() ->
    {ok, A0} = couch_pgp_security:new(),
    {ok, B0} = couch_pgp_security:new(),
    {ok, Eve0} = couch_pgp_security:new(),
    APub = couch_pgp_security:get_public_key(A0),
    {ok, A} = couch_pgp_security:set_remote_public_key(A0, couch_pgp_security:get_public_key(B0)),
    %% Eve encrypts to A with her own key: A expects B's signature.
    {ok, Eve} = couch_pgp_security:set_remote_public_key(Eve0, APub),
    {ok, FromEve} = couch_pgp_security:encode(Eve, <<"trust me">>),
    ?assertEqual({error, unknown_signer}, couch_pgp_security:decode(A, FromEve)),
    %% Anyone can encrypt to A without signing: refused too.
    {ok, Unsigned} = couch_pgp:encrypt(<<"anonymous">>, [APub], #{}),
    ?assertEqual({error, unsigned}, couch_pgp_security:decode(A, Unsigned)).

short_lived_session_keys_work_test() ->
    %% Sequoia backdates key creation by a minute; a 60 s lifetime must still mean 60 s
    %% from now, not an already expired key.
    {ok, A0} = couch_pgp_security:new(#{expires_in => 60}),
    {ok, B0} = couch_pgp_security:new(#{expires_in => 60}),
    {ok, A} = couch_pgp_security:set_remote_public_key(A0, couch_pgp_security:get_public_key(B0)),
    {ok, B} = couch_pgp_security:set_remote_public_key(B0, couch_pgp_security:get_public_key(A0)),
    {ok, Msg} = couch_pgp_security:encode(A, <<"hi">>),
    ?assertEqual({ok, <<"hi">>}, couch_pgp_security:decode(B, Msg)).
