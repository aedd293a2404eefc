%% @doc The session channel: requests and responses sealed with the session's symmetric keys
%% (RFC 9580 SEIPDv2, AES-256-GCM, the key given outright; see native/.../channel.rs and the
%% README's protocol section), one NIF call each way.
%%
%% Keys live in the NIF (an opaque handle); their 64 secret bytes appear only when a session
%% is made (to be sealed into its token and sent to the client encrypted) and when a token is
%% opened. Each call runs on a normal scheduler for inputs up to ?DIRTY_ABOVE bytes and on a
%% dirty CPU scheduler above that, as enacl does.
-module(couch_pgp_channel).

-export([new/0, from_secret/1, seal/3, open/4, open_request/3, seal_response/6]).
-export_type([keys/0, direction/0]).

-opaque keys() :: reference().
-type direction() :: client_to_server | server_to_client.

%% The cut-off, measured in a node on the 2-core machine (2026-12-07, EHR-like JSON bodies,
%% one caller): on a normal scheduler a response of 64 KiB seals (with base64) in about
%% 0.2 ms and a request of that size opens in about 0.3 ms; at 128 KiB, 0.5 and 0.9 ms;
%% beyond, time grows with the size a client chooses. The same calls on a dirty scheduler
%% took 2-4 times as long up to 128 KiB (the hop, and the process moving back), which is
%% what put the 64 KiB cells of `make bench-http' far below plain. Up to 128 KiB a call
%% stays near the ~1 ms a normal scheduler may be held; above it, dirty.
-define(DIRTY_ABOVE, 131072).

%% @doc Fresh random keys for a new session: `{ok, Keys, Secret}'.
-spec new() -> {ok, keys(), binary()} | {error, couch_pgp:reason()}.
new() ->
    couch_pgp_nif:channel_new().

%% @doc The keys from the 64 secret bytes a token carries.
-spec from_secret(binary()) -> {ok, keys()} | {error, bad_key}.
from_secret(Secret) when is_binary(Secret) ->
    couch_pgp_nif:channel_from_secret(Secret).

%% @doc Seals `Plain' as one binary OpenPGP message for the given direction.
-spec seal(keys(), direction(), iodata()) -> {ok, binary()} | {error, couch_pgp:reason()}.
seal(Keys, Dir, Plain0) ->
    Plain = iolist_to_binary(Plain0),
    case byte_size(Plain) > ?DIRTY_ABOVE of
        false -> couch_pgp_nif:channel_seal(Keys, Dir, Plain);
        true -> couch_pgp_nif:channel_seal_dirty(Keys, Dir, Plain)
    end.

%% @doc Opens a message sealed for the given direction, with at most `MaxSize' bytes of
%% plaintext (`too_large' beyond).
-spec open(keys(), direction(), binary(), non_neg_integer()) ->
    {ok, binary()} | {error, couch_pgp:reason()}.
open(Keys, Dir, Msg, MaxSize) when is_binary(Msg), is_integer(MaxSize), MaxSize >= 0 ->
    case byte_size(Msg) > ?DIRTY_ABOVE of
        false -> couch_pgp_nif:channel_open(Keys, Dir, Msg, MaxSize);
        true -> couch_pgp_nif:channel_open_dirty(Keys, Dir, Msg, MaxSize)
    end.

%% @doc Opens a request (armored or binary) and parses its envelope, in one NIF call:
%% `{ok, Envelope}' as couch_pgp_envelope:parse_request/1 gives it, or `{error, Reason}'
%% (`bad_envelope' when the plaintext is not an envelope, `too_large', `tampered', ...).
-spec open_request(keys(), binary(), non_neg_integer()) ->
    {ok, couch_pgp_envelope:request()} | {error, couch_pgp:reason() | bad_envelope}.
open_request(Keys, Msg, MaxSize) when is_binary(Msg), is_integer(MaxSize), MaxSize >= 0 ->
    case byte_size(Msg) > ?DIRTY_ABOVE of
        false -> couch_pgp_nif:channel_open_request(Keys, Msg, MaxSize);
        true -> couch_pgp_nif:channel_open_request_dirty(Keys, Msg, MaxSize)
    end.

%% @doc Seals a response envelope (`status', the request's `nonce', `content_type', `body')
%% in one NIF call, as binary OpenPGP or as its standard base64 (for a JSON wrapper).
-spec seal_response(keys(), 100..999, binary(), binary(), binary(), binary | base64) ->
    {ok, binary()} | {error, couch_pgp:reason()}.
seal_response(Keys, Status, Nonce, ContentType, Body, Encoding)
        when is_binary(Nonce), is_binary(ContentType), is_binary(Body) ->
    case byte_size(Body) > ?DIRTY_ABOVE of
        false -> couch_pgp_nif:channel_seal_response(Keys, Status, Nonce, ContentType, Body, Encoding);
        true -> couch_pgp_nif:channel_seal_response_dirty(Keys, Status, Nonce, ContentType, Body, Encoding)
    end.
