%% @doc `[couch_pgp] enable': the switch that turns the plugin on and off while the node runs.
%%
%% Off (the default after `make install'), the identity key is neither created nor loaded,
%% `/_pgp' answers 503 `pgp_disabled', and encrypted requests are refused with the same
%% error before anything reads them (couch_pgp_chttpd); plaintext traffic is CouchDB's own.
%% The operator's data policies stay in force while off: signed-only databases keep verifying
%% signatures (that needs no server key), and `require_encryption' keeps refusing plaintext,
%% so switching off never quietly opens a database; each switch logs which are in force.
%%
%% This server listens to config changes (config_listener) and loads or forgets the key on
%% each switch, with an audit line. The hooks themselves read the key on use
%% (couch_pgp_config:enabled/0), so a switch applies from the next request.
-module(couch_pgp_switch).
-behaviour(gen_server).
-behaviour(config_listener).

-export([start_link/0, child_spec/0]).
-export([init/1, handle_call/3, handle_cast/2, handle_info/2]).
-export([handle_config_change/5, handle_config_terminate/3]).

-define(RELISTEN_DELAY_MS, 5000).

%% @doc Starts the switch, which applies the current setting at once.
-spec start_link() -> {ok, pid()} | {error, term()}.
start_link() ->
    gen_server:start_link({local, ?MODULE}, ?MODULE, [], []).

%% @doc Its child spec under couch_pgp_sup (after the key store it drives).
-spec child_spec() -> supervisor:child_spec().
child_spec() ->
    #{id => ?MODULE, start => {?MODULE, start_link, []}, restart => permanent,
      shutdown => 5000, type => worker}.

%% ----------------------------------------------------------------- gen_server

%% @private
-spec init([]) -> {ok, boolean()}.
init([]) ->
    ok = config:listen_for_changes(?MODULE, nil),
    Enabled = couch_pgp_config:enabled(),
    ok = apply_switch(Enabled),
    couch_pgp_audit:event(config_loaded, [{enable, Enabled}]),
    warn_policies(Enabled),
    {ok, Enabled}.

%% @private
-spec handle_call(term(), gen_server:from(), boolean()) -> {reply, {error, unknown_call}, boolean()}.
handle_call(_Msg, _From, Enabled) ->
    {reply, {error, unknown_call}, Enabled}.

%% @private
-spec handle_cast(term(), boolean()) -> {noreply, boolean()}.
handle_cast(enable_changed, Was) ->
    case couch_pgp_config:enabled() of
        Was ->
            {noreply, Was};
        Now ->
            ok = apply_switch(Now),
            couch_pgp_audit:event(config_changed, [{setting, enable}, {value, Now}, {was, Was}]),
            warn_policies(Now),
            {noreply, Now}
    end;
handle_cast(_Msg, Enabled) ->
    {noreply, Enabled}.

%% @private
-spec handle_info(term(), boolean()) -> {noreply, boolean()}.
handle_info(restart_config_listener, Enabled) ->
    ok = config:listen_for_changes(?MODULE, nil),
    %% A change may have been missed while nobody listened.
    gen_server:cast(self(), enable_changed),
    {noreply, Enabled};
handle_info(_Msg, Enabled) ->
    {noreply, Enabled}.

%% ----------------------------------------------------------------- config_listener

%% @private Runs in config's event manager: hand the work to the switch's own process.
-spec handle_config_change(string(), string(), term(), boolean(), nil) -> {ok, nil}.
handle_config_change("couch_pgp", "enable", _Value, _Persist, nil) ->
    gen_server:cast(?MODULE, enable_changed),
    {ok, nil};
%% Every other couch_pgp setting: which key, and its new value unless it is a secret.
handle_config_change("couch_pgp", Key, Value, Persist, nil) ->
    couch_pgp_audit:event(config_changed, [{setting, list_to_binary(Key)},
                                           {value, config_value(Key, Value)},
                                           {persist, Persist}]),
    {ok, nil};
handle_config_change(_Section, _Key, _Value, _Persist, nil) ->
    {ok, nil}.

%% @private
-spec handle_config_terminate(term(), term(), nil) -> ok.
handle_config_terminate(_Server, stop, nil) ->
    ok;
handle_config_terminate(_Server, _Reason, nil) ->
    case whereis(?MODULE) of
        undefined -> ok;
        Pid -> _ = erlang:send_after(?RELISTEN_DELAY_MS, Pid, restart_config_listener), ok
    end.

%% ----------------------------------------------------------------- internal

config_value(Key, _Value) when Key =:= "passphrase"; Key =:= "secret" -> not_recorded;
config_value(_Key, deleted) -> deleted;
config_value(_Key, Value) when is_list(Value) -> unicode:characters_to_binary(Value);
config_value(_Key, _Value) -> unknown.

apply_switch(true) ->
    %% The key store logs why a key could not be loaded; /_pgp then answers 503.
    _ = couch_pgp_keystore:load(),
    ok;
apply_switch(false) ->
    couch_pgp_keystore:unload().

%% Switching off leaves the data policies in force: say which, loudly, every time.
warn_policies(true) ->
    ok;
warn_policies(false) ->
    case policies_in_force() of
        [] ->
            ok;
        Ps ->
            couch_log:warning("couch_pgp: disabled, but these policies are still enforced "
                              "(plaintext refused, unsigned writes refused): ~s; databases "
                              "whose _security asks for signatures too",
                              [lists:join(", ", Ps)])
    end.

policies_in_force() ->
    [P || {P, true} <- [
        {"require_encryption", couch_pgp_config:require_encryption(undefined)},
        {"require_encryption_dbs=" ++ config:get("couch_pgp", "require_encryption_dbs", ""),
         string:trim(config:get("couch_pgp", "require_encryption_dbs", "")) =/= ""},
        {"signed_dbs=" ++ config:get("couch_pgp", "signed_dbs", ""),
         string:trim(config:get("couch_pgp", "signed_dbs", "")) =/= ""}
    ]].
