%% The nonce part of couch_pgp_cache on one node. Across nodes it is tested against a real
%% two-node CouchDB cluster (test/integration/cluster.test.mjs).
-module(couch_pgp_cache_tests).

-include_lib("eunit/include/eunit.hrl").

without_cache_test() ->
    undefined = whereis(couch_pgp_cache),
    %% This node refuses (safe side); asked by another node, it has no opinion.
    ?assert(couch_pgp_cache:seen_nonce(<<"scope">>, <<"n">>, until())),
    ?assertNot(couch_pgp_cache:claim_nonce(<<"scope">>, <<"n">>, until())).

nonces_test_() ->
    {setup,
        fun() -> {ok, Pid} = couch_pgp_cache:start_link(), unlink(Pid), Pid end,
        fun(Pid) -> exit(Pid, shutdown), wait_down(Pid) end,
        fun(_) ->
            ?_test(begin
                ?assertNot(couch_pgp_cache:seen_nonce(<<"a">>, <<"n1">>, until())),
                ?assert(couch_pgp_cache:seen_nonce(<<"a">>, <<"n1">>, until())),
                %% Nonces are per client key.
                ?assertNot(couch_pgp_cache:seen_nonce(<<"b">>, <<"n1">>, until())),
                %% What another node asks: claimed here already, or not.
                ?assert(couch_pgp_cache:claim_nonce(<<"a">>, <<"n1">>, until())),
                ?assertNot(couch_pgp_cache:claim_nonce(<<"a">>, <<"n2">>, until())),
                %% ... and a nonce claimed by another node is seen here.
                ?assert(couch_pgp_cache:seen_nonce(<<"a">>, <<"n2">>, until()))
            end)
        end}.

until() ->
    erlang:system_time(millisecond) + 60000.

wait_down(Pid) ->
    Ref = monitor(process, Pid),
    receive {'DOWN', Ref, process, Pid, _} -> ok after 5000 -> error(cache_did_not_stop) end.
