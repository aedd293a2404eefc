%% @doc couch_pgp's counters (declared in priv/stats_descriptions.cfg, read through
%% `/_node/_local/_stats/couch_pgp').
-module(couch_pgp_stats).

-export([count/1]).

%% @doc Counts one event. A counter that cannot be updated (couch_stats not yet loaded its
%% descriptions) never fails the request that is being counted, so its result is ignored.
-spec count(atom()) -> ok.
count(Name) ->
    _ = couch_stats:increment_counter([couch_pgp, Name]),
    ok.
