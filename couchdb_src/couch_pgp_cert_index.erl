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
-module(couch_pgp_cert_index).
-behaviour(gen_server).
-include_lib("couch/include/couch_db.hrl").

-export([start_link/0, child_spec/0, certs_for/1]).
-export([init/1, handle_call/3, handle_cast/2, handle_info/2]).

-define(TABLE, ?MODULE).
-define(USERS_DB, <<"_users">>).
-define(USER_PREFIX, "org.couchdb.user:").
%% A _users scan of a few thousand users takes well under a second; one per second per node
%% keeps a stream of forged writes from turning into a stream of scans.
-define(MIN_REBUILD_INTERVAL_MS, 1000).
-define(CALL_TIMEOUT_MS, 60000).

-record(st, {built_at :: integer() | undefined}).

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

%% ----------------------------------------------------------------- gen_server

%% @private
-spec init([]) -> {ok, #st{}}.
init([]) ->
    _ = ets:new(?TABLE, [bag, protected, named_table, {read_concurrency, true}]),
    {ok, #st{built_at = undefined}}.

%% @private
-spec handle_call({rebuild_since, integer()}, gen_server:from(), #st{}) ->
    {reply, ok | {error, atom()}, #st{}}.
handle_call({rebuild_since, Asked}, _From, #st{built_at = Built} = St)
        when is_integer(Built), Built >= Asked ->
    %% Someone else's miss rebuilt it after ours happened: it is fresh enough.
    {reply, ok, St};
handle_call({rebuild_since, _Asked}, _From, #st{built_at = Built} = St) ->
    case Built of
        undefined -> ok;
        _ -> timer:sleep(max(0, Built + ?MIN_REBUILD_INTERVAL_MS - now_ms()))
    end,
    Started = now_ms(),
    case isolated_scan() of
        {ok, Entries} ->
            true = ets:delete_all_objects(?TABLE),
            true = ets:insert(?TABLE, Entries),
            {reply, ok, St#st{built_at = Started}};
        {error, Reason} ->
            couch_log:error("couch_pgp: certificate index not rebuilt: ~p", [Reason]),
            {reply, {error, scan_failed}, St#st{built_at = Started}}
    end.

%% @private
-spec handle_cast(term(), #st{}) -> {noreply, #st{}}.
handle_cast(_Msg, St) ->
    {noreply, St}.

%% @private
-spec handle_info(term(), #st{}) -> {noreply, #st{}}.
handle_info(_Msg, St) ->
    {noreply, St}.

%% ----------------------------------------------------------------- internal

now_ms() ->
    erlang:monotonic_time(millisecond).

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

lookup(Fpr) ->
    try
        ets:lookup(?TABLE, Fpr)
    catch
        error:badarg -> []
    end.

%% The scan runs in its own process: fabric's receive loop (rexi_utils:recv) takes any
%% {Ref, From, Msg} it does not know and drops it, and a gen_server call is
%% {'$gen_call', From, Msg}. Scanning in this process lost the calls of writers that missed
%% while it ran (a _bulk_docs over several shards): they waited ?CALL_TIMEOUT_MS, then 403.
isolated_scan() ->
    {Pid, Ref} = spawn_monitor(fun() -> exit({scan_result, scan()}) end),
    receive
        {'DOWN', Ref, process, Pid, {scan_result, Result}} -> Result;
        {'DOWN', Ref, process, Pid, Reason} -> {error, {scan_crashed, Reason}}
    end.

scan() ->
    Args = [{include_docs, true},
            {start_key, <<?USER_PREFIX>>},
            {end_key, <<?USER_PREFIX, 16#10FFFF/utf8>>}],
    try fabric:all_docs(?USERS_DB, [?ADMIN_CTX], fun row/2, [], Args) of
        {ok, Entries} when is_list(Entries) -> {ok, Entries};
        {ok, {error, Reason}} -> {error, Reason};
        {error, Reason} -> {error, Reason};
        Other -> {error, Other}
    catch
        Class:Reason -> {error, {Class, Reason}}
    end.

row({row, Row}, Acc) ->
    case {couch_util:get_value(id, Row), couch_util:get_value(doc, Row)} of
        {<<?USER_PREFIX, User/binary>>, {Props}} ->
            Certs = couch_util:get_value(<<"pgp_certs">>, Props, []),
            Entries = [{F, User} || is_list(Certs), C <- Certs, is_binary(C),
                                    F <- [couch_pgp:fingerprint(C)], is_binary(F)],
            {ok, Entries ++ Acc};
        _ ->
            {ok, Acc}
    end;
row({error, Reason}, _Acc) ->
    {stop, {error, Reason}};
row(_MetaOrComplete, Acc) ->
    {ok, Acc}.
