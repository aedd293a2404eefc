-module(couch_pgp_keystore_tests).
-include_lib("eunit/include/eunit.hrl").
-include_lib("kernel/include/file.hrl").

-define(PASS, <<"correct horse battery staple">>).

%% A fresh directory: unique_integer/1 repeats across VM runs, so a random name.
tmp_dir() ->
    Name = "couch_pgp_keystore_" ++ binary_to_list(binary:encode_hex(crypto:strong_rand_bytes(8))),
    Dir = filename:join("/tmp", Name),
    ok = filelib:ensure_path(Dir),
    Dir.

with_store(Opts, Fun) ->
    {ok, Pid} = couch_pgp_keystore:start_link(Opts),
    unlink(Pid),
    try
        Fun()
    after
        couch_pgp_keystore:stop()
    end.

created_then_loaded_test_() ->
    {timeout, 30, fun() ->
        Dir = tmp_dir(),
        File = filename:join([Dir, "keys", "server.asc"]),
        Opts = #{key_file => File, passphrase => fun() -> ?PASS end, user_id => <<"test server">>},
        Fpr = with_store(Opts, fun() ->
            {ok, #{fingerprint := F, cert := Cert}} = couch_pgp_keystore:identity(),
            ?assertEqual(F, couch_pgp:fingerprint(Cert)),
            F
        end),
        %% Only the owner can read it, and it is protected: a wrong passphrase opens nothing.
        {ok, #file_info{mode = FileMode}} = file:read_file_info(File),
        {ok, #file_info{mode = DirMode}} = file:read_file_info(filename:dirname(File)),
        ?assertEqual(8#600, FileMode band 8#777),
        ?assertEqual(8#700, DirMode band 8#777),
        {ok, Armored} = file:read_file(File),
        ?assertMatch(<<"-----BEGIN PGP PRIVATE KEY BLOCK-----", _/binary>>, Armored),
        ?assertEqual({error, bad_passphrase}, couch_pgp:import_secret(Armored, <<"not it">>)),
        %% A restart loads the same key.
        with_store(Opts, fun() ->
            ?assertMatch({ok, #{fingerprint := Fpr}}, couch_pgp_keystore:identity())
        end),
        %% Stopped: no identity.
        ?assertEqual({error, not_started}, couch_pgp_keystore:identity()),
        %% Wrong passphrase at restart: the store runs, the key is unavailable, nothing is
        %% overwritten.
        with_store(Opts#{passphrase => fun() -> <<"wrong">> end}, fun() ->
            ?assertEqual({error, bad_passphrase}, couch_pgp_keystore:status())
        end),
        ?assertEqual({ok, Armored}, file:read_file(File)),
        ok = file:del_dir_r(Dir)
    end}.

no_passphrase_no_key_test() ->
    Dir = tmp_dir(),
    File = filename:join(Dir, "server.asc"),
    with_store(#{key_file => File, passphrase => fun() -> undefined end}, fun() ->
        ?assertEqual({error, no_passphrase}, couch_pgp_keystore:status())
    end),
    %% Nothing was written in plaintext, or at all.
    ?assertEqual(false, filelib:is_file(File)),
    ok = file:del_dir_r(Dir).

unusable_file_test() ->
    Dir = tmp_dir(),
    File = filename:join(Dir, "server.asc"),
    ok = file:write_file(File, <<"not a key">>),
    ok = file:change_mode(File, 8#600),
    with_store(#{key_file => File, passphrase => fun() -> ?PASS end}, fun() ->
        ?assertEqual({error, bad_key}, couch_pgp_keystore:status())
    end),
    ok = file:del_dir_r(Dir).

%% A node that had an identity does not make a new one when its key file is gone: in a
%% cluster that would be a second identity nobody pinned. Only a node that never had one
%% creates a key.
missing_key_file_with_a_known_identity_test_() ->
    {timeout, 30, fun() ->
        Dir = tmp_dir(),
        File = filename:join([Dir, "keys", "server.asc"]),
        Known = ets:new(known, [public, set]),
        Opts = #{key_file => File, passphrase => fun() -> ?PASS end,
                 known_fingerprint => fun() ->
                     case ets:lookup(Known, fpr) of [{fpr, F}] -> F; [] -> undefined end
                 end,
                 record_fingerprint => fun(F) -> ets:insert(Known, {fpr, F}) end},
        Fpr = with_store(Opts, fun() ->
            {ok, #{fingerprint := F}} = couch_pgp_keystore:identity(),
            F
        end),
        ?assertEqual([{fpr, Fpr}], ets:lookup(Known, fpr)),
        {ok, Armored} = file:read_file(File),
        ok = file:delete(File),
        with_store(Opts, fun() ->
            ?assertEqual({error, key_file_missing}, couch_pgp_keystore:status())
        end),
        ?assertEqual(false, filelib:is_file(File)),
        %% Restored, it loads again.
        ok = file:write_file(File, Armored),
        ok = file:change_mode(File, 8#600),
        with_store(Opts, fun() ->
            ?assertMatch({ok, #{fingerprint := Fpr}}, couch_pgp_keystore:identity())
        end),
        ets:delete(Known),
        ok = file:del_dir_r(Dir)
    end}.

%% A key file group or others may access, a directory they may write, or something other
%% than a file: refused, and left as it was.
loose_modes_refused_test_() ->
    {timeout, 30, fun() ->
        Dir = tmp_dir(),
        File = filename:join([Dir, "keys", "server.asc"]),
        Opts = #{key_file => File, passphrase => fun() -> ?PASS end},
        with_store(Opts, fun() -> loaded = couch_pgp_keystore:status() end),
        {ok, Armored} = file:read_file(File),
        Status = fun() -> with_store(Opts, fun() -> couch_pgp_keystore:status() end) end,
        ok = file:change_mode(File, 8#640),
        ?assertEqual({error, key_file_mode}, Status()),
        ok = file:change_mode(File, 8#604),
        ?assertEqual({error, key_file_mode}, Status()),
        ok = file:change_mode(File, 8#600),
        ok = file:change_mode(filename:dirname(File), 8#777),
        ?assertEqual({error, key_dir_mode}, Status()),
        ok = file:change_mode(filename:dirname(File), 8#755),
        ?assertEqual(loaded, Status()),
        ?assertEqual({ok, Armored}, file:read_file(File)),
        {ok, #file_info{mode = Mode}} = file:read_file_info(File),
        ?assertEqual(8#600, Mode band 8#777),
        ok = file:delete(File),
        ok = file:make_dir(File),
        ?assertEqual({error, not_regular_file}, Status()),
        ok = file:del_dir_r(Dir)
    end}.

%% Started unloaded (couch_pgp switched off): no key is created until load/0; unload/0
%% forgets it and a later load/0 reads the same key back from the file.
load_on_demand_test_() ->
    {timeout, 30, fun() ->
        Dir = tmp_dir(),
        File = filename:join(Dir, "server.asc"),
        Opts = #{key_file => File, passphrase => fun() -> ?PASS end, load_at_start => false},
        with_store(Opts, fun() ->
            ?assertEqual({error, disabled}, couch_pgp_keystore:identity()),
            ?assertEqual(false, filelib:is_file(File)),
            ?assertEqual(loaded, couch_pgp_keystore:load()),
            {ok, #{fingerprint := Fpr}} = couch_pgp_keystore:identity(),
            ?assert(filelib:is_file(File)),
            ?assertEqual(loaded, couch_pgp_keystore:load()),
            ?assertEqual(ok, couch_pgp_keystore:unload()),
            ?assertEqual({error, disabled}, couch_pgp_keystore:status()),
            ?assertEqual(loaded, couch_pgp_keystore:load()),
            ?assertMatch({ok, #{fingerprint := Fpr}}, couch_pgp_keystore:identity())
        end),
        %% A key that cannot be loaded is reported by load/0 itself.
        with_store(Opts#{passphrase => fun() -> <<"wrong">> end}, fun() ->
            ?assertEqual({error, bad_passphrase}, couch_pgp_keystore:load()),
            ?assertEqual({error, bad_passphrase}, couch_pgp_keystore:status())
        end),
        ok = file:del_dir_r(Dir)
    end}.

%% Rotation as a cluster does it: prepared on one node, installed on each (here: the same
%% store, then a second key directory holding a copy of the old key), survives a restart,
%% and the earlier key can then be revoked.
rotation_installed_and_reloaded_test_() ->
    {timeout, 60, fun() ->
        Dir = tmp_dir(),
        File = filename:join([Dir, "a", "server.asc"]),
        Opts = #{key_file => File, passphrase => fun() -> ?PASS end},
        {Old, Rotation} = with_store(Opts, fun() ->
            {ok, #{fingerprint := O}} = couch_pgp_keystore:identity(),
            {ok, #{old := O, new := N} = R} = couch_pgp_keystore:rotate(3600),
            %% Prepared only: nothing changed yet.
            ?assertMatch({ok, #{fingerprint := O}}, couch_pgp_keystore:identity()),
            ?assertEqual(ok, couch_pgp_keystore:install(R)),
            ?assertEqual(ok, couch_pgp_keystore:install(R)),  % again: already done
            {ok, #{fingerprint := N, history := H}} = couch_pgp_keystore:identity(),
            {ok, Prev} = couch_pgp_rotation:previous(H, O),
            ?assertEqual(ok, couch_pgp_rotation:verify_endorsement(Prev)),
            {O, R}
        end),
        New = maps:get(new, Rotation),
        %% A second node with the old key installs the same rotation.
        File2 = filename:join([Dir, "b", "server.asc"]),
        ok = filelib:ensure_path(filename:dirname(File2)),
        ok = file:change_mode(filename:dirname(File2), 8#700),
        {ok, OldBytes} = file:read_file(iolist_to_binary([File, ".", Old])),
        ok = file:write_file(File2, OldBytes),
        ok = file:change_mode(File2, 8#600),
        with_store(Opts#{key_file => File2}, fun() ->
            ?assertMatch({ok, #{fingerprint := Old}}, couch_pgp_keystore:identity()),
            ?assertEqual(ok, couch_pgp_keystore:install(Rotation)),
            ?assertMatch({ok, #{fingerprint := New}}, couch_pgp_keystore:identity())
        end),
        %% A restart loads the new key with its history; the old key can be revoked, the
        %% current one cannot.
        with_store(Opts, fun() ->
            {ok, #{fingerprint := New, history := H}} = couch_pgp_keystore:identity(),
            ?assertMatch({ok, _}, couch_pgp_rotation:previous(H, Old)),
            ?assertEqual({error, current_identity},
                         couch_pgp_keystore:revocation(New, compromised, <<>>)),
            {ok, Rev} = couch_pgp_keystore:revocation(Old, compromised, <<"copied">>),
            ?assertEqual({error, bad_revocation},
                         couch_pgp_keystore:install_revocation(Rev#{reason := retired})),
            %% What a peer that still has the old key is offered to catch up.
            {newer, #{old := Old, new := New} = Offer, []} = couch_pgp_keystore:offer(Old),
            ?assertMatch({ok, _}, couch_pgp_rotation:from_json(maps:get(history, Offer))),
            ?assertEqual({same, []}, couch_pgp_keystore:offer(New)),
            ?assertEqual(unknown, couch_pgp_keystore:offer(<<"0000">>)),
            ?assertEqual(ok, couch_pgp_keystore:install_revocation(Rev)),
            ?assertMatch({same, [#{fingerprint := Old}]}, couch_pgp_keystore:offer(New)),
            {ok, #{history := H2}} = couch_pgp_keystore:identity(),
            ?assert(couch_pgp_rotation:is_revoked(H2, Old)),
            %% A rotation whose old key is not this node's identity is refused.
            ?assertEqual({error, not_current_identity},
                         couch_pgp_keystore:install(Rotation#{new := Old, old := <<"X">>}))
        end),
        with_store(Opts, fun() ->
            {ok, #{history := H3}} = couch_pgp_keystore:identity(),
            ?assert(couch_pgp_rotation:is_revoked(H3, Old))
        end)
    end}.
