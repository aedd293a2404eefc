%% @doc Signed CouchDB documents.
%%
%% What a signature covers: the RFC 8785 canonical JSON of the document after
%% <ul>
%% <li>removing `_rev', `_revisions', `_conflicts', `_deleted_conflicts', `_revs_info',
%%     `_local_seq' (they change without the author) and `pgp_signatures' itself;</li>
%% <li>replacing each `_attachments' entry by
%%     `{"content_type": CT, "digest": "sha256-" ++ base64(SHA-256(content)), "length": N}'
%%     where content is the attachment's bytes (inline `data', base64-decoded, or given in the
%%     `attachments' option); a stub without content cannot be signed or verified.</li>
%% </ul>
%% `_id' and `_deleted' stay covered, so a signature cannot be moved to another document id.
%% Signatures live in `pgp_signatures': a list of `{"signer": Fingerprint, "sig":
%% base64(binary detached OpenPGP signature)}'; every signer signs the same bytes, so an
%% author and co-signers sign independently and in any order.
-module(couch_pgp_doc).

-export([sign/3, verify/3, signing_payload/2]).
-export_type([opts/0]).

-type opts() :: #{
    %% attachment contents by name, for stubs
    attachments => #{binary() => binary()},
    %% verify: any expected signer suffices (default), or all of them must have signed
    require => any | all,
    %% verify: certificates revoked (in a registry, not in OpenPGP) from a time on, unix
    %% seconds by fingerprint: their signatures count only when made before that time
    revoked => #{couch_pgp:fingerprint() => integer()}
}.

-define(SIG_FIELD, <<"pgp_signatures">>).
-define(UNSIGNED_FIELDS, [
    <<"_rev">>,
    <<"_revisions">>,
    <<"_conflicts">>,
    <<"_deleted_conflicts">>,
    <<"_revs_info">>,
    <<"_local_seq">>,
    ?SIG_FIELD
]).

%% @doc Adds a signature by `Key' (see couch_pgp:sign_doc/3).
-spec sign(couch_pgp:ejson(), couch_pgp:key(), opts()) ->
    {ok, couch_pgp:ejson()} | {error, couch_pgp:reason()}.
sign(Doc, Key, Opts) ->
    check_opts(Opts),
    case existing_signatures(Doc) of
        {ok, Sigs} ->
            case signing_payload(Doc, Opts) of
                {ok, Payload} ->
                    case couch_pgp:sign(Payload, Key, #{armor => false}) of
                        {ok, Sig} ->
                            Signer = couch_pgp:fingerprint(Key),
                            Others = [S || {Fpr, _} = S <- Sigs, Fpr =/= Signer],
                            {ok, put_signatures(Doc, Others ++ [{Signer, Sig}])};
                        {error, _} = Error ->
                            Error
                    end;
                {error, _} = Error ->
                    Error
            end;
        {error, _} = Error ->
            Error
    end.

%% @doc Verifies the document's signatures against `Certs'.
-spec verify(couch_pgp:ejson(), [couch_pgp:cert()], opts()) ->
    {ok, [couch_pgp:fingerprint()]} | {error, couch_pgp:reason()}.
verify(Doc, Certs, Opts) ->
    check_opts(Opts),
    case existing_signatures(Doc) of
        {ok, []} ->
            {error, unsigned};
        {ok, Sigs} ->
            case signing_payload(Doc, Opts) of
                {ok, Payload} -> verify_each(Payload, Sigs, known_certs(Certs), Opts);
                {error, _} = Error -> Error
            end;
        {error, _} = Error ->
            Error
    end.

%% @doc The exact bytes every signature on `Doc' covers.
-spec signing_payload(couch_pgp:ejson(), opts()) -> {ok, binary()} | {error, couch_pgp:reason()}.
signing_payload(Doc, Opts) ->
    case props(Doc) of
        {ok, Props} ->
            Kept = [{K, V} || {K, V} <- Props, not lists:member(K, ?UNSIGNED_FIELDS)],
            case attachments_digests(Kept, maps:get(attachments, Opts, #{})) of
                {ok, Covered} -> couch_pgp:canonical_json({Covered});
                {error, _} = Error -> Error
            end;
        error ->
            {error, {invalid_json, invalid_value}}
    end.

%% ----------------------------------------------------------------- internal

verify_each(Payload, Sigs, Known, Opts) ->
    Revoked = maps:get(revoked, Opts, #{}),
    Results = [verify_one(Payload, Fpr, Sig, Known, Revoked) || {Fpr, Sig} <- Sigs],
    case [E || {error, _} = E <- Results] of
        [Error | _] ->
            Error;
        [] ->
            Good = [Fpr || {ok, Fpr} <- Results],
            Expected = [Fpr || {Fpr, _} <- Known],
            case {Good, maps:get(require, Opts, any)} of
                {[], _} -> {error, unknown_signer};
                {_, any} -> {ok, Good};
                {_, all} ->
                    case Expected -- Good of
                        [] -> {ok, Good};
                        _ -> {error, unsigned}
                    end
            end
    end.

%% A signature by a signer we were not given is not ours to judge: skipped. One by a
%% signer we know must verify; one by a revoked signer must also predate the revocation
%% (README "Client certificates over time").
verify_one(Payload, Fpr, Sig, Known, Revoked) ->
    case {lists:keyfind(Fpr, 1, Known), maps:find(Fpr, Revoked)} of
        {false, _} ->
            skipped;
        {{Fpr, Cert}, {ok, RevokedAt}} ->
            case couch_pgp:verify_timed(Payload, Sig, [Cert]) of
                {ok, Fpr, Created} when Created < RevokedAt -> {ok, Fpr};
                {ok, Fpr, _} -> {error, signed_after_revocation};
                {ok, _, _} -> {error, bad_signature};
                {error, unknown_signer} -> {error, bad_signature};
                {error, _} = Error -> Error
            end;
        {{Fpr, Cert}, error} ->
            case couch_pgp:verify(Payload, Sig, [Cert]) of
                {ok, Fpr} -> {ok, Fpr};
                {ok, _Other} -> {error, bad_signature};
                {error, unknown_signer} -> {error, bad_signature};
                {error, _} = Error -> Error
            end
    end.

known_certs(Certs) ->
    lists:filtermap(
        fun(Cert) ->
            case couch_pgp:fingerprint(Cert) of
                Fpr when is_binary(Fpr) -> {true, {Fpr, Cert}};
                {error, _} -> false
            end
        end,
        Certs
    ).

existing_signatures(Doc) ->
    case props(Doc) of
        {ok, Props} ->
            case lists:keyfind(?SIG_FIELD, 1, Props) of
                false -> {ok, []};
                {_, List} when is_list(List) -> parse_signatures(List, []);
                _ -> {error, malformed_signatures}
            end;
        error ->
            {error, {invalid_json, invalid_value}}
    end.

parse_signatures([], Acc) ->
    {ok, lists:reverse(Acc)};
parse_signatures([Entry | Rest], Acc) ->
    case props(Entry) of
        {ok, Props} ->
            Signer = proplists:get_value(<<"signer">>, Props),
            Sig = proplists:get_value(<<"sig">>, Props),
            case is_binary(Signer) andalso is_binary(Sig) andalso decode64(Sig) of
                Bin when is_binary(Bin) ->
                    parse_signatures(Rest, [{string:uppercase(Signer), Bin} | Acc]);
                _ ->
                    {error, malformed_signatures}
            end;
        error ->
            {error, malformed_signatures}
    end.

put_signatures(Doc, Sigs) ->
    Entries = [
        {[{<<"signer">>, Fpr}, {<<"sig">>, base64:encode(Sig)}]}
     || {Fpr, Sig} <- Sigs
    ],
    case Doc of
        #{} ->
            maps:put(?SIG_FIELD, Entries, maps:remove(pgp_signatures, Doc));
        {Props} ->
            {lists:keystore(?SIG_FIELD, 1, Props, {?SIG_FIELD, Entries})}
    end.

attachments_digests(Props, Given) ->
    case lists:keyfind(<<"_attachments">>, 1, Props) of
        false ->
            {ok, Props};
        {_, Atts} ->
            case props(Atts) of
                {ok, AttProps} ->
                    case digest_all(AttProps, Given, []) of
                        {ok, Digests} ->
                            {ok, lists:keystore(<<"_attachments">>, 1, Props,
                                {<<"_attachments">>, {Digests}})};
                        {error, _} = Error ->
                            Error
                    end;
                error ->
                    {error, {invalid_json, invalid_value}}
            end
    end.

digest_all([], _Given, Acc) ->
    {ok, lists:reverse(Acc)};
digest_all([{Name, Att} | Rest], Given, Acc) ->
    case attachment_content(Name, Att, Given) of
        {ok, ContentType, Content} ->
            Entry = {[
                {<<"content_type">>, ContentType},
                {<<"digest">>, <<"sha256-", (base64:encode(crypto:hash(sha256, Content)))/binary>>},
                {<<"length">>, byte_size(Content)}
            ]},
            digest_all(Rest, Given, [{Name, Entry} | Acc]);
        {error, _} = Error ->
            Error
    end.

attachment_content(Name, Att, Given) ->
    Props =
        case props(Att) of
            {ok, P} -> P;
            error -> []
        end,
    ContentType = proplists:get_value(<<"content_type">>, Props, <<"application/octet-stream">>),
    case {maps:find(Name, Given), proplists:get_value(<<"data">>, Props)} of
        {{ok, Content}, _} when is_binary(Content) ->
            {ok, ContentType, Content};
        {_, Data} when is_binary(Data) ->
            case decode64(Data) of
                Content when is_binary(Content) -> {ok, ContentType, Content};
                error -> {error, {attachment_content_missing, Name}}
            end;
        _ ->
            {error, {attachment_content_missing, Name}}
    end.

%% Objects as a property list with binary keys, whether EJSON or a map.
props({Props}) when is_list(Props) ->
    {ok, [{key(K), V} || {K, V} <- Props]};
props(Map) when is_map(Map) ->
    {ok, [{key(K), V} || {K, V} <- maps:to_list(Map)]};
props(_) ->
    error.

key(K) when is_atom(K) -> atom_to_binary(K, utf8);
key(K) -> K.

decode64(B) ->
    try
        base64:decode(B)
    catch
        _:_ -> error
    end.

check_opts(Opts) when is_map(Opts) ->
    maps:foreach(
        fun
            (attachments, V) when is_map(V) -> ok;
            (require, V) when V =:= any; V =:= all -> ok;
            (revoked, V) when is_map(V) -> ok;
            (Name, _) -> erlang:error({bad_option, Name})
        end,
        Opts
    );
check_opts(_) ->
    erlang:error(badarg).
