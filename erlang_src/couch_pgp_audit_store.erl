%% @doc The node's audit trail: one append-only file of chained entries
%% (couch_pgp_audit_chain), with a checkpoint signed by the identity key every
%% `checkpoint_every' entries or `checkpoint_interval' milliseconds, whichever comes first.
%%
%% Why a file and not a database: a file is naturally one per node (each node keeps its own
%% chain), it is outside everything CouchDB's HTTP API can edit or delete, and it can be
%% copied and verified offline. The chain does not make the file tamper-proof; it makes
%% tampering visible (see couch_pgp_audit_verify for exactly what is detected).
%%
%% Writing: each entry is one write(2) of one line to a file opened for append. With
%% `fsync => always' every entry is fsync'ed before the next is taken; with `checkpoint' (the
%% default) the file is fsync'ed at each checkpoint and when the store stops, so a power cut
%% can lose at most the entries since the last checkpoint; they were in CouchDB's log too.
%%
%% Overload: callers cast while the store's mailbox is under `max_queue' messages; above it
%% they make a synchronous call and wait until their entry is written (backpressure). Events
%% are never dropped to save time: an audit trail with silent holes is worse than a slower
%% node. A disk that hangs therefore slows the requests that have something to audit.
%%
%% Failure: if the file cannot be opened or written (disk full, permissions), the store logs
%% an error and counts the entries it could not write; the first entry it does write after
%% that is an `audit_gap' entry with that count, so the trail itself says entries are
%% missing (the events themselves are still in CouchDB's log). At start the store resumes
%% the chain from the file's last line; a last line cut short by a crash is removed, and the
%% `audit_started' entry records how many bytes were removed. A file whose last complete
%% line is not a valid entry is not appended to (that would hide the damage behind a valid
%% continuation): the store stays up, logs why, and counts entries as unwritten until the
%% operator moves the file away (see the README, Keys over time, Audit trail).
-module(couch_pgp_audit_store).
-behaviour(gen_server).

-include_lib("kernel/include/file.hrl").

-export([start_link/1, append/2, checkpoint/0, rotate/0, status/0, stop/0]).
-export([init/1, handle_call/3, handle_cast/2, handle_info/2, terminate/2]).

-export_type([opts/0]).

-type opts() :: #{
    file := file:filename_all(),
    node := binary(),
    identity := fun(() -> {ok, couch_pgp_keystore:identity()} | {error, atom()}),
    checkpoint_every => pos_integer(),
    checkpoint_interval => pos_integer(),
    fsync => always | checkpoint,
    max_queue => pos_integer(),
    log => fun((atom(), string(), [term()]) -> term())
}.

-record(st, {
    opts :: opts(),
    fd :: file:io_device() | undefined,
    %% Why the file is not written to, while it is not.
    broken = undefined :: undefined | term(),
    seq = 0 :: non_neg_integer(),
    head :: binary(),
    since_checkpoint = 0 :: non_neg_integer(),
    unwritten = 0 :: non_neg_integer(),
    timer :: reference() | undefined
}).

-define(DEFAULTS, #{checkpoint_every => 100, checkpoint_interval => 300000,
                    fsync => checkpoint, max_queue => 1000,
                    log => fun(_, _, _) -> ok end}).
-define(QUEUE_LIMIT, {?MODULE, max_queue}).
%% Enough to hold any last line the store writes (a checkpoint is under 1 KiB).
-define(TAIL_BYTES, 65536).

%% @doc Starts the store, resuming the chain in `file' (or starting it).
-spec start_link(opts()) -> {ok, pid()} | {error, term()}.
start_link(Opts) ->
    gen_server:start_link({local, ?MODULE}, ?MODULE, maps:merge(?DEFAULTS, Opts), []).

%% @doc Appends one event. Returns at once while the store keeps up; waits for the write
%% when `max_queue' messages are waiting (see the module doc). `{error, not_started}' if no
%% store runs.
-spec append(atom() | binary(), [{atom() | binary(), couch_pgp_audit_chain:field_value()}]) ->
    ok | {error, not_started}.
append(Type, Fields) ->
    Event = {event, Type, Fields, os:system_time(millisecond)},
    case whereis(?MODULE) of
        undefined ->
            {error, not_started};
        Pid ->
            Limit = persistent_term:get(?QUEUE_LIMIT, 1000),
            case erlang:process_info(Pid, message_queue_len) of
                {message_queue_len, N} when N < Limit ->
                    gen_server:cast(Pid, Event);
                _ ->
                    try gen_server:call(Pid, Event, infinity)
                    catch exit:{noproc, _} -> {error, not_started}
                    end
            end
    end.

%% @doc Writes a signed checkpoint now (if anything was written since the last one).
-spec checkpoint() -> ok | {error, term()}.
checkpoint() ->
    gen_server:call(?MODULE, checkpoint, infinity).

%% @doc Closes the current file after a checkpoint, renames it to `<file>.<last seq>' and
%% continues the chain in a new `file' (the first entry there links to the old file's last).
%% The name it was renamed to.
-spec rotate() -> {ok, file:filename_all()} | {error, term()}.
rotate() ->
    gen_server:call(?MODULE, rotate, infinity).

%% @doc What the store is doing: the file, the last seq and hash, unwritten entries.
-spec status() -> #{atom() => term()}.
status() ->
    gen_server:call(?MODULE, status, infinity).

%% @doc Stops the store (a checkpoint and an fsync first).
-spec stop() -> ok.
stop() ->
    gen_server:stop(?MODULE).

%% ----------------------------------------------------------------- gen_server

%% @private
-spec init(opts()) -> {ok, #st{}}.
init(#{file := File, max_queue := Max} = Opts) ->
    process_flag(trap_exit, true),
    persistent_term:put(?QUEUE_LIMIT, Max),
    St0 = #st{opts = Opts, head = couch_pgp_audit_chain:genesis()},
    St = case resume(File) of
        {ok, Seq, Head, Discarded} ->
            St1 = open(St0#st{seq = Seq, head = Head}),
            write_event(audit_started, [{file, name(File)}, {resumed_at, Seq}
                                        | [{discarded_partial_bytes, Discarded}
                                           || Discarded > 0]], St1);
        {error, Why} ->
            log(St0, error, "couch_pgp: audit trail ~ts not written to: ~p. Move the file "
                            "away (keep it: it is evidence) and restart couch_pgp",
                [name(File), Why]),
            St0#st{broken = Why}
    end,
    {ok, arm(St)}.

%% @private
-spec handle_call(term(), gen_server:from(), #st{}) -> {reply, term(), #st{}}.
handle_call({event, Type, Fields, Time}, _From, St) ->
    {reply, ok, arm(event(Type, Fields, Time, St))};
handle_call(checkpoint, _From, St) ->
    {Reply, St1} = do_checkpoint(St),
    {reply, Reply, arm(St1)};
handle_call(rotate, _From, St) ->
    {Reply, St1} = do_rotate(St),
    {reply, Reply, arm(St1)};
handle_call(status, _From, #st{opts = #{file := File}} = St) ->
    {reply, #{file => name(File), seq => St#st.seq, head => St#st.head,
              unwritten => St#st.unwritten,
              state => case St#st.broken of undefined -> ok; Why -> {error, Why} end}, St};
handle_call(_Msg, _From, St) ->
    {reply, {error, unknown_call}, St}.

%% @private
-spec handle_cast(term(), #st{}) -> {noreply, #st{}}.
handle_cast({event, Type, Fields, Time}, St) ->
    {noreply, arm(event(Type, Fields, Time, St))};
handle_cast(_Msg, St) ->
    {noreply, St}.

%% @private
-spec handle_info(term(), #st{}) -> {noreply, #st{}}.
handle_info(checkpoint_due, St) ->
    {_, St1} = do_checkpoint(St#st{timer = undefined}),
    {noreply, arm(St1)};
handle_info(_Msg, St) ->
    {noreply, St}.

%% @private
-spec terminate(term(), #st{}) -> ok.
terminate(_Reason, St) ->
    {_, St1} = do_checkpoint(St),
    _ = close(St1),
    ok.

%% ----------------------------------------------------------------- writing

event(Type, Fields, Time, St) ->
    St1 = write_entry(fun(Seq, Prev) ->
                          {ok, couch_pgp_audit_chain:entry(Seq, Time, node_name(St), Type,
                                                           Fields, Prev)}
                      end, St),
    maybe_checkpoint(St1).

write_event(Type, Fields, St) ->
    event(Type, Fields, os:system_time(millisecond), St).

maybe_checkpoint(#st{since_checkpoint = N, opts = #{checkpoint_every := Every}} = St)
  when N >= Every ->
    {_, St1} = do_checkpoint(St),
    arm(St1);
maybe_checkpoint(St) ->
    St.

%% A checkpoint needs the identity key; while it is not loaded (the plugin switched off, no
%% passphrase) none is written and the entries wait for the next one.
do_checkpoint(#st{since_checkpoint = 0} = St) ->
    {ok, St};
do_checkpoint(#st{broken = undefined, opts = #{identity := IdentityFun}} = St) ->
    case IdentityFun() of
        {ok, Identity} ->
            Time = os:system_time(millisecond),
            St1 = write_entry(fun(Seq, Prev) ->
                                  couch_pgp_audit_chain:checkpoint(Seq, Time, node_name(St),
                                                                   Prev, Identity)
                              end, St),
            case St1#st.since_checkpoint of
                0 -> {sync(St1), St1};
                _ -> {{error, not_written}, St1}
            end;
        {error, Why} ->
            {{error, {no_identity, Why}}, St}
    end;
do_checkpoint(#st{broken = Why} = St) ->
    {{error, Why}, St}.

%% Builds the entry for the next seq and writes it; a checkpoint resets the count.
write_entry(Build, #st{broken = undefined} = St0) ->
    case gap(St0) of
        #st{unwritten = 0} = St ->
            case Build(St#st.seq + 1, St#st.head) of
                {ok, Entry} ->
                    case file:write(St#st.fd, couch_pgp_audit_chain:encode(Entry)) of
                        ok -> written(Entry, St);
                        {error, Why} -> failed(Why, St)
                    end;
                {error, Why} ->
                    log(St, error, "couch_pgp: audit checkpoint not signed: ~p", [Why]),
                    St
            end;
        St ->
            %% The gap entry itself could not be written: neither can this one.
            unwritten(St)
    end;
write_entry(_Build, St) ->
    unwritten(St).

written(#{<<"seq">> := Seq, <<"hash">> := Hash, <<"type">> := Type}, St) ->
    Count = case Type of
        <<"checkpoint">> -> 0;
        _ -> St#st.since_checkpoint + 1
    end,
    St1 = St#st{seq = Seq, head = Hash, since_checkpoint = Count},
    case St1#st.opts of
        #{fsync := always} -> _ = sync(St1), St1;
        _ -> St1
    end.

%% Entries that could not be written are announced by the next entry that can be.
gap(#st{unwritten = 0} = St) ->
    St;
gap(#st{unwritten = N} = St) ->
    Entry = couch_pgp_audit_chain:entry(St#st.seq + 1, os:system_time(millisecond),
                                        node_name(St), audit_gap, [{unwritten, N}],
                                        St#st.head),
    case file:write(St#st.fd, couch_pgp_audit_chain:encode(Entry)) of
        ok -> written(Entry, St#st{unwritten = 0});
        {error, Why} -> (failed(Why, St))#st{unwritten = N}
    end.

failed(Why, #st{unwritten = N} = St) ->
    log(St, error, "couch_pgp: audit entry not written: ~p", [Why]),
    St#st{unwritten = N + 1}.

unwritten(#st{unwritten = N} = St) ->
    St#st{unwritten = N + 1}.

sync(#st{fd = undefined}) ->
    ok;
sync(#st{fd = Fd} = St) ->
    case file:sync(Fd) of
        ok -> ok;
        {error, Why} = Error ->
            log(St, error, "couch_pgp: audit trail not synced: ~p", [Why]),
            Error
    end.

do_rotate(#st{broken = undefined, opts = #{file := File}} = St) ->
    {_, St1} = do_checkpoint(St),
    _ = close(St1),
    Old = iolist_to_binary([name(File), ".", integer_to_binary(St1#st.seq)]),
    case file:rename(File, Old) of
        ok ->
            St2 = open(St1#st{fd = undefined}),
            {{ok, Old}, write_event(audit_rotated, [{previous_file, Old}], St2)};
        {error, Why} = Error ->
            log(St1, error, "couch_pgp: audit trail not rotated: ~p", [Why]),
            {Error, open(St1#st{fd = undefined})}
    end;
do_rotate(#st{broken = Why} = St) ->
    {{error, Why}, St}.

open(#st{opts = #{file := File}} = St) ->
    case private_file(File) of
        ok ->
            case file:open(File, [append, raw, binary]) of
                {ok, Fd} ->
                    St#st{fd = Fd, broken = undefined};
                {error, Why} ->
                    log(St, error, "couch_pgp: audit trail ~ts cannot be opened: ~p",
                        [name(File), Why]),
                    St#st{broken = Why}
            end;
        {error, Why} ->
            St#st{broken = Why}
    end.

%% The trail names users and documents: owner-only, like the key, from the first byte.
private_file(File) ->
    Dir = filename:dirname(File),
    _ = case filelib:is_dir(Dir) of
        true -> ok;
        false ->
            %% Errors here show as the file's own when it is created just below.
            _ = filelib:ensure_dir(Dir),
            _ = file:make_dir(Dir),
            file:change_mode(Dir, 8#700)
    end,
    case filelib:is_regular(File) of
        true -> ok;
        false ->
            case file:write_file(File, <<>>, [exclusive]) of
                ok -> file:change_mode(File, 8#600);
                {error, eexist} -> ok;
                {error, _} = Error -> Error
            end
    end.

close(#st{fd = undefined}) ->
    ok;
close(#st{fd = Fd} = St) ->
    _ = sync(St),
    file:close(Fd).

arm(#st{timer = undefined, since_checkpoint = N, opts = #{checkpoint_interval := Ms}} = St)
  when N > 0 ->
    St#st{timer = erlang:send_after(Ms, self(), checkpoint_due)};
arm(#st{timer = Timer, since_checkpoint = 0} = St) when Timer =/= undefined ->
    _ = erlang:cancel_timer(Timer),
    St#st{timer = undefined};
arm(St) ->
    St.

%% ----------------------------------------------------------------- resuming

%% The chain's last seq and hash from the file's last complete line; a partial last line
%% (a crash during a write) is cut off and its length returned.
resume(File) ->
    case file:read_file_info(File) of
        {error, enoent} ->
            {ok, 0, couch_pgp_audit_chain:genesis(), 0};
        {error, _} = Error ->
            Error;
        {ok, #file_info{size = 0}} ->
            {ok, 0, couch_pgp_audit_chain:genesis(), 0};
        {ok, #file_info{size = Size}} ->
            case file:open(File, [read, write, raw, binary]) of
                {ok, Fd} ->
                    try resume(Fd, Size) after file:close(Fd) end;
                {error, _} = Error ->
                    Error
            end
    end.

resume(Fd, Size) ->
    Start = max(0, Size - ?TAIL_BYTES),
    {ok, Tail} = file:pread(Fd, Start, Size - Start),
    case binary:matches(Tail, <<"\n">>) of
        [] ->
            {error, no_complete_line_in_tail};
        Newlines ->
            {LastNl, 1} = lists:last(Newlines),
            Discard = byte_size(Tail) - LastNl - 1,
            Before = binary:part(Tail, 0, LastNl),
            Line = case binary:matches(Before, <<"\n">>) of
                [] when Start =:= 0 -> Before;
                [] -> <<>>;
                Nls -> {P, 1} = lists:last(Nls), binary:part(Before, P + 1, LastNl - P - 1)
            end,
            case last_entry(Line) of
                {ok, Seq, Hash} when Discard > 0 ->
                    case file:position(Fd, Size - Discard) of
                        {ok, _} ->
                            case file:truncate(Fd) of
                                ok -> {ok, Seq, Hash, Discard};
                                {error, _} = Error -> Error
                            end;
                        {error, _} = Error ->
                            Error
                    end;
                {ok, Seq, Hash} ->
                    {ok, Seq, Hash, 0};
                {error, _} = Error ->
                    Error
            end
    end.

last_entry(Line) ->
    case couch_pgp_audit_chain:decode(Line) of
        {ok, #{<<"seq">> := Seq, <<"hash">> := Hash} = Entry} ->
            case couch_pgp_audit_chain:hash(Entry) of
                Hash -> {ok, Seq, Hash};
                _ -> {error, {last_entry_hash_mismatch, Seq}}
            end;
        {error, Why} ->
            {error, {last_line, Why}}
    end.

%% ----------------------------------------------------------------- helpers

node_name(#st{opts = #{node := Node}}) ->
    Node.

name(File) ->
    unicode:characters_to_binary(File).

log(#st{opts = #{log := Log}}, Level, Format, Args) ->
    _ = Log(Level, Format, Args),
    ok.
