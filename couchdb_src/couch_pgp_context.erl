%% @doc The context of the encrypted request this process is serving: who is on the other
%% end and with which keys, and the nonce to echo. The only owner of that state.
%%
%% chttpd runs before_request, the handler and before_response in the same process and gives
%% plugins no other place to carry state from one to the next, so the context lives in the
%% process dictionary; it is cleared at the start of every request (a keep-alive connection
%% serves several) and when a response could not be sealed. Nothing else reads or writes it.
-module(couch_pgp_context).

-export([clear/0, get/0, set/1, set_nonce/1, is_encrypted/0, client_cert/0, user/0,
         allow_sealed_stream/0, take_sealed_stream/0]).
-export_type([context/0]).

-define(KEY, couch_pgp_ctx).

%% key, sign_key: the server's session (or identity) key; client_cert and client_fingerprint:
%% the client's; channel: the session's channel keys when the request came through it;
%% user: the session's CouchDB user (undefined for a login); login; nonce (<<>> until the
%% request's own message is opened); sealed_stream: set by the tunnel just before it starts
%% a stream whose every frame it seals itself, taken (once) by before_response.
-type context() :: #{key := couch_pgp:key(), sign_key := couch_pgp:key(),
                     client_cert := couch_pgp:cert() | undefined,
                     client_fingerprint => couch_pgp:fingerprint(),
                     channel := couch_pgp_channel:keys() | undefined,
                     user := binary() | undefined, login := boolean(),
                     nonce => binary(), sealed_stream => true}.

%% @doc Forgets any context (a new request, or an answer that must not be encrypted).
-spec clear() -> ok.
clear() ->
    _ = erase(?KEY),
    ok.

%% @doc The current context, or `undefined' for a plaintext request.
-spec get() -> context() | undefined.
get() ->
    erlang:get(?KEY).

-spec set(context()) -> ok.
set(Ctx) ->
    _ = put(?KEY, Ctx),
    ok.

%% @doc Records the request's nonce once its message is opened: answers echo it from then on.
-spec set_nonce(binary()) -> ok.
set_nonce(Nonce) ->
    set((?MODULE:get())#{nonce => Nonce}).

-spec is_encrypted() -> boolean().
is_encrypted() ->
    ?MODULE:get() =/= undefined.

%% @doc The client's certificate, when known.
-spec client_cert() -> couch_pgp:cert() | undefined.
client_cert() ->
    case ?MODULE:get() of
        #{client_cert := Cert} -> Cert;
        _ -> undefined
    end.

%% @doc The session's user: a binary for a session, `undefined' for a login or plaintext.
-spec user() -> binary() | undefined.
user() ->
    case ?MODULE:get() of
        #{user := User} -> User;
        _ -> undefined
    end.

%% @doc Lets the next chunked response start unsealed: only the tunnel's stream of frames it
%% has sealed itself (couch_pgp_tunnel_stream) calls this, right before it starts.
-spec allow_sealed_stream() -> ok.
allow_sealed_stream() ->
    set((?MODULE:get())#{sealed_stream => true}).

%% @doc Whether a sealed stream was allowed; the permission is used up, so a second chunked
%% response (an error after the stream began) is treated like any other.
-spec take_sealed_stream() -> boolean().
take_sealed_stream() ->
    case ?MODULE:get() of
        #{sealed_stream := true} = Ctx ->
            set(maps:remove(sealed_stream, Ctx)),
            true;
        _ ->
            false
    end.
