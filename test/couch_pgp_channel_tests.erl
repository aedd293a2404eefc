-module(couch_pgp_channel_tests).
-include_lib("eunit/include/eunit.hrl").

%% The channel through the Erlang API: both directions, the envelope in one call, the
%% response in one call, and a session token that carries the keys to another "node".

round_trip_test() ->
    {ok, K, Secret} = couch_pgp_channel:new(),
    ?assertEqual(64, byte_size(Secret)),
    {ok, Same} = couch_pgp_channel:from_secret(Secret),
    {ok, M} = couch_pgp_channel:seal(K, client_to_server, <<"hello">>),
    ?assertEqual({ok, <<"hello">>}, couch_pgp_channel:open(Same, client_to_server, M, 100)),
    ?assertEqual({error, tampered}, couch_pgp_channel:open(Same, server_to_client, M, 100)),
    ?assertEqual({error, too_large}, couch_pgp_channel:open(Same, client_to_server, M, 4)),
    ?assertEqual({error, bad_key}, couch_pgp_channel:from_secret(<<"short">>)),
    %% Large inputs take the dirty-scheduler path and give the same result.
    Big = binary:copy(<<"z">>, 200000),
    {ok, MB} = couch_pgp_channel:seal(K, server_to_client, Big),
    ?assertEqual({ok, Big}, couch_pgp_channel:open(Same, server_to_client, MB, 1 bsl 20)).

request_and_response_test() ->
    {ok, K, _} = couch_pgp_channel:new(),
    Env = <<"{\"v\":1,\"method\":\"PUT\",\"path\":\"/db/d\",\"query\":\"a=1\",\"ts\":1700000000000,"
            "\"nonce\":\"AAAAAAAAAAAAAAAAAAAAAA==\",\"content_type\":\"application/json\",\"body\":\"{}\"}">>,
    {ok, Req} = couch_pgp_channel:seal(K, client_to_server, Env),
    ?assertEqual({ok, #{method => <<"PUT">>, path => <<"/db/d">>, query => <<"a=1">>,
                        ts => 1700000000000, nonce => <<"AAAAAAAAAAAAAAAAAAAAAA==">>,
                        content_type => <<"application/json">>, body => <<"{}">>,
                        client_cert => undefined}},
                 couch_pgp_channel:open_request(K, Req, 10000)),
    %% Not an envelope, or an envelope with a member of the wrong type.
    {ok, NotEnv} = couch_pgp_channel:seal(K, client_to_server, <<"{\"v\":1}">>),
    ?assertEqual({error, bad_envelope}, couch_pgp_channel:open_request(K, NotEnv, 10000)),
    {ok, Dup} = couch_pgp_channel:seal(K, client_to_server, <<"{\"v\":1,\"v\":1}">>),
    ?assertEqual({error, bad_envelope}, couch_pgp_channel:open_request(K, Dup, 10000)),
    {ok, Resp} = couch_pgp_channel:seal_response(K, 201, <<"n">>, <<"application/json">>,
                                                 <<"{\"ok\":true}">>, base64),
    ?assertEqual({ok, <<"{\"body\":\"{\\\"ok\\\":true}\",\"content_type\":\"application/json\","
                       "\"nonce\":\"n\",\"status\":201,\"v\":1}">>},
                 couch_pgp_channel:open(K, server_to_client, base64:decode(Resp), 10000)),
    %% A response is not a request.
    {ok, RespBin} = couch_pgp_channel:seal_response(K, 200, <<"n">>, <<"t">>, <<"x">>, binary),
    ?assertEqual({error, tampered}, couch_pgp_channel:open_request(K, RespBin, 10000)),
    ?assertEqual({error, {invalid_json, invalid_utf8}}, couch_pgp_channel:seal_response(K, 200, <<"n">>, <<"t">>, <<255>>, binary)).

token_carries_the_channel_test_() ->
    {timeout, 30, fun() ->
        {ok, Client} = couch_pgp:generate_key(),
        Secret = crypto:strong_rand_bytes(32),
        Exp = erlang:system_time(second) + 600,
        {ok, S} = couch_pgp_session:new(<<"alice">>, couch_pgp:public_cert(Client), Exp, <<"s">>),
        Token = couch_pgp_session:seal(S, Secret),
        {ok, Opened} = couch_pgp_session:open(Token, Secret, erlang:system_time(second)),
        ?assertEqual(couch_pgp_session:channel_secret(S), couch_pgp_session:channel_secret(Opened)),
        ?assertEqual(couch_pgp:fingerprint(Client), couch_pgp_session:client_fingerprint(Opened)),
        {ok, M} = couch_pgp_channel:seal(couch_pgp_session:channel(S), client_to_server, <<"x">>),
        ?assertEqual({ok, <<"x">>},
                     couch_pgp_channel:open(couch_pgp_session:channel(Opened), client_to_server, M, 10))
    end}.

%% A session never outlives its client certificate: the channel mode encrypts nothing to the
%% certificate after the session starts, so the session's expiry is capped at the
%% certificate's.
session_ends_with_the_client_certificate_test_() ->
    {timeout, 30, fun() ->
        Now = erlang:system_time(second),
        {ok, Short} = couch_pgp:generate_key(#{expires_in => 120}),
        ShortCert = couch_pgp:public_cert(Short),
        {ok, Until} = couch_pgp:encryptable_until(ShortCert),
        ?assert(Until >= Now + 119 andalso Until =< Now + 122),
        {ok, S} = couch_pgp_session:new(<<"alice">>, ShortCert, Now + 3600, <<"s">>),
        ?assertEqual(Until, couch_pgp_session:expires(S)),
        %% A certificate that outlives the session leaves the session's own expiry.
        {ok, Long} = couch_pgp:generate_key(),
        ?assertEqual({ok, never}, couch_pgp:encryptable_until(couch_pgp:public_cert(Long))),
        {ok, S2} = couch_pgp_session:new(<<"alice">>, couch_pgp:public_cert(Long), Now + 3600, <<"s">>),
        ?assertEqual(Now + 3600, couch_pgp_session:expires(S2))
    end}.
