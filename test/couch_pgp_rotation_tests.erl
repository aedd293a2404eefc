-module(couch_pgp_rotation_tests).
-include_lib("eunit/include/eunit.hrl").

key() ->
    {ok, K} = couch_pgp:generate_key(),
    K.

endorsement_test() ->
    Old = key(), New = key(),
    NewFpr = couch_pgp:fingerprint(New),
    {ok, E} = couch_pgp_rotation:endorse(Old, NewFpr, 1000, 2000),
    ?assertEqual(ok, couch_pgp_rotation:verify_endorsement(E)),
    %% Changing any field breaks it: the statement is rebuilt from them.
    ?assertMatch({error, _}, couch_pgp_rotation:verify_endorsement(E#{until := 3000})),
    ?assertMatch({error, _}, couch_pgp_rotation:verify_endorsement(E#{next := couch_pgp:fingerprint(key())})),
    %% Signed by another key than the one it names.
    {ok, Forged} = couch_pgp_rotation:endorse(key(), NewFpr, 1000, 2000),
    ?assertMatch({error, _}, couch_pgp_rotation:verify_endorsement(
                               Forged#{fingerprint := couch_pgp:fingerprint(Old),
                                       cert := couch_pgp:public_cert(Old)})).

history_round_trip_and_announce_test() ->
    Old = key(), New = key(),
    OldFpr = couch_pgp:fingerprint(Old), NewFpr = couch_pgp:fingerprint(New),
    H0 = couch_pgp_rotation:new(OldFpr),
    {ok, E} = couch_pgp_rotation:endorse(Old, NewFpr, 1000, 2000),
    H1 = couch_pgp_rotation:rotated(H0, E, NewFpr),
    ?assertEqual(NewFpr, couch_pgp_rotation:current(H1)),
    {ok, Revoked} = couch_pgp:revoke(Old, compromised, <<"leaked">>),
    {revoked, compromised, At} = couch_pgp:revocation_status(Revoked),
    Rev = #{fingerprint => OldFpr, reason => compromised, message => <<"leaked">>,
            revoked_at => At, revocation => Revoked},
    H2 = couch_pgp_rotation:revoked(H1, Rev),
    ?assert(couch_pgp_rotation:is_revoked(H2, OldFpr)),
    ?assertEqual(H2, couch_pgp_rotation:revoked(H2, Rev#{message := <<"again">>})),
    ?assertEqual({ok, H2}, couch_pgp_rotation:from_json(couch_pgp_rotation:to_json(H2))),
    %% In the overlap the old key is announced; after it only the revocation is.
    [{<<"previous">>, [{P}]}, {<<"revocations">>, [{R}]}] = couch_pgp_rotation:announce(H2, 1500),
    ?assertEqual(OldFpr, proplists:get_value(<<"fingerprint">>, P)),
    ?assertEqual(<<"compromised">>, proplists:get_value(<<"reason">>, R)),
    ?assertMatch([{<<"previous">>, []}, {<<"revocations">>, [_]}],
                 couch_pgp_rotation:announce(H2, 2000)),
    ?assertEqual({error, bad_state}, couch_pgp_rotation:from_json(<<"{\"v\":2}">>)),
    ?assertEqual({error, bad_state}, couch_pgp_rotation:from_json(<<"not json">>)).

revocation_status_test() ->
    K = key(),
    ?assertEqual(not_revoked, couch_pgp:revocation_status(couch_pgp:public_cert(K))),
    {ok, R} = couch_pgp:revoke(K, retired, <<>>),
    ?assertMatch({revoked, retired, _}, couch_pgp:revocation_status(R)),
    ?assertError(badarg, couch_pgp:revoke(K, stolen, <<>>)),
    ?assertEqual({error, malformed}, couch_pgp:revoke(K, retired, binary:copy(<<"x">>, 2000))).

%% A certificate revoked in a registry from time T counts only for signatures made before T.
revoked_signer_counts_before_its_revocation_test() ->
    K = key(),
    Cert = couch_pgp:public_cert(K),
    Fpr = couch_pgp:fingerprint(K),
    {ok, Doc} = couch_pgp:sign_doc({[{<<"_id">>, <<"d">>}, {<<"n">>, 1}]}, K),
    Now = erlang:system_time(second),
    ?assertEqual({ok, [Fpr]}, couch_pgp:verify_doc(Doc, [Cert], #{revoked => #{Fpr => Now + 60}})),
    ?assertEqual({error, signed_after_revocation},
                 couch_pgp:verify_doc(Doc, [Cert], #{revoked => #{Fpr => Now - 60}})),
    %% Revocations of other keys do not matter.
    ?assertEqual({ok, [Fpr]}, couch_pgp:verify_doc(Doc, [Cert], #{revoked => #{<<"X">> => 0}})),
    {ok, Payload} = couch_pgp_doc:signing_payload(Doc, #{}),
    {ok, Sig} = couch_pgp:sign(Payload, K),
    {ok, Fpr, Created} = couch_pgp:verify_timed(Payload, Sig, [Cert]),
    ?assert(abs(Created - Now) =< 5),
    ?assertEqual({error, unknown_signer}, couch_pgp:verify_timed(Payload, Sig, [couch_pgp:public_cert(key())])).
