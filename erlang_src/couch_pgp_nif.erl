%% @private
%% NIF stubs for native/couch_pgp_nif. Call couch_pgp, not this module: it does no
%% argument checking of its own beyond what the Rust side enforces.
-module(couch_pgp_nif).

-export([
    generate_key/4,
    public_cert/1,
    key_fingerprint/1,
    cert_fingerprint/1,
    cert_encryptable_until/1,
    import_cert/1,
    export_secret/2,
    export_secret_random_pass/2,
    import_secret/2,
    encrypt/4,
    decrypt/4,
    sign/3,
    verify/3,
    verify_timed/3,
    revoke/3,
    revocation_status/1,
    canonical_json/1,
    json_decode/1,
    channel_new/0,
    channel_from_secret/1,
    channel_seal/3,
    channel_seal_dirty/3,
    channel_open/4,
    channel_open_dirty/4,
    channel_open_request/3,
    channel_open_request_dirty/3,
    channel_seal_response/6,
    channel_seal_response_dirty/6
]).

-on_load(init/0).

-define(NOT_LOADED, erlang:nif_error({not_loaded, ?MODULE})).

-spec init() -> ok | {error, term()}.
init() ->
    PrivDir =
        case code:priv_dir(couch_pgp) of
            {error, bad_name} ->
                filename:join(filename:dirname(filename:dirname(code:which(?MODULE))), "priv");
            Dir ->
                Dir
        end,
    erlang:load_nif(filename:join(PrivDir, "couch_pgp_nif"), 0).

-spec generate_key(binary() | undefined, atom(), atom(), non_neg_integer() | never) -> term().
generate_key(_UserId, _Suite, _Profile, _ExpiresIn) -> ?NOT_LOADED.
-spec public_cert(reference()) -> term().
public_cert(_Key) -> ?NOT_LOADED.
-spec key_fingerprint(reference()) -> binary().
key_fingerprint(_Key) -> ?NOT_LOADED.
-spec cert_fingerprint(binary()) -> term().
cert_fingerprint(_Cert) -> ?NOT_LOADED.
-spec cert_encryptable_until(binary()) -> term().
cert_encryptable_until(_Cert) -> ?NOT_LOADED.
-spec import_cert(binary()) -> term().
import_cert(_Bytes) -> ?NOT_LOADED.
-spec export_secret(reference(), binary()) -> term().
export_secret(_Key, _Passphrase) -> ?NOT_LOADED.
-spec export_secret_random_pass(reference(), binary()) -> term().
export_secret_random_pass(_Key, _Passphrase) -> ?NOT_LOADED.
-spec import_secret(binary(), binary()) -> term().
import_secret(_Bytes, _Passphrase) -> ?NOT_LOADED.
-spec encrypt(binary(), [binary()], reference() | undefined, boolean()) -> term().
encrypt(_Plain, _Certs, _SignWith, _Armor) -> ?NOT_LOADED.
-spec decrypt(binary(), reference(), [binary()] | undefined, non_neg_integer()) -> term().
decrypt(_Msg, _Key, _VerifyWith, _MaxSize) -> ?NOT_LOADED.
-spec sign(binary(), reference(), boolean()) -> term().
sign(_Data, _Key, _Armor) -> ?NOT_LOADED.
-spec verify(binary(), binary(), [binary()]) -> term().
verify(_Data, _Sig, _Certs) -> ?NOT_LOADED.
-spec verify_timed(binary(), binary(), [binary()]) -> term().
verify_timed(_Data, _Sig, _Certs) -> ?NOT_LOADED.
-spec revoke(reference(), atom(), binary()) -> term().
revoke(_Key, _Reason, _Message) -> ?NOT_LOADED.
-spec revocation_status(binary()) -> term().
revocation_status(_Cert) -> ?NOT_LOADED.
-spec canonical_json(term()) -> term().
canonical_json(_Json) -> ?NOT_LOADED.
-spec json_decode(binary()) -> term().
json_decode(_Text) -> ?NOT_LOADED.
-spec channel_new() -> term().
channel_new() -> ?NOT_LOADED.
-spec channel_from_secret(binary()) -> term().
channel_from_secret(_Secret) -> ?NOT_LOADED.
-spec channel_seal(reference(), atom(), binary()) -> term().
channel_seal(_Keys, _Dir, _Plain) -> ?NOT_LOADED.
-spec channel_seal_dirty(reference(), atom(), binary()) -> term().
channel_seal_dirty(_Keys, _Dir, _Plain) -> ?NOT_LOADED.
-spec channel_open(reference(), atom(), binary(), non_neg_integer()) -> term().
channel_open(_Keys, _Dir, _Msg, _Max) -> ?NOT_LOADED.
-spec channel_open_dirty(reference(), atom(), binary(), non_neg_integer()) -> term().
channel_open_dirty(_Keys, _Dir, _Msg, _Max) -> ?NOT_LOADED.
-spec channel_open_request(reference(), binary(), non_neg_integer()) -> term().
channel_open_request(_Keys, _Msg, _Max) -> ?NOT_LOADED.
-spec channel_open_request_dirty(reference(), binary(), non_neg_integer()) -> term().
channel_open_request_dirty(_Keys, _Msg, _Max) -> ?NOT_LOADED.
-spec channel_seal_response(reference(), 100..999, binary(), binary(), binary(), binary | base64) -> term().
channel_seal_response(_Keys, _Status, _Nonce, _CType, _Body, _Encoding) -> ?NOT_LOADED.
-spec channel_seal_response_dirty(reference(), 100..999, binary(), binary(), binary(), binary | base64) -> term().
channel_seal_response_dirty(_Keys, _Status, _Nonce, _CType, _Body, _Encoding) -> ?NOT_LOADED.
