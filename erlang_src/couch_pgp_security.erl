%% @doc The seed's `Security' object: one party's side of an encrypted, signed channel.
%%
%% `new/0' makes a fresh key pair whose secret never leaves the NIF; the peer's public key is
%% set once. `encode/2' encrypts to the peer and signs with our key; `decode/2' decrypts and
%% insists on the peer's signature. The value is immutable: `set_remote_public_key/2' returns
%% a new one, and refuses a value that already has a peer.
-module(couch_pgp_security).

-export([
    new/0,
    new/1,
    get_public_key/1,
    fingerprint/1,
    remote_fingerprint/1,
    set_remote_public_key/2,
    encode/2,
    decode/2,
    sign_doc/2,
    verify_doc/2
]).

-export_type([security/0]).

-record(security, {
    key :: couch_pgp:key(),
    remote = undefined :: couch_pgp:cert() | undefined
}).

-opaque security() :: #security{}.

%% Per-session keys live a day unless the caller says otherwise.
-define(DEFAULT_LIFETIME, 24 * 3600).

%% @equiv new(#{})
-spec new() -> {ok, security()} | {error, couch_pgp:reason()}.
new() ->
    new(#{}).

%% @doc A Security with a fresh key. Options are those of couch_pgp:generate_key/1
%% (default expiry one day), plus `remote => Cert' to set the peer at once.
-spec new(map()) -> {ok, security()} | {error, couch_pgp:reason()}.
new(Opts) when is_map(Opts) ->
    KeyOpts = maps:merge(#{expires_in => ?DEFAULT_LIFETIME}, maps:remove(remote, Opts)),
    case couch_pgp:generate_key(KeyOpts) of
        {ok, Key} ->
            S = #security{key = Key},
            case maps:find(remote, Opts) of
                {ok, Cert} -> set_remote_public_key(S, Cert);
                error -> {ok, S}
            end;
        {error, _} = Error ->
            Error
    end;
new(_) ->
    erlang:error(badarg).

%% @doc Our armored public certificate, to send to the peer.
-spec get_public_key(security()) -> couch_pgp:cert().
get_public_key(#security{key = Key}) ->
    couch_pgp:public_cert(Key).

%% @doc Our fingerprint.
-spec fingerprint(security()) -> couch_pgp:fingerprint().
fingerprint(#security{key = Key}) ->
    couch_pgp:fingerprint(Key).

%% @doc The peer's fingerprint, once set.
-spec remote_fingerprint(security()) -> couch_pgp:fingerprint() | undefined.
remote_fingerprint(#security{remote = undefined}) ->
    undefined;
remote_fingerprint(#security{remote = Cert}) ->
    couch_pgp:fingerprint(Cert).

%% @doc Sets the peer's public key; at most once per Security.
-spec set_remote_public_key(security(), iodata()) ->
    {ok, security()} | {error, remote_key_already_set | couch_pgp:reason()}.
set_remote_public_key(#security{remote = undefined} = S, Cert) ->
    case couch_pgp:import_cert(Cert) of
        {ok, Imported} -> {ok, S#security{remote = Imported}};
        {error, _} = Error -> Error
    end;
set_remote_public_key(#security{}, _Cert) ->
    {error, remote_key_already_set}.

%% @doc An armored message for the peer, signed by us.
-spec encode(security(), iodata()) -> {ok, binary()} | {error, no_remote_key | couch_pgp:reason()}.
encode(#security{remote = undefined}, _Content) ->
    {error, no_remote_key};
encode(#security{key = Key, remote = Cert}, Content) ->
    couch_pgp:encrypt(Content, [Cert], #{sign_with => Key, armor => true}).

%% @doc The content of a message from the peer; its signature is required.
-spec decode(security(), binary()) -> {ok, binary()} | {error, no_remote_key | couch_pgp:reason()}.
decode(#security{remote = undefined}, _Msg) ->
    {error, no_remote_key};
decode(#security{key = Key, remote = Cert}, Msg) ->
    case couch_pgp:decrypt(Msg, Key, #{verify_with => [Cert]}) of
        {ok, Plain, _Signers} -> {ok, Plain};
        {error, _} = Error -> Error
    end.

%% @doc Signs a document with our key (see couch_pgp:sign_doc/2).
-spec sign_doc(security(), couch_pgp:ejson()) -> {ok, couch_pgp:ejson()} | {error, couch_pgp:reason()}.
sign_doc(#security{key = Key}, Doc) ->
    couch_pgp:sign_doc(Doc, Key).

%% @doc Verifies a document signed by the peer.
-spec verify_doc(security(), couch_pgp:ejson()) ->
    {ok, [couch_pgp:fingerprint()]} | {error, no_remote_key | couch_pgp:reason()}.
verify_doc(#security{remote = undefined}, _Doc) ->
    {error, no_remote_key};
verify_doc(#security{remote = Cert}, Doc) ->
    couch_pgp:verify_doc(Doc, [Cert]).
