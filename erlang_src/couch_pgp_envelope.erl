%% @doc The plaintext inside encrypted requests and responses, and the checks on it.
%%
%% A request envelope binds the body to the HTTP request that carries it, so that a captured
%% message cannot be replayed, moved to another path or method, or used late:
%% ```
%% {"v":1, "method":"PUT", "path":"/db/doc", "query":"a=1", "ts":1764370000000,
%%  "nonce":"<16+ random bytes, base64>", "content_type":"application/json", "body":"..."}
%% '''
%% A response envelope binds the answer to the request it answers:
%% `{"v":1, "status":201, "nonce":"<the request's nonce>", "content_type":..., "body":"..."}'.
%% Both are RFC 8785 canonical JSON.
-module(couch_pgp_envelope).

-export([parse_request/1, check_request/3, response/4, request/6]).
-export_type([request/0]).

-type request() :: #{method := binary(), path := binary(), query := binary(), ts := integer(),
                     nonce := binary(), content_type := binary(), body := binary(),
                     client_cert := binary() | undefined}.

-define(MIN_NONCE_BYTES, 16).

%% @doc Parses a decrypted request envelope.
-spec parse_request(binary()) -> {ok, request()} | {error, bad_envelope}.
parse_request(Plain) ->
    case couch_pgp:json_decode(Plain) of
        {ok, {Props}} ->
            Get = fun(K) -> proplists:get_value(K, Props) end,
            Env = #{
                method => Get(<<"method">>),
                path => Get(<<"path">>),
                query => Get(<<"query">>),
                ts => Get(<<"ts">>),
                nonce => Get(<<"nonce">>),
                content_type => Get(<<"content_type">>),
                body => Get(<<"body">>),
                %% Only in a login envelope, which has no session to name the client.
                client_cert => Get(<<"client_cert">>)
            },
            case Get(<<"v">>) =:= 1 andalso well_typed(Env) of
                true -> {ok, Env};
                false -> {error, bad_envelope}
            end;
        _ ->
            {error, bad_envelope}
    end.

%% @doc Checks an envelope against the request that carried it: `Actual' has the real
%% `method', `path' and `query'; `Now' is unix milliseconds; `MaxSkew' milliseconds.
-spec check_request(request(), #{method := binary(), path := binary(), query := binary()},
                    {integer(), integer()}) ->
    ok | {error, wrong_method | wrong_path | stale | bad_nonce}.
check_request(#{method := M, path := P, query := Q, ts := Ts, nonce := Nonce},
              #{method := AM, path := AP, query := AQ}, {Now, MaxSkew}) ->
    if
        M =/= AM -> {error, wrong_method};
        P =/= AP; Q =/= AQ -> {error, wrong_path};
        abs(Now - Ts) > MaxSkew -> {error, stale};
        true ->
            case decoded_nonce_ok(Nonce) of
                true -> ok;
                false -> {error, bad_nonce}
            end
    end.

%% @doc The canonical JSON of a response envelope.
-spec response(integer(), binary(), binary(), binary()) -> binary().
response(Status, Nonce, ContentType, Body) ->
    {ok, Json} = couch_pgp:canonical_json({[
        {<<"v">>, 1},
        {<<"status">>, Status},
        {<<"nonce">>, Nonce},
        {<<"content_type">>, ContentType},
        {<<"body">>, Body}
    ]}),
    Json.

%% @doc The canonical JSON of a request envelope (what a client sends; used by tests and
%% Erlang clients).
-spec request(binary(), binary(), binary(), integer(), binary(), binary()) -> binary().
request(Method, Path, Query, Ts, ContentType, Body) ->
    Nonce = base64:encode(crypto:strong_rand_bytes(?MIN_NONCE_BYTES)),
    {ok, Json} = couch_pgp:canonical_json({[
        {<<"v">>, 1},
        {<<"method">>, Method},
        {<<"path">>, Path},
        {<<"query">>, Query},
        {<<"ts">>, Ts},
        {<<"nonce">>, Nonce},
        {<<"content_type">>, ContentType},
        {<<"body">>, Body}
    ]}),
    Json.

%% ----------------------------------------------------------------- internal

well_typed(#{method := M, path := P, query := Q, ts := Ts, nonce := N, content_type := C,
             body := B, client_cert := Cert}) ->
    (Cert =:= undefined orelse is_binary(Cert)) andalso is_binary(M) andalso is_binary(P) andalso is_binary(Q) andalso is_integer(Ts)
        andalso is_binary(N) andalso is_binary(C) andalso is_binary(B).

decoded_nonce_ok(Nonce) ->
    try byte_size(base64:decode(Nonce)) >= ?MIN_NONCE_BYTES
    catch _:_ -> false
    end.
