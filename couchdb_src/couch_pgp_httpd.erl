%% @doc The `/_pgp' HTTP API.
%%
%% `GET /_pgp', without authentication: the server's identity certificate, so that clients
%% can pin its fingerprint before they log in.
-module(couch_pgp_httpd).
-include_lib("couch/include/couch_db.hrl").

-export([handle_pgp_req/1]).

handle_pgp_req(#httpd{method = Method, path_parts = [<<"_pgp">>]} = Req)
        when Method =:= 'GET'; Method =:= 'HEAD' ->
    couch_stats:increment_counter([couch_pgp, identity_requests]),
    case couch_pgp_keystore:identity() of
        {ok, #{cert := Cert, fingerprint := Fpr}} ->
            chttpd:send_json(Req, 200, {[
                {<<"couch_pgp">>, vsn()},
                {<<"fingerprint">>, Fpr},
                {<<"cert">>, Cert},
                {<<"profile">>, <<"rfc4880">>},
                {<<"encryption">>, [<<"seipdv1">>]},
                {<<"modes">>, [<<"identity">>]}
            ]});
        {error, _Reason} ->
            %% The reason is in the node's log; clients learn only that it is unavailable.
            chttpd:send_json(Req, 503, {[
                {<<"error">>, <<"pgp_unavailable">>},
                {<<"reason">>, <<"The server's OpenPGP key is not loaded.">>}
            ]})
    end;
handle_pgp_req(#httpd{path_parts = [<<"_pgp">>]} = Req) ->
    chttpd:send_method_not_allowed(Req, "GET,HEAD");
handle_pgp_req(Req) ->
    chttpd:send_json(Req, 404, {[
        {<<"error">>, <<"not_found">>},
        {<<"reason">>, <<"No such couch_pgp endpoint.">>}
    ]}).

vsn() ->
    case application:get_key(couch_pgp, vsn) of
        {ok, Vsn} -> list_to_binary(Vsn);
        undefined -> <<"unknown">>
    end.
