%% @doc The `/_pgp' HTTP API.
%%
%% `GET /_pgp', without authentication: the server's identity certificate, so that clients
%% can pin its fingerprint before they log in.
%% `POST /_pgp/rotate|revoke|token_secret' (server admins): couch_pgp_keys_admin.
%% `POST /_pgp/session' (logged-in users): a new couch_pgp session for the client
%% certificate in the body; `GET /_pgp/session': the session of the `X-PGP-Session' token.
%% The browser client and demo page: couch_pgp_static. `/_pgp/audit' (server admins):
%% couch_pgp_audit_httpd.
-module(couch_pgp_httpd).
-include_lib("couch/include/couch_db.hrl").

-export([handle_pgp_req/1]).

-spec handle_pgp_req(#httpd{}) -> {ok, term()}.
%% The audit trail is written whether the plugin is on or off, and readable either way.
handle_pgp_req(#httpd{path_parts = [<<"_pgp">>, <<"audit">> | _]} = Req) ->
    couch_pgp_audit_httpd:handle(Req);
handle_pgp_req(Req) ->
    %% Switched off, every /_pgp path says so (the static client files included).
    couch_pgp_config:enabled() orelse refuse(disabled),
    route(Req).

route(#httpd{method = Method, path_parts = [<<"_pgp">>]} = Req)
        when Method =:= 'GET'; Method =:= 'HEAD' ->
    couch_pgp_stats:count(identity_requests),
    case couch_pgp_keystore:identity() of
        {ok, #{cert := Cert, fingerprint := Fpr, history := History}} ->
            chttpd:send_json(Req, 200, {[
                {<<"couch_pgp">>, vsn()},
                {<<"fingerprint">>, Fpr},
                {<<"cert">>, Cert},
                {<<"profile">>, <<"rfc4880">>},
                {<<"encryption">>, [<<"seipdv1">>, <<"seipdv2">>]},
                {<<"modes">>, [<<"session">>, <<"channel">>]},
                %% Seconds: how long a session lasts, and how far a request's ts may be
                %% from the node's clock (clients with a skewed clock can tell why).
                {<<"session_lifetime">>, couch_pgp_config:session_lifetime()},
                {<<"max_clock_skew">>, couch_pgp_config:max_skew_ms() div 1000}
            %% Earlier keys in their overlap, endorsing their successors, and revocations
            %% (README "Keys over time").
            ] ++ couch_pgp_rotation:announce(History, erlang:system_time(second))});
        {error, Why} ->
            %% Clients learn only that it is unavailable; the node's log says why.
            couch_log:warning("couch_pgp: GET /_pgp without an identity key: ~p", [Why]),
            refuse(unavailable)
    end;
route(#httpd{path_parts = [<<"_pgp">>]} = Req) ->
    chttpd:send_method_not_allowed(Req, "GET,HEAD");
route(#httpd{method = 'POST', path_parts = [<<"_pgp">>, <<"session">>]} = Req) ->
    User = authenticated_user(Req),
    {Props} = chttpd:json_body_obj(Req),
    ClientCert = case proplists:get_value(<<"client_cert">>, Props) of
        C when is_binary(C) -> C;
        _ -> refuse(no_cert)
    end,
    case couch_pgp_tokens:issue(User, ClientCert) of
        {ok, Token, Session} ->
            Desc = described(couch_pgp_tokens:describe(Token, Session)),
            couch_pgp_audit:event(session_created,
                                  [{user, User},
                                   {client, couch_pgp:fingerprint(
                                              couch_pgp_session:client_cert(Session))}]),
            chttpd:send_json(Req, 201, Desc);
        {error, Reason} ->
            refuse(Reason)
    end;
route(#httpd{method = 'GET', path_parts = [<<"_pgp">>, <<"session">>]} = Req) ->
    User = authenticated_user(Req),
    Token = case chttpd:header_value(Req, "X-PGP-Session") of
        undefined -> refuse(no_session);
        T -> list_to_binary(T)
    end,
    case couch_pgp_tokens:open(Token) of
        {ok, Session} ->
            couch_pgp_session:user(Session) =:= User orelse refuse(wrong_user),
            chttpd:send_json(Req, 200, described(couch_pgp_tokens:describe(undefined, Session)));
        {error, Reason} ->
            refuse(Reason)
    end;
route(#httpd{path_parts = [<<"_pgp">>, <<"session">>]} = Req) ->
    chttpd:send_method_not_allowed(Req, "GET,POST");
%% The worked example of couch_pgp_request in a handler (see the README): who is asking,
%% and through which key. Encrypted requests get an encrypted answer without the handler
%% doing anything about it.
route(#httpd{method = Method, path_parts = [<<"_pgp">>, <<"whoami">>]} = Req)
        when Method =:= 'GET'; Method =:= 'POST' ->
    User = authenticated_user(Req),
    Client = case couch_pgp_request:client_fingerprint(Req) of
        {ok, Fpr} -> Fpr;
        {error, not_encrypted} -> null
    end,
    chttpd:send_json(Req, 200, {[
        {<<"user">>, User},
        {<<"encrypted">>, couch_pgp_request:is_encrypted(Req)},
        {<<"client_fingerprint">>, Client}
    ]});
route(#httpd{path_parts = [<<"_pgp">>, <<"certs">>]} = Req) ->
    couch_pgp_certs:handle(Req, authenticated_user(Req));
route(#httpd{path_parts = [<<"_pgp">>, <<"certs">>, Fpr]} = Req) ->
    couch_pgp_certs:handle_one(Req, authenticated_user(Req), Fpr);
route(#httpd{path_parts = [<<"_pgp">>, Command]} = Req)
        when Command =:= <<"rotate">>; Command =:= <<"revoke">>; Command =:= <<"token_secret">> ->
    couch_pgp_keys_admin:handle(Req, Command);
route(#httpd{path_parts = [<<"_pgp">>, <<"tunnel">>]} = Req) ->
    _ = authenticated_user(Req),
    couch_pgp_tunnel:handle(Req);
route(#httpd{path_parts = [<<"_pgp">>, Name]} = Req) ->
    couch_pgp_static:handle(Req, Name);
route(Req) ->
    chttpd:send_json(Req, 404, {[
        {<<"error">>, <<"not_found">>},
        {<<"reason">>, <<"No such couch_pgp endpoint.">>}
    ]}).

authenticated_user(#httpd{user_ctx = #user_ctx{name = Name}}) when is_binary(Name) ->
    Name;
authenticated_user(_) ->
    refuse(no_user).

described({ok, Desc}) -> Desc;
described({error, Reason}) -> refuse(Reason).

-spec refuse(couch_pgp_http_errors:reason()) -> no_return().
refuse(Reason) ->
    throw(couch_pgp_http_errors:to_chttpd(Reason)).

vsn() ->
    case application:get_key(couch_pgp, vsn) of
        {ok, Vsn} -> list_to_binary(Vsn);
        undefined -> <<"unknown">>
    end.
