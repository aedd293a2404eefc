%% @doc For your own chttpd handlers: what couch_pgp knows about the current request.
%%
%% An encrypted request reaches a handler already decrypted (read its body with
%% `chttpd:json_body/1' as usual), and whatever the handler sends with `chttpd:send_json/3'
%% or `chttpd:send_response/4' is encrypted to the client on the way out. These functions
%% tell the handler whether that is happening and with whom.
-module(couch_pgp_request).
-include_lib("couch/include/couch_db.hrl").

-export([is_encrypted/1, client_cert/1, client_fingerprint/1, session_user/1]).

%% @doc Whether this request arrived encrypted (and its response will be).
-spec is_encrypted(#httpd{}) -> boolean().
is_encrypted(#httpd{}) ->
    couch_pgp_context:is_encrypted().

%% @doc The certificate of the client that signed this request.
-spec client_cert(#httpd{}) -> {ok, binary()} | {error, not_encrypted}.
client_cert(#httpd{}) ->
    case couch_pgp_context:client_cert() of
        Cert when is_binary(Cert) -> {ok, Cert};
        undefined -> {error, not_encrypted}
    end.

%% @doc Its fingerprint.
-spec client_fingerprint(#httpd{}) -> {ok, binary()} | {error, not_encrypted}.
client_fingerprint(Req) ->
    case client_cert(Req) of
        {ok, Cert} -> {ok, couch_pgp:fingerprint(Cert)};
        Error -> Error
    end.

%% @doc The CouchDB user the couch_pgp session belongs to (couch_pgp_chttpd_auth has
%% already checked that it is the authenticated user).
-spec session_user(#httpd{}) -> {ok, binary()} | {error, not_encrypted}.
session_user(#httpd{}) ->
    case couch_pgp_context:user() of
        User when is_binary(User) -> {ok, User};
        undefined -> {error, not_encrypted}
    end.
