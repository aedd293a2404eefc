%% @doc couch_db provider: in signed-only databases, a document is written only if it carries
%% a valid signature (couch_pgp:verify_doc/3) by a certificate registered to the writing
%% user (the `pgp_certs' list on the user's `_users' document). Every export is a hook.
%%
%% Runs on each shard copy of every write. Only interactive edits are checked: replication
%% (`new_edits=false', the replicator, internal shard sync) copies documents as they are, and
%% `_local' documents never reach this hook. Design documents are exempt (they are code,
%% written by admins).
-module(couch_pgp_couch_db).
-include_lib("couch/include/couch_db.hrl").

-export([before_doc_update/3]).

-spec before_doc_update(#doc{}, term(), atom()) -> [term()].
before_doc_update(#doc{id = <<"_design/", _/binary>>} = Doc, Db, Type) ->
    [Doc, Db, Type];
before_doc_update(#doc{} = Doc, Db, interactive_edit = Type) ->
    case get(io_priority) of
        {internal_repl, _} -> ok;
        {system, _} -> ok;
        _ -> maybe_verify(Doc, Db)
    end,
    [Doc, Db, Type];
before_doc_update(Doc, Db, Type) ->
    [Doc, Db, Type].

maybe_verify(Doc, Db) ->
    DbName = mem3:dbname(couch_db:name(Db)),
    case signed_db(DbName, Db) of
        false -> ok;
        true -> verify(Doc, DbName, couch_db:get_user_ctx(Db))
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

verify(#doc{id = Id} = Doc, DbName, #user_ctx{name = User}) when is_binary(User) ->
    Result =
        case couch_pgp_certs:registered(User) of
            [] -> {error, no_registered_certs};
            Certs ->
                case doc_ejson(Doc) of
                    {ok, Ejson} -> couch_pgp:verify_doc(Ejson, Certs);
                    {error, _} = Error -> Error
                end
        end,
    audit(User, DbName, Id, Result),
    case Result of
        {ok, _} ->
            couch_pgp_stats:count(docs_verified);
        {error, Reason} ->
            couch_pgp_stats:count(docs_refused),
            %% fabric passes only {forbidden, Msg} back from a shard (403).
            throw({forbidden, reason_text(Reason)})
    end;
verify(#doc{id = Id}, DbName, _) ->
    audit(null, DbName, Id, {error, no_user}),
    throw({forbidden, <<"Signed-only database: writes need an authenticated user.">>}).

%% The document as its author signed it: id, deletion, body, inline attachments.
doc_ejson(#doc{id = Id, deleted = Deleted, body = {Props}, atts = Atts}) ->
    case attachments(Atts, []) of
        {ok, AttProps} ->
            {ok, {[{<<"_id">>, Id}] ++
                  [{<<"_deleted">>, true} || Deleted] ++
                  Props ++
                  [{<<"_attachments">>, {AttProps}} || AttProps =/= []]}};
        {error, _} = Error ->
            Error
    end.

attachments([], Acc) ->
    {ok, lists:reverse(Acc)};
attachments([Att | Rest], Acc) ->
    Name = couch_att:fetch(name, Att),
    case couch_att:fetch(data, Att) of
        Data when is_binary(Data) ->
            Entry = {[{<<"content_type">>, couch_att:fetch(type, Att)},
                      {<<"data">>, base64:encode(Data)}]},
            attachments(Rest, [{Name, Entry} | Acc]);
        _StubOrStream ->
            %% Only inline attachment bytes are at hand here; see the README.
            {error, {attachment_content_missing, Name}}
    end.

reason_text(no_registered_certs) ->
    <<"Signed-only database: the writing user has no registered OpenPGP certificate "
      "(pgp_certs on the _users document).">>;
reason_text({attachment_content_missing, Name}) ->
    <<"Signed-only database: attachment '", Name/binary,
      "' must be sent inline (its content is covered by the signature).">>;
reason_text(Reason) ->
    iolist_to_binary(["Signed-only database: the document needs a valid signature by a "
                      "certificate registered to the writing user (",
                      io_lib:format("~p", [Reason]), ")."]).

%% Who, which document, what, the outcome; never the content.
audit(User, DbName, DocId, Result) ->
    Outcome = case Result of
        {ok, Fprs} -> io_lib:format("ok signers=~s", [lists:join(",", Fprs)]);
        {error, Reason} -> io_lib:format("refused reason=~p", [Reason])
    end,
    couch_log:notice("couch_pgp audit: signed_write user=~s db=~s doc=~s ~s",
                     [User, DbName, DocId, Outcome]).
