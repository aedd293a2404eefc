%% @doc couch_pgp sessions in a CouchDB node: issued at `POST /_pgp/session', opened from
%% the `X-PGP-Session' token on any node that shares the cluster secret.
-module(couch_pgp_tokens).

-export([issue/2, open/1, describe/2, sealable/1, still_sealable/1, rotate_secret/1, secret_offer/1, adopt_secret/2]).

%% @doc A new session for `User' with `ClientCert': `{ok, Token, Session}'. A certificate
%% that cannot be encrypted to (no encryption subkey, expired, revoked) is refused here:
%% every answer in the session would have to be encrypted to it.
-spec issue(binary(), binary()) ->
    {ok, binary(), couch_pgp_session:session()} | {error, couch_pgp_http_errors:reason()}.
issue(User, ClientCert) ->
    case {couch_pgp_keystore:identity(), couch_pgp_config:token_secret()} of
        {{ok, _}, {ok, Secret}} ->
            case usable_cert(ClientCert) of
                ok -> new_session(User, ClientCert, Secret);
                {error, _} = Error -> Error
            end;
        {{error, Why}, _} ->
            couch_log:warning("couch_pgp: no session issued, no identity key: ~p", [Why]),
            {error, unavailable};
        {_, {error, Why}} ->
            couch_log:warning("couch_pgp: no session issued, no token secret: ~p", [Why]),
            {error, unavailable}
    end.

usable_cert(ClientCert) ->
    case couch_pgp:import_cert(ClientCert) of
        {ok, Cert} ->
            case sealable(Cert) of
                ok -> ok;
                {error, Why} -> {error, couch_pgp_http_errors:from_cert(Why)}
            end;
        {error, Why} ->
            {error, couch_pgp_http_errors:from_cert(Why)}
    end.

new_session(User, ClientCert, Secret) ->
    Expires = erlang:system_time(second) + couch_pgp_config:session_lifetime(),
    UserId = <<"couch_pgp session for ", User/binary>>,
    case couch_pgp_session:new(User, ClientCert, Expires, UserId) of
        {ok, Session} ->
            couch_pgp_stats:count(sessions_created),
            {ok, couch_pgp_session:seal(Session, Secret), Session};
        {error, Why} ->
            %% The certificate was just checked: this is the node's own failure.
            couch_log:error("couch_pgp: session not created: ~p", [Why]),
            {error, internal}
    end.

%% @doc Whether answers can be encrypted to `Cert' now: a trial encryption of nothing (one
%% key agreement and the backend's generator: 0.93 ms for Cv25519 in one node), made when a
%% session is issued and for an encrypted login's certificate, so that no session starts and
%% no login runs whose answers could not be sealed (see still_sealable/1 for later requests).
-spec sealable(couch_pgp:cert()) -> ok | {error, couch_pgp:reason()}.
sealable(Cert) ->
    case couch_pgp:encrypt(<<>>, [Cert], #{armor => false}) of
        {ok, _} -> ok;
        {error, _} = Error -> Error
    end.

%% @doc Whether answers can still be encrypted to a session's certificate, checked before each
%% per-message request runs. The certificate passed sealable/1 when the session was issued
%% and a token's copy never changes, so only time (expiry) and the policy can have made it
%% unusable since; couch_pgp:encryptable_until/1 judges both, now, without a trial encryption
%% (measured in one node: 10 us against 0.93 ms).
-spec still_sealable(couch_pgp:cert()) -> ok | {error, couch_pgp:reason()}.
still_sealable(Cert) ->
    case couch_pgp:encryptable_until(Cert) of
        {ok, _} -> ok;
        {error, _} = Error -> Error
    end.

%% @doc The session a token stands for: from this node's cache, or opened and cached.
-spec open(binary()) ->
    {ok, couch_pgp_session:session()} | {error, bad_token | session_expired | session_revoked}.
open(Token) ->
    Now = erlang:system_time(second),
    Digest = crypto:hash(sha256, Token),
    case couch_pgp_cache:session(Digest, Now) of
        {ok, Session} ->
            {ok, Session};
        miss ->
            case couch_pgp_config:token_secret() of
                {ok, Secret} ->
                    case couch_pgp_session:open(Token, Secret, Now) of
                        {ok, Session} ->
                            couch_pgp_cache:put_session(Digest, Session,
                                                        couch_pgp_session:expires(Session)),
                            {ok, Session};
                        {error, expired} ->
                            {error, session_expired};
                        {error, bad_token} ->
                            retired_or_bad(Token)
                    end;
                {error, no_secret} ->
                    couch_log:warning("couch_pgp: session token refused: no token secret", []),
                    {error, bad_token}
            end
    end.

%% A token sealed under a secret the operator retired (rotate_secret/1) gets its own answer,
%% so that its holder knows to start a new session rather than suspect a broken node. Only
%% recognised, never opened for use: the retired key authenticates it and nothing more.
retired_or_bad(Token) ->
    case lists:any(fun(Key) -> sealed_under(Token, Key) end, couch_pgp_config:retired_secrets()) of
        true -> {error, session_revoked};
        false -> {error, bad_token}
    end.

sealed_under(Token, Key) ->
    %% Now = 0: an expired token sealed under a retired secret is still one of ours.
    case couch_pgp_session:open(Token, Key, 0) of
        {ok, _} -> true;
        {error, _} -> false
    end.

%% @doc Makes `NewSecret' this node's token secret: tokens sealed under the one before are
%% refused from now on (`session_revoked'), and the node forgets the sessions it cached.
%% The secret before is kept, derived, in `[couch_pgp] retired_secrets' (the last four) to
%% recognise its tokens. Run on every node (couch_pgp_keys_admin).
-spec rotate_secret(binary()) -> ok | {error, no_secret}.
rotate_secret(NewSecret) when byte_size(NewSecret) >= 32 ->
    case couch_pgp_config:token_secret() of
        {ok, Old} ->
            New = couch_pgp_session:derive_secret(NewSecret),
            case Old =:= New of
                true -> ok;
                false ->
                    Retired = lists:sublist([Old | couch_pgp_config:retired_secrets()], 4),
                    couch_pgp_config:set_token_secret(NewSecret, Retired),
                    couch_pgp_cache:forget_sessions(),
                    couch_pgp_audit:event(token_secret_rotated, [{node, node()}]),
                    ok
            end;
        {error, no_secret} = Error ->
            Error
    end.

%% @doc For a peer whose derived token key is `Theirs' (couch_pgp_key_sync): `same',
%% `{newer, Secret, Retired}' when theirs is one this node retired (the peer missed a
%% token-secret rotation), or `unknown'.
-spec secret_offer(binary()) -> same | {newer, binary(), [binary()]} | unknown.
secret_offer(Theirs) ->
    Retired = couch_pgp_config:retired_secrets(),
    case {couch_pgp_config:token_secret(), lists:member(Theirs, Retired),
          config:get("couch_pgp", "secret", undefined)} of
        {{ok, Theirs}, _, _} -> same;
        {{ok, _}, true, Secret} when is_list(Secret) -> {newer, list_to_binary(Secret), Retired};
        _ -> unknown
    end.

%% @doc Takes a peer's newer token secret (see secret_offer/1) and forgets cached sessions.
-spec adopt_secret(binary(), [binary()]) -> ok.
adopt_secret(Secret, Retired) ->
    couch_pgp_config:set_token_secret(Secret, Retired),
    couch_pgp_cache:forget_sessions(),
    couch_pgp_audit:event(token_secret_rotated, [{node, node()}, {caught_up, true}]),
    ok.

%% @doc What a client gets to know about its session: the session certificate, and a
%% statement binding it to the user, the client key and the expiry, signed by the server's
%% identity key (which the client pinned from `GET /_pgp'). A substituted session key has
%% no such signature.
-spec describe(binary() | undefined, couch_pgp_session:session()) ->
    {ok, {[{binary(), term()}]}} | {error, unavailable | internal}.
describe(Token, Session) ->
    case couch_pgp_keystore:identity() of
        {ok, #{key := Identity, fingerprint := IdFpr}} ->
            describe(Token, Session, Identity, IdFpr);
        {error, Why} ->
            %% The key was unloaded (switched off) since the session was opened.
            couch_log:warning("couch_pgp: session not described, no identity key: ~p", [Why]),
            {error, unavailable}
    end.

describe(Token, Session, Identity, IdFpr) ->
    SessionCert = couch_pgp_session:cert(Session),
    {ok, Statement} = couch_pgp:canonical_json({[
        {<<"v">>, 1},
        {<<"user">>, couch_pgp_session:user(Session)},
        {<<"session_fingerprint">>, couch_pgp:fingerprint(SessionCert)},
        {<<"client_fingerprint">>, couch_pgp:fingerprint(couch_pgp_session:client_cert(Session))},
        {<<"identity_fingerprint">>, IdFpr},
        {<<"expires">>, couch_pgp_session:expires(Session)}
    ]}),
    case couch_pgp:sign(Statement, Identity) of
        {ok, Sig} ->
            Channel = channel(Session, SessionCert),
            {ok, description(Token, Session, SessionCert, Statement, Sig, Channel)};
        {error, Why} ->
            couch_log:error("couch_pgp: session statement not signed: ~p", [Why]),
            {error, internal}
    end.

%% The channel keys, for the client only: encrypted to its certificate and signed by the
%% session key, which the identity-signed statement vouches for. A man in the middle can
%% neither read them (no client secret key) nor replace them (no session secret key).
channel(Session, SessionCert) ->
    case couch_pgp_session:channel_secret(Session) of
        undefined ->
            [];
        <<C2S:32/binary, S2C:32/binary>> ->
            {ok, Json} = couch_pgp:canonical_json({[
                {<<"v">>, 1},
                {<<"c2s">>, base64:encode(C2S)},
                {<<"s2c">>, base64:encode(S2C)},
                {<<"session_fingerprint">>, couch_pgp:fingerprint(SessionCert)},
                {<<"client_fingerprint">>, couch_pgp_session:client_fingerprint(Session)}
            ]}),
            case couch_pgp:encrypt(Json, [couch_pgp_session:client_cert(Session)],
                                   #{sign_with => couch_pgp_session:key(Session)}) of
                {ok, Msg} ->
                    [{<<"channel">>, Msg}];
                {error, Why} ->
                    %% Only a session made for a certificate that cannot be encrypted to
                    %% (issue/2 refuses those): it has no channel, and no answer either.
                    couch_log:warning("couch_pgp: session described without its channel, "
                                      "client certificate not usable: ~p", [Why]),
                    []
            end
    end.

description(Token, Session, SessionCert, Statement, Sig, Channel) ->
    {[{<<"ok">>, true}] ++
     [{<<"token">>, Token} || Token =/= undefined] ++
     [{<<"user">>, couch_pgp_session:user(Session)},
      {<<"expires">>, couch_pgp_session:expires(Session)},
      {<<"session_cert">>, SessionCert},
      {<<"statement">>, Statement},
      {<<"statement_signature">>, Sig}] ++
     Channel}.
