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
%%
%% Rotation (README "Keys over time"): `rotate/1' makes a new key and its endorsement by the
%% current one, without changing anything; `install/1' (run on every node of a cluster, this
%% one included) makes it the identity: the old secret key is kept as `<key_file>.<FPR>'
%% (for a later revocation), the history (couch_pgp_rotation) as `<key_file>.history.json',
%% then the new key replaces `key_file'. `revocation/3' revokes an earlier key whose secret
%% is kept; `install_revocation/1' adds a revocation to the history.
-module(couch_pgp_keystore).
-behaviour(gen_server).

-include_lib("kernel/include/file.hrl").

-export([start_link/1, identity/0, status/0, load/0, unload/0, stop/0]).
-export([rotate/1, install/1, revocation/3, install_revocation/1, offer/1]).
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
    %% Records a security event (a rotation or revocation installed here): in CouchDB,
    %% couch_pgp_audit:event/2 (log and audit trail). Default: a `couch_pgp audit:' log line.
    audit => fun((atom(), [{atom(), term()}]) -> term()),
    %% Default true: load (or create) the key when the store starts.
    load_at_start => boolean()
}.
-type identity() :: #{key := couch_pgp:key(), cert := couch_pgp:cert(),
                      fingerprint := couch_pgp:fingerprint(),
                      history := couch_pgp_rotation:state()}.
%% What every node installs to rotate: the new secret key under the shared passphrase, as
%% in key_file, and the history that goes with it.
-type rotation() :: #{old := couch_pgp:fingerprint(), new := couch_pgp:fingerprint(),
                      secret := binary(), history := binary()}.
-export_type([opts/0, identity/0, rotation/0]).

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

%% @doc A new identity key endorsed by the current one for `Overlap' seconds, ready for
%% install/1 on every node. Nothing is written.
-spec rotate(non_neg_integer()) -> {ok, rotation()} | {error, term()}.
rotate(Overlap) when is_integer(Overlap), Overlap >= 0 ->
    gen_server:call(?MODULE, {rotate, Overlap}, infinity).

%% @doc Makes `Rotation''s key this node's identity, if this node's identity is the key it
%% replaces (`ok' also when it is already the new one).
-spec install(rotation()) -> ok | {error, term()}.
install(Rotation) ->
    gen_server:call(?MODULE, {install, Rotation}, infinity).

%% @doc A revocation of the earlier identity key `Fpr' (not the current one: rotate first),
%% made with its kept secret key.
-spec revocation(couch_pgp:fingerprint(), couch_pgp:revocation_reason(), binary()) ->
    {ok, couch_pgp_rotation:revocation()} | {error, term()}.
revocation(Fpr, Reason, Message) ->
    gen_server:call(?MODULE, {revocation, Fpr, Reason, Message}, infinity).

%% @doc Adds a revocation (checked: the certificate must carry it) to this node's history.
-spec install_revocation(couch_pgp_rotation:revocation()) -> ok | {error, term()}.
install_revocation(Revocation) ->
    gen_server:call(?MODULE, {install_revocation, Revocation}, infinity).

%% @doc What this node can give a peer whose identity is `TheirFpr', so that it catches up
%% with rotations and revocations it missed (couch_pgp_key_sync): `{same, Revocations}',
%% `{newer, Rotation, Revocations}' when `TheirFpr' is one of this node's earlier keys
%% (the rotation from it straight to this node's current key), or `unknown'.
-spec offer(couch_pgp:fingerprint()) ->
    {same, [couch_pgp_rotation:revocation()]}
    | {newer, rotation(), [couch_pgp_rotation:revocation()]} | unknown | {error, term()}.
offer(TheirFpr) ->
    gen_server:call(?MODULE, {offer, TheirFpr}, infinity).

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
handle_call({rotate, Overlap}, _From, Opts) ->
    {reply, with_identity(fun(Id) -> prepare_rotation(Id, Overlap, Opts) end), Opts};
handle_call({install, Rotation}, _From, Opts) ->
    {reply, with_identity(fun(Id) -> do_install(Id, Rotation, Opts) end), Opts};
handle_call({revocation, Fpr, Reason, Message}, _From, Opts) ->
    {reply, with_identity(fun(Id) -> make_revocation(Id, Fpr, Reason, Message, Opts) end), Opts};
handle_call({install_revocation, Revocation}, _From, Opts) ->
    {reply, with_identity(fun(Id) -> do_install_revocation(Id, Revocation, Opts) end), Opts};
handle_call({offer, TheirFpr}, _From, Opts) ->
    {reply, with_identity(fun(Id) -> make_offer(Id, TheirFpr, Opts) end), Opts};
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

%% Fields are fingerprints, times and reason codes only, never a key or passphrase.
audit(Opts, Type, Fields) ->
    case maps:get(audit, Opts, undefined) of
        undefined ->
            Log = maps:get(log, Opts, fun(_, _, _) -> ok end),
            Log(notice, "couch_pgp audit: ~s~ts",
                [Type, [io_lib:format(" ~s=~ts", [N, to_text(V)]) || {N, V} <- Fields]]);
        Audit ->
            Audit(Type, Fields)
    end.

to_text(V) when is_binary(V) -> V;
to_text(V) when is_atom(V) -> atom_to_binary(V);
to_text(V) when is_integer(V) -> integer_to_binary(V).

do_load(Opts) ->
    Log = maps:get(log, Opts, fun(_, _, _) -> ok end),
    Result = case load_or_create(Opts) of
        {ok, #{fingerprint := F} = Id} ->
            {ok, Id#{history => history(maps:get(key_file, Opts), F, Log)}};
        Other ->
            Other
    end,
    persistent_term:put(?TERM, Result),
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

with_identity(Fun) ->
    case identity() of
        {ok, Id} -> Fun(Id);
        {error, _} = Error -> Error
    end.

passphrase(#{passphrase := PassFun}) ->
    case PassFun() of
        Pass when Pass =:= undefined; Pass =:= <<>> -> {error, no_passphrase};
        Pass -> {ok, Pass}
    end.

prepare_rotation(#{key := Old, fingerprint := OldFpr, history := History}, Overlap, Opts) ->
    Now = erlang:system_time(second),
    maybe_steps_value([
        fun(_) -> passphrase(Opts) end,
        fun(Pass) ->
            {ok, New} = couch_pgp:generate_key(#{user_id => maps:get(user_id, Opts,
                                                                     <<"couch_pgp server">>)}),
            case couch_pgp:export_secret(New, Pass) of
                {ok, Armored} -> {ok, {New, Armored}};
                {error, _} = E -> E
            end
        end,
        fun({New, Armored}) ->
            NewFpr = couch_pgp:fingerprint(New),
            case couch_pgp_rotation:endorse(Old, NewFpr, Now, Now + Overlap) of
                {ok, Endorsement} ->
                    History1 = couch_pgp_rotation:rotated(History, Endorsement, NewFpr),
                    {ok, #{old => OldFpr, new => NewFpr, secret => Armored,
                           history => couch_pgp_rotation:to_json(History1)}};
                {error, _} = E -> E
            end
        end], undefined).

do_install(#{fingerprint := New}, #{new := New}, _Opts) ->
    ok;
do_install(#{fingerprint := Old}, #{old := Old, new := New, secret := Secret,
                                    history := HistoryJson}, #{key_file := File} = Opts) ->
    maybe_steps_value([
        fun(_) -> passphrase(Opts) end,
        fun(Pass) ->
            %% The same passphrase must open it here: every node of a cluster shares one.
            case couch_pgp:import_secret(Secret, Pass) of
                {ok, Key} -> {ok, Key};
                {error, _} = E -> E
            end
        end,
        fun(Key) ->
            case {couch_pgp:fingerprint(Key), couch_pgp_rotation:from_json(HistoryJson)} of
                {New, {ok, #{current := New} = History}} -> {ok, {Key, History}};
                _ -> {error, bad_rotation}
            end
        end,
        fun({Key, History}) ->
            %% Old key kept first, the history next, the key file last: a crash in between
            %% leaves the old identity in place with its secret kept twice.
            case file:read_file(File) of
                {ok, OldArmored} ->
                    case maybe_steps([
                        fun() -> write_private(previous_file(File, Old), OldArmored) end,
                        fun() -> write_private(history_file(File), HistoryJson) end,
                        fun() -> write_private(File, Secret) end]) of
                        ok -> {ok, {Key, History}};
                        {error, _} = E -> E
                    end;
                {error, _} = E -> E
            end
        end,
        fun({Key, History}) ->
            persistent_term:put(?TERM, {ok, (identity_of(Key))#{history => History}}),
            %% The rotation first, then the recorded fingerprint (its own event follows).
            audit(Opts, identity_rotated, [{from, Old}, {to, New},
                                           {until, maps:get(until, hd(maps:get(previous, History)))}]),
            _ = (maps:get(record_fingerprint, Opts, fun(_) -> ok end))(New),
            ok
        end], undefined);
do_install(_, #{old := _, new := _}, _) ->
    {error, not_current_identity};
do_install(_, _, _) ->
    {error, bad_rotation}.

make_revocation(#{fingerprint := Fpr}, Fpr, _Reason, _Message, _Opts) ->
    {error, current_identity};
make_revocation(#{history := History}, Fpr, Reason, Message, #{key_file := File} = Opts) ->
    maybe_steps_value([
        fun(_) ->
            case couch_pgp_rotation:previous(History, Fpr) of
                {ok, _} -> passphrase(Opts);
                error -> {error, unknown_identity}
            end
        end,
        fun(Pass) ->
            case file:read_file(previous_file(File, Fpr)) of
                {ok, Armored} -> couch_pgp:import_secret(Armored, Pass);
                {error, enoent} -> {error, previous_key_missing};
                {error, _} = E -> E
            end
        end,
        fun(Key) -> couch_pgp:revoke(Key, Reason, Message) end,
        fun(Revoked) ->
            case couch_pgp:revocation_status(Revoked) of
                {revoked, Reason, At} ->
                    {ok, #{fingerprint => Fpr, reason => Reason, message => Message,
                           revoked_at => At, revocation => Revoked}};
                _ -> {error, internal}
            end
        end], undefined).

do_install_revocation(#{history := History} = Id,
                      #{fingerprint := Fpr, reason := Reason, revocation := Revoked} = Rev,
                      #{key_file := File} = Opts) ->
    case {couch_pgp:fingerprint(Revoked), couch_pgp:revocation_status(Revoked)} of
        {Fpr, {revoked, Reason, _}} ->
            History1 = couch_pgp_rotation:revoked(History, Rev),
            case write_private(history_file(File), couch_pgp_rotation:to_json(History1)) of
                ok ->
                    persistent_term:put(?TERM, {ok, Id#{history := History1}}),
                    audit(Opts, identity_revoked, [{fingerprint, Fpr}, {reason, Reason}]),
                    ok;
                {error, _} = E -> E
            end;
        _ ->
            {error, bad_revocation}
    end.

make_offer(#{fingerprint := Fpr, history := #{revocations := Revs}}, Fpr, _Opts) ->
    {same, Revs};
make_offer(#{fingerprint := New, history := #{revocations := Revs} = History}, TheirFpr,
           #{key_file := File}) ->
    case couch_pgp_rotation:previous(History, TheirFpr) of
        {ok, _} ->
            %% The key file itself: the current key under the shared passphrase.
            case file:read_file(File) of
                {ok, Secret} ->
                    {newer, #{old => TheirFpr, new => New, secret => Secret,
                              history => couch_pgp_rotation:to_json(History)}, Revs};
                {error, _} = E -> E
            end;
        error ->
            unknown
    end.

%% Files beside the key file: the history, and each earlier secret key by fingerprint.
history_file(File) -> iolist_to_binary([File, ".history.json"]).
previous_file(File, Fpr) -> iolist_to_binary([File, ".", Fpr]).

%% The history kept with the key, if it belongs to it; else a fresh one (a key file
%% replaced by hand starts a new history, and keeps the revocations of the old one).
history(File, Fpr, Log) ->
    case file:read_file(history_file(File)) of
        {ok, Text} ->
            case couch_pgp_rotation:from_json(Text) of
                {ok, #{current := Fpr} = History} ->
                    History;
                {ok, #{revocations := Revs}} ->
                    Log(warning, "couch_pgp: identity history is for another key; "
                                 "starting a new one (revocations kept)", []),
                    (couch_pgp_rotation:new(Fpr))#{revocations := Revs};
                {error, _} ->
                    Log(error, "couch_pgp: identity history unreadable; ignored", []),
                    couch_pgp_rotation:new(Fpr)
            end;
        {error, _} ->
            couch_pgp_rotation:new(Fpr)
    end.

%% Like maybe_steps/1, each step taking the previous one's `{ok, Value}'; the last step's
%% result is the answer.
maybe_steps_value([Last], Value) ->
    Last(Value);
maybe_steps_value([Step | Rest], Value) ->
    case Step(Value) of
        {ok, Next} -> maybe_steps_value(Rest, Next);
        {error, _} = Error -> Error
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
