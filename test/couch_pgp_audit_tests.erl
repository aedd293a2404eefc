%% The audit trail: the store writes a chain the verifier accepts, and each kind of tampering
%% is found at the seq couch_pgp_audit_verify documents.
-module(couch_pgp_audit_tests).

-include_lib("eunit/include/eunit.hrl").

-define(NODE, <<"couchdb@127.0.0.1">>).

identity() ->
    {ok, Key} = couch_pgp:generate_key(),
    #{key => Key, cert => couch_pgp:public_cert(Key), fingerprint => couch_pgp:fingerprint(Key)}.

tmp_file() ->
    Dir = filename:join(["/tmp", "couch_pgp_audit_tests",
                         integer_to_list(erlang:unique_integer([positive]))]),
    filename:join(Dir, "audit.log").

%% A trail written by the store: 7 events, a checkpoint every 3 entries.
%% Seq 1 audit_started, 2..8 the events, checkpoints at 4 (after 1..3) and 8 (after 5..7)...
%% the exact layout is read back from the file, not assumed.
write_trail(Identity, N) ->
    File = tmp_file(),
    {ok, _} = couch_pgp_audit_store:start_link(#{file => File, node => ?NODE,
                                                 identity => fun() -> {ok, Identity} end,
                                                 checkpoint_every => 3}),
    [ok = couch_pgp_audit_store:append(login, [{user, <<"alice">>}, {n, I}]) || I <- lists:seq(1, N)],
    ok = couch_pgp_audit_store:checkpoint(),
    ok = couch_pgp_audit_store:stop(),
    File.

lines(File) ->
    {ok, Bin} = file:read_file(File),
    binary:split(Bin, <<"\n">>, [global, trim]).

entries(File) ->
    [begin {ok, E} = couch_pgp_audit_chain:decode(L), E end || L <- lines(File)].

put_lines(File, Lines) ->
    Copy = File ++ ".copy",
    ok = file:write_file(Copy, [[L, "\n"] || L <- Lines]),
    Copy.

encode_line(Entry) ->
    Line = couch_pgp_audit_chain:encode(Entry),
    binary:part(Line, 0, byte_size(Line) - 1).

seq_of(Type, File) ->
    [S || #{<<"seq">> := S, <<"type">> := T} <- entries(File), T =:= Type].

chain_test_() ->
    {setup, fun() -> Id = identity(), {Id, write_trail(Id, 7)} end,
     fun({_, File}) -> file:del_dir_r(filename:dirname(File)) end,
     fun({Id = #{cert := Cert}, File}) ->
         Lines = lines(File),
         Checkpoints = seq_of(<<"checkpoint">>, File),
         [FirstCp | _] = Checkpoints,
         [
          ?_assertEqual(ok, couch_pgp_audit_verify:file(File, [Cert])),
          ?_test(begin
              %% 1 audit_started + 7 logins, a checkpoint after every 3, one at the end.
              {ok, S} = couch_pgp_audit_verify:files([File], [Cert], #{}),
              ?assertEqual(#{entries => 11, first_seq => 1, last_seq => 11, node => ?NODE,
                             signed_through => 11, unsigned_tail => 0,
                             signers => [maps:get(fingerprint, Id)]}, S),
              ?assertEqual([4, 8, 11], Checkpoints)
          end),
          {"no event body, only the fields given",
           ?_assertMatch(#{<<"type">> := <<"login">>,
                           <<"fields">> := #{<<"user">> := <<"alice">>, <<"n">> := 1}},
                         lists:nth(2, entries(File)))},
          {"an edited entry is found at its seq",
           ?_assertEqual({error, {broken_at, 3, hash_mismatch}},
                         couch_pgp_audit_verify:file(
                           put_lines(File, replace(3, binary:replace(lists:nth(3, Lines),
                                                                     <<"alice">>, <<"mallo">>),
                                                   Lines)), [Cert]))},
          {"an edited entry with its hash recomputed breaks the next link",
           ?_assertEqual({error, {broken_at, 3, prev_mismatch}},
                         couch_pgp_audit_verify:file(
                           put_lines(File, replace(2, rehashed(lists:nth(2, Lines)), Lines)),
                           [Cert]))},
          {"a deleted entry is found at the missing seq",
           ?_assertEqual({error, {broken_at, 5, {unexpected_seq, 6}}},
                         couch_pgp_audit_verify:file(put_lines(File, delete(5, Lines)), [Cert]))},
          {"swapped entries are found at the first out of place",
           ?_assertEqual({error, {broken_at, 6, {unexpected_seq, 7}}},
                         couch_pgp_audit_verify:file(
                           put_lines(File, replace(6, lists:nth(7, Lines),
                                                   replace(7, lists:nth(6, Lines), Lines))),
                           [Cert]))},
          {"an inserted entry (right seq and prev, rest renumbered) breaks at the checkpoint",
           ?_assertEqual({error, {broken_at, FirstCp + 1, bad_signature}},
                         couch_pgp_audit_verify:file(
                           put_lines(File, forged_insert(2, Lines)), [Cert]))},
          {"an inserted line that does not fit is found where it is",
           ?_assertEqual({error, {broken_at, 3, {unexpected_seq, 2}}},
                         couch_pgp_audit_verify:file(
                           put_lines(File, lists:sublist(Lines, 2) ++ [lists:nth(2, Lines)]
                                     ++ lists:nthtail(2, Lines)), [Cert]))},
          {"a last line cut short is found",
           ?_test(begin
               Copy = put_lines(File, Lines),
               {ok, Bin} = file:read_file(Copy),
               ok = file:write_file(Copy, binary:part(Bin, 0, byte_size(Bin) - 10)),
               ?assertEqual({error, {broken_at, 11, truncated_line}},
                            couch_pgp_audit_verify:file(Copy, [Cert]))
           end)},
          {"cut after a checkpoint: found only against a seq seen before",
           ?_test(begin
               Copy = put_lines(File, lists:sublist(Lines, 8)),
               ?assertEqual(ok, couch_pgp_audit_verify:file(Copy, [Cert])),
               ?assertEqual({error, {broken_at, 9, {truncated, 11}}},
                            couch_pgp_audit_verify:files([Copy], [Cert], #{min_seq => 11}))
           end)},
          {"a checkpoint signed by another key is refused",
           ?_test(begin
               Other = identity(),
               ?assertEqual({error, {broken_at, 4, bad_signature}},
                            couch_pgp_audit_verify:file(File, [maps:get(cert, Other)])),
               Resigned = resign(4, Other, Lines),
               ?assertEqual({error, {broken_at, 4, bad_signature}},
                            couch_pgp_audit_verify:file(put_lines(File, Resigned), [Cert]))
           end)},
          {"deleting the first entries is found; retention mode accepts a later start",
           ?_test(begin
               Copy = put_lines(File, lists:nthtail(4, Lines)),
               ?assertEqual({error, {broken_at, 1, {unexpected_seq, 5}}},
                            couch_pgp_audit_verify:file(Copy, [Cert])),
               ?assertMatch({ok, #{first_seq := 5, last_seq := 11, entries := 7}},
                            couch_pgp_audit_verify:files([Copy], [Cert],
                                                         #{from_any_seq => true}))
           end)},
          {"garbage and empty files are errors, not crashes",
           ?_test(begin
               ?assertEqual({error, {broken_at, 1, empty}},
                            couch_pgp_audit_verify:file(put_lines(File, []), [Cert])),
               ?assertEqual({error, {broken_at, 2, bad_json}},
                            couch_pgp_audit_verify:file(
                              put_lines(File, [hd(Lines), <<"{not json">>]), [Cert])),
               ?assertEqual({error, {broken_at, 2, bad_entry}},
                            couch_pgp_audit_verify:file(
                              put_lines(File, [hd(Lines), <<"{\"seq\":2}">>]), [Cert])),
               ?assertEqual({error, {broken_at, 1, {file, enoent}}},
                            couch_pgp_audit_verify:file(File ++ ".none", [Cert]))
           end)}
         ]
     end}.

replace(N, Line, Lines) ->
    lists:sublist(Lines, N - 1) ++ [Line] ++ lists:nthtail(N, Lines).

delete(N, Lines) ->
    lists:sublist(Lines, N - 1) ++ lists:nthtail(N, Lines).

rehashed(Line) ->
    {ok, E} = couch_pgp_audit_chain:decode(binary:replace(Line, <<"alice">>, <<"mallo">>)),
    encode_line(E#{<<"hash">> => couch_pgp_audit_chain:hash(E)}).

%% Inserts a forged entry after line N and renumbers and rehashes everything after it, as
%% an attacker without the key would: only the checkpoint signatures then disagree.
forged_insert(N, Lines) ->
    Entries = [begin {ok, E} = couch_pgp_audit_chain:decode(L), E end || L <- Lines],
    {Keep, Rest} = lists:split(N, Entries),
    #{<<"hash">> := Head, <<"seq">> := Seq} = lists:last(Keep),
    Forged = couch_pgp_audit_chain:entry(Seq + 1, 0, ?NODE, login, [{user, <<"mallory">>}], Head),
    {Rewritten, _} = lists:mapfoldl(
                       fun(E, #{<<"hash">> := Prev, <<"seq">> := S}) ->
                           E1 = E#{<<"seq">> => S + 1, <<"prev">> => Prev},
                           E2 = E1#{<<"hash">> => couch_pgp_audit_chain:hash(E1)},
                           {E2, E2}
                       end, Forged, Rest),
    [encode_line(E) || E <- Keep ++ [Forged | Rewritten]].

%% Replaces checkpoint N by one signed with another key (a well-formed, rehashed entry).
resign(N, Other, Lines) ->
    {ok, #{<<"seq">> := Seq, <<"prev">> := Prev, <<"node">> := Node}} =
        couch_pgp_audit_chain:decode(lists:nth(N, Lines)),
    {ok, Cp} = couch_pgp_audit_chain:checkpoint(Seq, 0, Node, Prev, Other),
    lists:sublist(Lines, N - 1) ++ [encode_line(Cp)].

store_test_() ->
    {foreach, fun() -> tmp_file() end,
     fun(File) -> _ = file:del_dir_r(filename:dirname(File)) end,
     [fun(File) -> {"the store resumes the chain after a restart and a torn last line",
                    ?_test(resumes(File))} end,
      fun(File) -> {"without the identity no checkpoint is written, and none is faked",
                    ?_test(no_identity(File))} end,
      fun(File) -> {"rotation continues the chain in a new file", ?_test(rotates(File))} end,
      fun(File) -> {"a damaged last line is not appended to", ?_test(damaged(File))} end,
      fun(File) -> {"under backpressure nothing is dropped", ?_test(backpressure(File))} end,
      fun(File) -> {"a checkpoint after checkpoint_interval; fsync always",
                    ?_test(interval(File))} end]}.

start(File, Id, Extra) ->
    {ok, _} = couch_pgp_audit_store:start_link(
                maps:merge(#{file => File, node => ?NODE,
                             identity => fun() -> {ok, Id} end}, Extra)).

resumes(File) ->
    Id = #{cert := Cert} = identity(),
    start(File, Id, #{}),
    ok = couch_pgp_audit_store:append(login, [{user, <<"a">>}]),
    ok = couch_pgp_audit_store:stop(),
    {ok, Bin} = file:read_file(File),
    ok = file:write_file(File, [Bin, <<"{\"seq\":4,\"ti">>]),
    start(File, Id, #{}),
    ok = couch_pgp_audit_store:append(login, [{user, <<"b">>}]),
    ok = couch_pgp_audit_store:stop(),
    ?assertEqual(ok, couch_pgp_audit_verify:file(File, [Cert])),
    ?assertMatch([#{<<"type">> := <<"audit_started">>, <<"seq">> := 4,
                    <<"fields">> := #{<<"resumed_at">> := 3,
                                      <<"discarded_partial_bytes">> := 12}}],
                 [E || E = #{<<"seq">> := 4} <- entries(File)]).

no_identity(File) ->
    start(File, undefined, #{identity => fun() -> {error, disabled} end,
                             checkpoint_every => 1}),
    ok = couch_pgp_audit_store:append(login, [{user, <<"a">>}]),
    ?assertEqual({error, {no_identity, disabled}}, couch_pgp_audit_store:checkpoint()),
    ok = couch_pgp_audit_store:stop(),
    ?assertEqual([<<"audit_started">>, <<"login">>],
                 [T || #{<<"type">> := T} <- entries(File)]).

rotates(File) ->
    Id = #{cert := Cert} = identity(),
    start(File, Id, #{}),
    ok = couch_pgp_audit_store:append(login, [{user, <<"a">>}]),
    {ok, Old} = couch_pgp_audit_store:rotate(),
    ok = couch_pgp_audit_store:append(login, [{user, <<"b">>}]),
    ok = couch_pgp_audit_store:stop(),
    ?assertEqual(iolist_to_binary([File, ".3"]), Old),
    ?assertMatch({ok, #{entries := 6, last_seq := 6, unsigned_tail := 0}},
                 couch_pgp_audit_verify:files([Old, File], [Cert], #{})),
    ?assertMatch({error, {broken_at, 1, {unexpected_seq, 4}}},
                 couch_pgp_audit_verify:file(File, [Cert])),
    ?assertMatch({ok, #{first_seq := 4}},
                 couch_pgp_audit_verify:files([File], [Cert], #{from_any_seq => true})).

damaged(File) ->
    %% No identity: no checkpoint at stop, so the login is the last line.
    Id = identity(),
    start(File, Id, #{identity => fun() -> {error, disabled} end}),
    ok = couch_pgp_audit_store:append(login, [{user, <<"a">>}]),
    ok = couch_pgp_audit_store:stop(),
    {ok, Bin} = file:read_file(File),
    Damaged = binary:replace(Bin, <<"\"user\":\"a\"">>, <<"\"user\":\"b\"">>),
    ok = file:write_file(File, Damaged),
    start(File, Id, #{}),
    ok = couch_pgp_audit_store:append(login, [{user, <<"c">>}]),
    ?assertMatch(#{state := {error, {last_entry_hash_mismatch, 2}}, unwritten := 1},
                 couch_pgp_audit_store:status()),
    ok = couch_pgp_audit_store:stop(),
    ?assertEqual({ok, Damaged}, file:read_file(File)).

backpressure(File) ->
    Id = #{cert := Cert} = identity(),
    start(File, Id, #{max_queue => 2, checkpoint_every => 50}),
    Parent = self(),
    Pids = [spawn_link(fun() ->
                           [ok = couch_pgp_audit_store:append(login, [{n, I}])
                            || I <- lists:seq(1, 100)],
                           Parent ! {done, self()}
                       end) || _ <- lists:seq(1, 4)],
    [receive {done, P} -> ok end || P <- Pids],
    ok = couch_pgp_audit_store:stop(),
    {ok, #{entries := Entries}} = couch_pgp_audit_verify:files([File], [Cert], #{}),
    Logins = [E || E = #{<<"type">> := <<"login">>} <- entries(File)],
    ?assertEqual(400, length(Logins)),
    %% 401 entries, a checkpoint after every 50 (8) and one at stop.
    ?assertEqual(1 + 400 + 9, Entries).

interval(File) ->
    Id = #{cert := Cert} = identity(),
    start(File, Id, #{checkpoint_interval => 50, fsync => always}),
    ok = couch_pgp_audit_store:append(login, [{user, <<"a">>}]),
    %% Not yet: the interval has not passed.
    ?assertMatch(#{seq := 2}, couch_pgp_audit_store:status()),
    timer:sleep(300),
    ?assertMatch(#{seq := 3}, couch_pgp_audit_store:status()),
    %% Nothing new since: no further checkpoint.
    timer:sleep(200),
    ?assertMatch(#{seq := 3}, couch_pgp_audit_store:status()),
    ?assertEqual([<<"audit_started">>, <<"login">>, <<"checkpoint">>],
                 [T || #{<<"type">> := T} <- entries(File)]),
    ok = couch_pgp_audit_store:stop(),
    ?assertMatch({ok, #{signed_through := 3, unsigned_tail := 0}},
                 couch_pgp_audit_verify:files([File], [Cert], #{})).
