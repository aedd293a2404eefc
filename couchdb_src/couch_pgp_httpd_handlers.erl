%% @doc chttpd_handlers provider: the `/_pgp' endpoints. Every export is a hook.
-module(couch_pgp_httpd_handlers).

-include_lib("couch/include/couch_db.hrl").

-export([url_handler/1, db_handler/1, design_handler/1]).

-spec url_handler(binary()) -> fun((#httpd{}) -> term()) | no_match.
url_handler(<<"_pgp">>) -> fun couch_pgp_httpd:handle_pgp_req/1;
url_handler(_) -> no_match.

-spec db_handler(binary()) -> no_match.
db_handler(_) -> no_match.

-spec design_handler(binary()) -> no_match.
design_handler(_) -> no_match.
