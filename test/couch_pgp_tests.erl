%% The couch_pgp API with the real NIF: results and exact errors.
-module(couch_pgp_tests).
-include_lib("eunit/include/eunit.hrl").

key() ->
    {ok, K} = couch_pgp:generate_key(),
    K.

key_and_cert() ->
    K = key(),
    {K, couch_pgp:public_cert(K)}.

generate_defaults_test() ->
    {K, C} = key_and_cert(),
    ?assertMatch(<<"-----BEGIN PGP PUBLIC KEY BLOCK-----", _/binary>>, C),
    Fpr = couch_pgp:fingerprint(K),
    ?assertEqual(40, byte_size(Fpr)),
    ?assertEqual(Fpr, couch_pgp:fingerprint(C)),
    ?assertEqual({ok, C}, couch_pgp:import_cert(C)).

generate_options_test_() ->
    {timeout, 60, fun() ->
        {ok, V6} = couch_pgp:generate_key(#{profile => v6, user_id => <<"Dr. Who <who@example.org>">>}),
        ?assertEqual(64, byte_size(couch_pgp:fingerprint(V6))),
        {ok, Rsa} = couch_pgp:generate_key(#{suite => rsa3072, expires_in => 3600}),
        RsaCert = couch_pgp:public_cert(Rsa),
        {ok, Msg} = couch_pgp:encrypt(<<"r">>, [RsaCert], #{sign_with => Rsa}),
        ?assertEqual({ok, <<"r">>, [couch_pgp:fingerprint(Rsa)]},
                     couch_pgp:decrypt(Msg, Rsa, #{verify_with => [RsaCert]}))
    end}.

bad_options_test() ->
    ?assertError({bad_option, colour}, couch_pgp:generate_key(#{colour => red})),
    ?assertError({bad_option, suite}, couch_pgp:generate_key(#{suite => dsa})),
    ?assertError({bad_option, expires_in}, couch_pgp:generate_key(#{expires_in => 0})),
    {K, C} = key_and_cert(),
    ?assertError({bad_option, armour}, couch_pgp:encrypt(<<"x">>, [C], #{armour => true})),
    ?assertError({bad_option, sign_with}, couch_pgp:encrypt(<<"x">>, [C], #{sign_with => C})),
    ?assertError({bad_option, verify_with}, couch_pgp:decrypt(<<"x">>, K, #{verify_with => []})),
    ?assertError(badarg, couch_pgp:decrypt(not_a_binary, K, #{})),
    ?assertError(badarg, couch_pgp:decrypt(<<"x">>, not_a_key, #{})),
    ?assertError(badarg, couch_pgp:encrypt(<<"x">>, [not_a_cert], #{})),
    ?assertError(badarg, couch_pgp:public_cert(<<"not a key">>)),
    %% A reference that is not our resource is refused by the NIF itself.
    ?assertError(badarg, couch_pgp:public_cert(make_ref())).

round_trip_test() ->
    {A, CA} = key_and_cert(),
    {B, CB} = key_and_cert(),
    Plain = <<"Ärztebrief ✓ ", (crypto:strong_rand_bytes(3000))/binary>>,
    lists:foreach(
        fun(Armor) ->
            {ok, Msg} = couch_pgp:encrypt(Plain, [CB], #{sign_with => A, armor => Armor}),
            ?assertEqual(Armor, binary:match(Msg, <<"-----BEGIN PGP MESSAGE-----">>) =/= nomatch),
            ?assertEqual({ok, Plain, [couch_pgp:fingerprint(A)]},
                         couch_pgp:decrypt(Msg, B, #{verify_with => [CA]})),
            %% Without verify_with the signature is not judged and no signer is claimed.
            ?assertEqual({ok, Plain, []}, couch_pgp:decrypt(Msg, B, #{}))
        end,
        [true, false]
    ),
    %% iodata in, several recipients.
    {ok, Msg2} = couch_pgp:encrypt([<<"a">>, "b"], [CA, CB], #{}),
    ?assertEqual({ok, <<"ab">>, []}, couch_pgp:decrypt(Msg2, A, #{})),
    ?assertEqual({ok, <<"ab">>, []}, couch_pgp:decrypt(Msg2, B, #{})).

empty_and_large_payloads_test_() ->
    {timeout, 60, fun() ->
        {A, CA} = key_and_cert(),
        Big = crypto:strong_rand_bytes(5 * 1024 * 1024),
        lists:foreach(
            fun(P) ->
                {ok, M} = couch_pgp:encrypt(P, [CA], #{sign_with => A, armor => false}),
                ?assertEqual({ok, P, [couch_pgp:fingerprint(A)]},
                             couch_pgp:decrypt(M, A, #{verify_with => [CA]}))
            end,
            [<<>>, Big]
        )
    end}.

decrypt_refusals_test() ->
    {A, CA} = key_and_cert(),
    {B, CB} = key_and_cert(),
    {E, CE} = key_and_cert(),
    {ok, Signed} = couch_pgp:encrypt(<<"m">>, [CB], #{sign_with => A, armor => false}),
    {ok, Unsigned} = couch_pgp:encrypt(<<"m">>, [CB], #{}),
    ?assertEqual({error, no_matching_key}, couch_pgp:decrypt(Signed, E, #{})),
    ?assertEqual({error, unsigned}, couch_pgp:decrypt(Unsigned, B, #{verify_with => [CA]})),
    ?assertEqual({error, unknown_signer}, couch_pgp:decrypt(Signed, B, #{verify_with => [CE]})),
    %% Any one of several expected signers will do.
    ?assertEqual({ok, <<"m">>, [couch_pgp:fingerprint(A)]},
                 couch_pgp:decrypt(Signed, B, #{verify_with => [CE, CA]})),
    Size = byte_size(Signed),
    <<Head:(Size - 40)/binary, X, Tail/binary>> = Signed,
    ?assertEqual({error, tampered}, couch_pgp:decrypt(<<Head/binary, (X bxor 16#80), Tail/binary>>, B, #{})),
    ?assertEqual({error, tampered}, couch_pgp:decrypt(binary:part(Signed, 0, Size - 7), B, #{})),
    ?assertEqual({error, malformed}, couch_pgp:decrypt(<<"{\"not\": \"pgp\"}">>, B, #{})),
    ?assertEqual({error, malformed}, couch_pgp:decrypt(<<>>, B, #{})),
    %% A certificate is OpenPGP, but not a message.
    ?assertEqual({error, malformed}, couch_pgp:decrypt(CA, B, #{})),
    %% A signature is not a message either: the plaintext-passthrough trap.
    {ok, Sig} = couch_pgp:sign(<<"m">>, A),
    ?assertMatch({error, _}, couch_pgp:decrypt(Sig, A, #{})),
    _ = E.

sign_verify_test() ->
    {A, CA} = key_and_cert(),
    {_B, CB} = key_and_cert(),
    FA = couch_pgp:fingerprint(A),
    {ok, Armored} = couch_pgp:sign(<<"data">>, A),
    {ok, Binary} = couch_pgp:sign(<<"data">>, A, #{armor => false}),
    ?assertMatch(<<"-----BEGIN PGP SIGNATURE-----", _/binary>>, Armored),
    ?assertEqual({ok, FA}, couch_pgp:verify(<<"data">>, Armored, [CA])),
    ?assertEqual({ok, FA}, couch_pgp:verify(<<"data">>, Binary, [CB, CA])),
    ?assertEqual({error, bad_signature}, couch_pgp:verify(<<"Data">>, Binary, [CA])),
    ?assertEqual({error, unknown_signer}, couch_pgp:verify(<<"data">>, Binary, [CB])),
    ?assertEqual({error, malformed}, couch_pgp:verify(<<"data">>, <<"junk">>, [CA])),
    ?assertEqual({error, bad_cert}, couch_pgp:verify(<<"data">>, Binary, [<<"junk">>])).

certs_test() ->
    {A, CA} = key_and_cert(),
    ?assertEqual({error, bad_cert}, couch_pgp:import_cert(<<"junk">>)),
    ?assertEqual({error, bad_cert}, couch_pgp:fingerprint(<<"junk">>)),
    ?assertEqual({error, no_encryption_key}, couch_pgp:encrypt(<<"x">>, [], #{})),
    ?assertEqual({error, bad_cert}, couch_pgp:encrypt(<<"x">>, [<<"junk">>], #{})),
    %% A secret key handed to import_cert comes back public-only.
    {ok, Exported} = couch_pgp:export_secret(A, <<"pw">>),
    ?assertEqual({ok, CA}, couch_pgp:import_cert(Exported)).

secret_persistence_test_() ->
    {timeout, 30, fun() ->
        {A, CA} = key_and_cert(),
        {ok, Exported} = couch_pgp:export_secret(A, <<"s3cret passphrase">>),
        ?assertMatch(<<"-----BEGIN PGP PRIVATE KEY BLOCK-----", _/binary>>, Exported),
        ?assertEqual({error, bad_passphrase}, couch_pgp:import_secret(Exported, <<"guess">>)),
        ?assertEqual({error, empty_passphrase}, couch_pgp:export_secret(A, <<>>)),
        ?assertEqual({error, bad_key}, couch_pgp:import_secret(CA, <<"x">>)),
        ?assertEqual({error, bad_key}, couch_pgp:import_secret(<<"junk">>, <<"x">>)),
        {ok, A2} = couch_pgp:import_secret(Exported, "s3cret passphrase"),
        ?assertEqual(couch_pgp:fingerprint(A), couch_pgp:fingerprint(A2)),
        {ok, M} = couch_pgp:encrypt(<<"later">>, [CA], #{sign_with => A2}),
        ?assertEqual({ok, <<"later">>, [couch_pgp:fingerprint(A)]},
                     couch_pgp:decrypt(M, A, #{verify_with => [CA]}))
    end}.

%% A random passphrase (session tokens): binary, the least S2K, read back by import_secret;
%% a short one refused.
random_passphrase_export_test() ->
    {A, _} = key_and_cert(),
    Pass = crypto:strong_rand_bytes(24),
    {ok, Exported} = couch_pgp:export_secret(A, Pass, #{random_passphrase => true}),
    ?assertNotMatch(<<"-----BEGIN", _/binary>>, Exported),
    ?assertEqual({error, bad_passphrase}, couch_pgp:import_secret(Exported, <<"guess">>)),
    {ok, A2} = couch_pgp:import_secret(Exported, Pass),
    ?assertEqual(couch_pgp:fingerprint(A), couch_pgp:fingerprint(A2)),
    ?assertEqual({error, empty_passphrase},
                 couch_pgp:export_secret(A, <<"fifteen bytes!!">>, #{random_passphrase => true})).

%% The handle, printed, shows nothing of the key.
key_handle_is_opaque_test() ->
    K = key(),
    Printed = lists:flatten(io_lib:format("~p", [K])),
    ?assertEqual(nomatch, string:find(Printed, "PRIVATE")),
    ?assert(length(Printed) < 80).
