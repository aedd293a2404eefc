%% @doc Runs couch_pgp inside a CouchDB node: reads `[couch_pgp]', starts the supervisor,
%% makes the stats descriptions visible.
-module(couch_pgp_node).

-export([start_link/0, keystore_opts/0]).

-define(DEFAULT_KEY_FILE, "./data/couch_pgp/server_key.asc").

%% @doc Started by couch_epi as a child of couch's secondary services. It must never fail:
%% a child that cannot start there stops the `couch' application and with it the node. If
%% couch_pgp cannot start, that is logged and the node runs without it (`/_pgp' then
%% answers 503).
-spec start_link() -> {ok, pid()} | ignore.
start_link() ->
    try
        %% The app is on the code path but not in the boot script: load it so that its
        %% priv_dir and stats descriptions are found.
        case application:load(couch_pgp) of
            ok -> ok;
            {error, {already_loaded, couch_pgp}} -> ok
        end,
        _ = couch_stats:reload(),
        conceal_secrets(),
        ensure_secret(),
        %% The audit trail first: the switch records the configuration it starts with.
        case couch_pgp_sup:start_link(keystore_opts(), [couch_pgp_audit:child_spec(),
                                                     couch_pgp_switch:child_spec(),
                                                     couch_pgp_cert_index:child_spec(),
                                                     couch_pgp_key_sync:child_spec()]) of
            {ok, Pid} ->
                {ok, Pid};
            Other ->
                couch_log:error("couch_pgp: not started: ~p", [Other]),
                ignore
        end
    catch
        Class:Reason ->
            couch_log:error("couch_pgp: not started: ~p:~p", [Class, Reason]),
            ignore
    end.

%% @doc The key store's options from config and the environment. The passphrase comes from
%% `COUCH_PGP_PASSPHRASE' if set, else `[couch_pgp] passphrase'; it is read when needed,
%% never carried in the options (which appear in crash reports).
-spec keystore_opts() -> couch_pgp_keystore:opts().
keystore_opts() ->
    #{
        key_file => config:get("couch_pgp", "key_file", ?DEFAULT_KEY_FILE),
        passphrase => fun passphrase/0,
        user_id => unicode:characters_to_binary(
            config:get("couch_pgp", "user_id", "CouchDB couch_pgp server")),
        log => fun log/3,
        known_fingerprint => fun known_fingerprint/0,
        record_fingerprint => fun record_fingerprint/1,
        audit => fun couch_pgp_audit:event/2,
        %% Loaded by couch_pgp_switch, and only while [couch_pgp] enable = true.
        load_at_start => false
    }.

%% CouchDB logs every config change with its value, except for keys its `config' app
%% lists as sensitive: add ours before anything sets them.
conceal_secrets() ->
    Sensitive = application:get_env(config, sensitive, #{}),
    Ours = lists:usort(["passphrase", "secret", "retired_secrets"] ++
                       case maps:get("couch_pgp", Sensitive, []) of
                           L when is_list(L) -> L;
                           _ -> []
                       end),
    application:set_env(config, sensitive, Sensitive#{"couch_pgp" => Ours}).

%% Sessions are sealed under a secret that every node must share. CouchDB's own
%% `[chttpd_auth] secret' serves when set; with neither it nor `[couch_pgp] secret', a
%% random one is made and persisted (to local.ini), which is right for a single node; a
%% cluster's operator sets the same `[couch_pgp] secret' on every node.
ensure_secret() ->
    case couch_pgp_config:token_secret() of
        {ok, _} ->
            ok;
        {error, no_secret} ->
            Secret = binary_to_list(binary:encode_hex(crypto:strong_rand_bytes(32))),
            config:set("couch_pgp", "secret", Secret, true),
            couch_log:notice("couch_pgp: generated [couch_pgp] secret (single node)", [])
    end.

passphrase() ->
    case os:getenv("COUCH_PGP_PASSPHRASE") of
        Env when is_list(Env), Env =/= "" -> unicode:characters_to_binary(Env);
        _ ->
            case config:get("couch_pgp", "passphrase", undefined) of
                undefined -> undefined;
                Conf -> unicode:characters_to_binary(Conf)
            end
    end.

%% The identity this node has had, kept in local.ini beside the secrets CouchDB persists
%% there (not in the key's own directory, which may be what got lost): with it, a missing
%% key file is an error instead of a new identity.
known_fingerprint() ->
    case config:get("couch_pgp", "identity_fingerprint", "") of
        "" -> undefined;
        Fpr -> list_to_binary(string:uppercase(string:trim(Fpr)))
    end.

record_fingerprint(Fpr) ->
    case known_fingerprint() of
        Fpr ->
            couch_pgp_audit:event(identity_loaded, [{fingerprint, Fpr}]);
        Was ->
            %% The first identity this node records (made now, or a key file put in place).
            Type = case Was of undefined -> identity_created; _ -> identity_changed end,
            couch_pgp_audit:event(Type, [{fingerprint, Fpr}, {was, Was}]),
            config:set("couch_pgp", "identity_fingerprint", binary_to_list(Fpr), true)
    end.

log(Level, Format, Args) ->
    couch_log:Level(Format, Args).
