%% @doc Encrypted-session tokens: everything a node needs to serve a couch_pgp session,
%% sealed so that any node of the cluster can open it and no client can read or forge it.
%%
%% A session is made by one node at `POST /_pgp/session': a fresh session key pair for the
%% server side, bound to a CouchDB user and a client certificate, with an expiry. Instead of
%% storing it, the node seals it into the token it hands to the client: AES-256-GCM under a
%% key derived from the cluster-wide secret, with the token version as associated data. Any
%% node holding the same secret opens the token, checks its expiry, and loads the session
%% key (cached per node by token digest, see couch_pgp_cache).
%%
%% A session also has channel keys (couch_pgp_channel): 64 random bytes, sealed into the token
%% beside the session key, so that any node can open the session's channel too. Tokens made
%% before channels existed open as sessions without one.
-module(couch_pgp_session).

-export([new/4, seal/2, open/3, cert/1, key/1, user/1, client_cert/1, client_fingerprint/1,
         expires/1, channel/1, channel_secret/1, derive_secret/1]).
-export_type([session/0]).

-define(AAD, <<"couch_pgp session token v1">>).
-define(VERSION, 1).
%% The sealed term's own version: 2 adds the channel secret.
-define(TERM_VERSION, 2).

-record(session, {
    key :: couch_pgp:key(),
    user :: binary(),
    client_cert :: couch_pgp:cert(),
    client_fingerprint :: couch_pgp:fingerprint(),
    expires :: integer(),
    %% The channel keys and their secret bytes (for the token); undefined for old tokens.
    channel :: {couch_pgp_channel:keys(), binary()} | undefined
}).
-opaque session() :: #session{}.

%% @doc A new session for `User' talking with the holder of `ClientCert', until `Expires'
%% (unix seconds) or until the certificate can no longer be encrypted to, whichever comes
%% first: a session never outlives its client's certificate, in either mode (the channel
%% mode encrypts nothing to the certificate after the session starts, so it would not notice).
-spec new(binary(), couch_pgp:cert(), integer(), binary()) ->
    {ok, session()} | {error, couch_pgp:reason()}.
new(User, ClientCert, Wanted, ServerUserId) when is_binary(User), is_integer(Wanted) ->
    case import_with_deadline(ClientCert, Wanted) of
        {ok, Cert, Expires} ->
            Lifetime = max(1, Expires - erlang:system_time(second)),
            case couch_pgp:generate_key(#{user_id => ServerUserId, expires_in => Lifetime}) of
                {ok, Key} ->
                    case couch_pgp_channel:new() of
                        {ok, Keys, ChannelSecret} ->
                            {ok, #session{key = Key, user = User, client_cert = Cert,
                                          client_fingerprint = couch_pgp:fingerprint(Cert),
                                          expires = Expires, channel = {Keys, ChannelSecret}}};
                        {error, _} = Error ->
                            Error
                    end;
                {error, _} = Error ->
                    Error
            end;
        {error, _} = Error ->
            Error
    end.

import_with_deadline(ClientCert, Wanted) ->
    case couch_pgp:import_cert(ClientCert) of
        {ok, Cert} ->
            case couch_pgp:encryptable_until(Cert) of
                {ok, never} -> {ok, Cert, Wanted};
                {ok, Until} -> {ok, Cert, min(Wanted, Until)};
                {error, _} = Error -> Error
            end;
        {error, _} = Error ->
            Error
    end.

%% @doc The token for `Session' under the 32-byte `Secret' (see derive_secret/1).
-spec seal(session(), binary()) -> binary().
seal(#session{key = Key, user = User, client_cert = Cert, expires = Expires,
              channel = Channel}, Secret) ->
    %% The session secret leaves the NIF only here, protected by a passphrase that is itself
    %% random and sealed beside it: the token is the only place it exists outside memory.
    %% A 192-bit random passphrase needs no stretching, so the export uses the least S2K
    %% (the default one cost ~150 ms here and again on every node that opened the token).
    Pass = base64:encode(crypto:strong_rand_bytes(24)),
    {ok, Exported} = couch_pgp:export_secret(Key, Pass, #{random_passphrase => true}),
    ChannelSecret = case Channel of
        {_Keys, S} -> S;
        undefined -> undefined
    end,
    Plain = term_to_binary({?TERM_VERSION, User, Cert, Expires, Pass, Exported, ChannelSecret}),
    IV = crypto:strong_rand_bytes(12),
    {Cipher, Tag} = crypto:crypto_one_time_aead(aes_256_gcm, Secret, IV, Plain, ?AAD, true),
    base64url(<<?VERSION, IV/binary, Tag/binary, Cipher/binary>>).

%% @doc Opens a token: `{ok, Session}', or `{error, bad_token | expired}'. `Now' in unix
%% seconds.
-spec open(binary(), binary(), integer()) -> {ok, session()} | {error, bad_token | expired}.
open(Token, Secret, Now) ->
    case unbase64url(Token) of
        <<?VERSION, IV:12/binary, Tag:16/binary, Cipher/binary>> ->
            case crypto:crypto_one_time_aead(aes_256_gcm, Secret, IV, Cipher, ?AAD, Tag, false) of
                error -> {error, bad_token};
                Plain -> unseal(Plain, Now)
            end;
        _ ->
            {error, bad_token}
    end.

%% @doc The session key's certificate, for the client.
-spec cert(session()) -> couch_pgp:cert().
cert(#session{key = Key}) -> couch_pgp:public_cert(Key).

%% @doc The session's secret key handle.
-spec key(session()) -> couch_pgp:key().
key(#session{key = Key}) -> Key.

%% @doc The CouchDB user the session belongs to.
-spec user(session()) -> binary().
user(#session{user = User}) -> User.

%% @doc The client's certificate.
-spec client_cert(session()) -> couch_pgp:cert().
client_cert(#session{client_cert = Cert}) -> Cert.

%% @doc The client certificate's fingerprint (computed once per session, not per request).
-spec client_fingerprint(session()) -> couch_pgp:fingerprint().
client_fingerprint(#session{client_fingerprint = Fpr}) -> Fpr.

%% @doc The session's channel keys, or `undefined' for a session from an older token.
-spec channel(session()) -> couch_pgp_channel:keys() | undefined.
channel(#session{channel = {Keys, _}}) -> Keys;
channel(#session{channel = undefined}) -> undefined.

%% @doc The channel's 64 secret bytes (client-to-server key, then server-to-client key), to
%% send to the client encrypted; `undefined' as channel/1.
-spec channel_secret(session()) -> binary() | undefined.
channel_secret(#session{channel = {_, Secret}}) -> Secret;
channel_secret(#session{channel = undefined}) -> undefined.

%% @doc Unix seconds after which the session is over.
-spec expires(session()) -> integer().
expires(#session{expires = Expires}) -> Expires.

%% @doc A 32-byte token key from the cluster-wide secret (any length, any bytes).
-spec derive_secret(iodata()) -> binary().
derive_secret(ClusterSecret) ->
    crypto:mac(hmac, sha256, ClusterSecret, <<"couch_pgp session token key">>).

%% ----------------------------------------------------------------- internal

unseal(Plain, Now) ->
    %% Authenticated by GCM under our own secret, so it is a term we wrote; still, content of
    %% any other shape (not a term, another version's) is refused, never a crash.
    try binary_to_term(Plain, [safe]) of
        {?TERM_VERSION, User, Cert, Expires, Pass, Exported, ChannelSecret}
          when is_integer(Expires), Expires > Now, is_binary(Pass), is_binary(Exported),
               is_binary(User), is_binary(Cert) ->
            restore(User, Cert, Expires, Pass, Exported, ChannelSecret);
        {1, User, Cert, Expires, Pass, Exported}
          when is_integer(Expires), Expires > Now, is_binary(Pass), is_binary(Exported),
               is_binary(User), is_binary(Cert) ->
            restore(User, Cert, Expires, Pass, Exported, undefined);
        {?TERM_VERSION, _, _, Expires, _, _, _} when is_integer(Expires), Expires =< Now ->
            {error, expired};
        {1, _, _, Expires, _, _} when is_integer(Expires), Expires =< Now ->
            {error, expired};
        _ ->
            {error, bad_token}
    catch error:badarg ->
        {error, bad_token}
    end.

restore(User, Cert, Expires, Pass, Exported, ChannelSecret) ->
    Channel = case ChannelSecret of
        undefined -> {ok, undefined};
        S when is_binary(S) ->
            case couch_pgp_channel:from_secret(S) of
                {ok, Keys} -> {ok, {Keys, S}};
                {error, _} = E -> E
            end;
        _ -> {error, bad_token}
    end,
    case {couch_pgp:import_secret(Exported, Pass), Channel} of
        {{ok, Key}, {ok, Ch}} ->
            {ok, #session{key = Key, user = User, client_cert = Cert,
                          client_fingerprint = couch_pgp:fingerprint(Cert),
                          expires = Expires, channel = Ch}};
        _ ->
            {error, bad_token}
    end.

base64url(Bin) ->
    << <<(urlsafe(C))>> || <<C>> <= base64:encode(Bin), C =/= $= >>.

urlsafe($+) -> $-;
urlsafe($/) -> $_;
urlsafe(C) -> C.

unbase64url(Token) when is_binary(Token) ->
    Std = << <<(unurlsafe(C))>> || <<C>> <= Token >>,
    Padded = case byte_size(Std) rem 4 of
        0 -> Std;
        2 -> <<Std/binary, "==">>;
        3 -> <<Std/binary, "=">>;
        _ -> <<>>
    end,
    try base64:decode(Padded) catch _:_ -> <<>> end;
unbase64url(_) ->
    <<>>.

unurlsafe($-) -> $+;
unurlsafe($_) -> $/;
unurlsafe(C) -> C.
