%% @doc `[couch_pgp]' settings, read on use (config lookups are persistent_term reads), so
%% a change takes effect on the next request without a restart.
-module(couch_pgp_config).

-export([enabled/0, token_secret/0, retired_secrets/0, set_token_secret/2, session_lifetime/0, max_skew_ms/0, require_encryption/1,
         max_http_request_size/0, max_request_size/0, max_login_size/0]).

-define(DEFAULT_MAX_REQUEST, 64 * 1024 * 1024).
-define(DEFAULT_MAX_LOGIN, 64 * 1024).

%% @doc `[couch_pgp] enable' (default false): whether sessions, encrypted requests and the
%% identity key are on. See couch_pgp_switch for what stays in force when off.
-spec enabled() -> boolean().
enabled() ->
    config:get_boolean("couch_pgp", "enable", false).

%% @doc The key that seals session tokens: from `[couch_pgp] secret', else from
%% `[chttpd_auth] secret' (which every node of a cluster must already share for cookies).
-spec token_secret() -> {ok, binary()} | {error, no_secret}.
token_secret() ->
    case config:get("couch_pgp", "secret", undefined) of
        undefined ->
            case config:get("chttpd_auth", "secret", undefined) of
                undefined -> {error, no_secret};
                S -> {ok, couch_pgp_session:derive_secret(S)}
            end;
        S ->
            {ok, couch_pgp_session:derive_secret(S)}
    end.

%% @doc The derived keys of token secrets the operator retired, newest first
%% (`[couch_pgp] retired_secrets': hex, comma separated).
-spec retired_secrets() -> [binary()].
retired_secrets() ->
    [K || S <- string:split(config:get("couch_pgp", "retired_secrets", ""), ",", all),
          K <- [decode_hex(string:trim(S))], byte_size(K) =:= 32].

decode_hex(S) ->
    try binary:decode_hex(list_to_binary(S)) catch error:badarg -> <<>> end.

%% @doc Persists a new `[couch_pgp] secret' and the retired derived keys (this node only).
-spec set_token_secret(binary(), [binary()]) -> ok.
set_token_secret(Secret, Retired) ->
    ok = config:set("couch_pgp", "retired_secrets",
                    lists:flatten(lists:join(",", [binary_to_list(binary:encode_hex(K)) || K <- Retired])), true),
    ok = config:set("couch_pgp", "secret", binary_to_list(Secret), true).

%% @doc Seconds a couch_pgp session lasts (default: CouchDB's own session timeout).
-spec session_lifetime() -> pos_integer().
session_lifetime() ->
    Default = config:get_integer("chttpd_auth", "timeout", 600),
    max(1, config:get_integer("couch_pgp", "session_lifetime", Default)).

%% @doc How far an encrypted request's timestamp may be from the node's clock.
-spec max_skew_ms() -> pos_integer().
max_skew_ms() ->
    1000 * max(1, config:get_integer("couch_pgp", "max_clock_skew", 300)).

%% @doc Whether plaintext requests to this database (or to the node, for `undefined') are
%% refused: `[couch_pgp] require_encryption = true' for all, or the database listed in
%% `[couch_pgp] require_encryption_dbs' (comma separated).
-spec require_encryption(binary() | undefined) -> boolean().
require_encryption(Db) ->
    config:get_boolean("couch_pgp", "require_encryption", false) orelse
        (is_binary(Db) andalso
            lists:member(binary_to_list(Db),
                         [string:trim(S) || S <- string:split(
                             config:get("couch_pgp", "require_encryption_dbs", ""), ",", all)])).

%% @doc CouchDB's own bound on a request body as received (`[chttpd] max_http_request_size').
-spec max_http_request_size() -> non_neg_integer().
max_http_request_size() ->
    max(0, config:get_integer("chttpd", "max_http_request_size", 4294967296)).

%% @doc `[couch_pgp] max_request_size' (default 64 MiB): the largest plaintext an encrypted
%% request may decrypt and decompress to; never more than max_http_request_size/0, so an
%% encrypted request costs no more than the plaintext one CouchDB would accept.
-spec max_request_size() -> non_neg_integer().
max_request_size() ->
    min(max(0, config:get_integer("couch_pgp", "max_request_size", ?DEFAULT_MAX_REQUEST)),
        max_http_request_size()).

%% @doc `[couch_pgp] max_login_size' (default 64 KiB): the largest encrypted login, both as
%% received and decompressed; it is read before anyone is authenticated. Never more than
%% max_request_size/0.
-spec max_login_size() -> non_neg_integer().
max_login_size() ->
    min(max(0, config:get_integer("couch_pgp", "max_login_size", ?DEFAULT_MAX_LOGIN)),
        max_request_size()).
