%% @doc `POST /_pgp/tunnel': one encrypted envelope carries a whole inner request (method,
%% path, query, headers, body), for the endpoints whose responses CouchDB streams
%% (`_all_docs', `_changes', `_find', views, attachments) and so cannot be encrypted in
%% place. The inner request runs against this node's own HTTP listener over loopback, as
%% the caller (with the caller's own credentials), its whole response is buffered, and it
%% goes back as the body of the tunnel's response, which before_response encrypts. Document
%% ids in inner URLs never appear on the wire.
%%
%% Inner request (the tunnel envelope's body, JSON):
%%   {"method": "GET", "path": "/db/_all_docs", "query": "include_docs=true",
%%    "headers": {"Accept": "application/json"}, "body": "", "body_base64": false}
%% Tunnel response (encrypted like any other):
%%   {"status": 200, "headers": {"content-type": "..."}, "body": "...", "body_base64": false}
%% With `"stream": true' (channel mode) the answer is instead a stream of sealed frames
%% (couch_pgp_tunnel_stream), so that a large answer is never held whole.
-module(couch_pgp_tunnel).
-include_lib("couch/include/couch_db.hrl").

-export([handle/1, is_inner/1, response_headers/1]).

-define(MARK_HEADER, "X-PGP-Tunnel-Mark").

-define(TIMEOUT, 300000).

-spec handle(#httpd{}) -> {ok, term()}.
handle(#httpd{method = 'POST'} = Req) ->
    couch_pgp_context:is_encrypted() orelse refuse(tunnel_plaintext),
    {Props} = chttpd:json_body_obj(Req),
    case parse_inner(Props) of
        #{stream := true} = Inner -> stream(Req, Inner);
        Inner -> buffered(Req, Inner)
    end;
handle(Req) ->
    chttpd:send_method_not_allowed(Req, "POST").

%% The whole inner response in one JSON answer, which before_response encrypts.
buffered(Req, Inner) ->
    {Status, RespHeaders, RespBody} = run(spec(Req, Inner)),
    {Body, IsBase64} = case unicode:characters_to_binary(RespBody) of
        Text when is_binary(Text) -> {Text, false};
        _ -> {base64:encode(RespBody), true}
    end,
    chttpd:send_json(Req, 200, {[
        {<<"status">>, Status},
        {<<"headers">>, {response_headers(RespHeaders)}},
        {<<"body">>, Body},
        {<<"body_base64">>, IsBase64}
    ]}).

%% Frames sealed one by one under the channel's server-to-client key; per-message mode would
%% need a public-key encryption and a signature per frame, so it is refused instead.
stream(Req, Inner) ->
    case couch_pgp_context:get() of
        #{channel := Keys, nonce := Nonce} when Keys =/= undefined ->
            couch_pgp_tunnel_stream:run(Req, Keys, Nonce, spec(Req, Inner));
        _ ->
            refuse(stream_needs_channel)
    end.

parse_inner(Props) ->
    case couch_pgp_tunnel_request:parse(Props) of
        {ok, Inner} ->
            Inner;
        {error, tunnel_base64} ->
            couch_log:notice("couch_pgp: tunnel request refused: body_base64 is not base64", []),
            refuse(tunnel_base64);
        {error, Reason} ->
            refuse(Reason)
    end.

-spec refuse(couch_pgp_http_errors:reason()) -> no_return().
refuse(Reason) ->
    throw(couch_pgp_http_errors:to_chttpd(Reason)).

%% The inner request goes to this node's own listener, authenticated exactly as the outer
%% one was.
spec(Req, #{method := Method, path := Path, query := Query, headers := Headers,
            content_type := CType, body := Body}) ->
    Credentials = [{K, V} || K <- ["Authorization", "Cookie"],
                             V <- [chttpd:header_value(Req, K)], V =/= undefined],
    Url = lists:flatten([loopback_base(), binary_to_list(Path),
                         [[$?, binary_to_list(Query)] || Query =/= <<>>]]),
    AllHeaders = [{"Content-Type", binary_to_list(CType)}, {?MARK_HEADER, mark()}
                  | Credentials ++ Headers],
    #{url => Url, headers => AllHeaders, method => Method, body => Body, timeout => ?TIMEOUT}.

run(#{url := Url, headers := Headers, method := Method, body := Body, timeout := Timeout}) ->
    case ibrowse:send_req(Url, Headers, Method, Body, [{response_format, binary}], Timeout) of
        {ok, Status, RespHeaders, RespBody} ->
            {list_to_integer(Status), RespHeaders, RespBody};
        {error, Why} ->
            couch_log:error("couch_pgp: the tunnel could not reach this node: ~p", [Why]),
            refuse(tunnel_unreachable)
    end.

loopback_base() ->
    Port = config:get("chttpd", "port", "5984"),
    Host = case config:get("chttpd", "bind_address", "127.0.0.1") of
        Any when Any =:= "0.0.0.0"; Any =:= "any" -> "127.0.0.1";
        "::" -> "[::1]";
        Addr -> Addr
    end,
    "http://" ++ Host ++ ":" ++ Port.

%% @doc The inner response headers a tunnel answer carries (lowercase names), as members of
%% a JSON object.
-spec response_headers([{string(), string()}]) -> [{binary(), binary()}].
response_headers(Headers) ->
    [{list_to_binary(string:lowercase(K)), list_to_binary(V)}
     || {K, V} <- Headers, keep_response_header(K)].

keep_response_header(K) ->
    lists:member(string:lowercase(K), ["content-type", "etag", "location", "x-couch-request-id",
                                      "x-couchdb-body-time", "cache-control"]).

%% @doc Whether a request is this node's own tunnel traffic (it then passes the
%% require_encryption policy: its outer request was encrypted). The mark is a per-node
%% random secret that never leaves the node.
-spec is_inner(term()) -> boolean().
is_inner(MochiReq) ->
    case mochiweb_request:get_header_value(?MARK_HEADER, MochiReq) of
        undefined -> false;
        Value -> crypto:hash_equals(crypto:hash(sha256, Value), crypto:hash(sha256, mark()))
    end.

mark() ->
    case persistent_term:get({?MODULE, mark}, undefined) of
        undefined ->
            Mark = binary_to_list(binary:encode_hex(crypto:strong_rand_bytes(32))),
            persistent_term:put({?MODULE, mark}, Mark),
            Mark;
        Mark ->
            Mark
    end.
