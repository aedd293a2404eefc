%% @doc chttpd provider: decrypts encrypted requests before CouchDB reads them, and encrypts
%% the responses to them before they leave. Every export is a hook.
%%
%% An encrypted request has `Content-Type: application/pgp-encrypted', an `X-PGP-Session'
%% token, and an OpenPGP message body: encrypted to the session key, signed by the client
%% key, holding a request envelope (couch_pgp_envelope). Its plaintext body replaces the
%% request body in mochiweb's cache, where every CouchDB body reader finds it. The response
%% is then replaced by `{"pgp": "<armored message>"}' with `X-PGP-Encrypted: 1': a response
%% envelope encrypted to the client key and signed by the session key. A response that cannot
%% be encrypted is never sent in plaintext.
%%
%% With `X-PGP-Channel: 1' (the session channel) the message is instead sealed under the
%% session's client-to-server key and the answer under its server-to-client key
%% (couch_pgp_channel, one NIF call each way); everything else is the same.
-module(couch_pgp_chttpd).
-include_lib("couch/include/couch_db.hrl").

-export([before_request/1, before_response/4, handle_error/1]).

-define(CTYPE, "application/pgp-encrypted").
-define(SESSION_HEADER, "X-PGP-Session").
-define(CHANNEL_HEADER, "X-PGP-Channel").

%% chttpd hooks return their arguments as a list (couch_epi any/all dispatch).
-spec before_request(#httpd{}) -> [#httpd{}].
before_request(#httpd{mochi_req = M} = Req) ->
    %% The process serves several requests on a keep-alive connection.
    couch_pgp_context:clear(),
    case is_encrypted(M) of
        true ->
            %% Switched off, an encrypted request is refused unread: never processed, and
            %% never answered in plaintext.
            couch_pgp_config:enabled() orelse count_and_refuse(disabled),
            [decrypt_request(Req)];
        false ->
            refuse_plaintext_if_required(Req),
            [Req]
    end.

-spec before_response(#httpd{}, integer(), list(), term()) -> [term()].
before_response(Req, Code, Headers, Body) ->
    case couch_pgp_context:get() of
        undefined -> [Req, Code, Headers, Body];
        %% The tunnel's stream: every frame is sealed before it is written (only its start
        %% passes here, once; see couch_pgp_tunnel_stream).
        Ctx when Body =:= chunked ->
            case couch_pgp_context:take_sealed_stream() of
                true -> [Req, Code, Headers, Body];
                false -> encrypt_response(Ctx, Req, Code, Headers, Body)
            end;
        Ctx -> encrypt_response(Ctx, Req, Code, Headers, Body)
    end.

%% chttpd's error hook: renders the refusals whose status chttpd has no term for.
-spec handle_error(term()) -> [term()].
handle_error(Error) ->
    couch_pgp_http_errors:handle_error(Error).

%% ----------------------------------------------------------------- requests

is_encrypted(M) ->
    case mochiweb_request:get_primary_header_value("content-type", M) of
        undefined -> false;
        CType -> string:lowercase(CType) =:= ?CTYPE
    end.

refuse_plaintext_if_required(#httpd{path_parts = Parts, method = Method, mochi_req = M}) ->
    case exempt(Method, Parts) orelse couch_pgp_tunnel:is_inner(M) of
        true -> ok;
        false ->
            Db = case Parts of
                [<<"_", _/binary>> | _] -> undefined;
                [D | _] -> D;
                [] -> undefined
            end,
            couch_pgp_config:require_encryption(Db) andalso
                (audit_refusal(encryption_required) =:= ok andalso refuse(encryption_required))
    end.

%% What a client needs before it can encrypt: the server key, the login, a session.
exempt(_, []) -> true;
exempt(_, [<<"_up">>]) -> true;
exempt(_, [<<"_session">>]) -> true;
exempt(_, [<<"_pgp">> | _]) -> true;
exempt('OPTIONS', _) -> true;
exempt(_, _) -> false.

decrypt_request(#httpd{mochi_req = M, method = Method, path_parts = Parts} = Req) ->
    Peer = peer(M, Method, Parts),
    %% From here on a reply key may be known, so even a refusal can be sent encrypted.
    _ = maps:get(client_cert, Peer) =/= undefined andalso couch_pgp_context:set(Peer#{nonce => <<>>}),
    refuse_unsupported(Req),
    %% Before authentication nothing may cost more than the plaintext request would: the
    %% message as received is bounded like a plaintext body (a login far lower: it carries
    %% credentials and a certificate), and what it decompresses to is bounded too, checked
    %% while decompressing.
    {RecvMax, PlainMax} = case Peer of
        #{login := true} ->
            Login = couch_pgp_config:max_login_size(),
            {Login, Login};
        _ ->
            {couch_pgp_config:max_http_request_size(), couch_pgp_config:max_request_size()}
    end,
    Msg = recv_body(M, RecvMax),
    {Envelope, ClientFpr} = open_envelope(Msg, Peer, PlainMax),
    #{nonce := Nonce, content_type := InnerType, body := Body} = Envelope,
    %% The message is opened and its signature checked: refusals from here on answer this
    %% very request, so they echo its nonce.
    couch_pgp_context:set_nonce(Nonce),
    {Path, Query} = split_raw_path(mochiweb_request:get(raw_path, M)),
    %% Clients cannot send a body with GET, so a POST may carry an envelope for any method:
    %% the envelope is signed, and it is the request that runs.
    Inner = inner_method(Method, maps:get(method, Envelope)),
    Actual = #{method => atom_to_binary(Inner), path => Path, query => Query},
    Now = erlang:system_time(millisecond),
    Skew = couch_pgp_config:max_skew_ms(),
    case couch_pgp_envelope:check_request(Envelope, Actual, {Now, Skew}) of
        ok -> ok;
        {error, Why} -> count_and_refuse(Why)
    end,
    %% The answer to a HEAD has no body, which would leave the client's POST without one
    %% (and with a Content-Length that promises one).
    Inner =/= 'HEAD' orelse count_and_refuse(head_not_supported),
    %% It becomes a header CouchDB parses; a plaintext request could never carry line breaks
    %% or control bytes there.
    header_value(InnerType) orelse count_and_refuse(bad_envelope),
    refuse_unsupported_type(InnerType),
    %% Claimed last: a refused request does not use up its nonce, and only a request that
    %% runs does.
    case couch_pgp_cache:seen_nonce(ClientFpr, Nonce, Now + 2 * Skew) of
        true -> count_and_refuse(replay);
        false -> ok
    end,
    couch_pgp_stats:count(requests_decrypted),
    Req#httpd{method = Inner, mochi_req = with_body(M, Inner, InnerType, Body)}.

%% Visible ASCII and spaces only, at most 256 bytes: what a Content-Type header may hold.
header_value(V) when byte_size(V) =< 256 ->
    lists:all(fun(C) -> C >= 16#20 andalso C =< 16#7E end, binary_to_list(V));
header_value(_) ->
    false.

recv_body(M, Max) ->
    try mochiweb_request:recv_body(Max, M) of
        %% No Content-Length and not chunked (a GET, HEAD or DELETE that says it is encrypted
        %% but carries nothing): an empty message, refused as malformed like any other.
        undefined -> <<>>;
        Body -> Body
    catch
        exit:{body_too_large, _} -> count_and_refuse(too_large)
    end.

%% Who is on the other end, and with which keys: a session from its token; or, for a login
%% (`POST /_session' without a session), the server identity key, with the client's
%% certificate to be read from the envelope itself.
peer(M, Method, Parts) ->
    case mochiweb_request:get_header_value(?SESSION_HEADER, M) of
        undefined when Method =:= 'POST', Parts =:= [<<"_session">>] ->
            case couch_pgp_keystore:identity() of
                {ok, #{key := Identity}} ->
                    #{key => Identity, sign_key => Identity, client_cert => undefined,
                      channel => undefined, user => undefined, login => true};
                {error, Why} ->
                    couch_log:warning("couch_pgp: encrypted login refused, no identity key: ~p", [Why]),
                    refuse(unavailable)
            end;
        undefined ->
            count_and_refuse(no_session);
        Token ->
            case couch_pgp_keystore:status() of
                loaded -> ok;
                {error, Why} ->
                    couch_log:warning("couch_pgp: encrypted request refused, no identity key: ~p", [Why]),
                    refuse(unavailable)
            end,
            case couch_pgp_tokens:open(list_to_binary(Token)) of
                {ok, Session} ->
                    Cert = couch_pgp_session:client_cert(Session),
                    Channel = channel_of(M, Session),
                    %% A request never runs when its answer could not be encrypted (the
                    %% certificate may have expired since the session began, in a token
                    %% issued before sessions ended with their certificate): refused here,
                    %% in plaintext, since there is nobody to encrypt to. A channel answer is
                    %% sealed with the session's own key, which cannot fail that way.
                    Channel =/= undefined orelse
                        refuse_unless_ok(couch_pgp_tokens:still_sealable(Cert)),
                    Key = couch_pgp_session:key(Session),
                    #{key => Key, sign_key => Key, client_cert => Cert,
                      client_fingerprint => couch_pgp_session:client_fingerprint(Session),
                      channel => Channel,
                      user => couch_pgp_session:user(Session), login => false};
                {error, Reason} ->
                    count_and_refuse(Reason)
            end
    end.

%% The session's channel keys when the request asks for the channel; a session from a token
%% made before channels existed has none (refused in plaintext: its key is not at hand).
channel_of(M, Session) ->
    case mochiweb_request:get_header_value(?CHANNEL_HEADER, M) of
        undefined ->
            undefined;
        "1" ->
            case couch_pgp_session:channel(Session) of
                undefined -> count_and_refuse(no_channel);
                Keys -> Keys
            end;
        _ ->
            count_and_refuse(bad_envelope)
    end.

%% A login's certificate, never seen before: a trial encryption (as when a session is issued).
sealable_or_refuse(Cert) ->
    refuse_unless_ok(couch_pgp_tokens:sealable(Cert)).

refuse_unless_ok(ok) -> ok;
refuse_unless_ok({error, Why}) -> count_and_refuse(couch_pgp_http_errors:from_cert(Why)).

%% The envelope, checked to be signed by the client: the session's client key, or for a
%% login, the certificate the envelope carries (decrypted once to read it, once to verify).
open_envelope(Msg, #{key := Key, client_cert := undefined}, Max) ->
    Envelope = parse_envelope(decrypt(Msg, Key, #{max_size => Max})),
    Cert = case maps:get(client_cert, Envelope) of
        C when is_binary(C) ->
            case couch_pgp:import_cert(C) of
                {ok, Imported} -> Imported;
                {error, R} -> count_and_refuse(couch_pgp_http_errors:from_cert(R))
            end;
        undefined ->
            count_and_refuse(bad_envelope)
    end,
    %% Refused in plaintext before anything runs: the answer (and the session this login
    %% would start) could not be encrypted to it.
    sealable_or_refuse(Cert),
    _ = decrypt(Msg, Key, #{verify_with => [Cert], max_size => Max}),
    couch_pgp_context:set(#{key => Key, sign_key => Key, client_cert => Cert, channel => undefined,
                            user => undefined, login => true, nonce => <<>>}),
    {Envelope, couch_pgp:fingerprint(Cert)};
open_envelope(Msg, #{channel := Keys, client_fingerprint := Fpr}, Max) when Keys =/= undefined ->
    %% Opened and parsed in one call; the AEAD tag under the session's client-to-server key
    %% is the proof that the session's client sent it.
    case couch_pgp_channel:open_request(Keys, Msg, Max) of
        {ok, Envelope} -> {Envelope, Fpr};
        {error, Reason} -> count_and_refuse(couch_pgp_http_errors:from_decrypt(Reason))
    end;
open_envelope(Msg, #{key := Key, client_cert := Cert, client_fingerprint := Fpr}, Max) ->
    {parse_envelope(decrypt(Msg, Key, #{verify_with => [Cert], max_size => Max})), Fpr}.

decrypt(Msg, Key, Opts) ->
    case couch_pgp:decrypt(Msg, Key, Opts) of
        {ok, Plain, _Signers} -> Plain;
        {error, Reason} -> count_and_refuse(couch_pgp_http_errors:from_decrypt(Reason))
    end.

parse_envelope(Plain) ->
    case couch_pgp_envelope:parse_request(Plain) of
        {ok, E} -> E;
        {error, R} -> count_and_refuse(R)
    end.

inner_method('POST', EnvMethod) ->
    Known = [<<"GET">>, <<"HEAD">>, <<"POST">>, <<"PUT">>, <<"DELETE">>, <<"COPY">>],
    case lists:member(EnvMethod, Known) of
        true -> binary_to_existing_atom(EnvMethod);
        false -> count_and_refuse(wrong_method)
    end;
inner_method(Method, _EnvMethod) ->
    Method.

%% Bodies CouchDB reads from the socket itself (attachments, multipart) and responses it
%% streams cannot go through here; refuse them before anything runs.
refuse_unsupported(#httpd{path_parts = Parts}) ->
    case streams(Parts) of
        true -> refuse(streamed);
        false -> ok
    end,
    case attachment_path(Parts) of
        true -> refuse(unsupported_body);
        false -> ok
    end.

refuse_unsupported_type(InnerType) ->
    case string:prefix(string:lowercase(InnerType), <<"multipart/">>) of
        nomatch -> ok;
        _ -> refuse(unsupported_body)
    end.

streams(Parts) ->
    Streaming = [<<"_all_docs">>, <<"_changes">>, <<"_find">>, <<"_view">>, <<"_design_docs">>,
                 <<"_local_docs">>, <<"_bulk_get">>, <<"_all_dbs">>, <<"_show">>, <<"_list">>,
                 <<"_update">>, <<"_rewrite">>, <<"_search">>, <<"_nouveau">>,
                 <<"_db_updates">>, <<"_scheduler">>],
    lists:any(fun(P) -> lists:member(P, Streaming) end, Parts).

attachment_path([<<"_", _/binary>> | _]) -> false;
attachment_path([_Db, <<"_design">>, _DDoc, <<"_", _/binary>> | _]) -> false;
attachment_path([_Db, <<"_design">>, _DDoc, _Att | _]) -> true;
attachment_path([_Db, <<"_local">> | _]) -> false;
attachment_path([_Db, <<"_", _/binary>> | _]) -> false;
attachment_path([_Db, _Doc, _Att | _]) -> true;
attachment_path(_) -> false.

split_raw_path(RawPath) ->
    case string:split(list_to_binary(RawPath), <<"?">>) of
        [Path, Query] -> {Path, Query};
        [Path] -> {Path, <<>>}
    end.

%% A copy of the mochiweb request with the inner method, whose body is `Body' and whose
%% headers describe it.
with_body(M, Method, ContentType, Body) ->
    put(mochiweb_request_body, Body),
    put(mochiweb_request_body_length, byte_size(Body)),
    Headers0 = mochiweb_request:get(headers, M),
    Headers1 = lists:foldl(fun(K, H) -> mochiweb_headers:delete_any(K, H) end, Headers0,
                           ["Content-Encoding", "Transfer-Encoding", ?SESSION_HEADER]),
    Headers = mochiweb_headers:enter("Content-Type", binary_to_list(ContentType),
                  mochiweb_headers:enter("Content-Length", integer_to_list(byte_size(Body)),
                                         Headers1)),
    mochiweb_request:new(mochiweb_request:get(socket, M), mochiweb_request:get(opts, M),
                         Method, mochiweb_request:get(raw_path, M),
                         mochiweb_request:get(version, M), Headers).

-spec count_and_refuse(couch_pgp_http_errors:reason()) -> no_return().
count_and_refuse(Reason) ->
    couch_pgp_stats:count(requests_refused),
    audit_refusal(Reason),
    refuse(Reason).

%% Who (as far as known), what, why; never the body.
audit_refusal(Reason) ->
    {User, Client} = case couch_pgp_context:client_cert() of
        C when is_binary(C) -> {couch_pgp_context:user(), couch_pgp:fingerprint(C)};
        undefined -> {undefined, undefined}
    end,
    couch_pgp_audit:event(request_refused, [{reason, Reason}, {user, User}, {client, Client}]).

-spec refuse(couch_pgp_http_errors:reason()) -> no_return().
refuse(Reason) ->
    throw(couch_pgp_http_errors:to_chttpd(Reason)).

%% ----------------------------------------------------------------- responses

encrypt_response(#{client_cert := ClientCert, sign_key := SignKey, nonce := Nonce} = Ctx,
                 Req, Code, Headers, Body0) ->
    Body = with_login_session(Ctx, Code, Body0),
    %% A binary body is either raw (sent as it is) or a JSON string that chttpd encodes
    %% after this hook; an EJSON term is always encoded after it. Decided once, from the
    %% headers, which are scanned only for a binary.
    Raw = is_binary(Body) andalso not json_response(Headers),
    Plaintext = case is_binary(Body) andalso not Raw of
        %% A JSON string (send_json of a binary, as the config API does).
        true -> {ok, <<"application/json">>, iolist_to_binary(?JSON_ENCODE(Body))};
        false -> response_plaintext(Body, Headers)
    end,
    case Plaintext of
        {ok, ContentType, Plain} when map_get(channel, Ctx) =/= undefined ->
            seal_channel_response(Ctx, Req, Code, Headers, Raw, ContentType, Plain);
        {ok, ContentType, Plain} ->
            Envelope = couch_pgp_envelope:response(Code, Nonce, ContentType, Plain),
            case couch_pgp:encrypt(Envelope, [ClientCert], #{sign_with => SignKey}) of
                {ok, Armored} ->
                    couch_pgp_stats:count(responses_encrypted),
                    encrypted_response(Req, Code, [{"X-PGP-Encrypted", "1"}], Headers, Raw, Armored);
                {error, Why} ->
                    cannot_encrypt(Why)
            end;
        streamed ->
            %% Refused before it ran where the path says so; this is the safety net.
            couch_pgp_context:set(Ctx),
            refuse(streamed)
    end.

%% The hook's answer: a raw response is sent as the message itself; a JSON response is
%% encoded after this hook, so the message is wrapped. The ETag is derived from the
%% plaintext body, and goes.
encrypted_response(Req, Code, Extra, Headers, true, Msg) ->
    [Req, Code, [{"Content-Type", ?CTYPE} | Extra] ++ drop_headers(["content-type", "etag"], Headers), Msg];
encrypted_response(Req, Code, Extra, Headers, false, Msg) ->
    [Req, Code, Extra ++ drop_headers(["etag"], Headers), {[{<<"pgp">>, Msg}]}].

%% The channel's answer: the response envelope sealed under the session's server-to-client
%% key, in one NIF call. Raw responses carry the message itself; JSON ones too when the client
%% accepts `application/pgp-encrypted' (sent through couch_pgp_raw_reply, since chttpd
%% encodes a JSON body after this hook), else its base64 in `{"pgp": ...}'.
seal_channel_response(#{channel := Keys, nonce := Nonce}, Req, Code, Headers, Raw, CType, Plain) ->
    Binary = Raw orelse accepts_binary(Req),
    Encoding = case Binary of
        true -> binary;
        false -> base64
    end,
    case couch_pgp_channel:seal_response(Keys, Code, Nonce, CType, Plain, Encoding) of
        {ok, Sealed} when Binary, not Raw ->
            couch_pgp_stats:count(responses_encrypted),
            #httpd{mochi_req = M} = Req,
            [_, _, Hs, _] = encrypted_response(Req, Code, channel_headers(), Headers, true, Sealed),
            [Req#httpd{mochi_req = couch_pgp_raw_reply:wrap(M, Sealed)}, Code, Hs, null];
        {ok, Sealed} ->
            couch_pgp_stats:count(responses_encrypted),
            encrypted_response(Req, Code, channel_headers(), Headers, Raw, Sealed);
        {error, Why} ->
            cannot_encrypt(Why)
    end.

channel_headers() ->
    [{"X-PGP-Encrypted", "1"}, {?CHANNEL_HEADER, "1"}].

%% Whether the request's Accept names `application/pgp-encrypted' (alone or among others).
accepts_binary(#httpd{mochi_req = M}) ->
    case mochiweb_request:get_header_value("accept", M) of
        undefined -> false;
        Accept -> string:find(string:lowercase(Accept), ?CTYPE) =/= nomatch
    end.

-spec cannot_encrypt(term()) -> no_return().
cannot_encrypt(Why) ->
    couch_log:error("couch_pgp: response not encrypted, connection closed: ~p", [Why]),
    %% No plaintext instead: drop the context so that the error response to this throw is
    %% not encrypted either, and CouchDB closes the exchange.
    couch_pgp_context:clear(),
    couch_pgp_stats:count(responses_refused),
    exit({shutdown, couch_pgp_cannot_encrypt}).

%% A successful encrypted login also starts a couch_pgp session for that user and client
%% key: its description (token, session certificate, signed statement) rides in the login
%% response, so that the next request can already be encrypted.
with_login_session(#{login := true, client_cert := Cert}, 200, {Props}) when is_list(Props) ->
    %% CouchDB builds this body with atom keys.
    Get = fun(K) -> couch_util:get_value(K, Props, couch_util:get_value(binary_to_atom(K), Props)) end,
    case {Get(<<"ok">>), Get(<<"name">>)} of
        {true, User} when is_binary(User) ->
            case couch_pgp_tokens:issue(User, Cert) of
                {ok, Token, Session} ->
                    case couch_pgp_tokens:describe(Token, Session) of
                        {ok, Desc} ->
                            couch_pgp_audit:event(login, [{user, User},
                                                          {client, couch_pgp:fingerprint(Cert)},
                                                          {session, created}]),
                            {Props ++ [{<<"pgp_session">>, Desc}]};
                        {error, Why} ->
                            login_without_session(User, Why, Props)
                    end;
                {error, Why} ->
                    login_without_session(User, Why, Props)
            end;
        _ ->
            {Props}
    end;
with_login_session(#{login := true, client_cert := Cert}, Code, Body) when Code >= 400 ->
    couch_pgp_audit:event(login_refused, [{status, Code}, {client, couch_pgp:fingerprint(Cert)}]),
    Body;
with_login_session(_Ctx, _Code, Body) ->
    Body.

%% The login itself succeeded (CouchDB set its cookie); the client sees an answer without
%% `pgp_session' and can start one with POST /_pgp/session. The certificate was checked
%% before the login ran, so this is the node's own failure.
login_without_session(User, Why, Props) ->
    couch_log:error("couch_pgp: login of user=~s answered without a session: ~p", [User, Why]),
    couch_pgp_audit:event(login, [{user, User}, {session, not_created}]),
    {Props}.

%% A raw body keeps the type it is served with; the wire's Content-Type is the envelope's.
response_plaintext(Body, Headers) when is_binary(Body) ->
    Type = case header_values("content-type", Headers) of
        [T | _] -> list_to_binary(T);
        [] -> <<"application/octet-stream">>
    end,
    {ok, Type, Body};
response_plaintext(Body, _) when Body =:= chunked; is_integer(Body); Body =:= undefined ->
    streamed;
response_plaintext({length, _}, _) ->
    streamed;
response_plaintext(Body, _) ->
    {ok, <<"application/json">>, iolist_to_binary(?JSON_ENCODE(Body))}.

header_values(Name, Headers) ->
    [couch_util:to_list(V) || {K, V} <- Headers, string:lowercase(couch_util:to_list(K)) =:= Name].

%% Whether chttpd will JSON-encode the body after this hook: send_json always adds
%% `Cache-Control: must-revalidate' and a negotiated JSON or text/plain content type, which
%% a raw send_response does not. Only matters for binary bodies, which are ambiguous.
json_response(Headers) ->
    Get = fun(Name) -> [string:lowercase(V) || V <- header_values(Name, Headers)] end,
    lists:member("must-revalidate", Get("cache-control")) andalso
        lists:any(fun(T) -> lists:member(T, ["application/json", "text/plain;charset=utf-8"]) end,
                  Get("content-type")).

%% Headers without those named (lowercase names); only names of a matching length are
%% lowercased to compare.
drop_headers(Lower, Headers) ->
    Sizes = [length(N) || N <- Lower],
    [H || {K, _} = H <- Headers, not named(couch_util:to_list(K), Lower, Sizes)].

named(K, Lower, Sizes) ->
    lists:member(length(K), Sizes) andalso lists:member(string:lowercase(K), Lower).
