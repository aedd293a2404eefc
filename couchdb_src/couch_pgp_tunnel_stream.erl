%% @doc The tunnel's streamed answer (an inner request with `"stream": true', channel mode
%% only): the inner response is pulled from the loopback listener one piece at a time and
%% each piece leaves as a frame sealed under the session's server-to-client key, so that
%% neither the node nor the client holds the whole answer (README "Streaming through the
%% tunnel" is the specification).
%%
%% The HTTP body is a chunked stream of frames (couch_pgp_stream_frame): frame 0 is the head
%% (the inner status and headers, and the request's nonce), then data frames of at most
%% 64 KiB of the inner body each, then a final frame (`{"bytes": N}', or `{"error", "reason"}' when the inner
%% response broke off). Every frame binds the stream's random id and its sequence number, so
%% a client detects frames reordered, dropped, spliced from another stream, or a stream cut
%% short (no final frame).
%%
%% Nothing in this stream is plaintext: before_response sees only its start (the body is
%% `chunked'), which it lets pass once because this module asked (couch_pgp_context), and
%% every chunk written is a sealed frame. A frame that cannot be sealed ends the connection.
-module(couch_pgp_tunnel_stream).
-include_lib("couch/include/couch_db.hrl").

-export([run/4]).

-define(CTYPE, "application/x-pgp-stream").
%% Plaintext per frame at most 64 KiB, so that sealing stays on a normal scheduler
%% (couch_pgp_channel's ?DIRTY_ABOVE).
-define(MAX_PLAIN, 65536).
%% How long gathered octets wait for more before they leave as a frame of their own.
-define(FLUSH_MS, 5).

-record(pump, {resp :: term(), keys :: couch_pgp_channel:keys(), id :: binary(),
               req_id :: term(), timeout :: pos_integer(),
               seq = 1 :: non_neg_integer(), buf = [] :: iodata(),
               buffered = 0 :: non_neg_integer(), bytes = 0 :: non_neg_integer()}).

-type spec() :: #{url := string(), headers := [{string(), string()}], method := atom(),
                  body := binary(), timeout := pos_integer()}.

%% @doc Runs the inner request described by `Spec' and streams its answer, sealed for the
%% session whose channel keys are `Keys', answering the request `Nonce'. Refusals before
%% the stream starts are thrown as chttpd errors (and answered encrypted, as usual).
-spec run(#httpd{}, couch_pgp_channel:keys(), binary(), spec()) -> {ok, term()}.
run(Req, Keys, Nonce, #{url := Url, timeout := Timeout} = Spec) ->
    %% A connection of its own: a long poll must not hold up other tunnel requests queued
    %% behind it on a shared one. Linked, so that it ends if this process does.
    {ok, Worker} = ibrowse:spawn_link_worker_process(Url),
    try
        ReqId = send_inner(Worker, Spec),
        {Status, Headers} = await_headers(ReqId, Timeout),
        stream(Req, Keys, Nonce, ReqId, Status, Headers, Timeout)
    after
        ibrowse:stop_worker_process(Worker)
    end.

send_inner(Worker, #{url := Url, headers := Headers, method := Method, body := Body,
                     timeout := Timeout}) ->
    %% `once': the next piece is read from the socket only after stream_next, so a slow
    %% client slows the inner response down instead of filling this process's mailbox.
    Opts = [{response_format, binary}, {stream_to, {self(), once}},
            {inactivity_timeout, Timeout}],
    case ibrowse:send_req_direct(Worker, Url, Headers, Method, Body, Opts, Timeout) of
        {ibrowse_req_id, ReqId} -> ReqId;
        {error, Why} -> unreachable(Why)
    end.

%% A long poll answers (and so sends its headers) only when a change comes or it times out.
await_headers(ReqId, Timeout) ->
    receive
        {ibrowse_async_headers, ReqId, Status, Headers} ->
            {list_to_integer(Status), Headers};
        {ibrowse_async_response, ReqId, {error, Why}} ->
            unreachable(Why)
    after Timeout ->
        unreachable(timeout)
    end.

-spec unreachable(term()) -> no_return().
unreachable(Why) ->
    couch_log:error("couch_pgp: the tunnel could not reach this node: ~p", [Why]),
    throw(couch_pgp_http_errors:to_chttpd(tunnel_unreachable)).

stream(Req, Keys, Nonce, ReqId, Status, Headers, Timeout) ->
    Id = couch_pgp_stream_frame:new_id(),
    Head = ?JSON_ENCODE({[{<<"status">>, Status},
                          {<<"headers">>, {couch_pgp_tunnel:response_headers(Headers)}},
                          {<<"nonce">>, Nonce}]}),
    HeadFrame = seal(Keys, Id, 0, false, Head),
    couch_pgp_context:allow_sealed_stream(),
    {ok, Resp} = chttpd:start_chunked_response(Req, 200, [
        {"Content-Type", ?CTYPE}, {"X-PGP-Encrypted", "1"}, {"X-PGP-Channel", "1"},
        {"X-PGP-Stream", "1"}, {"Cache-Control", "no-store"}]),
    couch_pgp_stats:count(responses_encrypted),
    {ok, _} = chttpd:send_chunk(Resp, HeadFrame),
    ok = ibrowse:stream_next(ReqId),
    Final = pump(#pump{resp = Resp, keys = Keys, id = Id, req_id = ReqId, timeout = Timeout}),
    {ok, _} = chttpd:send_chunk(Resp, Final),
    %% The empty chunk that ends the HTTP body.
    {ok, _} = chttpd:send_chunk(Resp, []),
    {ok, Resp}.

%% Seals and sends the inner body as it comes; returns the final frame. Pieces (what one
%% socket read gave) are gathered up to a full frame while they keep coming, and whatever is
%% gathered leaves after ?FLUSH_MS without a new one, so that a bulk transfer goes in full
%% frames and a feed that trickles (a long poll's answer) is not held back.
pump(#pump{req_id = ReqId, buf = Buf, buffered = Size, timeout = Timeout} = P) ->
    Wait = case Size of
        0 -> Timeout;
        _ -> ?FLUSH_MS
    end,
    receive
        {ibrowse_async_response, ReqId, {error, Why}} ->
            broken_off(flush(P), Why);
        {ibrowse_async_response, ReqId, Data} ->
            Bin = iolist_to_binary(Data),
            P1 = P#pump{buf = [Buf, Bin], buffered = Size + byte_size(Bin),
                        bytes = P#pump.bytes + byte_size(Bin)},
            P2 = case P1#pump.buffered >= max_payload() of
                true -> send_full(P1);
                false -> P1
            end,
            ok = ibrowse:stream_next(ReqId),
            pump(P2);
        {ibrowse_async_response_end, ReqId} ->
            #pump{keys = Keys, id = Id, seq = Seq, bytes = Bytes} = flush(P),
            seal(Keys, Id, Seq, true, ?JSON_ENCODE({[{<<"bytes">>, Bytes}]}))
    after Wait ->
        case Size of
            0 -> broken_off(P, timeout);
            _ -> pump(flush(P))
        end
    end.

max_payload() ->
    ?MAX_PLAIN - couch_pgp_stream_frame:header_size().

%% Sends the full frames gathered, keeps the rest.
send_full(#pump{buf = Buf} = P) ->
    send_frames(P, iolist_to_binary(Buf), false).

%% Sends everything gathered.
flush(#pump{buffered = 0} = P) ->
    P;
flush(#pump{buf = Buf} = P) ->
    send_frames(P, iolist_to_binary(Buf), true).

send_frames(#pump{resp = Resp, keys = Keys, id = Id, seq = Seq} = P, Data, All) ->
    Max = max_payload(),
    case Data of
        <<Piece:Max/binary, Rest/binary>> ->
            {ok, _} = chttpd:send_chunk(Resp, seal(Keys, Id, Seq, false, Piece)),
            send_frames(P#pump{seq = Seq + 1}, Rest, All);
        <<>> ->
            P#pump{buf = [], buffered = 0};
        _ when All ->
            {ok, _} = chttpd:send_chunk(Resp, seal(Keys, Id, Seq, false, Data)),
            P#pump{seq = Seq + 1, buf = [], buffered = 0};
        _ ->
            P#pump{buf = [Data], buffered = byte_size(Data)}
    end.

%% The inner response ended early: the client learns it from a sealed final frame, not from
%% a stream that merely stops.
broken_off(#pump{keys = Keys, id = Id, seq = Seq}, Why) ->
    couch_log:error("couch_pgp: a streamed tunnel answer broke off: ~p", [Why]),
    {couch_pgp_status, {_, Error, Reason}} = couch_pgp_http_errors:to_chttpd(tunnel_unreachable),
    seal(Keys, Id, Seq, true, ?JSON_ENCODE({[{<<"error">>, Error}, {<<"reason">>, Reason}]})).

seal(Keys, Id, Seq, Final, Payload) ->
    Plain = couch_pgp_stream_frame:plaintext(Id, Seq, Final, Payload),
    case couch_pgp_channel:seal(Keys, server_to_client, Plain) of
        {ok, Sealed} ->
            couch_pgp_stream_frame:wire(Sealed);
        {error, Why} ->
            %% Nothing else may be written: the client sees the stream end without its
            %% final frame.
            couch_log:error("couch_pgp: a tunnel stream frame could not be sealed, connection closed: ~p", [Why]),
            couch_pgp_stats:count(responses_refused),
            exit({shutdown, couch_pgp_cannot_encrypt})
    end.
