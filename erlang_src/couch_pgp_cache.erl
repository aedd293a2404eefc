%% @doc Per-node caches: opened sessions (so a token is opened once per node, not per
%% request) and the nonces seen recently (replay protection).
%%
%% Both are ETS tables owned by this server and swept every few seconds. Nonces are kept
%% for as long as a timestamp is accepted (the skew window), after which the timestamp check
%% alone refuses a replay. A nonce is claimed on every connected node before a request runs
%% (seen_nonce/3), so a request captured on its way to one node of a cluster cannot be
%% replayed to another.
-module(couch_pgp_cache).
-behaviour(gen_server).

-export([start_link/0, session/2, put_session/3, forget_sessions/0, seen_nonce/3, claim_nonce/3]).
-export([init/1, handle_call/3, handle_cast/2, handle_info/2]).

-define(SESSIONS, couch_pgp_sessions).
-define(NONCES, couch_pgp_nonces).
-define(SWEEP_MS, 5000).
-define(MAX_SESSIONS, 100000).

%% @doc Starts the owner of the tables.
-spec start_link() -> {ok, pid()} | {error, term()}.
start_link() ->
    gen_server:start_link({local, ?MODULE}, ?MODULE, [], []).

%% @doc A cached session for this token digest, if still valid at `Now' (unix seconds).
-spec session(binary(), integer()) -> {ok, couch_pgp_session:session()} | miss.
session(Digest, Now) ->
    try ets:lookup(?SESSIONS, Digest) of
        [{_, Session, Expires}] when Expires > Now -> {ok, Session};
        _ -> miss
    catch
        error:badarg -> miss
    end.

%% @doc Forgets every cached session: after the token secret changed, each token must be
%% opened again (and those sealed under the old secret fail).
-spec forget_sessions() -> ok.
forget_sessions() ->
    try ets:delete_all_objects(?SESSIONS) of
        true -> ok
    catch
        error:badarg -> ok
    end.

%% @doc Caches an opened session under its token digest.
-spec put_session(binary(), couch_pgp_session:session(), integer()) -> ok.
put_session(Digest, Session, Expires) ->
    try
        ets:info(?SESSIONS, size) < ?MAX_SESSIONS andalso
            ets:insert(?SESSIONS, {Digest, Session, Expires}),
        ok
    catch
        error:badarg -> ok
    end.

%% How long a node waits for the others to claim a nonce. A node that does not answer in time
%% (or does not run couch_pgp) is not asked again for this request; see the README.
-define(CLAIM_TIMEOUT_MS, 500).

%% @doc Records `Nonce' (until `Until', unix ms) on this node and on every connected node;
%% `true' if any of them had seen it already. Two copies of one request sent to two nodes at
%% once are both refused: each node finds the other's claim. Without the cache running every
%% nonce counts as seen: refusing is the safe side.
-spec seen_nonce(binary(), binary(), integer()) -> boolean().
seen_nonce(Scope, Nonce, Until) ->
    case claim(Scope, Nonce, Until) of
        {ok, Seen} -> Seen orelse seen_elsewhere(Scope, Nonce, Until);
        no_cache -> true
    end.

%% @doc This node's part of seen_nonce/3, called on it by the other nodes. A node whose cache
%% is not running has no opinion (`false'); it refuses its own requests meanwhile.
-spec claim_nonce(binary(), binary(), integer()) -> boolean().
claim_nonce(Scope, Nonce, Until) ->
    claim(Scope, Nonce, Until) =:= {ok, true}.

claim(Scope, Nonce, Until) ->
    try
        {ok, not ets:insert_new(?NONCES, {{Scope, Nonce}, Until})}
    catch
        error:badarg -> no_cache
    end.

seen_elsewhere(Scope, Nonce, Until) ->
    case nodes() of
        [] ->
            false;
        Nodes ->
            Results = erpc:multicall(Nodes, ?MODULE, claim_nonce, [Scope, Nonce, Until],
                                     ?CLAIM_TIMEOUT_MS),
            lists:member({ok, true}, Results)
    end.

%% ----------------------------------------------------------------- gen_server

%% @private
-spec init([]) -> {ok, #{}}.
init([]) ->
    _ = ets:new(?SESSIONS, [named_table, public, set, {read_concurrency, true}]),
    _ = ets:new(?NONCES, [named_table, public, set, {write_concurrency, true}]),
    erlang:send_after(?SWEEP_MS, self(), sweep),
    {ok, #{}}.

%% @private
-spec handle_call(term(), gen_server:from(), map()) -> {reply, ok, map()}.
handle_call(_Msg, _From, State) ->
    {reply, ok, State}.

%% @private
-spec handle_cast(term(), map()) -> {noreply, map()}.
handle_cast(_Msg, State) ->
    {noreply, State}.

%% @private
-spec handle_info(term(), map()) -> {noreply, map()}.
handle_info(sweep, State) ->
    NowMs = erlang:system_time(millisecond),
    Now = NowMs div 1000,
    _ = ets:select_delete(?SESSIONS, [{{'_', '_', '$1'}, [{'=<', '$1', Now}], [true]}]),
    _ = ets:select_delete(?NONCES, [{{'_', '$1'}, [{'=<', '$1', NowMs}], [true]}]),
    erlang:send_after(?SWEEP_MS, self(), sweep),
    {noreply, State};
handle_info(_Msg, State) ->
    {noreply, State}.
