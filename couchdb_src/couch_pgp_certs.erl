%% @doc `/_pgp/certs': users register their own long-lived certificates on their `_users'
%% document (field `pgp_certs'), which signed-only databases check signatures against.
%%
%% CouchDB 3.5 lets only admins edit `_users', so this endpoint writes on the user's behalf,
%% after the user proves they hold the certificate's secret key: the request carries a
%% detached signature by that key over the canonical JSON
%% `{"action":"register","fingerprint":F,"user":U}'. Without the proof, anyone could claim
%% someone else's signatures as their own.
%%
%% `DELETE /_pgp/certs/<fingerprint>[?revoked_at=<unix seconds>]' revokes one (a lost or
%% compromised key needs no proof: the user's own login is enough): the certificate moves
%% to `pgp_revoked_certs' with the revocation time (now, or the earlier time the user names:
%% when the key was lost). From then on interactive writes signed by it are refused; a
%% replicated revision signed by it counts only if its signature was made before that time
%% (README "Client certificates over time"). `GET /_pgp/certs/<fingerprint>' tells any
%% logged-in user whether a certificate is registered, revoked (since when) or unknown.
-module(couch_pgp_certs).
-include_lib("couch/include/couch_db.hrl").

-export([handle/2, handle_one/3, registered/1, revoked/1]).

-define(USERS_DB, <<"_users">>).
-define(REVOKED, <<"pgp_revoked_certs">>).

-spec handle(#httpd{}, binary()) -> {ok, term()}.
handle(#httpd{method = 'GET'} = Req, User) ->
    {Doc, Certs} = user_doc(User),
    chttpd:send_json(Req, 200, {[{<<"user">>, User},
                                 {<<"fingerprints">>, fingerprints(Certs)},
                                 {<<"revoked">>, [revoked_json(R) || R <- revoked_of(Doc)]}]});
handle(#httpd{method = 'POST'} = Req, User) ->
    {Props} = chttpd:json_body_obj(Req),
    Armored = couch_util:get_value(<<"cert">>, Props),
    Proof = couch_util:get_value(<<"signature">>, Props),
    is_binary(Armored) orelse refuse(no_cert),
    %% Without the proof, anyone could register someone else's key: the same refusal as a
    %% proof that does not verify.
    is_binary(Proof) orelse refuse(no_registration_proof),
    Cert = case couch_pgp:import_cert(Armored) of
        {ok, C} -> C;
        {error, R} -> refuse(couch_pgp_http_errors:from_cert(R))
    end,
    Fpr = couch_pgp:fingerprint(Cert),
    {ok, Statement} = couch_pgp:canonical_json({[{<<"action">>, <<"register">>},
                                                 {<<"fingerprint">>, Fpr},
                                                 {<<"user">>, User}]}),
    case couch_pgp:verify(Statement, Proof, [Cert]) of
        {ok, Fpr} ->
            ok;
        Other ->
            couch_pgp_audit:event(cert_refused, [{user, User}, {cert, Fpr},
                                                 {reason, proof_reason(Other)}]),
            refuse(bad_registration_proof)
    end,
    {Doc, Certs} = user_doc(User),
    %% A revocation is final: registering the certificate again would undo it.
    lists:keymember(Fpr, 1, [{F, A} || {C, A} <- revoked_of(Doc), F <- [couch_pgp:fingerprint(C)]])
        andalso refuse_revoked(User, Fpr),
    Certs1 = case lists:member(Fpr, fingerprints(Certs)) of
        true -> Certs;
        false -> Certs ++ [Cert]
    end,
    save(Doc, [{<<"pgp_certs">>, Certs1}]),
    couch_pgp_audit:event(cert_registered, [{user, User}, {cert, Fpr}]),
    chttpd:send_json(Req, 201, {[{<<"ok">>, true}, {<<"fingerprint">>, Fpr},
                                 {<<"fingerprints">>, fingerprints(Certs1)}]});
handle(Req, _User) ->
    chttpd:send_method_not_allowed(Req, "GET,POST").

%% Why a registration proof was refused, as a fixed code for the audit trail.
proof_reason({ok, _OtherSigner}) -> wrong_signer;
proof_reason({error, Reason}) when is_atom(Reason) -> Reason;
proof_reason(_) -> bad_proof.

%% @doc `DELETE /_pgp/certs/<fingerprint>': removes one of the user's certificates.
-spec handle_one(#httpd{}, binary(), binary()) -> {ok, term()}.
handle_one(#httpd{method = 'DELETE'} = Req, User, Fpr0) ->
    Fpr = string:uppercase(Fpr0),
    Now = erlang:system_time(second),
    At = case chttpd:qs_value(Req, "revoked_at") of
        undefined -> Now;
        V ->
            case catch list_to_integer(V) of
                T when is_integer(T), T >= 0, T =< Now -> T;
                _ -> throw({bad_request, <<"revoked_at: unix seconds, not in the future.">>})
            end
    end,
    {Doc, Certs} = user_doc(User),
    case lists:partition(fun(C) -> couch_pgp:fingerprint(C) =:= Fpr end, Certs) of
        {[], _} ->
            refuse(cert_not_registered);
        {[Cert | _], Kept} ->
            Revoked = revoked_of(Doc) ++ [{Cert, At}],
            save(Doc, [{<<"pgp_certs">>, Kept}, {?REVOKED, [revoked_entry(R) || R <- Revoked]}]),
            couch_pgp_audit:event(cert_revoked, [{user, User}, {cert, Fpr}, {revoked_at, At}]),
            chttpd:send_json(Req, 200, {[{<<"ok">>, true}, {<<"fingerprint">>, Fpr},
                                         {<<"revoked_at">>, At},
                                         {<<"fingerprints">>, fingerprints(Kept)}]})
    end;
handle_one(#httpd{method = 'GET'} = Req, _User, Fpr0) ->
    Fpr = string:uppercase(Fpr0),
    Status = case couch_pgp_cert_index:signers([Fpr]) of
        {[_], #{Fpr := At}} -> [{<<"status">>, <<"revoked">>}, {<<"revoked_at">>, At}];
        {[_], _} -> [{<<"status">>, <<"registered">>}];
        {[], _} -> [{<<"status">>, <<"unknown">>}]
    end,
    chttpd:send_json(Req, 200, {[{<<"fingerprint">>, Fpr} | Status]});
handle_one(Req, _User, _Fpr) ->
    chttpd:send_method_not_allowed(Req, "GET,DELETE").

%% An attempt to undo a revocation is a security event too.
-spec refuse_revoked(binary(), binary()) -> no_return().
refuse_revoked(User, Fpr) ->
    couch_pgp_audit:event(cert_refused, [{user, User}, {cert, Fpr}, {reason, cert_revoked}]),
    refuse(cert_revoked).

-spec refuse(couch_pgp_http_errors:reason()) -> no_return().
refuse(Reason) ->
    throw(couch_pgp_http_errors:to_chttpd(Reason)).

%% @doc The certificates registered to `User' (none when there is no `_users' document).
-spec registered(binary()) -> [binary()].
registered(User) ->
    case open_user_doc(User) of
        {ok, _Doc, Certs} -> Certs;
        missing -> []
    end.

%% @doc The certificates `User' revoked, each with the time from which it no longer counts.
-spec revoked(binary()) -> [{binary(), integer()}].
revoked(User) ->
    case open_user_doc(User) of
        {ok, Doc, _Certs} -> revoked_of(Doc);
        missing -> []
    end.

revoked_of(#doc{body = {Props}}) ->
    [{C, At} || {E} <- list(couch_util:get_value(?REVOKED, Props, [])),
                C <- [couch_util:get_value(<<"cert">>, E)], is_binary(C),
                At <- [couch_util:get_value(<<"revoked_at">>, E)], is_integer(At)].

list(L) when is_list(L) -> L;
list(_) -> [].

revoked_entry({Cert, At}) ->
    {[{<<"cert">>, Cert}, {<<"fingerprint">>, couch_pgp:fingerprint(Cert)}, {<<"revoked_at">>, At}]}.

revoked_json({Cert, At}) ->
    {[{<<"fingerprint">>, couch_pgp:fingerprint(Cert)}, {<<"revoked_at">>, At}]}.

user_doc(User) ->
    case open_user_doc(User) of
        {ok, Doc, Certs} ->
            {Doc, Certs};
        missing ->
            throw({forbidden, <<"pgp_no_user_doc">>,
                   <<"This user has no _users document to register certificates on "
                     "(server admins from the config have none).">>})
    end.

open_user_doc(User) ->
    case fabric:open_doc(?USERS_DB, <<"org.couchdb.user:", User/binary>>, [?ADMIN_CTX]) of
        {ok, #doc{body = {Props}} = Doc} ->
            {ok, Doc, [C || C <- couch_util:get_value(<<"pgp_certs">>, Props, []), is_binary(C)]};
        _ ->
            missing
    end.

save(#doc{body = {Props}} = Doc, Fields) ->
    Body = {lists:foldl(fun({K, _} = F, Acc) -> lists:keystore(K, 1, Acc, F) end, Props, Fields)},
    case fabric:update_doc(?USERS_DB, Doc#doc{body = Body}, [?ADMIN_CTX]) of
        {ok, _} -> ok;
        {accepted, _} -> ok;
        _ -> throw({conflict, <<"couch_pgp: the _users document changed meanwhile; retry.">>})
    end.

fingerprints(Certs) ->
    [F || C <- Certs, F <- [couch_pgp:fingerprint(C)], is_binary(F)].
