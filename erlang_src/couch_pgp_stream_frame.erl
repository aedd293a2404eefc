%% @doc The frames of a sealed tunnel stream (README "Streaming through the tunnel"): what each
%% frame's plaintext holds before it is sealed under the session's server-to-client key, and
%% how a sealed frame goes on the wire. Pure, so that EUnit checks the layout byte for byte.
%%
%% Plaintext: version (1 octet, 1) || stream id (16 octets, random per stream) || sequence
%% number (32-bit big-endian, 0 for the head) || flags (1 octet, bit 0: final) || payload.
%% Wire: the sealed message's length (32-bit big-endian) || the sealed message.
-module(couch_pgp_stream_frame).

-export([new_id/0, plaintext/4, parse/1, wire/1, header_size/0]).

-define(VERSION, 1).
-define(ID_BYTES, 16).
-define(FINAL, 1).

%% @doc A fresh random stream id.
-spec new_id() -> binary().
new_id() ->
    crypto:strong_rand_bytes(?ID_BYTES).

%% @doc Octets before the payload in every frame's plaintext.
-spec header_size() -> pos_integer().
header_size() ->
    1 + ?ID_BYTES + 4 + 1.

%% @doc The plaintext of frame `Seq' of stream `Id'.
-spec plaintext(binary(), non_neg_integer(), boolean(), iodata()) -> iodata().
plaintext(Id, Seq, Final, Payload) when byte_size(Id) =:= ?ID_BYTES, is_integer(Seq),
                                        Seq >= 0, Seq < 1 bsl 32, is_boolean(Final) ->
    Flags = case Final of
        true -> ?FINAL;
        false -> 0
    end,
    [<<?VERSION, Id/binary, Seq:32/big, Flags>>, Payload].

%% @doc The parts of an opened frame's plaintext (what a client checks).
-spec parse(binary()) -> {ok, #{id := binary(), seq := non_neg_integer(), final := boolean(),
                               payload := binary()}} | {error, malformed}.
parse(<<?VERSION, Id:?ID_BYTES/binary, Seq:32/big, Flags, Payload/binary>>)
        when Flags band (bnot ?FINAL) =:= 0 ->
    {ok, #{id => Id, seq => Seq, final => Flags =:= ?FINAL, payload => Payload}};
parse(_) ->
    {error, malformed}.

%% @doc A sealed frame as it goes on the wire.
-spec wire(binary()) -> iodata().
wire(Sealed) when is_binary(Sealed) ->
    [<<(byte_size(Sealed)):32/big>>, Sealed].
