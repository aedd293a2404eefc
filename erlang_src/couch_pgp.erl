%% @doc OpenPGP for CouchDB handlers: keys, encryption, signatures and signed documents.
%%
%% == The error rule ==
%% Input that a caller or a remote client controls (messages, signatures, certificates,
%% documents, passphrases) never raises: it gives `{error, reason()}' where `reason()' is one
%% of the closed list below. A wrong argument type (a non-binary message, a key that is not a
%% key handle) raises `badarg'; an unknown or ill-typed option raises `{bad_option, Name}'.
%% No error term carries plaintext, key material or a library's internal message.
%%
%% Reasons:
%% <ul>
%% <li>`bad_key' the secret key is unusable; `bad_cert' not one OpenPGP certificate</li>
%% <li>`no_encryption_key' / `no_signing_key' no valid key for that purpose</li>
%% <li>`expired', `not_yet_valid', `revoked', `policy_rejected' (weak algorithm)</li>
%% <li>`not_encrypted' OpenPGP data that is not an encrypted message; `malformed' not
%%     OpenPGP at all, or broken before decryption</li>
%% <li>`no_matching_key' not encrypted to this key; `tampered' integrity check failed</li>
%% <li>`unsigned' a signature was required and there is none; `bad_signature';
%%     `unknown_signer' signed, but by none of the expected certificates</li>
%% <li>`bad_passphrase', `empty_passphrase'</li>
%% <li>`{invalid_json, duplicate_key | number_out_of_range | invalid_utf8 | invalid_value |
%%     syntax}'</li>
%% <li>`{attachment_content_missing, Name}', `malformed_signatures' (documents)</li>
%% <li>`too_large' the plaintext exceeds `max_size'</li>
%% <li>`internal' never expected; reported instead of crashing</li>
%% </ul>
%%
%% Keys (`key()') are handles to secret keys held in the NIF; the secret never becomes an
%% Erlang term and is zeroed when the last handle is garbage collected. Certificates
%% (`cert()') are armored public certificates as binaries; each distinct one is parsed once
%% and cached by the NIF.
-module(couch_pgp).

-export([
    generate_key/0,
    generate_key/1,
    public_cert/1,
    fingerprint/1,
    import_cert/1,
    encryptable_until/1,
    export_secret/2,
    export_secret/3,
    import_secret/2,
    encrypt/3,
    decrypt/3,
    sign/2,
    sign/3,
    verify/3,
    verify_timed/3,
    revoke/3,
    revocation_status/1,
    canonical_json/1,
    json_decode/1,
    sign_doc/2,
    sign_doc/3,
    verify_doc/2,
    verify_doc/3
]).

-export_type([key/0, cert/0, fingerprint/0, reason/0, ejson/0, revocation_reason/0]).

-opaque key() :: reference().
-type cert() :: binary().
-type fingerprint() :: binary().
-type ejson() :: null | true | false | binary() | number() | [ejson()]
    | {[{binary() | atom(), ejson()}]} | #{binary() | atom() => ejson()}.
-type reason() :: bad_key | bad_cert | no_encryption_key | no_signing_key | expired
    | not_yet_valid | revoked | policy_rejected | not_encrypted | malformed
    | no_matching_key | tampered | unsigned | bad_signature | unknown_signer
    | bad_passphrase | empty_passphrase
    | {invalid_json, duplicate_key | number_out_of_range | invalid_utf8 | invalid_value | syntax}
    | {attachment_content_missing, binary()} | malformed_signatures | too_large | internal
    | signed_after_revocation.

-type generate_opts() :: #{
    user_id => binary(),
    suite => cv25519 | rsa3072 | rsa4096,
    profile => v4 | v6,
    expires_in => pos_integer() | never
}.
-type encrypt_opts() :: #{sign_with => key(), armor => boolean()}.
-type decrypt_opts() :: #{verify_with => [cert()], max_size => non_neg_integer()}.

-define(DEFAULT_MAX_PLAINTEXT, 64 * 1024 * 1024).
-type sign_opts() :: #{armor => boolean()}.

%% ----------------------------------------------------------------- keys

%% @equiv generate_key(#{})
-spec generate_key() -> {ok, key()} | {error, reason()}.
generate_key() ->
    generate_key(#{}).

%% @doc A new secret key. Default: v4, Ed25519 primary (certify, sign) with a Cv25519
%% encryption subkey, no expiry. `expires_in' is in seconds; `v6' makes an RFC 9580 key.
%% A v4 key always has a user id (default `couch_pgp key'): GnuPG 2.2 and OpenPGP.js refuse
%% v4 certificates without one. A v6 key has none unless given.
-spec generate_key(generate_opts()) -> {ok, key()} | {error, reason()}.
generate_key(Opts) when is_map(Opts) ->
    check_opts(Opts, #{
        user_id => fun is_binary/1,
        suite => fun(S) -> lists:member(S, [cv25519, rsa3072, rsa4096]) end,
        profile => fun(P) -> P =:= v4 orelse P =:= v6 end,
        expires_in => fun(E) -> E =:= never orelse (is_integer(E) andalso E > 0) end
    }),
    Profile = maps:get(profile, Opts, v4),
    couch_pgp_nif:generate_key(
        maps:get(user_id, Opts, default_user_id(Profile)),
        maps:get(suite, Opts, cv25519),
        Profile,
        maps:get(expires_in, Opts, never)
    );
generate_key(_) ->
    erlang:error(badarg).

default_user_id(v4) -> <<"couch_pgp key">>;
default_user_id(v6) -> undefined.

%% @doc The armored public certificate of a key.
-spec public_cert(key()) -> cert().
public_cert(Key) when is_reference(Key) ->
    case couch_pgp_nif:public_cert(Key) of
        {ok, Cert} -> Cert;
        {error, Reason} -> erlang:error(Reason)
    end;
public_cert(_) ->
    erlang:error(badarg).

%% @doc The primary key fingerprint (uppercase hex) of a key or certificate.
-spec fingerprint(key() | cert()) -> fingerprint() | {error, bad_cert}.
fingerprint(Key) when is_reference(Key) ->
    couch_pgp_nif:key_fingerprint(Key);
fingerprint(Cert) when is_binary(Cert) ->
    case couch_pgp_nif:cert_fingerprint(Cert) of
        {ok, Fpr} -> Fpr;
        {error, _} = Error -> Error
    end;
fingerprint(_) ->
    erlang:error(badarg).

%% @doc Until when messages can be encrypted to a certificate (armored or binary), judged
%% now from its own signatures: the latest expiry among its encryption keys, capped by the
%% certificate's own; `never' if it does not expire. `{error, Reason}' (`expired',
%% `revoked', `no_encryption_key', ...) when it cannot be encrypted to now.
-spec encryptable_until(cert()) -> {ok, never | non_neg_integer()} | {error, reason()}.
encryptable_until(Cert) when is_binary(Cert) ->
    couch_pgp_nif:cert_encryptable_until(Cert);
encryptable_until(_) ->
    erlang:error(badarg).

%% @doc Parses a certificate (armored or binary), checks it against the policy, its expiry
%% and revocations, and returns it armored and public-only (secret parts are dropped).
-spec import_cert(iodata()) -> {ok, cert()} | {error, reason()}.
import_cert(Bytes) ->
    couch_pgp_nif:import_cert(to_binary(Bytes)).

%% @doc The secret key, every secret part protected by `Passphrase', armored.
-spec export_secret(key(), iodata()) -> {ok, binary()} | {error, reason()}.
export_secret(Key, Passphrase) when is_reference(Key) ->
    couch_pgp_nif:export_secret(Key, to_binary(Passphrase));
export_secret(_, _) ->
    erlang:error(badarg).

%% @doc As export_secret/2; with `#{random_passphrase => true}' the passphrase must be a random
%% secret of at least 16 bytes (else `{error, empty_passphrase}'), which no stretching makes
%% harder to guess, so the least S2K is used (1,024 bytes hashed instead of 62 MB: ~1 ms
%% instead of ~100 ms to export and to import) and the output is binary. Session tokens use
%% it; a passphrase a person chose must never.
-spec export_secret(key(), iodata(), #{random_passphrase => boolean()}) ->
    {ok, binary()} | {error, reason()}.
export_secret(Key, Passphrase, #{random_passphrase := true}) when is_reference(Key) ->
    couch_pgp_nif:export_secret_random_pass(Key, to_binary(Passphrase));
export_secret(Key, Passphrase, Opts) when is_map(Opts) ->
    export_secret(Key, Passphrase).

%% @doc Loads a secret key exported by {@link export_secret/2} or by GnuPG, sq, OpenPGP.js.
-spec import_secret(iodata(), iodata()) -> {ok, key()} | {error, reason()}.
import_secret(Bytes, Passphrase) ->
    couch_pgp_nif:import_secret(to_binary(Bytes), to_binary(Passphrase)).

%% ----------------------------------------------------------------- messages

%% @doc Encrypts to every certificate. Options: `sign_with => Key' signs inside the
%% encryption; `armor' (default `true'). SEIPDv1 unless every recipient supports SEIPDv2.
-spec encrypt(iodata(), [cert()], encrypt_opts()) -> {ok, binary()} | {error, reason()}.
encrypt(Plain, Certs, Opts) when is_list(Certs), is_map(Opts) ->
    check_opts(Opts, #{sign_with => fun is_reference/1, armor => fun is_boolean/1}),
    check_certs(Certs),
    couch_pgp_nif:encrypt(
        to_binary(Plain),
        Certs,
        maps:get(sign_with, Opts, undefined),
        maps:get(armor, Opts, true)
    );
encrypt(_, _, _) ->
    erlang:error(badarg).

%% @doc Decrypts a message encrypted to `Key'. With `verify_with => Certs' a good signature
%% by one of them is required: unsigned is `{error, unsigned}', signed by others
%% `{error, unknown_signer}'. Returns the verified signers' fingerprints (`[]' without
%% `verify_with'). Plaintext larger than `max_size' bytes (default 64 MiB; messages may be
%% compressed, so a small message can expand a thousandfold) is `{error, too_large}'.
-spec decrypt(binary(), key(), decrypt_opts()) ->
    {ok, binary(), [fingerprint()]} | {error, reason()}.
decrypt(Msg, Key, Opts) when is_binary(Msg), is_reference(Key), is_map(Opts) ->
    check_opts(Opts, #{
        verify_with => fun(Cs) -> is_list(Cs) andalso Cs =/= [] end,
        max_size => fun(N) -> is_integer(N) andalso N >= 0 end
    }),
    VerifyWith = maps:get(verify_with, Opts, undefined),
    VerifyWith =:= undefined orelse check_certs(VerifyWith),
    couch_pgp_nif:decrypt(Msg, Key, VerifyWith, maps:get(max_size, Opts, ?DEFAULT_MAX_PLAINTEXT));
decrypt(_, _, _) ->
    erlang:error(badarg).

%% @equiv sign(Data, Key, #{})
-spec sign(iodata(), key()) -> {ok, binary()} | {error, reason()}.
sign(Data, Key) ->
    sign(Data, Key, #{}).

%% @doc A detached signature over `Data' (armored unless `armor => false').
-spec sign(iodata(), key(), sign_opts()) -> {ok, binary()} | {error, reason()}.
sign(Data, Key, Opts) when is_reference(Key), is_map(Opts) ->
    check_opts(Opts, #{armor => fun is_boolean/1}),
    couch_pgp_nif:sign(to_binary(Data), Key, maps:get(armor, Opts, true));
sign(_, _, _) ->
    erlang:error(badarg).

%% @doc Verifies a detached signature; the fingerprint of the certificate that made it.
-spec verify(iodata(), binary(), [cert()]) -> {ok, fingerprint()} | {error, reason()}.
verify(Data, Sig, Certs) when is_binary(Sig), is_list(Certs) ->
    check_certs(Certs),
    couch_pgp_nif:verify(to_binary(Data), Sig, Certs);
verify(_, _, _) ->
    erlang:error(badarg).

%% @doc Like verify/3, with the signature's creation time (unix seconds), as the signer's
%% clock put it in the signed signature packet.
-spec verify_timed(iodata(), binary(), [cert()]) ->
    {ok, fingerprint(), non_neg_integer()} | {error, reason()}.
verify_timed(Data, Sig, Certs) when is_binary(Sig), is_list(Certs) ->
    check_certs(Certs),
    couch_pgp_nif:verify_timed(to_binary(Data), Sig, Certs);
verify_timed(_, _, _) ->
    erlang:error(badarg).

%% @doc `Key''s certificate with a key revocation signature by `Key' itself (armored), with
%% one of RFC 4880's reasons and a message for people (at most 1 KiB). Whoever reads the
%% certificate sees the key revoked from the revocation's time on.
-type revocation_reason() :: unspecified | superseded | compromised | retired.
-spec revoke(key(), revocation_reason(), iodata()) -> {ok, cert()} | {error, reason()}.
revoke(Key, Reason, Message) when is_reference(Key), is_atom(Reason) ->
    lists:member(Reason, [unspecified, superseded, compromised, retired])
        orelse erlang:error(badarg),
    couch_pgp_nif:revoke(Key, Reason, to_binary(Message));
revoke(_, _, _) ->
    erlang:error(badarg).

%% @doc Whether the certificate carries a valid revocation by its own key: the reason and
%% when (unix seconds).
-spec revocation_status(cert()) ->
    not_revoked | {revoked, revocation_reason(), non_neg_integer()} | {error, reason()}.
revocation_status(Cert) when is_binary(Cert) ->
    couch_pgp_nif:revocation_status(Cert);
revocation_status(_) ->
    erlang:error(badarg).

%% ----------------------------------------------------------------- JSON and documents

%% @doc RFC 8785 canonical form of EJSON (as jiffy decodes) or of maps.
-spec canonical_json(ejson()) -> {ok, binary()} | {error, reason()}.
canonical_json(Json) ->
    couch_pgp_nif:canonical_json(Json).

%% @doc JSON text to EJSON, for use outside CouchDB where jiffy is not loaded.
-spec json_decode(binary()) -> {ok, ejson()} | {error, reason()}.
json_decode(Text) when is_binary(Text) ->
    couch_pgp_nif:json_decode(Text);
json_decode(_) ->
    erlang:error(badarg).

%% @equiv sign_doc(Doc, Key, #{})
-spec sign_doc(ejson(), key()) -> {ok, ejson()} | {error, reason()}.
sign_doc(Doc, Key) ->
    sign_doc(Doc, Key, #{}).

%% @doc Adds `Key''s signature to the document's `pgp_signatures' (replacing an earlier one
%% by the same key). See couch_pgp_doc for what is covered.
-spec sign_doc(ejson(), key(), couch_pgp_doc:opts()) -> {ok, ejson()} | {error, reason()}.
sign_doc(Doc, Key, Opts) when is_reference(Key), is_map(Opts) ->
    couch_pgp_doc:sign(Doc, Key, Opts);
sign_doc(_, _, _) ->
    erlang:error(badarg).

%% @equiv verify_doc(Doc, Certs, #{})
-spec verify_doc(ejson(), [cert()]) -> {ok, [fingerprint()]} | {error, reason()}.
verify_doc(Doc, Certs) ->
    verify_doc(Doc, Certs, #{}).

%% @doc Verifies the document's signatures against `Certs'; the fingerprints that signed.
%% Any signature by one of `Certs' that fails makes the whole check fail.
-spec verify_doc(ejson(), [cert()], couch_pgp_doc:opts()) ->
    {ok, [fingerprint()]} | {error, reason()}.
verify_doc(Doc, Certs, Opts) when is_list(Certs), is_map(Opts) ->
    check_certs(Certs),
    couch_pgp_doc:verify(Doc, Certs, Opts);
verify_doc(_, _, _) ->
    erlang:error(badarg).

%% ----------------------------------------------------------------- internal

%% @private
-spec check_opts(map(), #{atom() => fun((term()) -> boolean())}) -> ok.
check_opts(Opts, Spec) ->
    maps:foreach(
        fun(Name, Value) ->
            case maps:find(Name, Spec) of
                {ok, Valid} ->
                    Valid(Value) orelse erlang:error({bad_option, Name});
                error ->
                    erlang:error({bad_option, Name})
            end
        end,
        Opts
    ).

-spec check_certs(term()) -> true.
check_certs(Certs) ->
    lists:all(fun is_binary/1, Certs) orelse erlang:error(badarg).

-spec to_binary(iodata()) -> binary().
to_binary(B) when is_binary(B) -> B;
to_binary(L) when is_list(L) ->
    try
        iolist_to_binary(L)
    catch
        error:badarg -> erlang:error(badarg)
    end;
to_binary(_) ->
    erlang:error(badarg).
