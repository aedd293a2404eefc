%% Garbage in, clean refusal out, for the parsers that run in Erlang: the request envelope
%% (couch_pgp_envelope), sealed session tokens (couch_pgp_session:open/3) and the tunnel's
%% inner request (couch_pgp_tunnel_request). Each property asserts the exact set of answers
%% a parser may give; a crash or any other term fails it.
%%
%% Counts are small by default (a few seconds in `rebar3 eunit'); `make fuzz' runs them with
%% FUZZ_NUMTESTS (a multiplier of these counts) raised.
-module(couch_pgp_fuzz_tests).
-include_lib("proper/include/proper.hrl").
-include_lib("eunit/include/eunit.hrl").

-define(RUN(Prop, N, Secs),
        {timeout, Secs * scale(), ?_assert(proper:quickcheck(Prop, [{numtests, N * scale()},
                                                                   {to_file, user}]))}).
-define(SECRET, <<0:256>>).
-define(OTHER_SECRET, <<1:256>>).
%% Sessions are made for real keys, whose expiry is counted from the machine's clock.
-define(NOW, erlang:system_time(second)).

scale() ->
    case os:getenv("FUZZ_NUMTESTS") of
        false -> 1;
        N -> max(1, list_to_integer(N))
    end.

properties_test_() ->
    {setup, fun fixture/0, fun(_) -> ok end, fun(F) ->
        [
            ?RUN(prop_envelope_text(), 500, 60),
            ?RUN(prop_envelope_members(), 500, 60),
            ?RUN(prop_envelope_check(), 500, 60),
            ?RUN(prop_token_mutated(F), 300, 60),
            ?RUN(prop_token_garbage(), 500, 60),
            ?RUN(prop_token_other_secret(F), 5, 60),
            ?RUN(prop_tunnel_members(), 1000, 60),
            ?RUN(prop_tunnel_text(), 500, 60)
        ]
    end}.

fixture() ->
    {ok, Client} = couch_pgp:generate_key(),
    {ok, S} = couch_pgp_session:new(<<"alice">>, couch_pgp:public_cert(Client), ?NOW + 3600,
                                     <<"couch_pgp session">>),
    #{token => couch_pgp_session:seal(S, ?SECRET), session => S}.


%% ----------------------------------------------------------------- envelope

envelope_text() ->
    couch_pgp_envelope:request(<<"PUT">>, <<"/db/doc">>, <<"a=1">>, ?NOW * 1000,
                               <<"application/json">>, <<"{}">>).

prop_envelope_text() ->
    ?FORALL(Text, oneof([binary(), mutation(envelope_text()), json_like()]),
        envelope_answer(couch_pgp_envelope:parse_request(Text))).

%% Every member present or not, of any JSON type: the envelope is refused unless each has
%% its type, and an accepted one goes through check_request/3 to one of its answers.
prop_envelope_members() ->
    ?FORALL(Props, members([<<"v">>, <<"method">>, <<"path">>, <<"query">>, <<"ts">>,
                            <<"nonce">>, <<"content_type">>, <<"body">>, <<"client_cert">>]),
        begin
            {ok, Text} = canonical_or_dup({Props}),
            envelope_answer(couch_pgp_envelope:parse_request(Text))
        end).

%% Well-typed envelopes with arbitrary values against arbitrary requests and clocks.
prop_envelope_check() ->
    ?FORALL({Env, Actual, Clock},
            {#{method => oneof([method(), utf8()]), path => utf8(), query => utf8(),
               ts => integer(), nonce => oneof([utf8(), base64_of(binary())]),
               content_type => utf8(), body => utf8(), client_cert => undefined},
             #{method => oneof([method(), utf8()]), path => utf8(), query => utf8()},
             {integer(), non_neg_integer()}},
        lists:member(couch_pgp_envelope:check_request(Env, Actual, Clock),
                     [ok, {error, wrong_method}, {error, wrong_path}, {error, stale},
                      {error, bad_nonce}])).

envelope_answer({error, bad_envelope}) -> true;
envelope_answer({ok, #{nonce := N} = Env}) when is_binary(N) ->
    Actual = maps:with([method, path, query], Env),
    lists:member(couch_pgp_envelope:check_request(Env, Actual, {?NOW * 1000, 60000}),
                 [ok, {error, stale}, {error, bad_nonce}]);
envelope_answer(_) -> false.

%% ----------------------------------------------------------------- session tokens

prop_token_mutated(#{token := Token}) ->
    ?FORALL(T, oneof([mutation(Token), flip_bit(Token), truncation(Token)]),
        case couch_pgp_session:open(T, ?SECRET, ?NOW) of
            {error, bad_token} -> true;
            %% Base64url has spare bits in its last character, and a mutation may give the
            %% same bytes back: then it is the same session.
            {ok, S} -> couch_pgp_session:user(S) =:= <<"alice">>;
            _ -> false
        end).

prop_token_garbage() ->
    ?FORALL(T, oneof([binary(), base64url_of(binary()),
                      base64url_of(?LET(B, binary(), <<1, B/binary>>)),
                      base64url_of(?LET(B, binary(28), <<1, B/binary>>))]),
        couch_pgp_session:open(T, ?SECRET, ?NOW) =:= {error, bad_token}).

prop_token_other_secret(#{token := Token}) ->
    ?FORALL(Now, integer(),
        couch_pgp_session:open(Token, ?OTHER_SECRET, Now) =:= {error, bad_token}).

%% A token under our own secret whose content is not one we wrote (a term of another
%% shape, or not a term at all) is refused too, not a crash.
token_sealed_over_other_terms_test_() ->
    Terms = [term_to_binary(x), term_to_binary({2, a, b, c, d, e}), term_to_binary({1, a}),
             <<"not a term">>, <<>>,
             term_to_binary({1, <<"alice">>, <<"cert">>, ?NOW + 10, <<"pw">>, <<"not a key">>})],
    [?_assertEqual({error, bad_token}, couch_pgp_session:open(seal_raw(P), ?SECRET, ?NOW))
     || P <- Terms].

token_expired_test() ->
    #{token := Token, session := S} = fixture(),
    Expires = couch_pgp_session:expires(S),
    ?assertEqual({error, expired}, couch_pgp_session:open(Token, ?SECRET, Expires)),
    ?assertMatch({ok, _}, couch_pgp_session:open(Token, ?SECRET, Expires - 1)).

%% The token format of couch_pgp_session:seal/2, around any plaintext.
seal_raw(Plain) ->
    IV = crypto:strong_rand_bytes(12),
    {C, Tag} = crypto:crypto_one_time_aead(aes_256_gcm, ?SECRET, IV, Plain,
                                           <<"couch_pgp session token v1">>, true),
    b64url(<<1, IV/binary, Tag/binary, C/binary>>).

%% ----------------------------------------------------------------- tunnel inner request

-define(INNER_KEYS, [<<"method">>, <<"path">>, <<"query">>, <<"headers">>, <<"body">>,
                     <<"body_base64">>]).

prop_tunnel_members() ->
    ?FORALL(Props, tunnel_members(), tunnel_answer(couch_pgp_tunnel_request:parse(Props))).

prop_tunnel_text() ->
    Good = <<"{\"method\":\"GET\",\"path\":\"/db/_changes\",\"query\":\"since=0\","
             "\"headers\":{\"accept\":\"application/json\",\"Content-Type\":\"text/plain\"},"
             "\"body\":\"aGk=\",\"body_base64\":true}">>,
    ?FORALL(Text, oneof([mutation(Good), json_like()]),
        case couch_pgp:json_decode(Text) of
            {ok, {Props}} -> tunnel_answer(couch_pgp_tunnel_request:parse(Props));
            {ok, Other} -> tunnel_answer(couch_pgp_tunnel_request:parse(Other));
            {error, _} -> true
        end).

tunnel_answer({error, tunnel_request}) -> true;
tunnel_answer({error, tunnel_base64}) -> true;
tunnel_answer({ok, #{method := M, path := <<"/", _/binary>> = P, query := Q, headers := Hs,
                     content_type := CT, body := B, stream := S}}) ->
    Dropped = ["host", "content-length", "authorization", "cookie", "connection",
               "transfer-encoding", "content-type", "x-pgp-session", "x-pgp-tunnel-mark"],
    lists:member(M, [get, head, post, put, delete, copy])
        andalso binary:match(P, [<<"\r">>, <<"\n">>, <<" ">>, <<"#">>, <<"?">>]) =:= nomatch
        andalso binary:match(Q, [<<"\r">>, <<"\n">>, <<" ">>, <<"#">>]) =:= nomatch
        andalso is_binary(CT) andalso is_binary(B) andalso is_boolean(S)
        andalso lists:all(fun({K, V}) ->
                              not lists:member(string:lowercase(K), Dropped)
                                  andalso not lists:member($\r, K ++ V)
                                  andalso not lists:member($\n, K ++ V)
                          end, Hs);
tunnel_answer(_) ->
    false.

tunnel_members() ->
    ?LET(Ms, list(oneof([
            {<<"method">>, oneof([method(), <<"HEAD">>, any_json()])},
            {<<"path">>, oneof([path(), any_json(), ?LET(B, binary(), <<"/", B/binary>>)])},
            {<<"query">>, oneof([utf8(), <<"a b">>, <<"a#b">>, any_json()])},
            {<<"headers">>, oneof([{list({header_name(), oneof([utf8(), <<"a\r\nb">>])})},
                                   {list({utf8(), any_json()})}, any_json()])},
            {<<"body">>, oneof([utf8(), base64_of(binary()), any_json()])},
            {<<"body_base64">>, oneof([boolean(), any_json()])},
            {<<"stream">>, oneof([boolean(), any_json()])},
            {utf8(), any_json()}
         ])),
         Ms).

path() ->
    ?LET(Segs, list(oneof([<<"db">>, <<"_pgp">>, <<"_PGP">>, <<"%5Fpgp">>, <<"doc">>,
                           <<"a?b">>, <<"a b">>, <<"\n">>, utf8()])),
         iolist_to_binary([[<<"/">>, S] || S <- Segs])).

header_name() ->
    oneof([<<"Content-Type">>, <<"Host">>, <<"AUTHORIZATION">>, <<"cookie">>,
           <<"X-PGP-Session">>, <<"X-Pgp-Tunnel-Mark">>, <<"accept">>, <<"x\nevil">>, utf8(),
           binary()]).

%% ----------------------------------------------------------------- generators

method() -> oneof([<<"GET">>, <<"POST">>, <<"PUT">>, <<"DELETE">>, <<"COPY">>, <<"get">>]).

any_json() ->
    oneof([null, true, false, integer(), float(), utf8(), {[]}, [utf8()], {[{utf8(), 1}]}]).

%% Members of a JSON object: each name absent, once or twice, with a value of any type.
members(Names) ->
    ?LET(Ms, [oneof([[], [{N, value_for(N)}], [{N, any_json()}],
                     [{N, value_for(N)}, {N, any_json()}]]) || N <- Names],
         lists:append(Ms)).

value_for(<<"v">>) -> oneof([1, 2, 0]);
value_for(<<"ts">>) -> oneof([?NOW * 1000, integer()]);
value_for(<<"method">>) -> method();
value_for(<<"nonce">>) -> base64_of(binary());
value_for(_) -> utf8().

canonical_or_dup(Json) ->
    case couch_pgp:canonical_json(Json) of
        {ok, _} = Ok -> Ok;
        %% Duplicate names: the envelope parser sees them through json_decode's refusal.
        {error, {invalid_json, duplicate_key}} -> {ok, <<"{\"v\":1,\"v\":1}">>}
    end.

base64_of(Gen) -> ?LET(B, Gen, base64:encode(B)).
base64url_of(Gen) -> ?LET(B, Gen, b64url(B)).

b64url(Bin) ->
    << <<(case C of $+ -> $-; $/ -> $_; _ -> C end)>> || <<C>> <= base64:encode(Bin), C =/= $= >>.

json_like() ->
    ?LET(Parts, list(oneof([<<"{">>, <<"}">>, <<"[">>, <<"]">>, <<"\"v\"">>, <<"\"path\"">>,
                            <<"\"method\"">>, <<"\"/\"">>, <<":">>, <<",">>, <<"1">>,
                            <<"null">>, <<"\"\\ud800\"">>, <<"\"\\u0000\"">>, <<" ">>])),
         iolist_to_binary(Parts)).

flip_bit(Bin) ->
    ?LET(Pos, range(0, bit_size(Bin) - 1),
         begin
             <<H:Pos/bits, B:1, T/bits>> = Bin,
             <<H:Pos/bits, (1 - B):1, T/bits>>
         end).

truncation(Bin) -> ?LET(Len, range(0, byte_size(Bin) - 1), binary:part(Bin, 0, Len)).

%% Flip a byte, cut the tail, insert or delete bytes somewhere (as couch_pgp_prop_tests).
mutation(Bin) ->
    Size = byte_size(Bin),
    oneof([
        ?LET({Pos, X}, {range(0, Size - 1), range(1, 255)},
             begin
                 <<H:Pos/binary, B, T/binary>> = Bin,
                 <<H/binary, (B bxor X), T/binary>>
             end),
        ?LET(Len, range(0, Size - 1), binary:part(Bin, 0, Len)),
        ?LET({Pos, Extra}, {range(0, Size), non_empty(binary())},
             <<(binary:part(Bin, 0, Pos))/binary, Extra/binary,
               (binary:part(Bin, Pos, Size - Pos))/binary>>),
        ?LET({Pos, Len}, {range(0, Size - 1), range(1, 16)},
             <<(binary:part(Bin, 0, Pos))/binary,
               (binary:part(Bin, min(Size, Pos + Len), Size - min(Size, Pos + Len)))/binary>>)
    ]).
