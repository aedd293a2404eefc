%% @doc The `_users' database side of couch_pgp: the `pgp_certs' field (the certificates
%% signed-only databases trust for a user) changes only through `/_pgp/certs', which checks
%% that the user holds the certificate's key, or by an admin.
%%
%% Without this, a user allowed to edit their own `_users' document (CouchDB allows it for
%% every field but `roles') could add someone else's certificate there, with no proof of
%% possession, and then write that person's signed documents as their own.
%%
%% How `/_pgp/certs' gets through: it writes with CouchDB's admin context, and the #user_ctx
%% on the shard's Db handle here is the writer's, so its write is an admin write. (A marker
%% in the HTTP process's dictionary would not do: this hook runs in fabric's worker on each
%% shard copy.) Admin changes are allowed and each one leaves an audit line. Server admins
%% and `_users' database admins count as admins: they can already set any user's roles.
-module(couch_pgp_users_db).
-include_lib("couch/include/couch_db.hrl").

-export([check/2]).

-define(FIELD, <<"pgp_certs">>).
%% Revocations (couch_pgp_certs) are guarded the same way: removing one would make the
%% revoked certificate count again.
-define(REVOKED_FIELD, <<"pgp_revoked_certs">>).

%% @doc Called by couch_pgp_couch_db's before_doc_update for each revision written to
%% `_users'. Compares the revision's `pgp_certs' with the current winning revision on this
%% shard copy (what authentication and couch_pgp_certs:registered/1 read); throws
%% `{forbidden, Msg}' when a non-admin changes it. Any new revision, winning or not, counts:
%% a conflict branch could later become the winner.
-spec check(#doc{}, term()) -> ok.
check(#doc{id = Id} = Doc, Db) ->
    case certs_of(Doc) =:= stored_certs(Db, Id) of
        true ->
            ok;
        false ->
            #user_ctx{name = Writer} = couch_db:get_user_ctx(Db),
            case couch_db:is_admin(Db) of
                true ->
                    audit(Writer, Id, allowed),
                    ok;
                false ->
                    audit(Writer, Id, refused),
                    throw({forbidden,
                           <<"pgp_certs can only be changed through /_pgp/certs (which checks "
                             "that you hold the certificate's key) or by an admin.">>})
            end
    end.

stored_certs(Db, Id) ->
    %% Read as admin: the writer may not be allowed to read the document (another user's),
    %% and CouchDB refuses such a write later anyway; here only the field matters.
    {ok, AdminDb} = couch_db:set_user_ctx(Db, ?ADMIN_USER),
    case couch_db:open_doc(AdminDb, Id, [ejson_body]) of
        {ok, Stored} -> certs_of(Stored);
        {not_found, _} -> {[], []}
    end.

%% A deleted revision has no certificates; an absent field is the same as an empty list.
certs_of(#doc{deleted = true}) ->
    {[], []};
certs_of(#doc{body = {Props}}) ->
    {couch_util:get_value(?FIELD, Props, []), couch_util:get_value(?REVOKED_FIELD, Props, [])}.

audit(Writer, Id, Outcome) ->
    couch_pgp_audit:event(pgp_certs_change, [{outcome, Outcome}, {by, writer(Writer)},
                                             {doc, Id}]).

%% `_internal' is an admin context with no user name: couch_pgp's own /_pgp/certs (which
%% logs its own `cert registered' line naming the user) or another part of CouchDB.
writer(Name) when is_binary(Name) -> Name;
writer(_) -> <<"_internal">>.
