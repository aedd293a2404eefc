%% @doc couch_pgp sessions in a CouchDB node: issued at `POST /_pgp/session', opened from
%% the `X-PGP-Session' token on any node that shares the cluster secret.
-module(couch_pgp_tokens).

-export([issue/2, open/1, describe/2]).

%% @doc A new session for `User' with `ClientCert': `{ok, Token, Session}'.
-spec issue(binary(), binary()) ->
    {ok, binary(), couch_pgp_session:session()} | {error, atom()}.
issue(User, ClientCert) ->
    case {couch_pgp_keystore:identity(), couch_pgp_config:token_secret()} of
        {{ok, _}, {ok, Secret}} ->
            Expires = erlang:system_time(second) + couch_pgp_config:session_lifetime(),
            UserId = <<"couch_pgp session for ", User/binary>>,
            case couch_pgp_session:new(User, ClientCert, Expires, UserId) of
                {ok, Session} ->
                    couch_pgp_stats:count(sessions_created),
                    {ok, couch_pgp_session:seal(Session, Secret), Session};
                {error, _} = Error ->
                    Error
            end;
        {{error, _}, _} ->
            {error, unavailable};
        {_, {error, _}} ->
            {error, unavailable}
    end.

%% @doc The session a token stands for: from this node's cache, or opened and cached.
-spec open(binary()) -> {ok, couch_pgp_session:session()} | {error, bad_token | expired}.
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
                        {error, _} = Error ->
                            Error
                    end;
                {error, no_secret} ->
                    {error, bad_token}
            end
    end.

%% @doc What a client gets to know about its session: the session certificate, and a
%% statement binding it to the user, the client key and the expiry, signed by the server's
%% identity key (which the client pinned from `GET /_pgp'). A substituted session key has
%% no such signature.
-spec describe(binary() | undefined, couch_pgp_session:session()) -> {[{binary(), term()}]}.
describe(Token, Session) ->
    {ok, #{key := Identity, fingerprint := IdFpr}} = couch_pgp_keystore:identity(),
    SessionCert = couch_pgp_session:cert(Session),
    {ok, Statement} = couch_pgp:canonical_json({[
        {<<"v">>, 1},
        {<<"user">>, couch_pgp_session:user(Session)},
        {<<"session_fingerprint">>, couch_pgp:fingerprint(SessionCert)},
        {<<"client_fingerprint">>, couch_pgp:fingerprint(couch_pgp_session:client_cert(Session))},
        {<<"identity_fingerprint">>, IdFpr},
        {<<"expires">>, couch_pgp_session:expires(Session)}
    ]}),
    {ok, Sig} = couch_pgp:sign(Statement, Identity),
    {[{<<"ok">>, true}] ++
     [{<<"token">>, Token} || Token =/= undefined] ++
     [{<<"user">>, couch_pgp_session:user(Session)},
      {<<"expires">>, couch_pgp_session:expires(Session)},
      {<<"session_cert">>, SessionCert},
      {<<"statement">>, Statement},
      {<<"statement_signature">>, Sig}]}.
