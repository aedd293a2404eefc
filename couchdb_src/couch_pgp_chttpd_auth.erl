%% @doc chttpd_auth provider: lets `/_pgp' through CouchDB's default "unknown `/_xxx' paths
%% are for admins" rule; couch_pgp_httpd checks who may do what. Only `authorize/1' is
%% exported: any other export would become an authentication hook.
-module(couch_pgp_chttpd_auth).
-include_lib("couch/include/couch_db.hrl").

-export([authorize/1]).

authorize(#httpd{path_parts = [<<"_pgp">> | _]} = Req) -> {decided, Req};
authorize(_) -> no_decision.
