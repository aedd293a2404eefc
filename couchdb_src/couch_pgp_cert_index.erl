%% @doc Which users of this server have registered a certificate, by fingerprint: the
%% index replicated writes to signed-only databases are checked with (their writer is a
%% replication job, not the author, so the author's certificate is found from the
%% signature's `signer').
%%
%% The index is only a hint. A hit is confirmed against the user's `_users' document as it
%% is now (couch_pgp_certs:registered/1), so a certificate removed through `DELETE
%% /_pgp/certs' stops counting at once, on every node, whatever the index says. A miss (a
%% certificate registered since the index was built, possibly on another node) rebuilds the
%% index by one scan of `_users'. Cost bound: one scan at a time per node, and at most one
%% every ?MIN_REBUILD_INTERVAL_MS; concurrent misses share the next scan. A write whose
%% signers are all unknown (a forgery) therefore costs at most one scan per interval, not
%% one per write.
%%
%% The scan runs in a process of its own, never in this server: fabric's receive loop
%% (rexi_utils:recv) takes and drops any 3-tuple it does not expect, which includes a
%% `{'$gen_call', From, Request}' sent to the process running it. A scan run inside
%% handle_call swallowed the lookups that arrived meanwhile (concurrent writes on several
%% shards of one node), and those writes waited for the call timeout.
-module(couch_pgp_cert_index).
-behaviour(gen_server).
-include_lib("couch/include/couch_db.hrl").

-export([start_link/0, child_spec/0, certs_for/1, signers/1]).
-export([init/1, handle_call/3, handle_cast/2, handle_info/2]).

-define(TABLE, ?MODULE).
-define(USERS_DB, <<"_users">>).
-define(USER_PREFIX, "org.couchdb.user:").
%% A _users scan of a few thousand users takes well under a second; one per second per node
%% keeps a stream of forged writes from turning into a stream of scans.
-define(MIN_REBUILD_INTERVAL_MS, 1000).
-define(CALL_TIMEOUT_MS, 60000).

-record(st, {
    %% When the scan the table holds started (monotonic ms).
    built_at :: integer() | undefined,
    %% When the last scan started, whether it succeeded or not (the rate limit).
    scanned_at :: integer() | undefined,
    %% The scan running now: its process monitor and the tag of its result message.
    scan :: {reference(), reference()} | undefined,
    %% Callers waiting for a scan that starts no earlier than their `Asked'.
    waiting = [] :: [{gen_server:from(), integer()}]
}).

%% @doc Starts the index (empty: built at the first lookup).
-spec start_link() -> {ok, pid()} | {error, term()}.
start_link() ->
    gen_server:start_link({local, ?MODULE}, ?MODULE, [], []).

%% @doc The child spec couch_pgp_node adds to couch_pgp's supervisor.
-spec child_spec() -> supervisor:child_spec().
child_spec() ->
    #{id => ?MODULE, start => {?MODULE, start_link, []}, restart => permanent,
      shutdown => 5000, type => worker}.

%% @doc The certificates currently registered (to any user) under these fingerprints.
%% Throws `{forbidden, Msg}' when the index cannot be consulted (fail closed).
-spec certs_for([binary()]) -> [binary()].
certs_for([]) ->
    [];
certs_for(Fprs) ->
    Asked = erlang:monotonic_time(millisecond),
    case confirmed(Fprs) of
        [] ->
            rebuild_since(Asked),
            confirmed(Fprs);
        Certs ->
            Certs
    end.

%% @doc Like certs_for/1, revoked certificates included: these certificates, and for those
%% their users revoked, the time from which they no longer count (unix seconds). Throws as
%% certs_for/1.
-spec signers([binary()]) -> {[binary()], #{binary() => integer()}}.
signers([]) ->
    {[], #{}};
signers(Fprs) ->
    Asked = erlang:monotonic_time(millisecond),
    case confirmed_with_revoked(Fprs) of
        {[], _} ->
            rebuild_since(Asked),
            confirmed_with_revoked(Fprs);
        Found ->
            Found
    end.

%% ----------------------------------------------------------------- gen_server

%% @private
-spec init([]) -> {ok, #st{}}.
init([]) ->
    _ = ets:new(?TABLE, [bag, protected, named_table, {read_concurrency, true}]),
    {ok, #st{}}.

%% @private
-spec handle_call({rebuild_since, integer()}, gen_server:from(), #st{}) ->
    {reply, ok, #st{}} | {noreply, #st{}}.
handle_call({rebuild_since, Asked}, _From, #st{built_at = Built} = St)
        when is_integer(Built), Built >= Asked ->
    %% Someone else's miss rebuilt it after ours happened: it is fresh enough.
    {reply, ok, St};
handle_call({rebuild_since, Asked}, From, #st{waiting = Waiting} = St) ->
    {noreply, maybe_scan(St#st{waiting = [{From, Asked} | Waiting]})}.

%% @private
-spec handle_cast(term(), #st{}) -> {noreply, #st{}}.
handle_cast(_Msg, St) ->
    {noreply, St}.

%% @private
-spec handle_info(term(), #st{}) -> {noreply, #st{}}.
handle_info({Tag, Started, Result}, #st{scan = {Mon, Tag}} = St) ->
    erlang:demonitor(Mon, [flush]),
    {noreply, scanned(Started, Result, St)};
handle_info({'DOWN', Mon, process, _Pid, Reason}, #st{scan = {Mon, _}, scanned_at = At} = St) ->
    {noreply, scanned(At, {error, {scan_crashed, Reason}}, St)};
handle_info(_Msg, St) ->
    {noreply, St}.

%% ----------------------------------------------------------------- internal

now_ms() ->
    erlang:monotonic_time(millisecond).

%% Starts a scan if someone waits and none runs. It begins at most every
%% ?MIN_REBUILD_INTERVAL_MS after the previous one began; the wait happens in the scanning
%% process, so this server keeps answering.
maybe_scan(#st{waiting = []} = St) ->
    St;
maybe_scan(#st{scan = {_, _}} = St) ->
    St;
maybe_scan(#st{scanned_at = Last} = St) ->
    Now = now_ms(),
    Delay = case Last of
        undefined -> 0;
        _ -> max(0, Last + ?MIN_REBUILD_INTERVAL_MS - Now)
    end,
    Self = self(),
    Tag = make_ref(),
    {_Pid, Mon} = spawn_monitor(fun() ->
        timer:sleep(Delay),
        Started = now_ms(),
        Self ! {Tag, Started, scan()}
    end),
    St#st{scan = {Mon, Tag}, scanned_at = Now + Delay}.

%% A scan's result: this scan answers everyone who asked before it started; a failure
%% answers everyone (they throw: fail closed). Who asked later waits for the next scan.
scanned(Started, Result, #st{waiting = Waiting} = St0) ->
    St = St0#st{scan = undefined},
    Outcome = case Result of
        {ok, Entries} ->
            true = ets:delete_all_objects(?TABLE),
            true = ets:insert(?TABLE, Entries),
            ok;
        {error, Reason} ->
            couch_log:error("couch_pgp: certificate index not rebuilt: ~p", [Reason]),
            {error, scan_failed}
    end,
    {Served, Later} = case Outcome of
        ok -> lists:partition(fun({_, Asked}) -> Asked =< Started end, Waiting);
        {error, _} -> {Waiting, []}
    end,
    _ = [gen_server:reply(From, Outcome) || {From, _} <- Served],
    Built = case Outcome of
        ok -> Started;
        {error, _} -> St#st.built_at
    end,
    maybe_scan(St#st{built_at = Built, waiting = Later}).

rebuild_since(Asked) ->
    try gen_server:call(?MODULE, {rebuild_since, Asked}, ?CALL_TIMEOUT_MS) of
        ok -> ok;
        {error, scan_failed} -> unavailable()
    catch
        exit:_ -> unavailable()
    end.

-spec unavailable() -> no_return().
unavailable() ->
    throw({forbidden, <<"Signed-only database: the certificate registry cannot be "
                        "consulted right now; retry later.">>}).

%% The index's users for these fingerprints, confirmed by their _users documents now.
confirmed(Fprs) ->
    Users = lists:usort([U || F <- Fprs, {_, U} <- lookup(F)]),
    lists:usort([C || U <- Users, C <- couch_pgp_certs:registered(U),
                      lists:member(couch_pgp:fingerprint(C), Fprs)]).

confirmed_with_revoked(Fprs) ->
    Users = lists:usort([U || F <- Fprs, {_, U} <- lookup(F)]),
    Wanted = fun(C) -> lists:member(couch_pgp:fingerprint(C), Fprs) end,
    Current = [C || U <- Users, C <- couch_pgp_certs:registered(U), Wanted(C)],
    Revoked = [{C, At} || U <- Users, {C, At} <- couch_pgp_certs:revoked(U), Wanted(C)],
    %% The earliest revocation wins if two users somehow revoked the same key.
    Times = lists:foldl(fun({C, At}, M) ->
                            F = couch_pgp:fingerprint(C),
                            M#{F => min(At, maps:get(F, M, At))}
                        end, #{}, Revoked),
    {lists:usort(Current ++ [C || {C, _} <- Revoked]), Times}.

lookup(Fpr) ->
    try
        ets:lookup(?TABLE, Fpr)
    catch
        error:badarg -> []
    end.

%% Two passes: the user ids by range, then their documents by key. A range read of
%% _all_docs takes each row from whichever shard copy answers first, which may not have a
%% certificate registered a moment ago (acknowledged by a quorum of the other copies); a
%% read by keys opens each document with a quorum read (fabric:open_doc), as
%% couch_pgp_certs:registered/1 does.
scan() ->
    Range = [{start_key, <<?USER_PREFIX>>}, {end_key, <<?USER_PREFIX, 16#10FFFF/utf8>>}],
    case all_docs(fun id_row/2, Range) of
        {ok, []} -> {ok, []};
        {ok, Ids} -> all_docs(fun row/2, [{keys, Ids}, {include_docs, true}]);
        {error, _} = Error -> Error
    end.

all_docs(Fun, Args) ->
    try fabric:all_docs(?USERS_DB, [?ADMIN_CTX], Fun, [], Args) of
        {ok, Acc} when is_list(Acc) -> {ok, Acc};
        {ok, {error, Reason}} -> {error, Reason};
        {error, Reason} -> {error, Reason};
        Other -> {error, Other}
    catch
        Class:Reason -> {error, {Class, Reason}}
    end.

id_row({row, Row}, Acc) ->
    case couch_util:get_value(id, Row) of
        <<?USER_PREFIX, _/binary>> = Id -> {ok, [Id | Acc]};
        _ -> {ok, Acc}
    end;
id_row({error, Reason}, _Acc) ->
    {stop, {error, Reason}};
id_row(_MetaOrComplete, Acc) ->
    {ok, Acc}.

row({row, Row}, Acc) ->
    case {couch_util:get_value(id, Row), couch_util:get_value(doc, Row)} of
        {<<?USER_PREFIX, User/binary>>, {Props}} ->
            Certs = couch_util:get_value(<<"pgp_certs">>, Props, []),
            Revoked = couch_util:get_value(<<"pgp_revoked_certs">>, Props, []),
            RevokedCerts = [C || is_list(Revoked), {E} <- Revoked,
                                 C <- [couch_util:get_value(<<"cert">>, E)]],
            Entries = [{F, User} || is_list(Certs), C <- Certs ++ RevokedCerts, is_binary(C),
                                    F <- [couch_pgp:fingerprint(C)], is_binary(F)],
            {ok, Entries ++ Acc};
        _ ->
            {ok, Acc}
    end;
row({error, Reason}, _Acc) ->
    {stop, {error, Reason}};
row(_MetaOrComplete, Acc) ->
    {ok, Acc}.
