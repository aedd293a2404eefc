%% @doc Brings this node's identity up to date with its peers: a node that was down (or
%% not yet connected) when the operator rotated or revoked (couch_pgp_keys_admin pushes to
%% the nodes that are up) catches up by itself. Every ?INTERVAL_MS, and soon after start,
%% it asks each connected cluster peer what it can offer for this node's current key
%% (couch_pgp_keystore:offer/1): a rotation from this key to the peer's newer one is
%% installed (the same install/1 the push uses: the key under the shared passphrase, the
%% history), and revocations this node lacks are added. A peer whose key this node does
%% not know offers nothing: nodes never go back to an older key. The token secret likewise:
%% a peer that retired this node's secret (couch_pgp_tokens:secret_offer/1) hands over its
%% current one.
-module(couch_pgp_key_sync).
-behaviour(gen_server).

-export([start_link/0, child_spec/0, sync/0]).
-export([init/1, handle_call/3, handle_cast/2, handle_info/2]).

-define(INTERVAL_MS, 30000).
-define(FIRST_MS, 5000).
-define(PEER_TIMEOUT_MS, 10000).

-spec start_link() -> {ok, pid()} | {error, term()}.
start_link() ->
    gen_server:start_link({local, ?MODULE}, ?MODULE, [], []).

-spec child_spec() -> supervisor:child_spec().
child_spec() ->
    #{id => ?MODULE, start => {?MODULE, start_link, []}, restart => permanent,
      shutdown => 5000, type => worker}.

%% @doc Runs one round now (for tests and operators): what changed, per peer.
-spec sync() -> [{node(), term(), term()}].
sync() ->
    gen_server:call(?MODULE, sync, 60000).

%% @private
-spec init([]) -> {ok, undefined}.
init([]) ->
    erlang:send_after(?FIRST_MS, self(), tick),
    {ok, undefined}.

%% @private
-spec handle_call(term(), gen_server:from(), undefined) -> {reply, term(), undefined}.
handle_call(sync, _From, St) ->
    {reply, round(), St};
handle_call(_Msg, _From, St) ->
    {reply, {error, unknown_call}, St}.

%% @private
-spec handle_cast(term(), undefined) -> {noreply, undefined}.
handle_cast(_Msg, St) ->
    {noreply, St}.

%% @private
-spec handle_info(term(), undefined) -> {noreply, undefined}.
handle_info(tick, St) ->
    _ = round(),
    erlang:send_after(?INTERVAL_MS, self(), tick),
    {noreply, St};
handle_info(_Msg, St) ->
    {noreply, St}.

%% One round: each connected peer in turn, this node's key re-read after each (a peer's
%% rotation installed here changes what to ask the next one). Never crashes the server.
round() ->
    Peers = [N || N <- mem3:nodes(), N =/= node(), lists:member(N, nodes())],
    [{Peer, catch_up(Peer), secret_catch_up(Peer)} || Peer <- Peers].

secret_catch_up(Peer) ->
    case couch_pgp_config:token_secret() of
        {ok, Mine} ->
            case ask(Peer, couch_pgp_tokens, secret_offer, [Mine]) of
                {newer, Secret, Retired} when is_binary(Secret), is_list(Retired) ->
                    couch_pgp_tokens:adopt_secret(Secret, Retired);
                Other ->
                    Other
            end;
        {error, _} = Error ->
            Error
    end.

catch_up(Peer) ->
    case couch_pgp_keystore:identity() of
        {ok, #{fingerprint := Fpr, history := History}} ->
            case ask(Peer, couch_pgp_keystore, offer, [Fpr]) of
                {same, Revs} ->
                    revocations(Revs, History);
                {newer, #{new := New} = Rotation, Revs} ->
                    case couch_pgp_keystore:install(Rotation) of
                        ok ->
                            couch_log:notice("couch_pgp: identity caught up from ~s: ~s -> ~s",
                                             [Peer, Fpr, New]),
                            {ok, #{history := History1}} = couch_pgp_keystore:identity(),
                            [{rotated, New} | revocations(Revs, History1)];
                        {error, Why} ->
                            couch_log:error("couch_pgp: identity not caught up from ~s: ~0p",
                                            [Peer, Why]),
                            {error, Why}
                    end;
                Other ->
                    Other
            end;
        {error, _} = Error ->
            Error
    end.

%% A peer's answer, or `{Class, Reason}' when it could not give one (down, timed out, crashed).
ask(Peer, M, F, A) ->
    try
        erpc:call(Peer, M, F, A, ?PEER_TIMEOUT_MS)
    catch
        Class:Why -> {Class, Why}
    end.

revocations(Revs, History) ->
    [{revoked, F, couch_pgp_keystore:install_revocation(R)}
     || #{fingerprint := F} = R <- Revs, not couch_pgp_rotation:is_revoked(History, F)].
