%% Interoperability of couch_pgp with real peers: GnuPG 2.2, sqop (Sequoia's Stateless
%% OpenPGP CLI) and OpenPGP.js 6, in both directions.
%%
%% Each peer makes its own key, so nothing here only proves that couch_pgp agrees with
%% itself. Fingerprints of peer keys come from the peer (or from sq for sqop keys), never
%% from couch_pgp, so a wrong fingerprint in the core cannot make a comparison pass.
%% Peers run through couch_pgp_peer; a missing peer fails the test, it is never skipped.
-module(couch_pgp_interop_tests).

-include_lib("eunit/include/eunit.hrl").

-define(PASS, "interop passphrase 42").
-define(TIMEOUT, 60).
-define(GROUP_TIMEOUT, 180).

%% ================================================================= per-peer round trips

%% gpg compresses what it encrypts (ZIP to our certs, which state no compression
%% preference; ZLIB to its own keys). These tests first found the NIF built without
%% compression support, failing every default gpg message with {error, tampered}.
gpg_test_() ->
    peer_tests(gpg).

sqop_test_() ->
    peer_tests(sqop).

openpgpjs_test_() ->
    peer_tests(openpgpjs).

peer_tests(Peer) ->
    Name = atom_to_list(Peer),
    {timeout, ?GROUP_TIMEOUT,
        {setup,
            fun() -> peer_setup(Peer) end,
            fun teardown/1,
            fun(Ctx) ->
                [
                    test(Name ++ " decrypts our armored signed messages and verifies us",
                        fun() -> peer_reads_ours(Ctx, true) end),
                    test(Name ++ " decrypts our binary signed messages and verifies us",
                        fun() -> peer_reads_ours(Ctx, false) end),
                    test(Name ++ "'s signed messages to us decrypt and verify here",
                        fun() -> we_read_peers(Ctx) end),
                    test(Name ++ " verifies our detached signatures",
                        fun() -> peer_verifies_ours(Ctx) end),
                    test(Name ++ "'s detached signatures verify here",
                        fun() -> we_verify_peers(Ctx) end),
                    test(Name ++ "'s secret key decrypts and signs here",
                        fun() -> peer_secret_key_works_here(Ctx) end)
                ] ++ peer_extra_tests(Peer, Ctx)
            end}}.

peer_extra_tests(gpg, Ctx) ->
    [
        test("gpg messages compressed with ZIP and ZLIB decrypt here",
            fun() -> gpg_compressed_messages(Ctx) end),
        test("a gpg compression bomb is refused as too_large",
            fun() -> gpg_compression_bomb(Ctx) end),
        test("gpg-signed message checked against another cert is unknown_signer",
            fun() -> gpg_signed_by_other_is_unknown_signer(Ctx) end),
        test("gpg-encrypted unsigned message with verify_with is unsigned",
            fun() -> gpg_unsigned_is_unsigned(Ctx) end)
    ];
peer_extra_tests(_, _) ->
    [].

%% 1. We encrypt and sign to the peer's key; the peer decrypts and checks our signature.
peer_reads_ours(#{peer_cert := PeerCert, us := Us, us_fpr := UsFpr} = Ctx, Armor) ->
    lists:foreach(
        fun({Label, Plain}) ->
            {ok, Msg} = couch_pgp:encrypt(Plain, [PeerCert], #{sign_with => Us, armor => Armor}),
            ?assertEqual({Label, Armor}, {Label, is_armored_message(Msg)}),
            {Got, Signers} = peer_decrypt(Ctx, write(Ctx, "msg", Msg), us),
            ?assertEqual({Label, Plain, [UsFpr]}, {Label, Got, Signers})
        end,
        payloads()).

%% 2. The peer encrypts to our cert and signs with its key.
we_read_peers(#{peer_cert := PeerCert, peer_fpr := PeerFpr, us := Us} = Ctx) ->
    lists:foreach(
        fun({Armor, {Label, Plain}}) ->
            Msg = peer_encrypt(Ctx, Plain, us, Armor),
            ?assertEqual({Label, Armor}, {Label, is_armored_message(Msg)}),
            ?assertEqual({Label, Armor, {ok, Plain, [PeerFpr]}},
                {Label, Armor, couch_pgp:decrypt(Msg, Us, #{verify_with => [PeerCert]})})
        end,
        [{Armor, P} || Armor <- [true, false], P <- payloads()]).

%% 3a. Our detached signatures, armored and binary, verify at the peer.
peer_verifies_ours(#{us := Us, us_fpr := UsFpr} = Ctx) ->
    lists:foreach(
        fun({Armor, {Label, Data}}) ->
            {ok, Sig} = couch_pgp:sign(Data, Us, #{armor => Armor}),
            ?assertEqual({Label, Armor, [UsFpr]},
                {Label, Armor, peer_verify(Ctx, Data, Sig, us)})
        end,
        [{Armor, P} || Armor <- [true, false], P <- payloads()]).

%% 3b. The peer's detached signatures, armored and binary, verify here.
we_verify_peers(#{peer_cert := PeerCert, peer_fpr := PeerFpr} = Ctx) ->
    lists:foreach(
        fun({Armor, {Label, Data}}) ->
            Sig = peer_sign(Ctx, Data, Armor),
            ?assertEqual({Label, Armor, {ok, PeerFpr}},
                {Label, Armor, couch_pgp:verify(Data, Sig, [PeerCert])})
        end,
        [{Armor, P} || Armor <- [true, false], P <- payloads()]).

%% 4. The peer's exported secret key, imported here, decrypts what the peer encrypted to
%% itself and makes signatures the peer accepts.
peer_secret_key_works_here(#{peer_cert := PeerCert, peer_fpr := PeerFpr} = Ctx) ->
    {Secret, Pass} = peer_export_secret(Ctx),
    case Pass of
        <<>> -> ok;
        _ -> ?assertEqual({error, bad_passphrase}, couch_pgp:import_secret(Secret, <<"wrong">>))
    end,
    {ok, Key} = couch_pgp:import_secret(Secret, Pass),
    ?assertEqual(PeerFpr, couch_pgp:fingerprint(Key)),
    {_, Plain} = hd(payloads()),
    Msg = peer_encrypt(Ctx, Plain, self, true),
    ?assertEqual({ok, Plain, [PeerFpr]}, couch_pgp:decrypt(Msg, Key, #{verify_with => [PeerCert]})),
    {ok, Sig} = couch_pgp:sign(Plain, Key),
    ?assertEqual([PeerFpr], peer_verify(Ctx, Plain, Sig, self)).

%% RFC 9580 says implementations SHOULD decompress ZLIB and ZIP, and gpg 2.2 picks one of
%% them for almost every message; uncompressed is the control that shows the rest works.
gpg_compressed_messages(#{us := Us, us_fpr := UsFpr} = Ctx) ->
    Plain = non_ascii(),
    lists:foreach(
        fun(Algo) ->
            Msg = gpg_encrypt(Ctx, Plain, UsFpr, ["--compress-algo", Algo]),
            ?assertEqual({Algo, {ok, Plain, []}}, {Algo, couch_pgp:decrypt(Msg, Us, #{})})
        end,
        ["none", "zip", "zlib"]).

%% 80 MiB of zeros compress to about 80 KiB: without a limit, a small request could make
%% the server allocate any amount of memory.
gpg_compression_bomb(#{us := Us, us_fpr := UsFpr} = Ctx) ->
    Size = 80 * 1024 * 1024,
    Msg = gpg_encrypt(Ctx, <<0:Size/unit:8>>, UsFpr, ["--compress-algo", "zlib", "-z", "9"]),
    ?assert(byte_size(Msg) < 1024 * 1024),
    ?assertEqual({error, too_large}, couch_pgp:decrypt(Msg, Us, #{})),
    ?assertEqual({error, too_large}, couch_pgp:decrypt(Msg, Us, #{max_size => Size - 1})),
    {ok, Plain, []} = couch_pgp:decrypt(Msg, Us, #{max_size => Size}),
    ?assertEqual(Size, byte_size(Plain)).

%% 6d. Signed by the gpg key, but the caller expects someone else. Uncompressed, so that
%% this checks signer handling and not decompression (covered above).
gpg_signed_by_other_is_unknown_signer(#{peer_cert := PeerCert, peer_fpr := PeerFpr, us := Us,
        us_fpr := UsFpr, other_cert := Other} = Ctx) ->
    Plain = <<"signed by gpg">>,
    Msg = gpg_encrypt(Ctx, Plain, UsFpr,
        ["--compress-algo", "none", "--sign", "--local-user", binary_to_list(PeerFpr)]),
    % The message itself is fine: only the expected signer differs.
    ?assertEqual({ok, Plain, [PeerFpr]}, couch_pgp:decrypt(Msg, Us, #{verify_with => [PeerCert]})),
    ?assertEqual({error, unknown_signer}, couch_pgp:decrypt(Msg, Us, #{verify_with => [Other]})).

%% 6e. Encrypted by gpg without a signature, while the caller requires one. Uncompressed
%% for the same reason as 6d.
gpg_unsigned_is_unsigned(#{peer_cert := PeerCert, us := Us, us_fpr := UsFpr} = Ctx) ->
    Plain = <<"not signed">>,
    Msg = gpg_encrypt(Ctx, Plain, UsFpr, ["--compress-algo", "none"]),
    ?assertEqual({ok, Plain, []}, couch_pgp:decrypt(Msg, Us, #{})),
    ?assertEqual({error, unsigned}, couch_pgp:decrypt(Msg, Us, #{verify_with => [PeerCert]})).

%% ================================================================= 5. gpg 2.2 profile

%% Our default key and message must be readable by GnuPG 2.2, which knows neither v6 keys
%% nor SEIPDv2: a v4 key and a SEIPDv1 (MDC) packet with AES-256.
gpg_reads_our_default_profile_test_() ->
    fixture("gpg 2.2 imports our default key and reads its v4/SEIPDv1 messages",
        fun(#{dir := Dir} = Ctx0) ->
            PassFile = write(Ctx0, "pass", ?PASS),
            Ctx = Ctx0#{peer => gpg, home => couch_pgp_peer:gpg_home(Dir), pass_file => PassFile},
            %% The default key, no options: it must carry a user id (gpg skips v4 certs
            %% without one, and OpenPGP.js cannot use them).
            {ok, Us} = couch_pgp:generate_key(),
            UsFpr = couch_pgp:fingerprint(Us),
            {ok, Secret} = couch_pgp:export_secret(Us, ?PASS),
            _ = gpg_ok(Ctx,
                ["--passphrase-file", PassFile, "--import", write(Ctx, "us.sec", Secret)]),
            Cert = couch_pgp:public_cert(Us),
            CertDump = gpg_ok(Ctx, ["--list-packets", write(Ctx, "us.asc", Cert)]),
            % v4 Ed25519 (algo 22) primary, v4 ECDH (algo 18) subkey.
            ?assertMatch({match, _},
                re:run(CertDump, ":public key packet:\n\tversion 4, algo 22,")),
            ?assertMatch({match, _},
                re:run(CertDump, ":public sub key packet:\n\tversion 4, algo 18,")),

            Plain = non_ascii(),
            {ok, Msg} = couch_pgp:encrypt(Plain, [Cert], #{sign_with => Us}),
            MsgFile = write(Ctx, "msg.asc", Msg),
            Status = file(Ctx, "status"),
            Dump = gpg_ok(Ctx,
                ["--passphrase-file", PassFile, "--status-file", Status,
                    "--list-packets", MsgFile]),
            % Tag 18 with an MDC is SEIPDv1; gpg 2.2 would show SEIPDv2 otherwise.
            ?assertMatch({match, _},
                re:run(Dump, "tag=18 [^\n]*\n:encrypted data packet:\n\tlength: [^\n]*\n"
                    "\tmdc_method: 2\n")),
            ?assertEqual(nomatch, re:run(Dump, "aead encrypted packet")),
            % DECRYPTION_INFO <mdc method> <sym algo> <aead algo>: MDC, AES-256, no AEAD.
            ?assertEqual([[<<"DECRYPTION_INFO">>, <<"2">>, <<"9">>, <<"0">>]],
                [L || [<<"DECRYPTION_INFO">> | _] = L <- gpg_status(Status)]),

            ?assertEqual({non_ascii(), [UsFpr]}, peer_decrypt(Ctx, MsgFile, us))
        end).

%% ================================================================= 6. peer-made negatives

%% 6a. An inline-signed (never encrypted) message is refused as such, armored and binary.
sqop_inline_signed_is_not_encrypted_test_() ->
    fixture("sqop inline-signed message into decrypt is not_encrypted",
        fun(Ctx) -> sqop_signed_is_not_encrypted(Ctx, [[], ["--no-armor"]]) end).

%% The same for the Cleartext Signature Framework, which is OpenPGP data too (RFC 9580
%% section 7), so the documented reason is not_encrypted rather than malformed.
%% EXPECTATION NOT MET BY THE CORE at the time of writing: it returns {error, malformed}.
sqop_cleartext_signed_is_not_encrypted_test_() ->
    fixture("sqop cleartext-signed message into decrypt is not_encrypted",
        fun(Ctx) -> sqop_signed_is_not_encrypted(Ctx, [["--as", "clearsigned"]]) end).

sqop_signed_is_not_encrypted(Ctx, Variants) ->
    KeyFile = write(Ctx, "sqop.key",
        sqop_ok(Ctx, ["generate-key", "Signer <signer@example.org>"], #{})),
    CertFile = file(Ctx, "sqop.cert"),
    _ = sqop_ok(Ctx, ["extract-cert"], #{stdin => KeyFile, stdout => CertFile}),
    {ok, Us} = couch_pgp:generate_key(#{}),
    Plain = write(Ctx, "plain", <<"only signed\n">>),
    lists:foreach(
        fun(Args) ->
            Out = file(Ctx, "signed"),
            _ = sqop_ok(Ctx, ["inline-sign" | Args] ++ [KeyFile],
                #{stdin => Plain, stdout => Out}),
            Msg = read(Out),
            % The peer itself accepts what it made, so the refusal is about its kind.
            _ = sqop_ok(Ctx, ["inline-verify", CertFile], #{stdin => Out}),
            ?assertEqual({Args, {error, not_encrypted}},
                {Args, couch_pgp:decrypt(Msg, Us, #{})}),
            ?assertEqual({Args, {error, not_encrypted}},
                {Args, couch_pgp:decrypt(Msg, Us, #{verify_with => [read(CertFile)]})})
        end,
        Variants).

%% 6b. A key that expired long ago (made with gpg's clock set to 2020, valid for a day).
gpg_expired_key_test_() ->
    fixture("gpg key that expired in 2020 is expired for import_cert and encrypt",
        fun(#{dir := Dir} = Ctx0) ->
            Ctx = Ctx0#{home => couch_pgp_peer:gpg_home(Dir),
                pass_file => write(Ctx0, "pass", ?PASS)},
            Fpr = gpg_new_key(Ctx, "Old <old@example.org>", "1d",
                ["--faked-system-time", "20200101T000000"]),
            Cert = gpg_export(Ctx, Fpr),
            % Still a well-formed certificate: the refusal below is about its expiry.
            ?assertEqual(list_to_binary(Fpr), couch_pgp:fingerprint(Cert)),
            ?assertEqual({error, expired}, couch_pgp:import_cert(Cert)),
            ?assertEqual({error, expired}, couch_pgp:encrypt(<<"late">>, [Cert], #{}))
        end).

%% 6c. A key revoked with the revocation certificate gpg prepared when it made the key.
gpg_revoked_key_test_() ->
    fixture("gpg key revoked with its stored revocation is revoked for import_cert and encrypt",
        fun(#{dir := Dir} = Ctx0) ->
            Home = couch_pgp_peer:gpg_home(Dir),
            Ctx = Ctx0#{home => Home, pass_file => write(Ctx0, "pass", ?PASS)},
            Fpr = gpg_new_key(Ctx, "Gone <gone@example.org>", "never", []),
            Before = gpg_export(Ctx, Fpr),
            % Acceptable until the revocation arrives.
            {ok, Imported} = couch_pgp:import_cert(Before),
            ?assertEqual(list_to_binary(Fpr), couch_pgp:fingerprint(Imported)),
            {ok, Rev} = file:read_file(filename:join([Home, "openpgp-revocs.d", Fpr ++ ".rev"])),
            % gpg defuses the stored certificate with a ':' before its armor line.
            Armed = binary:replace(Rev, <<":-----BEGIN PGP PUBLIC KEY BLOCK-----">>,
                <<"-----BEGIN PGP PUBLIC KEY BLOCK-----">>),
            ?assertNotEqual(Rev, Armed),
            _ = gpg_ok(Ctx, ["--import", write(Ctx, "rev.asc", Armed)]),
            Cert = gpg_export(Ctx, Fpr),
            ?assertEqual(list_to_binary(Fpr), couch_pgp:fingerprint(Cert)),
            ?assertEqual({error, revoked}, couch_pgp:import_cert(Cert)),
            ?assertEqual({error, revoked}, couch_pgp:encrypt(<<"too late">>, [Cert], #{}))
        end).

%% ================================================================= fixtures

test(Title, Fun) ->
    {Title, {timeout, ?TIMEOUT, Fun}}.

%% One test with its own temp dir (and gpg home, if it makes one).
fixture(Title, Body) ->
    {Title,
        {timeout, ?TIMEOUT,
            {setup,
                fun() -> #{dir => couch_pgp_peer:tmp_dir()} end,
                fun teardown/1,
                fun(Ctx) -> ?_test(Body(Ctx)) end}}}.

teardown(#{dir := Dir}) ->
    % Agents of every gpg home made under Dir, including those a test made for itself.
    Homes = filelib:wildcard(filename:join(Dir, "gnupg.*")),
    lists:foreach(fun couch_pgp_peer:gpg_stop/1, Homes),
    couch_pgp_peer:remove_dir(Dir).

peer_setup(Peer) ->
    Dir = couch_pgp_peer:tmp_dir(),
    try
        %% Our side uses the default key, as an application calling generate_key() would.
        {ok, Us} = couch_pgp:generate_key(),
        {ok, Other} = couch_pgp:generate_key(#{user_id => <<"Other <other@example.org>">>}),
        UsCert = couch_pgp:public_cert(Us),
        Ctx = #{peer => Peer, dir => Dir, us => Us, us_fpr => couch_pgp:fingerprint(Us),
            other_cert => couch_pgp:public_cert(Other)},
        peer_keygen(Peer, Ctx#{us_cert_file => write(Ctx, "us.asc", UsCert)})
    catch
        C:E:S ->
            teardown(#{dir => Dir}),
            erlang:raise(C, E, S)
    end.

%% The peer's own key: its cert, primary fingerprint (as the peer reports it) and where its
%% secret lives.
peer_keygen(gpg, #{dir := Dir} = Ctx0) ->
    Home = couch_pgp_peer:gpg_home(Dir),
    Ctx = Ctx0#{home => Home, pass_file => write(Ctx0, "pass", ?PASS)},
    Fpr = gpg_new_key(Ctx, "Gpg Peer <gpg@example.org>", "never", []),
    % gpg finds our cert in its keyring, for encrypting to us and checking our signatures.
    _ = gpg_ok(Ctx, ["--import", maps:get(us_cert_file, Ctx)]),
    Ctx#{peer_fpr => list_to_binary(Fpr), peer_cert => gpg_export(Ctx, Fpr)};
peer_keygen(sqop, Ctx) ->
    KeyFile = write(Ctx, "sqop.key",
        sqop_ok(Ctx, ["generate-key", "Sqop Peer <sqop@example.org>"], #{})),
    CertFile = file(Ctx, "sqop.asc"),
    _ = sqop_ok(Ctx, ["extract-cert"], #{stdin => KeyFile, stdout => CertFile}),
    Inspect = couch_pgp_peer:run_ok("sq", ["inspect", CertFile], #{dir => maps:get(dir, Ctx)}),
    {match, [Fpr]} = re:run(Inspect, "Fingerprint: ([0-9A-F]{40})",
        [{capture, all_but_first, binary}]),
    Ctx#{key_file => KeyFile, cert_file => CertFile, peer_cert => read(CertFile), peer_fpr => Fpr};
peer_keygen(openpgpjs, Ctx0) ->
    Ctx = Ctx0#{pass_file => write(Ctx0, "pass", ?PASS)},
    KeyFile = file(Ctx, "js.key"),
    CertFile = file(Ctx, "js.asc"),
    Out = js_ok(Ctx,
        ["generate", "--name", "Js Peer", "--email", "js@example.org",
            "--passphrase-file", maps:get(pass_file, Ctx),
            "--key-out", KeyFile, "--cert-out", CertFile]),
    Ctx#{key_file => KeyFile, cert_file => CertFile, peer_cert => read(CertFile),
        peer_fpr => string:trim(Out)}.

%% ================================================================= peer operations

%% Decrypts at the peer, requiring a signature by `us' (our cert) or `self' (the peer's).
%% Returns the plaintext and the primary fingerprints the peer says signed.
peer_decrypt(#{peer := gpg, pass_file := PF} = Ctx, MsgFile, _Signer) ->
    % gpg checks against its keyring, which holds both certs.
    Status = file(Ctx, "status"),
    Out = file(Ctx, "plain"),
    _ = gpg_ok(Ctx,
        ["--passphrase-file", PF, "--status-file", Status, "--output", Out,
            "--decrypt", MsgFile]),
    {read(Out), gpg_validsig(Status)};
peer_decrypt(#{peer := sqop, key_file := Key} = Ctx, MsgFile, Signer) ->
    Verifications = file(Ctx, "verifications"),
    Out = file(Ctx, "plain"),
    _ = sqop_ok(Ctx,
        ["decrypt", "--verifications-out", Verifications,
            "--verify-with", signer_cert_file(Ctx, Signer), Key],
        #{stdin => MsgFile, stdout => Out}),
    {read(Out), sop_signers(read(Verifications))};
peer_decrypt(#{peer := openpgpjs, key_file := Key, pass_file := PF} = Ctx, MsgFile, Signer) ->
    Out = file(Ctx, "plain"),
    Stdout = js_ok(Ctx,
        ["decrypt", "--in", MsgFile, "--out", Out, "--key", Key, "--passphrase-file", PF,
            "--verify-cert", signer_cert_file(Ctx, Signer)]),
    {read(Out), js_verified(Stdout)}.

%% Encrypts `Plain' at the peer to `us' or to itself (`self'), signed with the peer's key.
peer_encrypt(#{peer := gpg, peer_fpr := PeerFpr} = Ctx, Plain, To, Armor) ->
    Recipient = case To of
        us -> maps:get(us_fpr, Ctx);
        self -> PeerFpr
    end,
    gpg_encrypt(Ctx, Plain, Recipient,
        armor_flag(Armor, "--armor") ++ ["--sign", "--local-user", binary_to_list(PeerFpr)]);
peer_encrypt(#{peer := sqop, key_file := Key} = Ctx, Plain, To, Armor) ->
    Out = file(Ctx, "msg"),
    _ = sqop_ok(Ctx,
        ["encrypt"] ++ armor_flag(not Armor, "--no-armor")
        ++ ["--sign-with", Key, signer_cert_file(Ctx, To)],
        #{stdin => write(Ctx, "plain", Plain), stdout => Out}),
    read(Out);
peer_encrypt(#{peer := openpgpjs, key_file := Key, pass_file := PF} = Ctx, Plain, To, Armor) ->
    Out = file(Ctx, "msg"),
    _ = js_ok(Ctx,
        ["encrypt", "--in", write(Ctx, "plain", Plain), "--out", Out,
            "--cert", signer_cert_file(Ctx, To), "--sign-key", Key, "--passphrase-file", PF]
        ++ armor_flag(not Armor, "--binary")),
    read(Out).

%% A detached signature by the peer's key.
peer_sign(#{peer := gpg, pass_file := PF} = Ctx, Data, Armor) ->
    Out = file(Ctx, "sig"),
    _ = gpg_ok(Ctx,
        ["--passphrase-file", PF, "--local-user", binary_to_list(maps:get(peer_fpr, Ctx)),
            "--output", Out]
        ++ armor_flag(Armor, "--armor")
        ++ ["--detach-sign", write(Ctx, "data", Data)]),
    read(Out);
peer_sign(#{peer := sqop, key_file := Key} = Ctx, Data, Armor) ->
    Out = file(Ctx, "sig"),
    _ = sqop_ok(Ctx, ["sign"] ++ armor_flag(not Armor, "--no-armor") ++ [Key],
        #{stdin => write(Ctx, "data", Data), stdout => Out}),
    read(Out);
peer_sign(#{peer := openpgpjs, key_file := Key, pass_file := PF} = Ctx, Data, Armor) ->
    Out = file(Ctx, "sig"),
    _ = js_ok(Ctx,
        ["sign", "--in", write(Ctx, "data", Data), "--out", Out, "--key", Key,
            "--passphrase-file", PF] ++ armor_flag(not Armor, "--binary")),
    read(Out).

%% Verifies a detached signature at the peer against `us' or `self'; the primary
%% fingerprints the peer says made it.
peer_verify(#{peer := gpg} = Ctx, Data, Sig, _Signer) ->
    Status = file(Ctx, "status"),
    _ = gpg_ok(Ctx,
        ["--status-file", Status, "--verify", write(Ctx, "sig", Sig), write(Ctx, "data", Data)]),
    gpg_validsig(Status);
peer_verify(#{peer := sqop} = Ctx, Data, Sig, Signer) ->
    Out = sqop_ok(Ctx, ["verify", write(Ctx, "sig", Sig), signer_cert_file(Ctx, Signer)],
        #{stdin => write(Ctx, "data", Data)}),
    sop_signers(Out);
peer_verify(#{peer := openpgpjs} = Ctx, Data, Sig, Signer) ->
    Out = js_ok(Ctx,
        ["verify", "--in", write(Ctx, "data", Data), "--sig", write(Ctx, "sig", Sig),
            "--cert", signer_cert_file(Ctx, Signer)]),
    js_verified(Out).

%% The peer's secret key as the peer exports it, and the passphrase protecting it.
peer_export_secret(#{peer := gpg, pass_file := PF, peer_fpr := Fpr} = Ctx) ->
    Secret = gpg_ok(Ctx,
        ["--passphrase-file", PF, "--armor", "--export-secret-keys", binary_to_list(Fpr)]),
    {Secret, <<?PASS>>};
peer_export_secret(#{peer := sqop, key_file := Key}) ->
    % sqop keys are unprotected.
    {read(Key), <<>>};
peer_export_secret(#{peer := openpgpjs, key_file := Key}) ->
    {read(Key), <<?PASS>>}.

signer_cert_file(#{us_cert_file := F}, us) -> F;
signer_cert_file(#{cert_file := F}, self) -> F.

armor_flag(true, Flag) -> [Flag];
armor_flag(false, _) -> [].

%% ================================================================= gpg helpers

%% A new Ed25519 (certify, sign) key with a Cv25519 encryption subkey; its fingerprint.
gpg_new_key(#{pass_file := PF} = Ctx, Uid, Expire, Extra) ->
    _ = gpg_ok(Ctx,
        Extra ++ ["--passphrase-file", PF, "--quick-gen-key", Uid, "ed25519", "cert,sign", Expire]),
    Fpr = gpg_fingerprint(Ctx, Uid),
    _ = gpg_ok(Ctx,
        Extra ++ ["--passphrase-file", PF, "--quick-add-key", Fpr, "cv25519", "encr", Expire]),
    Fpr.

gpg_fingerprint(Ctx, Uid) ->
    Colons = gpg_ok(Ctx, ["--with-colons", "--list-keys", "=" ++ Uid]),
    % The first fpr record follows the primary key's pub record.
    [Fpr | _] = [lists:nth(10, string:split(L, ":", all))
        || L <- string:split(binary_to_list(Colons), "\n", all), lists:prefix("fpr:", L)],
    Fpr.

%% Encrypts `Plain' to `Recipient' (a fingerprint in the keyring); `Args' add signing,
%% armor or compression.
gpg_encrypt(#{pass_file := PF} = Ctx, Plain, Recipient, Args) ->
    Out = file(Ctx, "msg"),
    _ = gpg_ok(Ctx,
        ["--passphrase-file", PF, "--trust-model", "always",
            "--recipient", binary_to_list(Recipient), "--output", Out]
        ++ Args ++ ["--encrypt", write(Ctx, "plain", Plain)]),
    read(Out).

gpg_export(Ctx, Fpr) ->
    gpg_ok(Ctx, ["--armor", "--export", Fpr]).

gpg_status(File) ->
    [Tokens || L <- binary:split(read(File), <<"\n">>, [global, trim_all]),
        [<<"[GNUPG:]">> | Tokens] <- [binary:split(L, <<" ">>, [global, trim_all])]].

%% Primary-key fingerprints (the last VALIDSIG field) of the good signatures gpg saw.
gpg_validsig(File) ->
    [lists:last(T) || [<<"VALIDSIG">> | _] = T <- gpg_status(File)].

%% SOP verification lines: "<time> <signing fpr> <primary fpr> ...".
sop_signers(Out) ->
    [lists:nth(3, binary:split(L, <<" ">>, [global, trim_all]))
        || L <- binary:split(Out, <<"\n">>, [global, trim_all])].

js_verified(Out) ->
    [Fpr || <<"VERIFIED ", Fpr/binary>> <- binary:split(Out, <<"\n">>, [global, trim_all])].

%% ================================================================= data and files

%% Non-ASCII text with CR LF and trailing spaces, and bytes that are not UTF-8, to catch
%% any text-mode canonicalisation; and a large random payload that spans many chunks.
payloads() ->
    [{non_ascii, non_ascii()}, {random_100k, crypto:strong_rand_bytes(100 * 1024)}].

non_ascii() ->
    <<"Grüße aus Köln — 日本語 ✓ "/utf8, "trailing  \r\n", 0, 255, 254, "\n">>.

is_armored_message(<<"-----BEGIN PGP MESSAGE-----", _/binary>>) -> true;
is_armored_message(_) -> false.

%% Peers keep their stderr in the test's temp dir, which teardown removes whatever happens.
gpg_ok(#{home := Home, dir := Dir}, Args) ->
    couch_pgp_peer:gpg_ok(Home, Args, #{dir => Dir}).

sqop_ok(#{dir := Dir}, Args, Opts) ->
    couch_pgp_peer:sqop_ok(Args, Opts#{dir => Dir}).

js_ok(#{dir := Dir}, Args) ->
    couch_pgp_peer:openpgpjs_ok(Args, #{dir => Dir}).

file(#{dir := Dir}, Name) ->
    couch_pgp_peer:file(Dir, Name).

write(#{dir := Dir}, Name, Data) ->
    couch_pgp_peer:write(Dir, Name, Data).

read(Path) ->
    {ok, B} = file:read_file(Path),
    B.
