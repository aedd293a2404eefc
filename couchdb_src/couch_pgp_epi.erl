%% @doc couch_pgp's couch_epi plugin: the hooks it provides to CouchDB, and its supervisor.
%% Registered by `make install' in the release's `releases/sys.config'.
-module(couch_pgp_epi).
-behaviour(couch_epi_plugin).

-export([app/0, providers/0, services/0, data_subscriptions/0, data_providers/0,
         processes/0, notify/3]).

-spec app() -> couch_pgp.
app() ->
    couch_pgp.

-spec providers() -> [{atom(), module()}].
providers() ->
    [
        {chttpd, couch_pgp_chttpd},
        {chttpd_handlers, couch_pgp_httpd_handlers},
        {chttpd_auth, couch_pgp_chttpd_auth},
        {couch_db, couch_pgp_couch_db}
    ].

-spec services() -> [].
services() ->
    [].

-spec data_subscriptions() -> [].
data_subscriptions() ->
    [].

-spec data_providers() -> [].
data_providers() ->
    [].

%% Our supervisor runs under couch's secondary services (started before chttpd). A tuple
%% child spec: couch_epi only adds tuple specs.
-spec processes() -> [{atom(), [supervisor:child_spec()]}].
processes() ->
    [{couch_db_epi, [{couch_pgp_sup, {couch_pgp_node, start_link, []}, permanent, 5000,
                      supervisor, [couch_pgp_sup]}]}].

-spec notify(term(), term(), term()) -> ok.
notify(_Key, _Old, _New) ->
    ok.
