%% @doc couch_pgp benchmark driver; run through bench/run.sh, not by hand.
%%
%% Every entry point is called as `erl -noshell -run couch_pgp_bench Fun WorkDir ...' and
%% halts. Results are appended to TSV files in WorkDir, one line per measurement:
%%   Row  Impl  Value  PayloadBytes  Runs  Iterations
%% where Value is seconds per operation (median of Runs runs), or for `mem/...' rows the
%% peak extra resident memory in bytes. `report' turns all of them into the table.
%%
%% Methodology: one caller, keys and certificates parsed/cached before timing, a warm-up,
%% then Runs runs; each run repeats the operation until a time budget is spent (at least
%% MinIters times) and gives time/iterations; the median of the runs is reported.
-module(couch_pgp_bench).

-export([fixtures/1, erlang/1, cli/1, mem/1, report/1, backend/1, backend_report/1]).

-define(SIZES, [1024, 65536, 1048576, 16777216]).
-define(BIG, 16777216).
-define(DOC_TARGET, 4096).
-define(PASS, <<"bench-passphrase">>).

%% ----------------------------------------------------------------- parameters

quick() -> os:getenv("QUICK") =:= "1".

%% In-process timing (couch_pgp, Erlang crypto).
params() ->
    case quick() of
        true -> #{runs => 3, budget => 0.04, warmup => 0.02, min_iters => 1};
        false -> #{runs => 5, budget => 0.4, warmup => 0.25, min_iters => 1}
    end.

%% CLI timing: every iteration is one process (gpg, sqop) started through /bin/sh -c.
cli_params() ->
    case quick() of
        true -> #{runs => 1, budget => 0.05, warmup => 0.0, min_iters => 1};
        false -> #{runs => 3, budget => 0.6, warmup => 0.0, min_iters => 2}
    end.

%% ----------------------------------------------------------------- entry points

%% @doc Payload files and the EHR document shared by every implementation.
fixtures([Work]) ->
    run(fun() ->
        lists:foreach(
            fun(N) -> ok = file:write_file(payload_file(Work, N), crypto:strong_rand_bytes(N)) end,
            ?SIZES
        ),
        {ok, Json} = couch_pgp:canonical_json(ehr_doc()),
        ok = file:write_file(filename:join(Work, "doc.json"), Json),
        log("fixtures: payloads ~p bytes, EHR document ~b bytes of canonical JSON",
            [?SIZES, byte_size(Json)])
    end).

%% @doc couch_pgp and the Erlang crypto ceiling, every row.
erlang([Work]) ->
    run(fun() ->
        Out = open_out(Work, "erlang.tsv"),
        P = params(),
        {ok, Key} = couch_pgp:generate_key(#{}),
        Cert = couch_pgp:public_cert(Key),
        C = ceiling_keys(),

        log("keygen", []),
        emit(Out, "keygen", "couch_pgp", 0,
             measure(fun() -> {ok, _} = couch_pgp:generate_key(#{}) end, P)),
        emit(Out, "keygen", "ceiling", 0, measure(ceiling_keygen(), P)),

        Payloads = [{N, read(payload_file(Work, N))} || N <- ?SIZES],
        lists:foreach(
            fun({N, Data}) ->
                log("encrypt+sign / decrypt+verify ~s", [size_name(N)]),
                lists:foreach(
                    fun(Armor) ->
                        A = armor_name(Armor),
                        Opts = #{sign_with => Key, armor => Armor},
                        emit(Out, "encsign/" ++ A ++ "/" ++ integer_to_list(N), "couch_pgp", N,
                             measure(fun() -> {ok, _} = couch_pgp:encrypt(Data, [Cert], Opts) end, P)),
                        {ok, Msg} = couch_pgp:encrypt(Data, [Cert], Opts),
                        check_seipd_v1(Msg, Armor),
                        VOpts = #{verify_with => [Cert]},
                        {ok, Data, [_]} = couch_pgp:decrypt(Msg, Key, VOpts),
                        emit(Out, "decverify/" ++ A ++ "/" ++ integer_to_list(N), "couch_pgp", N,
                             measure(fun() -> {ok, _, [_]} = couch_pgp:decrypt(Msg, Key, VOpts) end, P))
                    end,
                    [true, false]
                ),
                %% Armor is not part of the ceiling: the same figure serves both rows.
                Enc = measure(ceiling_encsign(C, Data), P),
                Dec = measure(ceiling_decverify(C, Data), P),
                [emit(Out, Op ++ "/" ++ A ++ "/" ++ integer_to_list(N), "ceiling", N, M)
                 || {Op, M} <- [{"encsign", Enc}, {"decverify", Dec}], A <- ["arm", "bin"]]
            end,
            Payloads
        ),

        log("special row: binary 16 MiB decrypt without signature vs raw AES-256-CFB + SHA-1", []),
        Big = proplists:get_value(?BIG, Payloads),
        {ok, BigMsg} = couch_pgp:encrypt(Big, [Cert], #{armor => false}),
        check_seipd_v1(BigMsg, false),
        {ok, Big, []} = couch_pgp:decrypt(BigMsg, Key, #{}),
        %% Runs of the two alternate, so that both see the same load on a shared machine.
        {CpDec, RawDec} = measure_pair(fun() -> {ok, _, []} = couch_pgp:decrypt(BigMsg, Key, #{}) end,
                                       ceiling_decrypt(C, Big), P),
        emit(Out, "decrypt/bin/" ++ integer_to_list(?BIG), "couch_pgp", ?BIG, CpDec),
        emit(Out, "decrypt/bin/" ++ integer_to_list(?BIG), "ceiling", ?BIG, RawDec),

        log("detached sign / verify 1 KiB", []),
        Small = proplists:get_value(1024, Payloads),
        emit(Out, "sign/1024", "couch_pgp", 1024,
             measure(fun() -> {ok, _} = couch_pgp:sign(Small, Key, #{armor => false}) end, P)),
        {ok, Sig} = couch_pgp:sign(Small, Key, #{armor => false}),
        Fpr = couch_pgp:fingerprint(Key),
        {ok, Fpr} = couch_pgp:verify(Small, Sig, [Cert]),
        emit(Out, "verify/1024", "couch_pgp", 1024,
             measure(fun() -> {ok, Fpr} = couch_pgp:verify(Small, Sig, [Cert]) end, P)),
        {EdPub, EdPriv} = maps:get(ed, C),
        RawSig = crypto:sign(eddsa, none, Small, [EdPriv, ed25519]),
        emit(Out, "sign/1024", "ceiling", 1024,
             measure(fun() -> crypto:sign(eddsa, none, Small, [EdPriv, ed25519]) end, P)),
        emit(Out, "verify/1024", "ceiling", 1024,
             measure(fun() -> true = crypto:verify(eddsa, none, Small, RawSig, [EdPub, ed25519]) end, P)),

        log("sign_doc / verify_doc of the EHR document", []),
        {ok, Json} = file:read_file(filename:join(Work, "doc.json")),
        {ok, Doc} = couch_pgp:json_decode(Json),
        DocBytes = byte_size(Json),
        emit(Out, "sign_doc", "couch_pgp", DocBytes,
             measure(fun() -> {ok, _} = couch_pgp:sign_doc(Doc, Key) end, P)),
        {ok, Signed} = couch_pgp:sign_doc(Doc, Key),
        {ok, [Fpr]} = couch_pgp:verify_doc(Signed, [Cert]),
        emit(Out, "verify_doc", "couch_pgp", DocBytes,
             measure(fun() -> {ok, [Fpr]} = couch_pgp:verify_doc(Signed, [Cert]) end, P)),
        emit(Out, "canonical_json", "couch_pgp", DocBytes,
             measure(fun() -> {ok, _} = couch_pgp:canonical_json(Doc) end, P)),
        DocSig = crypto:sign(eddsa, none, Json, [EdPriv, ed25519]),
        emit(Out, "sign_doc", "ceiling", DocBytes,
             measure(fun() -> crypto:sign(eddsa, none, Json, [EdPriv, ed25519]) end, P)),
        emit(Out, "verify_doc", "ceiling", DocBytes,
             measure(fun() -> true = crypto:verify(eddsa, none, Json, DocSig, [EdPub, ed25519]) end, P)),

        log("session channel: seal / open, 1 KiB and 64 KiB, vs the same primitives in Erlang crypto", []),
        {ok, Ch, <<C2S:32/binary, _/binary>>} = couch_pgp_channel:new(),
        lists:foreach(
            fun(N) ->
                Data = binary:part(read(payload_file(Work, 1024 * 1024)), 0, N),
                Tag = integer_to_list(N),
                emit(Out, "channel_seal/" ++ Tag, "couch_pgp", N,
                     measure(fun() -> {ok, _} = couch_pgp_channel:seal(Ch, client_to_server, Data) end, P)),
                {ok, Sealed} = couch_pgp_channel:seal(Ch, client_to_server, Data),
                {ok, Data} = couch_pgp_channel:open(Ch, client_to_server, Sealed, N),
                emit(Out, "channel_open/" ++ Tag, "couch_pgp", N,
                     measure(fun() -> {ok, _} = couch_pgp_channel:open(Ch, client_to_server, Sealed, N) end, P)),
                emit(Out, "channel_seal/" ++ Tag, "ceiling", N, measure(ceiling_channel_seal(C2S, Data), P)),
                emit(Out, "channel_open/" ++ Tag, "ceiling", N, measure(ceiling_channel_open(C2S, Data), P))
            end,
            [1024, 65536]
        ),

        %% Inputs for the memory measurement, which runs in fresh VMs (see mem/1).
        {ok, Exported} = couch_pgp:export_secret(Key, ?PASS),
        ok = file:write_file(filename:join(Work, "mem_key.asc"), Exported),
        ok = file:write_file(filename:join(Work, "mem_cert.asc"), Cert),
        lists:foreach(
            fun(Armor) ->
                {ok, M} = couch_pgp:encrypt(Big, [Cert], #{sign_with => Key, armor => Armor}),
                ok = file:write_file(mem_msg_file(Work, Armor), M),
                {ok, S} = couch_pgp:encrypt(<<"warm-up">>, [Cert], #{sign_with => Key, armor => Armor}),
                ok = file:write_file(mem_msg_file(Work, Armor) ++ ".small", S)
            end,
            [true, false]
        ),
        ok = file:close(Out)
    end).

%% @doc The gpg and sqop command-line peers: one process per operation.
cli([Work]) ->
    run(fun() ->
        Out = open_out(Work, "cli.tsv"),
        P = cli_params(),
        Null = sh_time(P, "true"),
        emit(Out, "spawn", "sh", 0, Null),
        case os:find_executable("gpg") of
            false -> log("gpg not found: skipped", []);
            _ -> gpg_rows(Work, Out, P)
        end,
        case os:find_executable("sqop") of
            false -> log("sqop not found: skipped", []);
            _ -> sqop_rows(Work, Out, P)
        end,
        ok = file:close(Out)
    end).

%% @doc Peak extra resident memory of one decrypt+verify of the 16 MiB message, in this
%% fresh VM: RSS after the message is loaded and a small message was decrypted (NIF
%% loaded, certificate cached), then the peak reached during the call. The peak is the
%% kernel's high-water mark (VmHWM, reset through /proc/self/clear_refs), cross-checked by
%% sampling VmRSS every millisecond from another process while the dirty NIF runs.
mem([Work, Kind]) ->
    run(fun() ->
        Armor = Kind =:= "arm",
        {ok, Key} = couch_pgp:import_secret(read(filename:join(Work, "mem_key.asc")), ?PASS),
        Cert = read(filename:join(Work, "mem_cert.asc")),
        Small = read(mem_msg_file(Work, Armor) ++ ".small"),
        {ok, <<"warm-up">>, [_]} = couch_pgp:decrypt(Small, Key, #{verify_with => [Cert]}),
        Msg = read(mem_msg_file(Work, Armor)),
        garbage_collect(),
        timer:sleep(100),
        Base = status_kb("VmRSS"),
        Reset = file:write_file("/proc/self/clear_refs", <<"5">>) =:= ok,
        Self = self(),
        Sampler = spawn_link(fun() -> sample(Self, Base) end),
        {ok, Plain, [_]} = couch_pgp:decrypt(Msg, Key, #{verify_with => [Cert]}),
        Sampler ! stop,
        Sampled = receive {peak, Pk} -> Pk end,
        Hwm = status_kb("VmHWM"),
        Peak = case Reset of true -> max(Hwm, Sampled); false -> Sampled end,
        Extra = (Peak - Base) * 1024,
        Out = open_out(Work, "mem.tsv"),
        emit_line(Out, ["mem/" ++ Kind, "couch_pgp", integer_to_list(Extra),
                        integer_to_list(byte_size(Plain)), "1", "1"]),
        ok = file:close(Out),
        log("mem ~s: base ~b KiB, HWM ~b KiB (reset ~p), sampled peak ~b KiB -> extra ~.2f x payload",
            [Kind, Base, Hwm, Reset, Sampled, Extra / byte_size(Plain)])
    end).

%% @doc Key rows only, for comparing crypto backends (run.sh backends loads each build).
backend([Work, Label]) ->
    run(fun() ->
        Out = open_out(Work, "backend_" ++ Label ++ ".tsv"),
        P = params(),
        {ok, Key} = couch_pgp:generate_key(#{}),
        Cert = couch_pgp:public_cert(Key),
        M = fun(Row, Bytes, F) -> emit(Out, Row, Label, Bytes, measure(F, P)) end,
        M("keygen", 0, fun() -> {ok, _} = couch_pgp:generate_key(#{}) end),
        Small = read(payload_file(Work, 1024)),
        Big = read(payload_file(Work, ?BIG)),
        SOpts = #{sign_with => Key, armor => false},
        M("encsign/bin/1024", 1024, fun() -> {ok, _} = couch_pgp:encrypt(Small, [Cert], SOpts) end),
        {ok, SMsg} = couch_pgp:encrypt(Small, [Cert], SOpts),
        VOpts = #{verify_with => [Cert]},
        M("decverify/bin/1024", 1024, fun() -> {ok, _, [_]} = couch_pgp:decrypt(SMsg, Key, VOpts) end),
        M("sign/1024", 1024, fun() -> {ok, _} = couch_pgp:sign(Small, Key, #{armor => false}) end),
        {ok, Sig} = couch_pgp:sign(Small, Key, #{armor => false}),
        M("verify/1024", 1024, fun() -> {ok, _} = couch_pgp:verify(Small, Sig, [Cert]) end),
        M("encsign/bin/16777216", ?BIG, fun() -> {ok, _} = couch_pgp:encrypt(Big, [Cert], SOpts) end),
        {ok, BigMsg} = couch_pgp:encrypt(Big, [Cert], #{armor => false}),
        check_seipd_v1(BigMsg, false),
        {CpDec, RawDec} = measure_pair(fun() -> {ok, _, []} = couch_pgp:decrypt(BigMsg, Key, #{}) end,
                                       ceiling_decrypt(ceiling_keys(), Big), P),
        emit(Out, "decrypt/bin/16777216", Label, ?BIG, CpDec),
        emit(Out, "decrypt/bin/16777216", "ceiling_" ++ Label, ?BIG, RawDec),
        ok = file:close(Out)
    end).

%% ----------------------------------------------------------------- Erlang crypto ceiling

ceiling_keys() ->
    {XPub, XPriv} = crypto:generate_key(ecdh, x25519),
    {PeerPub, _} = crypto:generate_key(ecdh, x25519),
    #{ed => crypto:generate_key(eddsa, ed25519), x => {XPub, XPriv}, peer => PeerPub,
      aes => crypto:strong_rand_bytes(32), iv => crypto:strong_rand_bytes(16)}.

ceiling_keygen() ->
    fun() -> {crypto:generate_key(eddsa, ed25519), crypto:generate_key(ecdh, x25519)} end.

%% What SEIPDv1 encrypt+sign must do at least: AES-256-CFB and SHA-1 over the payload,
%% one Ed25519 signature, one X25519 agreement.
ceiling_encsign(#{ed := {_, EdPriv}, x := {_, XPriv}, peer := Peer, aes := K, iv := IV}, Data) ->
    fun() ->
        C = crypto:crypto_one_time(aes_256_cfb128, K, IV, Data, true),
        H = crypto:hash(sha, Data),
        S = crypto:sign(eddsa, none, H, [EdPriv, ed25519]),
        Z = crypto:compute_key(ecdh, Peer, XPriv, x25519),
        {C, S, Z}
    end.

ceiling_decverify(#{ed := {EdPub, EdPriv}, x := {_, XPriv}, peer := Peer, aes := K, iv := IV}, Data) ->
    Cipher = crypto:crypto_one_time(aes_256_cfb128, K, IV, Data, true),
    H0 = crypto:hash(sha, Data),
    S = crypto:sign(eddsa, none, H0, [EdPriv, ed25519]),
    fun() ->
        Plain = crypto:crypto_one_time(aes_256_cfb128, K, IV, Cipher, false),
        H = crypto:hash(sha, Plain),
        true = crypto:verify(eddsa, none, H, S, [EdPub, ed25519]),
        Z = crypto:compute_key(ecdh, Peer, XPriv, x25519),
        {Plain, Z}
    end.

%% The special row's reference: raw AES-256-CFB decryption plus SHA-1 over the plaintext.
%% The session channel's primitives, done by OTP crypto: a random salt, HKDF-SHA256 to the
%% message key and IV, AES-256-GCM over the literal packet (8 bytes of header + data) as one
%% chunk, and the final tag over nothing (RFC 9580 section 5.13.2). No packet framing.
ceiling_channel_seal(Key, Data) ->
    fun() ->
        Salt = crypto:strong_rand_bytes(32),
        {MK, IV, Info} = ceiling_hkdf(Key, Salt),
        Plain = <<16#CB, 0:56, Data/binary>>,
        {C, T} = crypto:crypto_one_time_aead(aes_256_gcm, MK, <<IV/binary, 0:64>>, Plain, Info, true),
        {_, F} = crypto:crypto_one_time_aead(aes_256_gcm, MK, <<IV/binary, 1:64>>, <<>>,
                                             <<Info/binary, (byte_size(Plain)):64>>, true),
        [Salt, C, T, F]
    end.

ceiling_channel_open(Key, Data) ->
    [Salt, C, T, F] = (ceiling_channel_seal(Key, Data))(),
    fun() ->
        {MK, IV, Info} = ceiling_hkdf(Key, Salt),
        Plain = crypto:crypto_one_time_aead(aes_256_gcm, MK, <<IV/binary, 0:64>>, C, Info, T, false),
        true = is_binary(Plain),
        <<>> = crypto:crypto_one_time_aead(aes_256_gcm, MK, <<IV/binary, 1:64>>, <<>>,
                                           <<Info/binary, (byte_size(Plain)):64>>, F, false),
        Plain
    end.

ceiling_hkdf(Key, Salt) ->
    Info = <<16#D2, 2, 9, 3, 16>>,
    PRK = crypto:mac(hmac, sha256, Salt, Key),
    T1 = crypto:mac(hmac, sha256, PRK, <<Info/binary, 1>>),
    T2 = crypto:mac(hmac, sha256, PRK, <<T1/binary, Info/binary, 2>>),
    <<MK:32/binary, IV:4/binary, _/binary>> = <<T1/binary, T2/binary>>,
    {MK, IV, Info}.

ceiling_decrypt(#{aes := K, iv := IV}, Data) ->
    Cipher = crypto:crypto_one_time(aes_256_cfb128, K, IV, Data, true),
    fun() ->
        Plain = crypto:crypto_one_time(aes_256_cfb128, K, IV, Cipher, false),
        {Plain, crypto:hash(sha, Plain)}
    end.

%% ----------------------------------------------------------------- CLI peers

gpg_rows(Work, Out, P) ->
    Home = mkhome(filename:join(Work, "gnupg")),
    KeygenHome = mkhome(filename:join(Work, "gnupg-keygen")),
    Gpg = fun(H) ->
        "gpg --homedir " ++ H ++ " --batch --yes --quiet --no-tty --pinentry-mode loopback"
        " --passphrase '' "
    end,
    try
        ok = sh(Gpg(Home) ++ "--quick-gen-key 'bench <bench@example.org>' future-default default never"),
        Fpr = gpg_fpr(Home),
        log("gpg: keygen", []),
        Counter = counters:new(1, []),
        emit(Out, "keygen", "gpg", 0, sh_time(P, fun() ->
            counters:add(Counter, 1, 1),
            Gpg(KeygenHome) ++ "--quick-gen-key 'bench" ++ integer_to_list(counters:get(Counter, 1))
                ++ " <b@example.org>' future-default default never"
        end)),
        Enc = fun(Armor, In, OutFile) ->
            Gpg(Home) ++ "--trust-model always --compress-algo none -r " ++ Fpr ++ " -u " ++ Fpr
                ++ case Armor of true -> " -a"; false -> "" end ++ " -s -e -o " ++ OutFile ++ " " ++ In
        end,
        Dec = fun(In) -> Gpg(Home) ++ "--trust-model always -o - -d " ++ In ++ " >/dev/null" end,
        lists:foreach(
            fun(N) ->
                log("gpg: ~s", [size_name(N)]),
                lists:foreach(
                    fun(Armor) ->
                        A = armor_name(Armor),
                        In = payload_file(Work, N),
                        Msg = filename:join(Work, "gpg_" ++ A ++ "_" ++ integer_to_list(N)),
                        ok = sh(Enc(Armor, In, Msg)),
                        check_seipd_v1(read(Msg), Armor),
                        %% One checked run: decryption and a good signature by our key.
                        Status = os:cmd(Gpg(Home) ++ "--trust-model always --status-fd 1 -o /dev/null -d "
                                        ++ Msg ++ " 2>/dev/null"),
                        true = string:find(Status, "GOODSIG") =/= nomatch,
                        true = string:find(Status, "DECRYPTION_OKAY") =/= nomatch,
                        Tmp = filename:join(Work, "gpg_out.tmp"),
                        emit(Out, "encsign/" ++ A ++ "/" ++ integer_to_list(N), "gpg", N,
                             sh_time(P, Enc(Armor, In, Tmp))),
                        emit(Out, "decverify/" ++ A ++ "/" ++ integer_to_list(N), "gpg", N,
                             sh_time(P, Dec(Msg)))
                    end,
                    [true, false]
                )
            end,
            ?SIZES
        )
    after
        _ = os:cmd("gpgconf --homedir " ++ Home ++ " --kill gpg-agent"),
        _ = os:cmd("gpgconf --homedir " ++ KeygenHome ++ " --kill gpg-agent")
    end.

gpg_fpr(Home) ->
    Lines = string:split(os:cmd("gpg --homedir " ++ Home ++ " --batch --with-colons --list-keys"),
                         "\n", all),
    hd([lists:nth(10, string:split(L, ":", all)) || L <- Lines, lists:prefix("fpr:", L)]).

sqop_rows(Work, Out, P) ->
    Key = filename:join(Work, "sqop_key.asc"),
    Cert = filename:join(Work, "sqop_cert.asc"),
    ok = sh("sqop generate-key 'bench <bench@example.org>' > " ++ Key),
    ok = sh("sqop extract-cert < " ++ Key ++ " > " ++ Cert),
    log("sqop: keygen", []),
    emit(Out, "keygen", "sqop", 0,
         sh_time(P, "sqop generate-key 'bench <bench@example.org>' > /dev/null")),
    Enc = fun(Armor, In, OutFile) ->
        "sqop encrypt" ++ case Armor of true -> ""; false -> " --no-armor" end ++ " --sign-with " ++ Key ++ " " ++ Cert
            ++ " < " ++ In ++ " > " ++ OutFile
    end,
    %% sqop refuses to overwrite its verifications file (even /dev/null): a new one each time.
    Ver = filename:join(Work, "sqop_verifications"),
    Dec = fun(In) ->
        fun() ->
            "sqop decrypt --verify-with " ++ Cert ++ " --verifications-out " ++ Ver ++ "."
                ++ integer_to_list(erlang:unique_integer([positive])) ++ " " ++ Key
                ++ " < " ++ In ++ " > /dev/null"
        end
    end,
    lists:foreach(
        fun(N) ->
            log("sqop: ~s", [size_name(N)]),
            lists:foreach(
                fun(Armor) ->
                    A = armor_name(Armor),
                    In = payload_file(Work, N),
                    Msg = filename:join(Work, "sqop_" ++ A ++ "_" ++ integer_to_list(N)),
                    ok = sh(Enc(Armor, In, Msg)),
                    check_seipd_v1(read(Msg), Armor),
                    ok = sh("sqop decrypt --verify-with " ++ Cert ++ " --verifications-out " ++ Ver
                            ++ " " ++ Key ++ " < " ++ Msg ++ " > /dev/null && test -s " ++ Ver ++ " && rm " ++ Ver),
                    Tmp = filename:join(Work, "sqop_out.tmp"),
                    emit(Out, "encsign/" ++ A ++ "/" ++ integer_to_list(N), "sqop", N,
                         sh_time(P, Enc(Armor, In, Tmp))),
                    emit(Out, "decverify/" ++ A ++ "/" ++ integer_to_list(N), "sqop", N,
                         sh_time(P, Dec(Msg)))
                end,
                [true, false]
            )
        end,
        ?SIZES
    ).

mkhome(Dir) ->
    ok = filelib:ensure_dir(filename:join(Dir, "x")),
    ok = file:change_mode(Dir, 8#700),
    Dir.

%% Times one shell command per iteration (Cmd may be a fun giving a fresh command).
sh_time(P, Cmd) ->
    {Sec, Runs, Iters, _} =
        measure(fun() -> ok = sh(case Cmd of F when is_function(F) -> F(); S -> S end) end, P),
    {Sec, Runs, Iters, none}.

sh(Cmd) ->
    Port = open_port({spawn_executable, "/bin/sh"},
                     [{args, ["-c", lists:flatten(Cmd)]}, exit_status, binary, stderr_to_stdout]),
    sh_wait(Port, Cmd, []).

sh_wait(Port, Cmd, Acc) ->
    receive
        {Port, {data, D}} -> sh_wait(Port, Cmd, [Acc, D]);
        {Port, {exit_status, 0}} -> ok;
        {Port, {exit_status, S}} ->
            erlang:error({command_failed, S, Cmd, iolist_to_binary(Acc)})
    end.

%% ----------------------------------------------------------------- measurement

%% {median wall seconds/op, runs, iterations, median CPU seconds/op of this OS process}.
measure(F, #{runs := Runs, budget := Budget, warmup := Warmup, min_iters := Min}) ->
    _ = loop_for(F, Warmup, 1),
    Results = [begin
                   garbage_collect(),
                   C0 = cpu_ns(),
                   {T, N} = loop_for(F, Budget, Min),
                   C1 = cpu_ns(),
                   {T / N, N, (C1 - C0) / 1.0e9 / N}
               end || _ <- lists:seq(1, Runs)],
    {median([T || {T, _, _} <- Results]), Runs, lists:sum([N || {_, N, _} <- Results]),
     median([C || {_, _, C} <- Results])}.

%% Two operations measured in alternating runs (one warm-up each, then A B A B ...).
measure_pair(A, B, P = #{runs := Runs}) ->
    One = P#{runs := 1},
    Pairs = [{measure(A, One), measure(B, One)} || _ <- lists:seq(1, max(Runs, 5))],
    {merge([X || {X, _} <- Pairs]), merge([Y || {_, Y} <- Pairs])}.

merge(Ms) ->
    {median([T || {T, _, _, _} <- Ms]), length(Ms), lists:sum([N || {_, _, N, _} <- Ms]),
     median([C || {_, _, _, C} <- Ms])}.

%% CPU time of every thread of this VM so far (ns), from /proc/self/task/*/schedstat.
%% Meaningful because run.sh starts the VMs with scheduler busy-waiting off.
cpu_ns() ->
    case file:list_dir("/proc/self/task") of
        {ok, Tids} ->
            lists:sum([case file:read_file("/proc/self/task/" ++ T ++ "/schedstat") of
                           {ok, B} -> binary_to_integer(hd(binary:split(B, <<" ">>)));
                           _ -> 0
                       end || T <- Tids]);
        _ ->
            0
    end.

loop_for(F, Budget, Min) ->
    T0 = erlang:monotonic_time(nanosecond),
    loop(F, T0, T0 + round(Budget * 1.0e9), Min, 0).

loop(F, T0, Deadline, Min, N) ->
    _ = F(),
    T = erlang:monotonic_time(nanosecond),
    case N + 1 of
        N1 when T >= Deadline, N1 >= Min -> {(T - T0) / 1.0e9, N1};
        N1 -> loop(F, T0, Deadline, Min, N1)
    end.

median(L) ->
    S = lists:sort(L),
    Len = length(S),
    case Len rem 2 of
        1 -> lists:nth(Len div 2 + 1, S);
        0 -> (lists:nth(Len div 2, S) + lists:nth(Len div 2 + 1, S)) / 2
    end.

sample(Parent, Peak) ->
    receive
        stop -> Parent ! {peak, max(Peak, status_kb("VmRSS"))}
    after 1 ->
        sample(Parent, max(Peak, status_kb("VmRSS")))
    end.

status_kb(Field) ->
    {ok, B} = file:read_file("/proc/self/status"),
    [Line] = [L || L <- binary:split(B, <<"\n">>, [global]),
                   binary:match(L, list_to_binary(Field ++ ":")) =/= nomatch],
    [_, V | _] = string:lexemes(binary_to_list(Line), " \t"),
    list_to_integer(V).

%% A message must be one SEIPD packet of version 1 (the profile every peer is held to).
check_seipd_v1(Msg, true) ->
    check_seipd_v1(dearmor(Msg), false);
check_seipd_v1(Msg, false) ->
    case packets(Msg) of
        {18, <<1, _/binary>>} -> ok;
        Other -> erlang:error({not_seipd_v1, Other})
    end.

%% Finds the first encrypted-data packet (tag 18 SEIPD or 20 AEAD) and its first body bytes.
packets(<<1:1, 1:1, Tag:6, Rest/binary>>) ->
    {Len, Body} = new_len(Rest),
    data_or_next(Tag, Len, Body);
packets(<<1:1, 0:1, Tag:4, LT:2, Rest/binary>>) ->
    {Len, Body} = case LT of
        0 -> <<L:8, B/binary>> = Rest, {L, B};
        1 -> <<L:16, B/binary>> = Rest, {L, B};
        2 -> <<L:32, B/binary>> = Rest, {L, B}
    end,
    data_or_next(Tag, Len, Body);
packets(Other) ->
    {unknown, binary:part(Other, 0, min(8, byte_size(Other)))}.

new_len(<<L, B/binary>>) when L < 192 -> {L, B};
new_len(<<L1, L2, B/binary>>) when L1 < 224 -> {((L1 - 192) bsl 8) + L2 + 192, B};
new_len(<<255, L:32, B/binary>>) -> {L, B};
new_len(<<_, B/binary>>) -> {partial, B}.

data_or_next(Tag, _Len, Body) when Tag =:= 18; Tag =:= 20 -> {Tag, binary:part(Body, 0, 2)};
data_or_next(_Tag, Len, Body) when is_integer(Len) -> packets(binary:part(Body, Len, byte_size(Body) - Len));
data_or_next(Tag, partial, _) -> {partial_before_data, Tag}.

dearmor(Armored) ->
    Lines = binary:split(Armored, [<<"\r\n">>, <<"\n">>], [global]),
    {_, AfterHeader} = lists:splitwith(fun(L) -> L =/= <<>> end,
                                       tl(lists:dropwhile(fun(L) -> not is_begin(L) end, Lines))),
    Body = lists:takewhile(fun(L) -> binary:first(<<L/binary, "-">>) =/= $= andalso
                                         not is_end(L) end, tl(AfterHeader)),
    base64:decode(iolist_to_binary(Body)).

is_begin(L) -> binary:match(L, <<"-----BEGIN PGP">>) =/= nomatch.
is_end(L) -> binary:match(L, <<"-----END PGP">>) =/= nomatch.

%% ----------------------------------------------------------------- the EHR document

%% A realistic patient record of about 4 KiB of canonical JSON: identity, allergies,
%% medications, vital signs and lab values (integers and decimals), and free-text notes.
ehr_doc() ->
    Base = fun(Notes) ->
        {[
            {<<"_id">>, <<"patient:7c1e5a2e-93d4-4b8f-a1f0-2f6d9b0c4e11">>},
            {<<"_rev">>, <<"12-5f0c2b8d9e1a4c3b7d6e8f9a0b1c2d3e">>},
            {<<"type">>, <<"patient_record">>},
            {<<"schema_version">>, 3},
            {<<"mrn">>, <<"MRN-0048213377">>},
            {<<"name">>, {[{<<"family">>, <<"García Fernández"/utf8>>},
                           {<<"given">>, [<<"María"/utf8>>, <<"Luisa">>]},
                           {<<"prefix">>, <<"Sra.">>}]}},
            {<<"dob">>, <<"1968-04-23">>},
            {<<"sex">>, <<"female">>},
            {<<"blood_type">>, <<"A+">>},
            {<<"address">>, {[{<<"line">>, [<<"Calle de Alcalá 117, 3º B"/utf8>>]},
                              {<<"city">>, <<"Madrid">>}, {<<"postal_code">>, <<"28009">>},
                              {<<"country">>, <<"ES">>}]}},
            {<<"contacts">>, [{[{<<"relationship">>, <<"daughter">>},
                                {<<"name">>, <<"Lucía Martín García"/utf8>>},
                                {<<"phone">>, <<"+34 612 345 678">>}]}]},
            {<<"allergies">>, [
                {[{<<"substance">>, <<"Penicillin">>}, {<<"code">>, <<"SNOMED:764146007">>},
                  {<<"reaction">>, <<"urticaria">>}, {<<"severity">>, <<"moderate">>},
                  {<<"recorded">>, <<"2009-11-02">>}]},
                {[{<<"substance">>, <<"Latex">>}, {<<"code">>, <<"SNOMED:111088007">>},
                  {<<"reaction">>, <<"contact dermatitis">>}, {<<"severity">>, <<"mild">>},
                  {<<"recorded">>, <<"2015-06-18">>}]},
                {[{<<"substance">>, <<"Shellfish">>}, {<<"code">>, <<"SNOMED:227037002">>},
                  {<<"reaction">>, <<"anaphylaxis">>}, {<<"severity">>, <<"severe">>},
                  {<<"recorded">>, <<"1994-08-30">>}]}
            ]},
            {<<"medications">>, [
                {[{<<"name">>, <<"Metformin">>}, {<<"dose_mg">>, 850}, {<<"frequency">>, <<"BID">>},
                  {<<"since">>, <<"2016-02-11">>}]},
                {[{<<"name">>, <<"Lisinopril">>}, {<<"dose_mg">>, 10}, {<<"frequency">>, <<"QD">>},
                  {<<"since">>, <<"2018-09-27">>}]},
                {[{<<"name">>, <<"Atorvastatin">>}, {<<"dose_mg">>, 20}, {<<"frequency">>, <<"QHS">>},
                  {<<"since">>, <<"2019-01-15">>}]}
            ]},
            {<<"observations">>, observations()},
            {<<"conditions">>, [<<"ICD10:E11.9 Type 2 diabetes mellitus">>,
                                <<"ICD10:I10 Essential hypertension">>,
                                <<"ICD10:E78.5 Hyperlipidaemia">>]},
            {<<"consent">>, {[{<<"research">>, false}, {<<"share_with_gp">>, true},
                              {<<"signed">>, <<"2023-03-01T10:15:00Z">>}]}},
            {<<"notes">>, Notes}
        ]}
    end,
    {ok, Bare} = couch_pgp:canonical_json(Base(<<>>)),
    Fill = max(0, ?DOC_TARGET - byte_size(Bare)),
    Base(notes(Fill)).

observations() ->
    Vitals = [
        {<<"8480-6">>, <<"Systolic blood pressure">>, 132, <<"mm[Hg]">>},
        {<<"8462-4">>, <<"Diastolic blood pressure">>, 84, <<"mm[Hg]">>},
        {<<"8867-4">>, <<"Heart rate">>, 72, <<"/min">>},
        {<<"8310-5">>, <<"Body temperature">>, 36.8, <<"Cel">>},
        {<<"29463-7">>, <<"Body weight">>, 71.4, <<"kg">>},
        {<<"4548-4">>, <<"Hemoglobin A1c">>, 7.2, <<"%">>},
        {<<"2345-7">>, <<"Glucose">>, 141, <<"mg/dL">>},
        {<<"2093-3">>, <<"Cholesterol total">>, 198, <<"mg/dL">>},
        {<<"2160-0">>, <<"Creatinine">>, 0.91, <<"mg/dL">>},
        {<<"33914-3">>, <<"eGFR">>, 68.5, <<"mL/min/1.73m2">>}
    ],
    [{[{<<"code">>, <<"LOINC:", Code/binary>>}, {<<"display">>, Display}, {<<"value">>, Value},
       {<<"unit">>, Unit}, {<<"effective">>, <<"2024-05-14T09:32:00Z">>},
       {<<"performer">>, <<"practitioner:1187">>}]}
     || {Code, Display, Value, Unit} <- Vitals].

notes(Bytes) ->
    Text = <<"Follow-up visit. Patient reports improved adherence to metformin; occasional "
             "morning dizziness, no syncope. Feet examined: no ulcers, monofilament sensation "
             "intact. Counselled on diet and 150 min/week of walking. Plan: repeat HbA1c in "
             "3 months, continue current antihypertensive regimen, ophthalmology referral for "
             "annual retinal screening. ">>,
    Reps = Bytes div byte_size(Text) + 1,
    binary:part(binary:copy(Text, Reps), 0, Bytes).

%% ----------------------------------------------------------------- report

-define(IMPLS, ["couch_pgp", "openpgpjs", "gpg", "sqop", "ceiling"]).

%% @doc Prints the table from every *.tsv in Work (the header is printed by run.sh).
report([Work]) ->
    run(fun() ->
        R = load(Work, ["erlang.tsv", "openpgpjs.tsv", "cli.tsv", "mem.tsv", "openpgpjs_mem.tsv"]),
        JsVer = case file:read_file(filename:join(Work, "openpgpjs_version")) of
            {ok, V} -> string:trim(binary_to_list(V));
            _ -> "?"
        end,
        Names = #{"couch_pgp" => "couch_pgp",
                  "openpgpjs" => "OpenPGP.js " ++ JsVer,
                  "gpg" => "gpg [CLI, per process]",
                  "sqop" => "sqop [CLI, per process]",
                  "ceiling" => "Erlang crypto ceiling"},
        Sections = [
            {"keygen (v4 Ed25519 + Cv25519)", [{"keygen", "-"}]},
            {"encrypt+sign, armored", [{"encsign/arm/" ++ integer_to_list(N), size_name(N)} || N <- ?SIZES]},
            {"encrypt+sign, binary", [{"encsign/bin/" ++ integer_to_list(N), size_name(N)} || N <- ?SIZES]},
            {"decrypt+verify, armored", [{"decverify/arm/" ++ integer_to_list(N), size_name(N)} || N <- ?SIZES]},
            {"decrypt+verify, binary", [{"decverify/bin/" ++ integer_to_list(N), size_name(N)} || N <- ?SIZES]},
            {"detached signature, binary", [{"sign/1024", "sign 1 KiB"}, {"verify/1024", "verify 1 KiB"}]},
            {"signed document (EHR record, " ++ doc_size(R) ++ ")",
             [{"sign_doc", "sign_doc"}, {"verify_doc", "verify_doc"}, {"canonical_json", "canon. JSON"}]},
            {"session channel (SEIPDv2 AES-256-GCM under a session key; ceiling: HKDF + AES-256-GCM in OTP crypto)",
             [{"channel_seal/1024", "seal 1 KiB"}, {"channel_open/1024", "open 1 KiB"},
              {"channel_seal/65536", "seal 64 KiB"}, {"channel_open/65536", "open 64 KiB"}]}
        ],
        io:format("~s~n", [hdr()]),
        io:format("~s~n", [lists:duplicate(length(hdr()), $-)]),
        lists:foreach(fun({Title, Rows}) -> section(Title, Rows, R, Names) end, Sections),
        target_rows(R, Names),
        io:format("~n~s~n", [legend(R)])
    end).

hdr() ->
    fmt_row("operation", "implementation", "time/op", "cpu/op", "ops/s", "MB/s", "couch_pgp vs it: wall  cpu").

fmt_row(Op, Impl, T, Cpu, Ops, MBs, Ratio) ->
    lists:flatten(io_lib:format("~-22s ~-27s ~10s ~10s ~9s ~8s  ~s",
                                [Op, Impl, T, Cpu, Ops, MBs, Ratio])).

cpu(Row, Impl, R) ->
    case maps:get({Row, Impl, cpu}, R, undefined) of
        undefined -> "-";
        C -> dur(C)
    end.

section(Title, Rows, R, Names) ->
    io:format("~n~s~n", [Title]),
    lists:foreach(
        fun({Row, Label}) ->
            Base = maps:get({Row, "couch_pgp"}, R, undefined),
            Impls = [I || I <- ?IMPLS, maps:is_key({Row, I}, R)],
            lists:foldl(
                fun(I, First) ->
                    {Sec, Bytes} = maps:get({Row, I}, R),
                    CpuRatio = case {maps:get({Row, "couch_pgp", cpu}, R, undefined),
                                     maps:get({Row, I, cpu}, R, undefined)} of
                        {CB, CI} when is_float(CB), is_float(CI), CB > 0 ->
                            io_lib:format("~sx", [num(CI / CB)]);
                        _ -> ""
                    end,
                    Ratio = case {I, Base} of
                        {"couch_pgp", _} -> "";
                        {_, undefined} -> "";
                        {"ceiling", {B, _}} ->
                            io_lib:format("~-6s ~-6s (~s of ceiling)", [[num(Sec / B), "x"], CpuRatio, pct(Sec / B)]);
                        {_, {B, _}} -> io_lib:format("~-6s ~s", [[num(Sec / B), "x"], CpuRatio])
                    end,
                    io:format("~s~n", [fmt_row(case First of true -> "  " ++ Label; false -> "" end,
                                               maps:get(I, Names), dur(Sec), cpu(Row, I, R),
                                               num(1 / Sec), mbs(Bytes, Sec), Ratio)]),
                    false
                end,
                true,
                Impls
            )
        end,
        Rows
    ).

target_rows(R, Names) ->
    io:format("~nTargets~n", []),
    lists:foreach(
        fun({Row, What, Goal}) ->
            case {maps:get({Row, "couch_pgp"}, R, undefined), maps:get({Row, "ceiling"}, R, undefined)} of
                {{Cp, _}, {Ce, _}} ->
                    X = Ce / Cp,
                    io:format("  ~s: ~.2fx the same primitives in OTP crypto (target >= ~.1fx): ~s~n",
                              [What, X, Goal, verdict(X >= Goal, io_lib:format("~.2fx", [abs(X - Goal)]))]);
                _ ->
                    io:format("  ~s: row missing~n", [What])
            end
        end,
        [{"channel_seal/1024", "channel seal 1 KiB", 1.5}, {"channel_open/1024", "channel open 1 KiB", 1.0}]),
    Row = "decrypt/bin/16777216",
    case {maps:get({Row, "couch_pgp"}, R, undefined), maps:get({Row, "ceiling"}, R, undefined)} of
        {{Cp, B}, {Ce, _}} ->
            Frac = Ce / Cp,
            io:format("~s~n", [fmt_row("  16 MiB bin, no sig.", "couch_pgp SEIPDv1 decrypt",
                                       dur(Cp), cpu(Row, "couch_pgp", R), num(1 / Cp), mbs(B, Cp), "")]),
            io:format("~s~n", [fmt_row("", "raw AES-256-CFB + SHA-1", dur(Ce), cpu(Row, "ceiling", R),
                                       num(1 / Ce), mbs(B, Ce), "")]),
            CpuFrac = case {maps:get({Row, "couch_pgp", cpu}, R, undefined),
                            maps:get({Row, "ceiling", cpu}, R, undefined)} of
                {CC, CE} when is_float(CC), is_float(CE), CC > 0 -> pct(CE / CC);
                _ -> "?"
            end,
            io:format("    -> ~s of raw by wall time (~s by CPU time); target >= 70%: ~s~n",
                      [pct(Frac), CpuFrac,
                       verdict(Frac >= 0.70, io_lib:format("~.1f points", [abs(Frac - 0.70) * 100]))]);
        _ ->
            io:format("  16 MiB decrypt row missing~n", [])
    end,
    lists:foreach(
        fun({Kind, Label}) ->
            lists:foreach(
                fun(I) ->
                    case maps:get({"mem/" ++ Kind, I}, R, undefined) of
                        undefined -> ok;
                        {Extra, Payload} ->
                            X = Extra / Payload,
                            Judge = case I of
                                "couch_pgp" -> verdict(X =< 3.0, io_lib:format("~.2fx", [abs(X - 3.0)]));
                                _ -> "(peer, for comparison)"
                            end,
                            io:format("  peak extra RSS, ~s, ~s: ~.1f MiB = ~.2fx payload (target <= 3x): ~s~n",
                                      [Label, maps:get(I, Names), Extra / 1048576, X, Judge])
                    end
                end,
                ["couch_pgp", "openpgpjs"]
            )
        end,
        [{"bin", "16 MiB binary decrypt+verify"}, {"arm", "16 MiB armored decrypt+verify"}]
    ).

verdict(true, By) -> "MET (margin " ++ lists:flatten(By) ++ ")";
verdict(false, By) -> "MISSED by " ++ lists:flatten(By).

legend(R) ->
    Spawn = case maps:get({"spawn", "sh"}, R, undefined) of
        {S, _} -> dur(S);
        undefined -> "?"
    end,
    string:join([
        "Notes:",
        "  time/op is the median of several runs (each a fixed time budget or at least N iterations) after a warm-up;",
        "  one caller; keys generated and certificates parsed (cached) before timing. MB/s = 10^6 payload bytes/s.",
        "  couch_pgp vs it = couch_pgp throughput / that implementation's throughput (> 1: couch_pgp is faster),",
        "  by wall time (time/op) and, for in-process implementations, by CPU time (cpu/op).",
        "  Profile for every peer: v4 keys, EdDSA (Ed25519) + ECDH Cv25519, SEIPDv1 (checked on every message),",
        "  AES-256, no compression (gpg: --compress-algo none). OpenPGP.js: type ecc, curve curve25519Legacy, aeadProtect false.",
        "  [CLI, per process]: one gpg / sqop process per operation started via /bin/sh -c, including process start,",
        "  key and certificate loading and (gpg) the gpg-agent round trips; sh -c true alone costs " ++ Spawn ++ ".",
        "  Erlang crypto ceiling: OpenSSL through OTP crypto. keygen: Ed25519 + X25519 key pairs. encrypt+sign /",
        "  decrypt+verify: AES-256-CFB + SHA-1 over the payload + one Ed25519 sign/verify + one X25519 agreement",
        "  (no armor, no framing, no signature hash over the payload). sign/verify/doc: raw Ed25519 over the bytes.",
        "  For small inputs the ceiling is mostly OTP crypto's per-call OpenSSL 3 key setup, so couch_pgp can beat it.",
        "  cpu/op: CPU time of the whole OS process (all threads) per op; steadier than time/op when other work",
        "  shares the machine. The VMs run with +sbwt none +sbwtdcpu none +sbwtdio none (no busy-waiting).",
        "  Peak extra RSS: fresh VM per sample (median of 3; 1 with QUICK=1), VmHWM reset via /proc/self/clear_refs, minus the RSS with",
        "  the message loaded; includes the 16 MiB plaintext result itself.",
        "  Signed document: couch_pgp signs RFC 8785 canonical JSON of the EJSON doc (canonicalisation included);",
        "  OpenPGP.js signs JSON.stringify(doc) (not canonical) as a detached binary signature."
    ], "\n").

doc_size(R) ->
    case maps:get({"sign_doc", "couch_pgp"}, R, undefined) of
        {_, B} -> integer_to_list(B) ++ " B canonical JSON";
        undefined -> "?"
    end.

%% Every measurement line of Files; a key measured more than once (several rounds) gets
%% the median of its values.
load(Work, Files) ->
    All = lists:foldl(
        fun(F, Acc) ->
            case file:read_file(filename:join(Work, F)) of
                {ok, B} ->
                    Lines = [binary_to_list(L) || L <- binary:split(B, <<"\n">>, [global]), L =/= <<>>],
                    lists:foldl(
                        fun(L, A) ->
                            [Row, Impl, V, Bytes | More] = string:split(L, "\t", all),
                            A1 = maps:update_with({Row, Impl}, fun({Vs, By}) -> {[to_num(V) | Vs], By} end,
                                                  {[to_num(V)], list_to_integer(Bytes)}, A),
                            case More of
                                [_, _, Cpu | _] when Cpu =/= "-" ->
                                    maps:update_with({Row, Impl, cpu}, fun(Cs) -> [to_num(Cpu) | Cs] end,
                                                     [to_num(Cpu)], A1);
                                _ -> A1
                            end
                        end,
                        Acc,
                        Lines
                    );
                {error, enoent} ->
                    Acc
            end
        end,
        #{},
        Files
    ),
    maps:map(fun({_, _, cpu}, Cs) -> median(Cs);
                (_, {Vs, By}) -> {median(Vs), By}
             end, All).

%% @doc The backends table from backend_*.tsv.
backend_report([Work | Labels]) ->
    run(fun() ->
        R = load(Work, ["backend_" ++ L ++ ".tsv" || L <- Labels]),
        Rows = [{"keygen", "keygen", ops},
                {"encsign/bin/1024", "encrypt+sign 1 KiB", ops},
                {"decverify/bin/1024", "decrypt+verify 1 KiB", ops},
                {"sign/1024", "sign 1 KiB (detached)", ops},
                {"verify/1024", "verify 1 KiB (detached)", ops},
                {"encsign/bin/16777216", "encrypt+sign 16 MiB", mbs},
                {"decrypt/bin/16777216", "decrypt 16 MiB, no sig", mbs}],
        [Ref | _] = Labels,
        io:format("By wall time:~n", []),
        backend_table(R, Rows, Labels, Ref, wall),
        io:format("~nBy CPU time of the VM (less sensitive to other load on the machine):~n", []),
        backend_table(R, Rows, Labels, Ref, cpu),
        io:format("~n(x) = throughput relative to ~s; higher is faster.~n", [Ref])
    end).

backend_table(R0, Rows, Labels, Ref, Basis) ->
        R = case Basis of
            wall -> R0;
            cpu -> maps:fold(fun({Row, L, cpu}, C, A) -> A#{{Row, L} => {C, element(2, maps:get({Row, L}, R0))}};
                                (_, _, A) -> A end, #{}, R0)
        end,
        io:format("~-26s ~-6s", ["operation", "unit"]),
        [io:format(" ~22s", [L]) || L <- Labels],
        io:format("~n~s~n", [lists:duplicate(33 + 23 * length(Labels), $-)]),
        lists:foreach(
            fun({Row, Name, Unit}) ->
                io:format("~-26s ~-6s", [Name, case Unit of ops -> "ops/s"; mbs -> "MB/s" end]),
                RefV = maps:get({Row, Ref}, R, undefined),
                lists:foreach(
                    fun(L) ->
                        case maps:get({Row, L}, R, undefined) of
                            undefined -> io:format(" ~22s", ["n/a"]);
                            {Sec, B} ->
                                V = case Unit of ops -> num(1 / Sec); mbs -> mbs(B, Sec) end,
                                Rel = case RefV of
                                    {RS, _} -> io_lib:format("(~sx)", [num(RS / Sec)]);
                                    _ -> ""
                                end,
                                io:format(" ~22s", [lists:flatten([V, " ", Rel])])
                        end
                    end,
                    Labels
                ),
                io:format("~n", [])
            end,
            Rows
        ),
        io:format("~-26s ~-6s", ["  % of raw AES-CFB+SHA-1", "%"]),
        lists:foreach(
            fun(L) ->
                case {maps:get({"decrypt/bin/16777216", L}, R, undefined),
                      maps:get({"decrypt/bin/16777216", "ceiling_" ++ L}, R, undefined)} of
                    {{S, _}, {C, _}} -> io:format(" ~22s", [pct(C / S)]);
                    _ -> io:format(" ~22s", ["n/a"])
                end
            end,
            Labels
        ),
        io:format("~n", []).

%% ----------------------------------------------------------------- helpers

run(F) ->
    try
        F(),
        halt(0)
    catch
        C:E:St ->
            io:format(standard_error, "bench: ~p:~p~n~p~n", [C, E, St]),
            halt(1)
    end.

log(Fmt, Args) ->
    io:format(standard_error, "bench: " ++ Fmt ++ "~n", Args).

open_out(Work, Name) ->
    {ok, Fd} = file:open(filename:join(Work, Name), [append, raw]),
    Fd.

emit(Out, Row, Impl, Bytes, {Sec, Runs, Iters, Cpu}) ->
    emit_line(Out, [Row, Impl, float_to_list(Sec, [{scientific, 6}]), integer_to_list(Bytes),
                    integer_to_list(Runs), integer_to_list(Iters),
                    case Cpu of
                        none -> "-";
                        _ -> float_to_list(Cpu, [{scientific, 6}])
                    end]).

emit_line(Out, Fields) ->
    ok = file:write(Out, [lists:join("\t", Fields), "\n"]).

payload_file(Work, N) -> filename:join(Work, "payload_" ++ integer_to_list(N) ++ ".bin").

mem_msg_file(Work, true) -> filename:join(Work, "mem_msg_arm.asc");
mem_msg_file(Work, false) -> filename:join(Work, "mem_msg_bin.pgp").

armor_name(true) -> "arm";
armor_name(false) -> "bin".

read(File) ->
    {ok, B} = file:read_file(File),
    B.

to_num(S) ->
    try list_to_float(S) catch error:badarg -> float(list_to_integer(S)) end.

size_name(N) when N >= 1048576 -> integer_to_list(N div 1048576) ++ " MiB";
size_name(N) -> integer_to_list(N div 1024) ++ " KiB".

dur(S) when S >= 1.0 -> io_lib:format("~.2f s", [S]);
dur(S) when S >= 1.0e-3 -> io_lib:format("~.2f ms", [S * 1.0e3]);
dur(S) -> io_lib:format("~.1f us", [S * 1.0e6]).

num(X) when X >= 100 -> integer_to_list(round(X));
num(X) when X >= 10 -> io_lib:format("~.1f", [X]);
num(X) -> io_lib:format("~.2f", [X]).

mbs(0, _) -> "-";
mbs(Bytes, Sec) -> num(Bytes / Sec / 1.0e6).

pct(X) -> io_lib:format("~.1f%", [X * 100]).
