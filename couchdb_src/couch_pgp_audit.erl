%% @doc Security events: each one is written to CouchDB's log (as `couch_pgp audit: <type>
%% name=value ...' at notice level) and appended to this node's audit trail
%% (couch_pgp_audit_store: a hash-chained file with checkpoints signed by the identity key).
%%
%% Fields are names, fingerprints, database and document ids, reasons: never a body, a
%% token, a key, a passphrase or a password. As a second line of defence, a field whose name
%% says it holds such a thing is written as `"[redacted]"' and the call is logged as a bug.
-module(couch_pgp_audit).

-export([event/2, child_spec/0, store_opts/0]).

-define(DEFAULT_FILE, "./data/couch_pgp/audit.log").
-define(SECRET_NAMES, [body, password, passphrase, token, secret, key, plaintext,
                       <<"body">>, <<"password">>, <<"passphrase">>, <<"token">>,
                       <<"secret">>, <<"key">>, <<"plaintext">>]).

%% @doc Records one security event. Does not wait for the disk unless the trail is
%% `audit_max_queue' entries behind (then it waits: see couch_pgp_audit_store).
-spec event(atom(), [{atom(), couch_pgp_audit_chain:field_value() | term()}]) -> ok.
event(Type, Fields0) when is_atom(Type), is_list(Fields0) ->
    Fields = [redact(Type, F) || F <- Fields0],
    couch_log:notice("couch_pgp audit: ~s~ts", [Type, render(Fields)]),
    case couch_pgp_audit_store:append(Type, Fields) of
        ok ->
            ok;
        {error, not_started} ->
            couch_log:error("couch_pgp: audit trail not running; ~s is only in this log",
                            [Type])
    end.

%% @doc The trail's child spec under couch_pgp_sup, with its options from `[couch_pgp]'.
-spec child_spec() -> supervisor:child_spec().
child_spec() ->
    #{id => couch_pgp_audit_store, start => {couch_pgp_audit_store, start_link, [store_opts()]},
      restart => permanent, shutdown => 10000, type => worker}.

%% @doc The store's options: read at start (a change needs a restart of couch_pgp).
-spec store_opts() -> couch_pgp_audit_store:opts().
store_opts() ->
    #{file => config:get("couch_pgp", "audit_file", ?DEFAULT_FILE),
      node => atom_to_binary(node()),
      identity => fun couch_pgp_keystore:identity/0,
      checkpoint_every => positive("audit_checkpoint_every", 100),
      checkpoint_interval => positive("audit_checkpoint_interval", 300) * 1000,
      fsync => case config:get("couch_pgp", "audit_fsync", "checkpoint") of
                   "always" -> always;
                   _ -> checkpoint
               end,
      max_queue => positive("audit_max_queue", 1000),
      log => fun(Level, Format, Args) -> couch_log:Level(Format, Args) end}.

%% ----------------------------------------------------------------- internal

positive(Key, Default) ->
    case config:get_integer("couch_pgp", Key, Default) of
        N when N > 0 -> N;
        _ -> Default
    end.

redact(Type, {Name, Value}) ->
    case lists:member(Name, ?SECRET_NAMES) of
        true ->
            couch_log:error("couch_pgp: bug: audit event ~s given a field named ~p; redacted",
                            [Type, Name]),
            {Name, <<"[redacted]">>};
        false ->
            {Name, Value}
    end.

render(Fields) ->
    [[" ", to_text(Name), "=", to_text(Value)] || {Name, Value} <- Fields].

to_text(V) when is_binary(V) -> V;
to_text(V) when is_atom(V) -> atom_to_binary(V);
to_text(V) when is_integer(V) -> integer_to_binary(V);
to_text(L) when is_list(L) ->
    case lists:all(fun(E) -> is_binary(E) orelse is_atom(E) end, L) of
        true -> lists:join(",", [to_text(E) || E <- L]);
        false -> io_lib:format("~0P", [L, 8])
    end;
to_text(Other) ->
    io_lib:format("~0P", [Other, 8]).
