%% @doc couch_pgp's supervisor: the identity key store and the per-node caches.
%%
%% Inside CouchDB it is started by couch_pgp_node (from couch_pgp_epi's `processes/0`);
%% elsewhere, start it with the key store's options.
-module(couch_pgp_sup).
-behaviour(supervisor).

-export([start_link/1, start_link/2, init/1]).

%% @doc Starts the supervisor; `KeystoreOpts' as couch_pgp_keystore:start_link/1 takes them.
-spec start_link(couch_pgp_keystore:opts()) -> supervisor:startlink_ret().
start_link(KeystoreOpts) ->
    start_link(KeystoreOpts, []).

%% @doc As start_link/1, with `Extra' children started after the key store and the caches
%% (inside CouchDB: couch_pgp_switch, which loads the key when the plugin is enabled).
-spec start_link(couch_pgp_keystore:opts(), [supervisor:child_spec()]) ->
    supervisor:startlink_ret().
start_link(KeystoreOpts, Extra) ->
    supervisor:start_link({local, ?MODULE}, ?MODULE, {KeystoreOpts, Extra}).

%% @private
-spec init({couch_pgp_keystore:opts(), [supervisor:child_spec()]}) ->
    {ok, {supervisor:sup_flags(), [supervisor:child_spec()]}}.
init({KeystoreOpts, Extra}) ->
    Keystore = #{
        id => couch_pgp_keystore,
        start => {couch_pgp_keystore, start_link, [KeystoreOpts]},
        restart => permanent,
        shutdown => 5000,
        type => worker
    },
    Cache = #{
        id => couch_pgp_cache,
        start => {couch_pgp_cache, start_link, []},
        restart => permanent,
        shutdown => 5000,
        type => worker
    },
    {ok, {#{strategy => one_for_one, intensity => 5, period => 60}, [Keystore, Cache | Extra]}}.
