%% @doc Verifies an audit trail written by couch_pgp_audit_store, offline: a copy of the
%% file (or of its rotated parts, oldest first) and the node's public certificate(s) are all
%% it needs. `scripts/audit_verify' is its command line.
%%
%% Each line is checked in order: it is a complete line (ends in a newline), a well-formed
%% entry, its `seq' is the previous one plus 1, its `node' is the first entry's, its `prev'
%% is the previous entry's `hash', its `hash' is the hash of its content, and a checkpoint's
%% signature is good and made by one of the certificates given. The first check that fails
%% names the break: `{broken_at, Seq, Why}' where Seq is the position in the chain where the
%% trail stops being trustworthy (the seq the verifier expected there):
%%
%%   edited entry (hash not recomputed)     Seq = that entry, hash_mismatch
%%   edited entry, hashes recomputed after  the next entry (prev_mismatch), or, if the
%%                                          whole rest of the chain was rewritten, the next
%%                                          checkpoint (bad_signature)
%%   deleted entry                          Seq = the missing seq, {unexpected_seq, Found}
%%   entries swapped                        Seq = the first out of place, {unexpected_seq, _}
%%   inserted entry                         where its seq or prev does not fit; one made to
%%                                          fit (right seq and prev, renumbering the rest)
%%                                          breaks at the next checkpoint's signature
%%   last line cut short                    Seq = that entry, truncated_line
%%   checkpoint signed by another key       Seq = the checkpoint, bad_signature
%%   fewer entries than `min_seq'           Seq = last + 1, {truncated, MinSeq}
%%
%% What cannot be detected: entries after the last signed checkpoint can be removed, or
%% changed together with their hashes, without a trace in the file itself; everything up to
%% the last checkpoint is vouched for by the node's key. The summary says how many entries
%% are past the last checkpoint (`unsigned_tail'), and `min_seq' (a seq the operator saw
%% earlier, e.g. in GET /_pgp/audit or a monitoring copy) turns a cut below that into an
%% error. Whoever holds the node's identity key can rewrite and re-sign the whole trail.
-module(couch_pgp_audit_verify).

-export([file/2, files/3]).

-export_type([summary/0, why/0]).

-type summary() :: #{entries := non_neg_integer(), first_seq := pos_integer(),
                     last_seq := pos_integer(), node := binary(),
                     signed_through := non_neg_integer(), unsigned_tail := non_neg_integer(),
                     signers := [binary()]}.
-type why() :: empty | truncated_line | bad_json | bad_entry | {unexpected_seq, integer()}
             | node_changed | prev_mismatch | hash_mismatch | bad_signature
             | {truncated, pos_integer()} | {file, file:posix()}.
-type opts() :: #{min_seq => pos_integer(), from_any_seq => boolean()}.

-record(v, {
    certs :: [couch_pgp:cert()],
    expect :: pos_integer() | undefined,
    head :: binary() | undefined,
    first :: pos_integer() | undefined,
    node :: binary() | undefined,
    count = 0 :: non_neg_integer(),
    signed = 0 :: non_neg_integer(),
    signers = [] :: [binary()]
}).

%% @doc Verifies one whole trail (it must start at seq 1).
-spec file(file:filename_all(), [couch_pgp:cert()]) -> ok | {error, {broken_at, pos_integer(), why()}}.
file(Path, Certs) ->
    case files([Path], Certs, #{}) of
        {ok, _} -> ok;
        {error, _} = Error -> Error
    end.

%% @doc Verifies the parts of one trail in order (rotated files, oldest first) as one chain.
%% Options: `from_any_seq => true' accepts a trail whose first kept part starts after seq 1
%% (older parts deleted under a retention policy: nothing before it is checked);
%% `min_seq => N' requires the trail to reach seq N.
-spec files([file:filename_all()], [couch_pgp:cert()], opts()) ->
    {ok, summary()} | {error, {broken_at, pos_integer(), why()}}.
files(Paths, Certs, Opts) when is_list(Paths), is_list(Certs), is_map(Opts) ->
    Start = case maps:get(from_any_seq, Opts, false) of
        true -> #v{certs = Certs};
        false -> #v{certs = Certs, expect = 1, head = couch_pgp_audit_chain:genesis()}
    end,
    try
        V = lists:foldl(fun each_file/2, Start, Paths),
        finish(V, maps:get(min_seq, Opts, 1))
    catch
        throw:{broken, Seq, Why} -> {error, {broken_at, Seq, Why}}
    end.

%% ----------------------------------------------------------------- internal

each_file(Path, V) ->
    case file:open(Path, [read, raw, binary, {read_ahead, 65536}]) of
        {ok, Fd} ->
            try lines(Fd, V) after file:close(Fd) end;
        {error, Posix} ->
            throw({broken, expected(V), {file, Posix}})
    end.

lines(Fd, V) ->
    case file:read_line(Fd) of
        eof -> V;
        {ok, Line} -> lines(Fd, line(Line, V));
        {error, Posix} -> throw({broken, expected(V), {file, Posix}})
    end.

line(Line, V) ->
    Size = byte_size(Line) - 1,
    case Line of
        <<Body:Size/binary, "\n">> -> entry(Body, V);
        _ -> throw({broken, expected(V), truncated_line})
    end.

entry(Body, V) ->
    Entry = case couch_pgp_audit_chain:decode(Body) of
        {ok, E} -> E;
        {error, Why} -> throw({broken, expected(V), Why})
    end,
    #{<<"seq">> := Seq, <<"node">> := Node, <<"prev">> := Prev, <<"hash">> := Hash} = Entry,
    At = expected(V#v{expect = default(V#v.expect, Seq)}),
    check(Seq =:= At, At, {unexpected_seq, Seq}),
    check(Node =:= default(V#v.node, Node), At, node_changed),
    check(Prev =:= default(V#v.head, Prev), At, prev_mismatch),
    check(Hash =:= couch_pgp_audit_chain:hash(Entry), At, hash_mismatch),
    V1 = V#v{expect = Seq + 1, head = Hash, first = default(V#v.first, Seq), node = Node,
             count = V#v.count + 1},
    case Entry of
        #{<<"type">> := <<"checkpoint">>} -> signed(Entry, V1);
        _ -> V1
    end.

signed(#{<<"seq">> := Seq, <<"fields">> := Fields} = Entry, V) ->
    case couch_pgp_audit_chain:verify_sig(Entry, V#v.certs) of
        {ok, Fpr} ->
            check(maps:get(<<"signer">>, Fields, undefined) =:= Fpr, Seq, bad_signature),
            V#v{signed = Seq, signers = lists:usort([Fpr | V#v.signers])};
        {error, _} ->
            throw({broken, Seq, bad_signature})
    end.

finish(#v{count = 0} = V, _MinSeq) ->
    throw({broken, expected(V), empty});
finish(#v{expect = Next} = V, MinSeq) ->
    Last = Next - 1,
    check(Last >= MinSeq, Next, {truncated, MinSeq}),
    {ok, #{entries => V#v.count, first_seq => V#v.first, last_seq => Last, node => V#v.node,
           signed_through => V#v.signed, unsigned_tail => Last - max(V#v.signed, V#v.first - 1),
           signers => V#v.signers}}.

check(true, _Seq, _Why) -> ok;
check(false, Seq, Why) -> throw({broken, Seq, Why}).

expected(#v{expect = undefined}) -> 1;
expected(#v{expect = Seq}) -> Seq.

default(undefined, Value) -> Value;
default(Set, _Value) -> Set.
