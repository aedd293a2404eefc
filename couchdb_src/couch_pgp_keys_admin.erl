%% @doc The operator's commands on keys over time (server admins only), each applied on
%% every node of the cluster:
%%
%% `POST /_pgp/rotate' `{"overlap": Seconds}': a new identity key, endorsed by the current
%% one; `GET /_pgp' announces the old key beside the new one for `overlap' seconds.
%% `POST /_pgp/revoke' `{"fingerprint": F, "reason": R, "message": M}': publishes a
%% revocation of the earlier identity key F (not the current one: rotate first).
%% `POST /_pgp/token_secret' `{}': a new token secret; every session token sealed before is
%% refused with `401 pgp_session_revoked'.
%%
%% Propagation: the node that gets the command prepares it (the new key under the shared
%% passphrase, or the revocation, or the secret), installs it on itself, then on every other
%% node of `mem3:nodes()' over Erlang distribution (erpc), and answers each node's outcome.
%% A node that was down or refused keeps its old state; the answer says which, and the
%% README "Keys over time" says how to bring it along (copy the key directory, or run the
%% command again: installing is idempotent).
-module(couch_pgp_keys_admin).
-include_lib("couch/include/couch_db.hrl").

-export([handle/2]).

%% Seven days: longer than any session, and time for clients that connect weekly.
-define(DEFAULT_OVERLAP, 604800).
-define(NODE_TIMEOUT_MS, 30000).

-spec handle(#httpd{}, binary()) -> {ok, term()}.
handle(#httpd{method = 'POST'} = Req, Command) ->
    ok = chttpd:verify_is_server_admin(Req),
    {Props} = chttpd:json_body_obj(Req),
    command(Req, Command, Props);
handle(Req, _Command) ->
    chttpd:send_method_not_allowed(Req, "POST").

command(Req, <<"rotate">>, Props) ->
    Overlap = case couch_util:get_value(<<"overlap">>, Props, ?DEFAULT_OVERLAP) of
        O when is_integer(O), O >= 0 -> O;
        _ -> bad_request(<<"overlap must be a whole number of seconds (0 or more).">>)
    end,
    case couch_pgp_keystore:rotate(Overlap) of
        {ok, #{old := Old, new := New} = Rotation} ->
            Nodes = on_every_node(couch_pgp_keystore, install, [Rotation]),
            {ok, #{history := History}} = identity_or_unavailable(),
            {ok, #{until := Until}} = couch_pgp_rotation:previous(History, Old),
            answer(Req, [{<<"fingerprint">>, New}, {<<"previous">>, Old},
                         {<<"until">>, Until}], Nodes);
        {error, Why} ->
            failed(rotate, Why)
    end;
command(Req, <<"revoke">>, Props) ->
    Fpr = case couch_util:get_value(<<"fingerprint">>, Props) of
        F when is_binary(F) -> string:uppercase(F);
        _ -> bad_request(<<"Name the key: \"fingerprint\".">>)
    end,
    Reason = case couch_util:get_value(<<"reason">>, Props, <<"unspecified">>) of
        <<"unspecified">> -> unspecified;
        <<"superseded">> -> superseded;
        <<"compromised">> -> compromised;
        <<"retired">> -> retired;
        _ -> bad_request(<<"reason: one of unspecified, superseded, compromised, retired.">>)
    end,
    Message = case couch_util:get_value(<<"message">>, Props, <<>>) of
        M when is_binary(M), byte_size(M) =< 1024 -> M;
        _ -> bad_request(<<"message: a string of at most 1024 bytes.">>)
    end,
    case couch_pgp_keystore:revocation(Fpr, Reason, Message) of
        {ok, #{revoked_at := At} = Revocation} ->
            Nodes = on_every_node(couch_pgp_keystore, install_revocation, [Revocation]),
            answer(Req, [{<<"fingerprint">>, Fpr}, {<<"reason">>, atom_to_binary(Reason)},
                         {<<"revoked_at">>, At}], Nodes);
        {error, current_identity} ->
            bad_request(<<"That is the current identity: rotate first (POST /_pgp/rotate), "
                          "then revoke it as the previous one.">>);
        {error, unknown_identity} ->
            bad_request(<<"No earlier identity key of this node has that fingerprint.">>);
        {error, Why} ->
            failed(revoke, Why)
    end;
command(Req, <<"token_secret">>, _Props) ->
    Secret = binary:encode_hex(crypto:strong_rand_bytes(32)),
    Nodes = on_every_node(couch_pgp_tokens, rotate_secret, [Secret]),
    answer(Req, [], Nodes).

%% This node first (a failure here stops the command), then the others in parallel.
on_every_node(M, F, A) ->
    case apply(M, F, A) of
        ok ->
            Others = [N || N <- mem3:nodes(), N =/= node()],
            Results = erpc:multicall(Others, M, F, A, ?NODE_TIMEOUT_MS),
            [{node(), ok} | lists:zip(Others, [outcome(R) || R <- Results])];
        {error, Why} ->
            failed(F, Why)
    end.

outcome({ok, ok}) -> ok;
outcome({ok, {error, Why}}) -> {error, Why};
outcome({error, {erpc, Why}}) -> {error, Why};
outcome({Class, Why}) -> {error, {Class, Why}}.

answer(Req, Members, Nodes) ->
    AllOk = lists:all(fun({_, R}) -> R =:= ok end, Nodes),
    chttpd:send_json(Req, 200, {[{<<"ok">>, AllOk}] ++ Members ++
        [{<<"nodes">>, {[{atom_to_binary(N), node_text(R)} || {N, R} <- Nodes]}}]}).

%% For the operator; the reasons are atoms or erpc's, never key material.
node_text(ok) -> <<"ok">>;
node_text({error, Why}) -> iolist_to_binary(io_lib:format("error: ~0p", [Why])).

identity_or_unavailable() ->
    case couch_pgp_keystore:identity() of
        {ok, _} = Ok -> Ok;
        {error, _} -> throw(couch_pgp_http_errors:to_chttpd(unavailable))
    end.

-spec failed(atom(), term()) -> no_return().
failed(What, Why) ->
    couch_log:error("couch_pgp: ~s failed: ~0p", [What, Why]),
    case Why of
        disabled -> throw(couch_pgp_http_errors:to_chttpd(unavailable));
        not_started -> throw(couch_pgp_http_errors:to_chttpd(unavailable));
        _ -> throw({error, iolist_to_binary(io_lib:format("couch_pgp: ~s failed on this node: ~0p; "
                                                         "see the log", [What, Why]))})
    end.

-spec bad_request(binary()) -> no_return().
bad_request(Msg) ->
    throw({bad_request, Msg}).
