%% @doc The server's identity key: created at first start, kept encrypted on disk, loaded at
%% restart.
%%
%% The key file holds the secret key protected by a passphrase (never a plaintext key), is
%% created with mode 0600 in a directory of mode 0700, and is replaced atomically. The loaded
%% key is published in `persistent_term', so request processes read it without a message
%% to this server. A key that cannot be loaded (no passphrase, wrong passphrase, unreadable
%% or truncated file, a key file or directory others may read or write) never crashes the
%% node: the store stays up, reports `{error, Reason}', logs the reason in words (never the
%% passphrase), and leaves the file as it is.
%%
%% A new key is created only when the node never had one: with `known_fingerprint' (the
%% identity this node loaded before, recorded through `record_fingerprint'), a missing key
%% file is an error (`key_file_missing'), not a reason to make a new identity. In a cluster
%% a node that silently made its own key would answer `GET /_pgp' with a fingerprint no
%% client has pinned.
%%
%% With `load_at_start => false' the store starts empty (`{error, disabled}') and creates or
%% loads nothing until `load/0': inside CouchDB, couch_pgp_switch does that when
%% `[couch_pgp] enable' becomes true, and `unload/0' when it becomes false.
-module(couch_pgp_keystore).
-behaviour(gen_server).

-include_lib("kernel/include/file.hrl").

-export([start_link/1, identity/0, status/0, load/0, unload/0, stop/0]).
-export([init/1, handle_call/3, handle_cast/2, handle_info/2, terminate/2]).

-type opts() :: #{
    key_file := file:filename_all(),
    %% A fun, not the value: start arguments appear in crash reports and logs.
    passphrase := fun(() -> binary() | undefined),
    user_id => binary(),
    log => fun((atom(), string(), [term()]) -> term()),
    %% The fingerprint of the identity this node had before, if any (see the module doc).
    known_fingerprint => fun(() -> binary() | undefined),
    %% Called with the fingerprint of each key loaded or created.
    record_fingerprint => fun((binary()) -> term()),
    %% Default true: load (or create) the key when the store starts.
    load_at_start => boolean()
}.
-type identity() :: #{key := couch_pgp:key(), cert := couch_pgp:cert(),
                      fingerprint := couch_pgp:fingerprint()}.
-export_type([opts/0, identity/0]).

-define(TERM, {?MODULE, identity}).

%% @doc Starts the store and loads or creates the identity key as `Opts' say.
-spec start_link(opts()) -> {ok, pid()} | {error, term()}.
start_link(Opts) ->
    gen_server:start_link({local, ?MODULE}, ?MODULE, Opts, []).

%% @doc The identity, or why there is none.
-spec identity() -> {ok, identity()} | {error, atom()}.
identity() ->
    persistent_term:get(?TERM, {error, not_started}).

%% @doc `loaded' or `{error, Reason}', for status endpoints.
-spec status() -> loaded | {error, atom()}.
status() ->
    case identity() of
        {ok, _} -> loaded;
        {error, _} = Error -> Error
    end.

%% @doc Loads the key (creating it if there is none yet), unless it is loaded already.
-spec load() -> loaded | {error, atom()}.
load() ->
    gen_server:call(?MODULE, load, infinity).

%% @doc Forgets the loaded key; `identity/0' then answers `{error, disabled}'. The key file
%% stays as it is.
-spec unload() -> ok.
unload() ->
    gen_server:call(?MODULE, unload, infinity).

%% @doc Stops the store and forgets the key.
-spec stop() -> ok.
stop() ->
    gen_server:stop(?MODULE).

%% ----------------------------------------------------------------- gen_server

%% @private
-spec init(opts()) -> {ok, opts()}.
init(Opts) ->
    %% do_load/1 logs and publishes its outcome; the store runs either way.
    _ = case maps:get(load_at_start, Opts, true) of
        true -> do_load(Opts);
        false -> persistent_term:put(?TERM, {error, disabled})
    end,
    {ok, Opts}.

%% @private
-spec handle_call(term(), gen_server:from(), opts()) -> {reply, term(), opts()}.
handle_call(load, _From, Opts) ->
    Status = case identity() of
        {ok, _} -> loaded;
        {error, _} -> do_load(Opts)
    end,
    {reply, Status, Opts};
handle_call(unload, _From, Opts) ->
    persistent_term:put(?TERM, {error, disabled}),
    {reply, ok, Opts};
handle_call(_Msg, _From, State) ->
    {reply, {error, unknown_call}, State}.

%% @private
-spec handle_cast(term(), opts()) -> {noreply, opts()}.
handle_cast(_Msg, State) ->
    {noreply, State}.

%% @private
-spec handle_info(term(), opts()) -> {noreply, opts()}.
handle_info(_Msg, State) ->
    {noreply, State}.

%% @private
-spec terminate(term(), opts()) -> ok.
terminate(_Reason, _State) ->
    _ = persistent_term:erase(?TERM),
    ok.

%% ----------------------------------------------------------------- internal

do_load(Opts) ->
    Result = load_or_create(Opts),
    persistent_term:put(?TERM, Result),
    Log = maps:get(log, Opts, fun(_, _, _) -> ok end),
    case Result of
        {ok, #{fingerprint := Fpr}} ->
            Log(notice, "couch_pgp: server identity ~s loaded", [Fpr]),
            case known_fingerprint(Opts) of
                Fpr -> ok;
                undefined -> ok;
                Was -> Log(warning, "couch_pgp: server identity changed from ~s to ~s "
                                    "(key_file replaced)", [Was, Fpr])
            end,
            _ = (maps:get(record_fingerprint, Opts, fun(_) -> ok end))(Fpr),
            loaded;
        {error, Reason} = Error ->
            Log(error, "couch_pgp: server identity key unavailable: ~p: ~s (key_file ~ts)",
                [Reason, explain(Reason), maps:get(key_file, Opts)]),
            Error
    end.

known_fingerprint(Opts) ->
    (maps:get(known_fingerprint, Opts, fun() -> undefined end))().

%% For the operator reading the log: what to do about it.
explain(no_passphrase) -> "no passphrase (COUCH_PGP_PASSPHRASE or [couch_pgp] passphrase)";
explain(bad_passphrase) -> "the passphrase does not open the key file";
explain(key_file_missing) ->
    "the key file is gone but this node had an identity ([couch_pgp] identity_fingerprint); "
    "restore the file (in a cluster: copy it from another node), or remove "
    "identity_fingerprint to create a new identity on purpose";
explain(key_file_mode) ->
    "group or others may access the key file; chmod 600 it (owner only)";
explain(key_dir_mode) ->
    "group or others may write to the key file's directory; chmod 700 it";
explain(not_regular_file) -> "the key file is not a regular file";
explain(eacces) -> "the key file cannot be read (permissions)";
explain(_) -> "the key file cannot be read or is not a usable key".

load_or_create(#{passphrase := PassFun} = Opts) ->
    case PassFun() of
        Pass when Pass =:= undefined; Pass =:= <<>> -> {error, no_passphrase};
        Pass -> load_or_create(Opts, Pass)
    end.

load_or_create(#{key_file := File} = Opts, Pass) ->
    case private_file(File) of
        ok ->
            case file:read_file(File) of
                {ok, Armored} ->
                    case couch_pgp:import_secret(Armored, Pass) of
                        {ok, Key} -> {ok, identity_of(Key)};
                        {error, _} = Error -> Error
                    end;
                {error, Posix} ->
                    {error, Posix}
            end;
        {error, enoent} ->
            case known_fingerprint(Opts) of
                undefined -> create(File, Pass, maps:get(user_id, Opts, <<"couch_pgp server">>));
                _ -> {error, key_file_missing}
            end;
        {error, _} = Error ->
            Error
    end.

%% As ssh does for its keys: a key file others may read (an offline guess at the passphrase)
%% or a directory others may write (the key swapped or deleted) is refused, not used.
private_file(File) ->
    case file:read_file_info(File) of
        {ok, #file_info{type = regular, mode = Mode}} when Mode band 8#077 =/= 0 ->
            {error, key_file_mode};
        {ok, #file_info{type = regular}} ->
            case file:read_file_info(filename:dirname(File)) of
                {ok, #file_info{mode = DirMode}} when DirMode band 8#022 =/= 0 ->
                    {error, key_dir_mode};
                {ok, _} -> ok;
                {error, _} = Error -> Error
            end;
        {ok, #file_info{}} ->
            {error, not_regular_file};
        {error, _} = Error ->
            Error
    end.

create(File, Pass, UserId) ->
    {ok, Key} = couch_pgp:generate_key(#{user_id => UserId}),
    {ok, Armored} = couch_pgp:export_secret(Key, Pass),
    case write_private(File, Armored) of
        ok -> {ok, identity_of(Key)};
        {error, _} = Error -> Error
    end.

identity_of(Key) ->
    #{key => Key, cert => couch_pgp:public_cert(Key), fingerprint => couch_pgp:fingerprint(Key)}.

%% Only the owner may read the key, from the first byte written: the temporary file is
%% made 0600 while still empty, filled, synced, then renamed over the target.
write_private(File, Data) ->
    Dir = filename:dirname(File),
    Tmp = iolist_to_binary([File, ".tmp"]),
    maybe_steps([
        fun() -> ensure_private_dir(Dir) end,
        fun() -> file:write_file(Tmp, <<>>) end,
        fun() -> file:change_mode(Tmp, 8#600) end,
        fun() -> file:write_file(Tmp, Data, [sync]) end,
        fun() -> file:rename(Tmp, File) end
    ]).

ensure_private_dir(Dir) ->
    case filelib:ensure_path(Dir) of
        ok -> file:change_mode(Dir, 8#700);
        {error, _} = Error -> Error
    end.

maybe_steps([]) ->
    ok;
maybe_steps([Step | Rest]) ->
    case Step() of
        ok -> maybe_steps(Rest);
        {error, _} = Error -> Error
    end.
