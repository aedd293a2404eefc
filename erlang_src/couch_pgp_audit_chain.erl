%% @doc The audit trail's entries: how one is built, hashed, chained and signed. Pure
%% functions; couch_pgp_audit_store writes them, couch_pgp_audit_verify checks them.
%%
%% An entry is one line of canonical JSON (RFC 8785, so every implementation hashes the same
%% bytes):
%%
%%   {"fields":{...},"hash":H,"node":N,"prev":P,"seq":S,"time":T,"type":Y}
%%
%% `seq' counts from 1 with no gaps; `prev' is the `hash' of entry seq-1 (64 zeros for
%% seq 1); `hash' is the lowercase hex SHA-256 of the canonical JSON of the entry without
%% `hash'. A `checkpoint' entry also has `sig': an armored detached OpenPGP signature by the
%% node's identity key over the canonical JSON of the entry without `hash' and `sig'; it
%% names the signer's fingerprint in `fields.signer' and so vouches for `prev', the head of
%% everything before it.
-module(couch_pgp_audit_chain).

-export([genesis/0, entry/6, checkpoint/5, hash/1, encode/1, decode/1, verify_sig/2,
         json_fields/1]).

-export_type([entry/0, field_value/0]).

%% Entries as maps with binary keys: what couch_pgp:canonical_json/1 takes.
-type entry() :: #{binary() => term()}.
-type field_value() :: binary() | integer() | boolean() | null | atom() | [binary() | atom()].

-define(KEYS, [<<"fields">>, <<"hash">>, <<"node">>, <<"prev">>, <<"seq">>, <<"time">>,
               <<"type">>]).

%% @doc The `prev' of the first entry.
-spec genesis() -> binary().
genesis() ->
    binary:copy(<<"0">>, 64).

%% @doc A sealed entry (with its `hash'). `TimeMs' is Unix time in milliseconds.
-spec entry(pos_integer(), integer(), binary(), atom() | binary(),
            [{atom() | binary(), field_value()}], binary()) -> entry().
entry(Seq, TimeMs, Node, Type, Fields, Prev) ->
    seal(unsealed(Seq, TimeMs, Node, Type, json_fields(Fields), Prev)).

%% @doc A sealed checkpoint: signed by `Identity' (couch_pgp_keystore:identity()), vouching
%% for `Prev', the hash of entry Seq-1.
-spec checkpoint(pos_integer(), integer(), binary(), binary(),
                 #{key := couch_pgp:key(), fingerprint := binary(), _ => _}) ->
    {ok, entry()} | {error, term()}.
checkpoint(Seq, TimeMs, Node, Prev, #{key := Key, fingerprint := Fpr}) ->
    Unsigned = unsealed(Seq, TimeMs, Node, checkpoint, #{<<"signer">> => Fpr}, Prev),
    {ok, Statement} = couch_pgp:canonical_json(Unsigned),
    case couch_pgp:sign(Statement, Key) of
        {ok, Sig} -> {ok, seal(Unsigned#{<<"sig">> => Sig})};
        {error, _} = Error -> Error
    end.

%% @doc The hash an entry should carry: over everything but `hash'.
-spec hash(entry()) -> binary().
hash(Entry) ->
    {ok, Canonical} = couch_pgp:canonical_json(maps:remove(<<"hash">>, Entry)),
    string:lowercase(binary:encode_hex(crypto:hash(sha256, Canonical))).

%% @doc The line written to the file, newline included.
-spec encode(entry()) -> binary().
encode(Entry) ->
    {ok, Canonical} = couch_pgp:canonical_json(Entry),
    <<Canonical/binary, "\n">>.

%% @doc One line (without its newline) back to an entry, or why it is not one. Only the
%% shape is checked here; the chain (seq, prev, hash, sig) is couch_pgp_audit_verify's.
-spec decode(binary()) -> {ok, entry()} | {error, bad_json | bad_entry}.
decode(Line) ->
    case couch_pgp:json_decode(Line) of
        {ok, {Props}} when is_list(Props) ->
            shape(maps:from_list(Props));
        _ ->
            {error, bad_json}
    end.

%% @doc Checks a checkpoint's signature against the node's certificates; the signer.
-spec verify_sig(entry(), [couch_pgp:cert()]) -> {ok, binary()} | {error, term()}.
verify_sig(#{<<"sig">> := Sig} = Entry, Certs) when is_binary(Sig) ->
    {ok, Statement} = couch_pgp:canonical_json(maps:without([<<"hash">>, <<"sig">>], Entry)),
    couch_pgp:verify(Statement, Sig, Certs);
verify_sig(_, _) ->
    {error, no_signature}.

%% @doc Event fields as a JSON object: names to binaries, atoms to strings (true, false,
%% null stay JSON's), lists of names to lists of strings. Anything else is written as its
%% printed form, bounded, so that a caller's mistake cannot put a large term in the trail.
-spec json_fields([{atom() | binary(), term()}]) -> #{binary() => term()}.
json_fields(Fields) ->
    maps:from_list([{name(K), value(V)} || {K, V} <- Fields]).

%% ----------------------------------------------------------------- internal

unsealed(Seq, TimeMs, Node, Type, Fields, Prev) ->
    #{<<"seq">> => Seq,
      <<"time">> => list_to_binary(calendar:system_time_to_rfc3339(
                                     TimeMs, [{unit, millisecond}, {offset, "Z"}])),
      <<"node">> => Node,
      <<"type">> => name(Type),
      <<"fields">> => Fields,
      <<"prev">> => Prev}.

seal(Entry) ->
    Entry#{<<"hash">> => hash(Entry)}.

name(A) when is_atom(A) -> atom_to_binary(A);
name(B) when is_binary(B) -> B.

value(V) when is_binary(V); is_integer(V); is_boolean(V); V =:= null -> V;
value(undefined) -> null;
value(A) when is_atom(A) -> atom_to_binary(A);
value(L) when is_list(L) ->
    case lists:all(fun(E) -> is_binary(E) orelse is_atom(E) end, L) of
        true -> [value(E) || E <- L];
        false -> printed(L)
    end;
value(Other) ->
    printed(Other).

printed(Term) ->
    unicode:characters_to_binary(io_lib:format("~0P", [Term, 8])).

shape(#{<<"seq">> := Seq, <<"time">> := T, <<"node">> := N, <<"type">> := Y,
        <<"fields">> := {Fields}, <<"prev">> := P, <<"hash">> := H} = Map)
  when is_integer(Seq), Seq >= 1, is_binary(T), is_binary(N), is_binary(Y),
       is_list(Fields), is_binary(P), is_binary(H) ->
    Extra = maps:keys(Map) -- ?KEYS,
    case {Y, Extra, Map} of
        {<<"checkpoint">>, [<<"sig">>], #{<<"sig">> := Sig}} when is_binary(Sig) ->
            {ok, Map#{<<"fields">> => maps:from_list(Fields)}};
        {_, [], _} ->
            {ok, Map#{<<"fields">> => maps:from_list(Fields)}};
        _ ->
            {error, bad_entry}
    end;
shape(_) ->
    {error, bad_entry}.
