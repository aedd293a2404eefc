%% The seed's workflow, end to end, printing what would travel between client and server.
%% Run with `make demo`.
-module(seed_workflow).
-export([main/0]).

main() ->
    ok = io:setopts([{encoding, unicode}]),
    say("1. client: C = new Security(); send C.getPublicKey()"),
    {ok, C0} = couch_pgp_security:new(#{user_id => <<"client session">>}),
    CPub = couch_pgp_security:get_public_key(C0),
    wire("client -> server: public key", CPub),

    say("3. server: S = new Security(cPubKey)"),
    {ok, S} = couch_pgp_security:new(#{user_id => <<"server session">>, remote => CPub}),
    SPub = couch_pgp_security:get_public_key(S),
    wire("server -> client: public key", SPub),

    say("5. client: C.setRemotePublicKey(sPubKey)"),
    {ok, C} = couch_pgp_security:set_remote_public_key(C0, SPub),
    io:format("   client pins server fingerprint ~s~n", [couch_pgp_security:remote_fingerprint(C)]),
    {error, remote_key_already_set} = couch_pgp_security:set_remote_public_key(C, SPub),
    io:format("   a second setRemotePublicKey is refused: remote_key_already_set~n"),

    Doc = {[{<<"_id">>, <<"patient:0001">>}, {<<"name">>, <<"Anna Müller"/utf8>>},
            {<<"allergies">>, [<<"penicillin">>]}, {<<"temperature">>, 37.2}]},
    say("client signs the document over its RFC 8785 canonical JSON: C.signDoc(doc)"),
    {ok, Signed} = couch_pgp_security:sign_doc(C, Doc),
    {ok, Canonical} = couch_pgp:canonical_json(Signed),
    say("client -> server: C.encode(signed document)"),
    {ok, Request} = couch_pgp_security:encode(C, Canonical),
    wire("client -> server: encrypted request body", Request),

    say("server: S.decode(message) decrypts and requires the client's signature"),
    {ok, Received} = couch_pgp_security:decode(S, Request),
    {ok, ReceivedDoc} = couch_pgp:json_decode(Received),
    {ok, Signers} = couch_pgp_security:verify_doc(S, ReceivedDoc),
    io:format("   server sees ~ts~n   document signed by ~s~n",
              [unicode:characters_to_list(Received), Signers]),

    say("server -> client: S.encode(response)"),
    {ok, Response} = couch_pgp_security:encode(S, <<"{\"ok\":true,\"id\":\"patient:0001\"}">>),
    wire("server -> client: encrypted response", Response),
    {ok, Plain} = couch_pgp_security:decode(C, Response),
    io:format("   client reads ~s~n", [Plain]),

    say("tampering is detected"),
    Tampered = tamper(Response),
    io:format("   decode(tampered response) -> ~p~n", [couch_pgp_security:decode(C, Tampered)]),
    {ok, Eve} = couch_pgp_security:new(#{remote => CPub}),
    {ok, Forged} = couch_pgp_security:encode(Eve, <<"{\"ok\":true}">>),
    io:format("   decode(message signed by someone else) -> ~p~n", [couch_pgp_security:decode(C, Forged)]),
    ok.

%% Flip one bit of the last base64 line of the body, keeping the armor valid.
tamper(Armored) ->
    Lines = binary:split(Armored, <<"\n">>, [global]),
    {Body, [_Crc, End | Rest]} = lists:split(length(Lines) - 4, Lines),
    {Init, [Last]} = lists:split(length(Body) - 1, Body),
    Raw = base64:decode(Last),
    <<B, Tail/binary>> = Raw,
    Bad = base64:encode(<<(B bxor 1), Tail/binary>>),
    iolist_to_binary(lists:join(<<"\n">>, Init ++ [Bad, End | Rest])).

say(Text) -> io:format("~n== ~ts~n", [Text]).

wire(What, Bytes) ->
    Lines = binary:split(Bytes, <<"\n">>, [global]),
    Shown = lists:sublist(Lines, 4),
    io:format("   [~s, ~B bytes]~n", [What, byte_size(Bytes)]),
    [io:format("   | ~s~n", [L]) || L <- Shown],
    io:format("   | ...~n").
