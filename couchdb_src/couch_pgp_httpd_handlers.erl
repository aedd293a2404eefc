%% @doc chttpd_handlers provider: the `/_pgp' endpoints. Every export is a hook.
-module(couch_pgp_httpd_handlers).

-export([url_handler/1, db_handler/1, design_handler/1]).

url_handler(<<"_pgp">>) -> fun couch_pgp_httpd:handle_pgp_req/1;
url_handler(_) -> no_match.

db_handler(_) -> no_match.

design_handler(_) -> no_match.
