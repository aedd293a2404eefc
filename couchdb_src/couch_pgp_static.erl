%% @doc The browser client and its demo page, served from `priv/www' by `/_pgp':
%%
%%   GET /_pgp/client.js     the client ES module (OpenPGP.js bundled in)
%%   GET /_pgp/client.d.ts   its TypeScript declarations
%%   GET /_pgp/demo          the demo page (demo.js, demo.css beside it)
%%   GET /_pgp/pouchdb.js    PouchDB (IndexedDB, HTTP, replication) as one ES module, for
%%                           the demo's offline editing and applications that want it
%%
%% A fixed table of names, never a path from the request, so nothing outside `priv/www' can
%% be asked for. No authentication: these are public files, as Fauxton's are.
-module(couch_pgp_static).
-include_lib("couch/include/couch_db.hrl").

-export([handle/2]).

-define(SECURITY_HEADERS, [
    {"X-Content-Type-Options", "nosniff"},
    {"Cache-Control", "no-cache"},
    {"Referrer-Policy", "no-referrer"}
]).
%% The demo runs only its own scripts and styles and talks only to this origin.
-define(PAGE_CSP, "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
                  "img-src 'self' data:; form-action 'none'; base-uri 'none'; frame-ancestors 'none'").

-spec handle(#httpd{}, binary()) -> {ok, term()}.
handle(#httpd{method = Method} = Req, Name) when Method =:= 'GET'; Method =:= 'HEAD' ->
    case file_of(Name) of
        {ok, File, Type, Extra} ->
            case file:read_file(filename:join([code:priv_dir(couch_pgp), "www", File])) of
                {ok, Bin} ->
                    chttpd:send_response(Req, 200,
                                         [{"Content-Type", Type} | Extra ++ ?SECURITY_HEADERS], Bin);
                {error, Reason} ->
                    couch_log:error("couch_pgp: cannot read priv/www/~s: ~p", [File, Reason]),
                    chttpd:send_json(Req, 404, {[
                        {<<"error">>, <<"not_found">>},
                        {<<"reason">>, <<"The couch_pgp browser client is not installed on this node.">>}
                    ]})
            end;
        error ->
            chttpd:send_json(Req, 404, {[
                {<<"error">>, <<"not_found">>},
                {<<"reason">>, <<"No such couch_pgp endpoint.">>}
            ]})
    end;
handle(Req, _Name) ->
    chttpd:send_method_not_allowed(Req, "GET,HEAD").

file_of(<<"client.js">>) -> {ok, "couch_pgp.js", "text/javascript; charset=utf-8", []};
file_of(<<"client.d.ts">>) -> {ok, "couch_pgp.d.ts", "text/plain; charset=utf-8", []};
file_of(<<"demo">>) ->
    {ok, "demo.html", "text/html; charset=utf-8",
     [{"Content-Security-Policy", ?PAGE_CSP}, {"X-Frame-Options", "DENY"}]};
file_of(<<"demo.js">>) -> {ok, "demo.js", "text/javascript; charset=utf-8", []};
file_of(<<"pouchdb.js">>) -> {ok, "pouchdb.js", "text/javascript; charset=utf-8", []};
file_of(<<"demo.css">>) -> {ok, "demo.css", "text/css; charset=utf-8", []};
file_of(_) -> error.
