%% Signed documents: what is covered, co-signers, and every refusal.
-module(couch_pgp_doc_tests).
-include_lib("eunit/include/eunit.hrl").

key_and_cert() ->
    {ok, K} = couch_pgp:generate_key(),
    {K, couch_pgp:public_cert(K)}.

doc() ->
    {[
        {<<"_id">>, <<"patient:0001">>},
        {<<"_rev">>, <<"1-abc">>},
        {<<"name">>, <<"Anna Müller"/utf8>>},
        {<<"allergies">>, [<<"penicillin">>]},
        {<<"temperature">>, 37.2}
    ]}.

set(Doc, Key, Value) ->
    {Props} = Doc,
    {lists:keystore(Key, 1, Props, {Key, Value})}.

%% The exact bytes a signature covers, pinned so other implementations can match them.
payload_is_pinned_test() ->
    Doc = {[
        {<<"_id">>, <<"a">>},
        {<<"_rev">>, <<"3-x">>},
        {<<"_revisions">>, {[{<<"start">>, 3}]}},
        {<<"n">>, 1},
        {<<"pgp_signatures">>, []},
        {<<"_attachments">>, {[{<<"f.txt">>, {[{<<"content_type">>, <<"text/plain">>},
                                               {<<"data">>, <<"aGk=">>}]}}]}}
    ]},
    ?assertEqual(
        {ok, <<"{\"_attachments\":{\"f.txt\":{\"content_type\":\"text/plain\","
               "\"digest\":\"sha256-j0NDRmSPa5bfid2pAcUXaxCm2Dlh3TwayItZstwyeqQ=\",\"length\":2}},"
               "\"_id\":\"a\",\"n\":1}">>},
        couch_pgp_doc:signing_payload(Doc, #{})).

sign_and_verify_test() ->
    {A, CA} = key_and_cert(),
    FA = couch_pgp:fingerprint(A),
    {ok, Signed} = couch_pgp:sign_doc(doc(), A),
    {Props} = Signed,
    [{[{<<"signer">>, FA}, {<<"sig">>, Sig64}]}] = proplists:get_value(<<"pgp_signatures">>, Props),
    ?assert(is_binary(base64:decode(Sig64))),
    ?assertEqual({ok, [FA]}, couch_pgp:verify_doc(Signed, [CA])),
    %% What CouchDB changes on its own does not break the signature.
    Replicated = set(set(set(Signed, <<"_rev">>, <<"7-zzz">>), <<"_conflicts">>, [<<"2-a">>]),
                     <<"_revisions">>, {[{<<"start">>, 7}, {<<"ids">>, []}]}),
    ?assertEqual({ok, [FA]}, couch_pgp:verify_doc(Replicated, [CA])).

changed_after_signing_test() ->
    {A, CA} = key_and_cert(),
    {ok, Signed} = couch_pgp:sign_doc(doc(), A),
    ?assertEqual({error, bad_signature}, couch_pgp:verify_doc(set(Signed, <<"temperature">>, 38.5), [CA])),
    ?assertEqual({error, bad_signature}, couch_pgp:verify_doc(set(Signed, <<"extra">>, true), [CA])),
    %% The signature is bound to the id: it cannot be moved to another document.
    ?assertEqual({error, bad_signature}, couch_pgp:verify_doc(set(Signed, <<"_id">>, <<"patient:0002">>), [CA])),
    ?assertEqual({error, bad_signature}, couch_pgp:verify_doc(set(Signed, <<"_deleted">>, true), [CA])).

refusals_test() ->
    {A, CA} = key_and_cert(),
    {_B, CB} = key_and_cert(),
    {ok, Signed} = couch_pgp:sign_doc(doc(), A),
    ?assertEqual({error, unsigned}, couch_pgp:verify_doc(doc(), [CA])),
    ?assertEqual({error, unsigned}, couch_pgp:verify_doc(set(doc(), <<"pgp_signatures">>, []), [CA])),
    ?assertEqual({error, unknown_signer}, couch_pgp:verify_doc(Signed, [CB])),
    ?assertEqual({error, malformed_signatures}, couch_pgp:verify_doc(set(doc(), <<"pgp_signatures">>, <<"x">>), [CA])),
    ?assertEqual({error, malformed_signatures},
                 couch_pgp:verify_doc(set(doc(), <<"pgp_signatures">>, [{[{<<"signer">>, 1}]}]), [CA])),
    ?assertEqual({error, malformed_signatures},
                 couch_pgp:verify_doc(set(doc(), <<"pgp_signatures">>,
                                          [{[{<<"signer">>, <<"AB">>}, {<<"sig">>, <<"%%%">>}]}]), [CA])),
    %% A signature entry that names A but carries B's signature is not A's.
    {ok, ByB} = couch_pgp:sign_doc(doc(), element(1, key_and_cert())),
    {BProps} = ByB,
    [{[{<<"signer">>, _}, {<<"sig">>, BSig}]}] = proplists:get_value(<<"pgp_signatures">>, BProps),
    Forged = set(doc(), <<"pgp_signatures">>,
                 [{[{<<"signer">>, couch_pgp:fingerprint(A)}, {<<"sig">>, BSig}]}]),
    ?assertEqual({error, bad_signature}, couch_pgp:verify_doc(Forged, [CA])),
    ?assertEqual({error, {invalid_json, invalid_value}}, couch_pgp:verify_doc(not_a_doc, [CA])),
    ?assertError({bad_option, strict}, couch_pgp:verify_doc(Signed, [CA], #{strict => true})).

co_signers_test() ->
    {A, CA} = key_and_cert(),
    {B, CB} = key_and_cert(),
    {_C, CC} = key_and_cert(),
    {FA, FB} = {couch_pgp:fingerprint(A), couch_pgp:fingerprint(B)},
    {ok, ByA} = couch_pgp:sign_doc(doc(), A),
    {ok, ByBoth} = couch_pgp:sign_doc(ByA, B),
    ?assertEqual({ok, [FA, FB]}, couch_pgp:verify_doc(ByBoth, [CA, CB])),
    ?assertEqual({ok, [FA, FB]}, couch_pgp:verify_doc(ByBoth, [CA, CB], #{require => all})),
    ?assertEqual({ok, [FA]}, couch_pgp:verify_doc(ByA, [CA, CB])),
    ?assertEqual({error, unsigned}, couch_pgp:verify_doc(ByA, [CA, CB], #{require => all})),
    %% A signature by someone not asked about is skipped, not trusted.
    ?assertEqual({ok, [FB]}, couch_pgp:verify_doc(ByBoth, [CB, CC])),
    %% Signing again replaces the signer's earlier signature instead of piling up.
    {ok, Again} = couch_pgp:sign_doc(ByBoth, A),
    {Props} = Again,
    ?assertEqual(2, length(proplists:get_value(<<"pgp_signatures">>, Props))),
    ?assertEqual({ok, [FB, FA]}, couch_pgp:verify_doc(Again, [CA, CB])).

attachments_test() ->
    {A, CA} = key_and_cert(),
    Att = fun(Data) -> {[{<<"report.pdf">>, {[{<<"content_type">>, <<"application/pdf">>},
                                               {<<"data">>, base64:encode(Data)}]}}]} end,
    {ok, Signed} = couch_pgp:sign_doc(set(doc(), <<"_attachments">>, Att(<<"%PDF-1.7 report">>)), A),
    ?assertEqual({ok, [couch_pgp:fingerprint(A)]}, couch_pgp:verify_doc(Signed, [CA])),
    ?assertEqual({error, bad_signature},
                 couch_pgp:verify_doc(set(Signed, <<"_attachments">>, Att(<<"%PDF-1.7 forged">>)), [CA])),
    %% Once stored, CouchDB returns stubs; the content must then be supplied.
    Stub = {[{<<"report.pdf">>, {[{<<"content_type">>, <<"application/pdf">>},
                                  {<<"digest">>, <<"md5-xyz">>}, {<<"stub">>, true}]}}]},
    Stored = set(Signed, <<"_attachments">>, Stub),
    ?assertEqual({error, {attachment_content_missing, <<"report.pdf">>}}, couch_pgp:verify_doc(Stored, [CA])),
    ?assertEqual({ok, [couch_pgp:fingerprint(A)]},
                 couch_pgp:verify_doc(Stored, [CA], #{attachments => #{<<"report.pdf">> => <<"%PDF-1.7 report">>}})),
    ?assertEqual({error, bad_signature},
                 couch_pgp:verify_doc(Stored, [CA], #{attachments => #{<<"report.pdf">> => <<"other">>}})).

maps_test() ->
    {A, CA} = key_and_cert(),
    Doc = #{<<"_id">> => <<"m1">>, <<"_rev">> => <<"1-a">>, note => <<"map doc">>},
    {ok, Signed} = couch_pgp:sign_doc(Doc, A),
    ?assert(is_map(Signed)),
    ?assertEqual({ok, [couch_pgp:fingerprint(A)]}, couch_pgp:verify_doc(Signed, [CA])),
    %% The same document as EJSON verifies with the map's signature.
    Ejson = {[{<<"_id">>, <<"m1">>}, {<<"note">>, <<"map doc">>},
              {<<"pgp_signatures">>, maps:get(<<"pgp_signatures">>, Signed)}]},
    ?assertEqual({ok, [couch_pgp:fingerprint(A)]}, couch_pgp:verify_doc(Ejson, [CA])).
