%% @doc The tunnel's inner request (`POST /_pgp/tunnel', see couch_pgp_tunnel): the JSON
%% object inside the encrypted envelope, checked and turned into what the loopback request
%% needs. Pure, so that it is tested (and fuzzed, test/couch_pgp_fuzz_tests.erl) without a
%% CouchDB; couch_pgp_tunnel maps the errors to HTTP.
-module(couch_pgp_tunnel_request).

-export([parse/1]).
-export_type([inner/0]).

-type inner() :: #{method := get | head | post | put | delete | copy, path := binary(),
                   query := binary(), headers := [{string(), string()}],
                   content_type := binary(), body := binary(), stream := boolean()}.

%% Headers the caller may not set on the inner request: hop-by-hop ones, and the
%% credentials, which are always the outer request's own.
-define(DROPPED, ["host", "content-length", "authorization", "cookie", "connection",
                  "transfer-encoding", "content-type", "x-pgp-session", "x-pgp-tunnel-mark"]).

%% @doc Checks an inner request, given as the members of the decoded JSON object:
%% `stream' (optional, a boolean, default false) asks for the answer as a sealed stream
%% (couch_pgp_tunnel_stream). `{error, tunnel_request}' for anything but the documented shape, `{error, tunnel_base64}'
%% for a `body_base64' body that is not base64.
-spec parse([{binary(), term()}]) -> {ok, inner()} | {error, tunnel_request | tunnel_base64}.
parse(Props) when is_list(Props) ->
    Method = value(<<"method">>, Props, undefined),
    Path = value(<<"path">>, Props, undefined),
    Query = value(<<"query">>, Props, <<>>),
    Body0 = value(<<"body">>, Props, <<>>),
    Stream = value(<<"stream">>, Props, false),
    case value(<<"headers">>, Props, {[]}) of
        {Headers} when is_list(Headers) ->
            Valid = lists:member(Method, [<<"GET">>, <<"HEAD">>, <<"POST">>, <<"PUT">>,
                                          <<"DELETE">>, <<"COPY">>])
                andalso utf8(Path) andalso utf8(Query) andalso is_binary(Body0)
                andalso lists:all(fun valid_header/1, Headers)
                andalso binary:first(<<Path/binary, " ">>) =:= $/
                andalso binary:match(Path, [<<"\r">>, <<"\n">>, <<" ">>, <<"#">>, <<"?">>]) =:= nomatch
                andalso binary:match(Query, [<<"\r">>, <<"\n">>, <<" ">>, <<"#">>]) =:= nomatch
                andalso not tunnel_path(Path)
                andalso is_boolean(Stream),
            case Valid of
                true -> with_body(Method, Path, Query, Headers, Body0, Props);
                false -> {error, tunnel_request}
            end;
        _ ->
            {error, tunnel_request}
    end;
parse(_) ->
    {error, tunnel_request}.

%% ----------------------------------------------------------------- internal

with_body(Method, Path, Query, Headers, Body0, Props) ->
    Body = case value(<<"body_base64">>, Props, false) of
        true ->
            try base64:decode(Body0)
            catch error:_ -> error
            end;
        _ ->
            Body0
    end,
    case Body of
        error ->
            {error, tunnel_base64};
        _ ->
            {ok, #{method => method(Method), path => Path, query => Query,
                   headers => [{binary_to_list(K), binary_to_list(V)} || {K, V} <- Headers,
                               not lists:member(string:lowercase(binary_to_list(K)), ?DROPPED)],
                   content_type => header(Headers, <<"content-type">>, <<"application/json">>),
                   body => Body, stream => value(<<"stream">>, Props, false)}}
    end.

%% As couch_util:get_value/3: the first member of that name.
value(Key, Props, Default) ->
    case lists:keyfind(Key, 1, Props) of
        {_, V} -> V;
        _ -> Default
    end.

method(<<"GET">>) -> get;
method(<<"HEAD">>) -> head;
method(<<"POST">>) -> post;
method(<<"PUT">>) -> put;
method(<<"DELETE">>) -> delete;
method(<<"COPY">>) -> copy.

%% Header names and values go onto the inner request line by line.
valid_header({K, V}) ->
    utf8(K) andalso utf8(V) andalso no_line_break(K) andalso no_line_break(V);
valid_header(_) ->
    false.

%% JSON strings are UTF-8, and string:lowercase/1 raises on anything else: a decoder that
%% let invalid bytes through would otherwise turn a bad request into a crash.
utf8(B) when is_binary(B) ->
    unicode:characters_to_binary(B) =:= B;
utf8(_) ->
    false.

no_line_break(V) ->
    binary:match(V, [<<"\r">>, <<"\n">>]) =:= nomatch.

tunnel_path(Path) ->
    binary:match(string:lowercase(Path), <<"/_pgp">>) =/= nomatch.

header(Headers, Name, Default) ->
    case [V || {K, V} <- Headers, string:lowercase(K) =:= Name] of
        [V | _] -> V;
        [] -> Default
    end.
