%% @doc couch_db provider: the rules couch_pgp puts on writes, checked in CouchDB's
%% `before_doc_update' hook. Every export is a hook.
%%
%% The hook runs on each shard copy, once per revision written, whatever the write path:
%% `PUT'/`POST'/`DELETE'/`COPY', `_bulk_docs', attachment `PUT'/`DELETE', multipart, and
%% replicated writes (`new_edits=false', the replicator, read repair). So checking here, and
%% for every `UpdateType', covers every path, and every revision: a non-winning revision, a
%% conflict branch or a tombstone is checked exactly like a winning one.
%%
%% <ul>
%% <li>Signed-only databases: each revision must carry a valid signature
%%     (couch_pgp:verify_doc/2). An interactive edit (`interactive_edit') must be signed by a
%%     certificate registered to the writing user. A replicated revision
%%     (`replicated_changes': its writer is a replication job, usually not the author) must be
%%     signed by a certificate registered to some user of this server
%%     (couch_pgp_cert_index).</li>
%% <li>`_users': the `pgp_certs' field changes only through `/_pgp/certs' (which writes with
%%     an admin context) or by an admin (couch_pgp_users_db).</li>
%% </ul>
%%
%% Not checked, and why:
%% <ul>
%% <li>CouchDB's internal shard sync (`io_priority' `{internal_repl, _}'): it copies between
%%     copies of one shard revisions that each got onto a copy through this hook.</li>
%% <li>Design documents: code, not data, and CouchDB lets only database admins write them
%%     (couch_db:validate_doc_update/3 checks that on every path, replicated ones too).</li>
%% <li>`_local' documents never reach this hook (couch_db partitions them out before it):
%%     they are never replicated and hold checkpoints, not data.</li>
%% <li>`_purge' removes revisions without writing any, so it cannot add an unsigned one.</li>
%% </ul>
-module(couch_pgp_couch_db).
-include_lib("couch/include/couch_db.hrl").

-export([before_doc_update/3]).

-define(USERS_DB, <<"_users">>).

-type mode() :: interactive | replicated.

-spec before_doc_update(#doc{}, term(), atom()) -> [term()].
before_doc_update(#doc{id = <<"_design/", _/binary>>} = Doc, Db, Type) ->
    [Doc, Db, Type];
before_doc_update(#doc{} = Doc, Db, Type) ->
    case get(io_priority) of
        {internal_repl, _} -> [Doc, Db, Type];
        _ -> [check(Doc, Db, mode(Type)), Db, Type]
    end.

%% Anything but an interactive edit is held to the replicated rule, which never trusts the
%% writer.
mode(interactive_edit) -> interactive;
mode(_) -> replicated.

check(Doc, Db, Mode) ->
    case mem3:dbname(couch_db:name(Db)) of
        ?USERS_DB ->
            ok = couch_pgp_users_db:check(Doc, Db),
            Doc;
        DbName ->
            case signed_db(DbName, Db) of
                false -> Doc;
                true -> verify(Doc, DbName, couch_db:get_user_ctx(Db), Mode, Db)
            end
    end.

signed_db(<<"_", _/binary>>, _Db) ->
    false;
signed_db(DbName, Db) ->
    Listed = [string:trim(S) || S <- string:split(config:get("couch_pgp", "signed_dbs", ""), ",", all)],
    lists:member(binary_to_list(DbName), Listed) orelse
        begin
            {SecProps} = couch_db:get_security(Db),
            case couch_util:get_value(<<"couch_pgp">>, SecProps) of
                {PgpProps} -> couch_util:get_value(<<"signed">>, PgpProps) =:= true;
                _ -> false
            end
        end.

verify(#doc{id = Id}, DbName, #user_ctx{name = User}, interactive, _Db) when not is_binary(User) ->
    audit(null, DbName, Id, interactive, {error, no_user}),
    couch_pgp_stats:count(docs_refused),
    throw({forbidden, reason_text(no_user, interactive)});
verify(#doc{id = Id} = Doc0, DbName, #user_ctx{name = User}, Mode, Db) ->
    {Doc, Result} =
        case with_attachment_contents(Doc0, Db) of
            {ok, Doc1, Contents} ->
                Ejson = doc_ejson(Doc1, Contents),
                {Doc1,
                 case certs(Mode, User, Ejson) of
                     {[], _} when Mode =:= interactive -> {error, no_registered_certs};
                     {Certs, Revoked} -> couch_pgp:verify_doc(Ejson, Certs, #{revoked => Revoked})
                 end};
            {error, _} = Error ->
                {Doc0, Error}
        end,
    audit(User, DbName, Id, Mode, Result),
    case Result of
        {ok, _} ->
            couch_pgp_stats:count(docs_verified),
            Doc;
        {error, Reason} ->
            couch_pgp_stats:count(docs_refused),
            %% fabric passes only {forbidden, Msg} back from a shard (403).
            throw({forbidden, reason_text(Reason, Mode)})
    end.

%% Whose certificates count: the writer's own for an interactive edit (a revoked one no
%% longer: the write happens now, after the revocation); for a replicated revision, whoever
%% registered the certificates its `pgp_signatures' name, a revoked one for signatures made
%% before its revocation time (README "Client certificates over time").
certs(interactive, User, _Ejson) ->
    {couch_pgp_certs:registered(User), #{}};
certs(replicated, _User, Ejson) ->
    couch_pgp_cert_index:signers(signers(Ejson)).

signers({Props}) ->
    case couch_util:get_value(<<"pgp_signatures">>, Props) of
        Sigs when is_list(Sigs) ->
            lists:usort([string:uppercase(S) || {SigProps} <- Sigs,
                                                S <- [couch_util:get_value(<<"signer">>, SigProps)],
                                                is_binary(S)]);
        _ ->
            []
    end.

%% The document as its author signed it: id, deletion, body, attachments by content.
doc_ejson(#doc{id = Id, deleted = Deleted, body = {Props}}, Contents) ->
    AttProps = [{Name, {[{<<"content_type">>, Type}, {<<"data">>, base64:encode(Bin)}]}}
                || {Name, Type, Bin} <- Contents],
    {[{<<"_id">>, Id}] ++
     [{<<"_deleted">>, true} || Deleted] ++
     Props ++
     [{<<"_attachments">>, {AttProps}} || AttProps =/= []]}.

%% The signature covers attachments by content, so every attachment's bytes must be at hand:
%% inline data (base64 in the JSON); a multipart part of known length (the replicator sends
%% attachments so), read here and handed on to CouchDB as a binary; or a stub, whose bytes are
%% read from the revision it refers to on this shard copy (the replicator sends unchanged
%% attachments as stubs; an interactive update may too). A standalone attachment PUT carries
%% the old signature, which does not cover the new attachment, so it never verifies. Each
%% attachment read is held in memory once, so it is capped at `[couchdb] max_document_size',
%% the bound inline attachments already have.
with_attachment_contents(#doc{atts = []} = Doc, _Db) ->
    {ok, Doc, []};
with_attachment_contents(#doc{atts = Atts} = Doc, Db) ->
    Cap = config:get_integer("couchdb", "max_document_size", 8000000),
    try
        {Atts1, Contents} = lists:unzip([attachment_content(Att, Doc, Db, Cap) || Att <- Atts]),
        {ok, Doc#doc{atts = Atts1}, Contents}
    catch
        throw:{attachment_content_missing, _} = Missing -> {error, Missing}
    end.

attachment_content(Att, Doc, Db, Cap) ->
    [Name, Type, Data, Len, Enc] = couch_att:fetch([name, type, data, att_len, encoding], Att),
    {Att1, Type1, Stored} =
        case Data of
            Bin when is_binary(Bin) ->
                {Att, Type, {Bin, Enc}};
            Fun when is_function(Fun, 0), is_integer(Len), Len =< Cap ->
                Read = read_exactly(Name, Fun, Len, []),
                {couch_att:store(data, Read, Att), Type, {Read, Enc}};
            {stream, _} when is_integer(Len), Len =< Cap ->
                %% Already stored (a standalone attachment PUT carries the others so).
                {Att, Type, {couch_att:to_binary(Att), Enc}};
            stub ->
                %% CouchDB replaces the stub by the stored attachment, content type included.
                {StoredType, Content} = stored_attachment(Att, Doc, Db, Cap),
                {Att, StoredType, Content};
            _ ->
                throw({attachment_content_missing, Name})
        end,
    {Att1, {Name, Type1, decode(Name, Stored)}}.

%% A streamed attachment's reader gives binaries or iolists, until `Len' bytes in all.
read_exactly(_Name, _Fun, 0, Acc) ->
    iolist_to_binary(lists:reverse(Acc));
read_exactly(Name, Fun, Left, Acc) when Left > 0 ->
    case iolist_to_binary(Fun()) of
        <<>> -> throw({attachment_content_missing, Name});
        Chunk -> read_exactly(Name, Fun, Left - byte_size(Chunk), [Chunk | Acc])
    end;
read_exactly(Name, _Fun, _Overrun, _Acc) ->
    throw({attachment_content_missing, Name}).

%% The bytes of the attachment a stub refers to: in the nearest revision of the document's
%% own history stored on this shard copy that has it (same name, and same revpos when the
%% stub gives one), as CouchDB itself fills stubs in.
stored_attachment(Stub, #doc{id = Id, revs = {Pos, RevIds}}, Db, Cap) ->
    [Name, RevPos] = couch_att:fetch([name, revpos], Stub),
    History = [{Pos - I, R} || {I, R} <- lists:zip(lists:seq(0, length(RevIds) - 1), RevIds)],
    {ok, Found} = couch_db:open_doc_revs(Db, Id, History, []),
    Matching = [A || {ok, #doc{atts = As}} <- Found, A <- As,
                     couch_att:fetch(name, A) =:= Name,
                     not is_integer(RevPos) orelse couch_att:fetch(revpos, A) =:= RevPos],
    case Matching of
        [A | _] ->
            case couch_att:fetch(att_len, A) of
                L when is_integer(L), L =< Cap ->
                    {couch_att:fetch(type, A), {couch_att:to_binary(A), couch_att:fetch(encoding, A)}};
                _ ->
                    throw({attachment_content_missing, Name})
            end;
        [] ->
            throw({attachment_content_missing, Name})
    end.

decode(_Name, {Bin, identity}) ->
    Bin;
decode(Name, {Bin, gzip}) ->
    try
        zlib:gunzip(Bin)
    catch
        error:_ -> throw({attachment_content_missing, Name})
    end;
decode(Name, _) ->
    throw({attachment_content_missing, Name}).

%% A closed mapping: the client sees one of these fixed texts, never an internal term.
-spec reason_text(term(), mode()) -> binary().
reason_text(no_user, _) ->
    <<"Signed-only database: writes need an authenticated user.">>;
reason_text(no_registered_certs, _) ->
    <<"Signed-only database: the writing user has no registered OpenPGP certificate "
      "(pgp_certs on the _users document).">>;
reason_text({attachment_content_missing, _}, _) ->
    <<"Signed-only database: an attachment's content is not at hand to check the "
      "signature against (send it inline, or as a stub of an attachment stored in the "
      "document's previous revision; at most max_document_size).">>;
reason_text(unsigned, _) ->
    <<"Signed-only database: the document has no pgp_signatures.">>;
reason_text(unknown_signer, interactive) ->
    <<"Signed-only database: the document needs a valid signature by a certificate "
      "registered to the writing user.">>;
reason_text(unknown_signer, replicated) ->
    <<"Signed-only database: a replicated revision needs a valid signature by a "
      "certificate registered to a user of this server.">>;
reason_text(signed_after_revocation, _) ->
    <<"Signed-only database: the signing certificate was revoked by its owner before this "
      "signature was made.">>;
reason_text(bad_signature, _) ->
    <<"Signed-only database: a signature does not verify (the document differs from what "
      "was signed).">>;
reason_text(malformed_signatures, _) ->
    <<"Signed-only database: pgp_signatures must be a list of {\"signer\", \"sig\"}.">>;
reason_text({invalid_json, _}, _) ->
    <<"Signed-only database: the document has no RFC 8785 canonical form, so it cannot "
      "be signed.">>;
reason_text(Reason, _) when Reason =:= expired; Reason =:= not_yet_valid;
                            Reason =:= revoked; Reason =:= policy_rejected ->
    <<"Signed-only database: the signing certificate is expired, revoked or not yet "
      "valid, or its algorithms are refused by policy.">>;
reason_text(_, _) ->
    <<"Signed-only database: the document's signature could not be verified.">>.

%% A fixed code for the log: which rule refused, never content.
reason_code({attachment_content_missing, _}) -> attachment_content_missing;
reason_code({invalid_json, Why}) when is_atom(Why) -> ["invalid_json_", atom_to_list(Why)];
reason_code(Reason) when is_atom(Reason) -> Reason.

%% Who, which document, what, the outcome; never the content.
audit(User, DbName, DocId, Mode, {ok, Fprs}) ->
    couch_pgp_audit:event(signed_doc_accepted, [{user, printable(User)}, {db, DbName},
                                                {doc, DocId}, {signers, Fprs}, {mode, Mode}]);
audit(User, DbName, DocId, Mode, {error, Reason}) ->
    couch_pgp_audit:event(signed_doc_refused, [{user, printable(User)}, {db, DbName},
                                               {doc, DocId},
                                               {reason, code_text(reason_code(Reason))},
                                               {mode, Mode}]).

code_text(Code) when is_atom(Code) -> Code;
code_text(Code) -> iolist_to_binary(Code).

printable(User) when is_binary(User) -> User;
printable(_) -> <<"null">>.
