//! The NIF boundary: term conversion and thin wrappers over the capability modules.
//!
//! Scheduling: every call that does public-key or bulk symmetric work runs on a dirty CPU
//! scheduler. Measured with `make bench` on the 2-core CI machine (CPU time per call, nettle
//! backend): Cv25519 keygen 2.1 ms, encrypt+sign 1 KiB 1.1 ms, decrypt+verify 1 KiB 0.34 ms,
//! verify 1 KiB 35 us, canonical JSON of a 4 KiB document 45 us. Even the cheapest of these
//! is far above what a normal scheduler should be held for, and all of them grow with input
//! that a client chooses. Only `key_fingerprint` and `public_cert` (copies of data computed
//! once per key) stay on normal schedulers.

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use rustler::types::tuple::{get_tuple, make_tuple};
use rustler::{
    Atom, Binary, Encoder, Env, ListIterator, MapIterator, NifResult, OwnedBinary, Resource,
    ResourceArc, Term, TermType,
};

use crate::canonical::{self, Json};
use crate::certs;
use crate::channel::{self, ChannelKeys, Direction};
use crate::decrypt;
use crate::encrypt::{self, EncryptOptions};
use crate::error::{Error, JsonError};
use crate::keys::{self, GenerateOptions, Profile, SecretKey, Suite};
use crate::revoke::{self, Reason};
use crate::sign;
use crate::verify;

mod atoms {
    rustler::atoms! {
        ok,
        error,
        undefined,
        never,
        null,
        invalid_json,
        cv25519,
        rsa3072,
        rsa4096,
        v4,
        v6,
        binary,
        base64,
        client_to_server,
        server_to_client,
        method,
        path,
        query,
        ts,
        nonce,
        content_type,
        body,
        client_cert,
        not_revoked,
        revoked,
        unspecified,
        superseded,
        compromised,
        retired,
    }
}

pub struct KeyRes(pub SecretKey);

#[rustler::resource_impl]
impl Resource for KeyRes {}

/// A session's channel keys; the secret bytes never come back out of it.
pub struct ChannelRes(pub ChannelKeys);

#[rustler::resource_impl]
impl Resource for ChannelRes {}

fn error_term<'a>(env: Env<'a>, e: Error) -> Term<'a> {
    let reason = match e {
        Error::InvalidJson(j) => make_tuple(
            env,
            &[
                atoms::invalid_json().encode(env),
                atom(env, j.atom_name()),
            ],
        ),
        other => atom(env, error_atom_name(other)),
    };
    (atoms::error(), reason).encode(env)
}

fn atom<'a>(env: Env<'a>, name: &str) -> Term<'a> {
    match Atom::from_str(env, name) {
        Ok(a) => a.encode(env),
        Err(_) => atoms::error().encode(env),
    }
}

pub fn error_atom_name(e: Error) -> &'static str {
    match e {
        Error::BadKey => "bad_key",
        Error::BadCert => "bad_cert",
        Error::NoEncryptionKey => "no_encryption_key",
        Error::NoSigningKey => "no_signing_key",
        Error::Expired => "expired",
        Error::NotYetValid => "not_yet_valid",
        Error::Revoked => "revoked",
        Error::PolicyRejected => "policy_rejected",
        Error::NotEncrypted => "not_encrypted",
        Error::Malformed => "malformed",
        Error::NoMatchingKey => "no_matching_key",
        Error::Tampered => "tampered",
        Error::Unsigned => "unsigned",
        Error::BadSignature => "bad_signature",
        Error::UnknownSigner => "unknown_signer",
        Error::BadPassphrase => "bad_passphrase",
        Error::EmptyPassphrase => "empty_passphrase",
        Error::InvalidJson(_) => "invalid_json",
        Error::TooLarge => "too_large",
        Error::BadEnvelope => "bad_envelope",
        Error::Internal => "internal",
    }
}

/// A growable Erlang binary that output is written into directly, so a large result is
/// never held twice (once in a Vec, once in the binary).
struct BinWriter {
    bin: OwnedBinary,
    len: usize,
    limit: usize,
    exceeded: bool,
}

impl BinWriter {
    fn with_capacity(cap: usize) -> BinWriter {
        BinWriter::with_limit(cap, usize::MAX)
    }

    /// Refuses to grow past `limit` bytes; `exceeded` tells afterwards why writing failed.
    fn with_limit(cap: usize, limit: usize) -> BinWriter {
        BinWriter { bin: OwnedBinary::new(cap.clamp(64, limit.max(64))), len: 0, limit, exceeded: false }
    }

    fn finish(mut self) -> OwnedBinary {
        if self.len != self.bin.len() {
            self.bin.realloc_or_copy(self.len);
        }
        self.bin
    }
}

impl Write for BinWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let need = self.len + data.len();
        if need > self.limit {
            self.exceeded = true;
            return Err(std::io::Error::other("size limit"));
        }
        if need > self.bin.len() {
            let grown = need.max(self.bin.len().saturating_mul(2));
            self.bin.realloc_or_copy(grown);
        }
        self.bin.as_mut_slice()[self.len..need].copy_from_slice(data);
        self.len = need;
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

// SAFETY of Send/Sync: an OwnedBinary is plain process-independent memory until released.
unsafe impl Sync for BinWriter {}

fn ok_binary<'a>(env: Env<'a>, w: BinWriter) -> Term<'a> {
    (atoms::ok(), w.finish().release(env)).encode(env)
}

fn binary_term<'a>(env: Env<'a>, bytes: &[u8]) -> Term<'a> {
    let mut b = OwnedBinary::new(bytes.len());
    b.as_mut_slice().copy_from_slice(bytes);
    b.release(env).encode(env)
}

/// `{ok, Binary}` or `{error, Reason}`.
fn binary_result<'a, B: AsRef<[u8]>>(env: Env<'a>, r: Result<B, Error>) -> Term<'a> {
    match r {
        Ok(bytes) => (atoms::ok(), binary_term(env, bytes.as_ref())).encode(env),
        Err(e) => error_term(env, e),
    }
}

fn cert_list(list: ListIterator) -> Result<Vec<Arc<sequoia_openpgp::Cert>>, Error> {
    let mut out = Vec::new();
    for t in list {
        let b: Binary = t.decode().map_err(|_| Error::BadCert)?;
        out.push(certs::parse(b.as_slice())?);
    }
    Ok(out)
}

// ---------------------------------------------------------------- keys

#[rustler::nif(schedule = "DirtyCpu")]
fn generate_key<'a>(
    env: Env<'a>,
    user_id: Term<'a>,
    suite: Atom,
    profile: Atom,
    expires_in: Term<'a>,
) -> NifResult<Term<'a>> {
    let user_id = if user_id.is_atom() {
        None
    } else {
        let b: Binary = user_id.decode()?;
        Some(std::str::from_utf8(b.as_slice()).map_err(|_| rustler::Error::BadArg)?.to_owned())
    };
    let suite = if suite == atoms::cv25519() {
        Suite::Cv25519
    } else if suite == atoms::rsa3072() {
        Suite::Rsa3072
    } else if suite == atoms::rsa4096() {
        Suite::Rsa4096
    } else {
        return Err(rustler::Error::BadArg);
    };
    let profile = if profile == atoms::v4() {
        Profile::Rfc4880
    } else if profile == atoms::v6() {
        Profile::Rfc9580
    } else {
        return Err(rustler::Error::BadArg);
    };
    let expires_in = if expires_in.is_atom() {
        None
    } else {
        let secs: u64 = expires_in.decode()?;
        Some(Duration::from_secs(secs))
    };
    let opts = GenerateOptions { user_id, suite, profile, expires_in, ..Default::default() };
    Ok(match keys::generate(&opts) {
        Ok(k) => (atoms::ok(), ResourceArc::new(KeyRes(k))).encode(env),
        Err(e) => error_term(env, e),
    })
}

#[rustler::nif]
fn public_cert<'a>(env: Env<'a>, key: ResourceArc<KeyRes>) -> Term<'a> {
    match key.0.public_armored() {
        Ok(bytes) => (atoms::ok(), binary_term(env, bytes)).encode(env),
        Err(e) => error_term(env, e),
    }
}

#[rustler::nif]
fn key_fingerprint<'a>(env: Env<'a>, key: ResourceArc<KeyRes>) -> Term<'a> {
    key.0.fingerprint().encode(env)
}

/// Parsing an unseen certificate verifies its self-signatures: dirty.
#[rustler::nif(schedule = "DirtyCpu")]
fn cert_fingerprint<'a>(env: Env<'a>, cert: Binary<'a>) -> Term<'a> {
    match certs::parse(cert.as_slice()) {
        Ok(c) => (atoms::ok(), certs::fingerprint_hex(&c)).encode(env),
        Err(e) => error_term(env, e),
    }
}

/// `{ok, never | UnixSeconds}`: until when the certificate can be encrypted to.
#[rustler::nif(schedule = "DirtyCpu")]
fn cert_encryptable_until<'a>(env: Env<'a>, cert: Binary<'a>) -> Term<'a> {
    match certs::parse(cert.as_slice()).and_then(|c| certs::encryptable_until(&c)) {
        Ok(None) => (atoms::ok(), atoms::never()).encode(env),
        Ok(Some(t)) => {
            let secs = t.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
            (atoms::ok(), secs).encode(env)
        }
        Err(e) => error_term(env, e),
    }
}

#[rustler::nif(schedule = "DirtyCpu")]
fn import_cert<'a>(env: Env<'a>, bytes: Binary<'a>) -> Term<'a> {
    binary_result(env, certs::import(bytes.as_slice()))
}

/// S2K key derivation is deliberately slow.
#[rustler::nif(schedule = "DirtyCpu")]
fn export_secret<'a>(env: Env<'a>, key: ResourceArc<KeyRes>, pass: Binary<'a>) -> Term<'a> {
    binary_result(env, keys::export_secret(&key.0, pass.as_slice()))
}

/// For a random passphrase: the least stretching, so a normal scheduler (see keys.rs).
#[rustler::nif]
fn export_secret_random_pass<'a>(env: Env<'a>, key: ResourceArc<KeyRes>, pass: Binary<'a>) -> Term<'a> {
    binary_result(env, keys::export_secret_random_pass(&key.0, pass.as_slice()))
}

#[rustler::nif(schedule = "DirtyCpu")]
fn import_secret<'a>(env: Env<'a>, bytes: Binary<'a>, pass: Binary<'a>) -> Term<'a> {
    match keys::import_secret(bytes.as_slice(), pass.as_slice()) {
        Ok(k) => (atoms::ok(), ResourceArc::new(KeyRes(k))).encode(env),
        Err(e) => error_term(env, e),
    }
}

// ---------------------------------------------------------------- revocation

/// The key's certificate with a key revocation signature (reason, message) by the key.
#[rustler::nif(schedule = "DirtyCpu")]
fn revoke<'a>(env: Env<'a>, key: ResourceArc<KeyRes>, reason: Atom, message: Binary<'a>) -> NifResult<Term<'a>> {
    let reason = if reason == atoms::unspecified() {
        Reason::Unspecified
    } else if reason == atoms::superseded() {
        Reason::Superseded
    } else if reason == atoms::compromised() {
        Reason::Compromised
    } else if reason == atoms::retired() {
        Reason::Retired
    } else {
        return Err(rustler::Error::BadArg);
    };
    Ok(binary_result(env, revoke::revoke(&key.0, reason, message.as_slice())))
}

/// `not_revoked`, `{revoked, Reason, UnixSeconds}` or `{error, Reason}`.
#[rustler::nif(schedule = "DirtyCpu")]
fn revocation_status<'a>(env: Env<'a>, cert: Binary<'a>) -> Term<'a> {
    match revoke::status(cert.as_slice()) {
        Ok(None) => atoms::not_revoked().encode(env),
        Ok(Some((reason, at))) => {
            let r = match reason {
                Reason::Unspecified => atoms::unspecified(),
                Reason::Superseded => atoms::superseded(),
                Reason::Compromised => atoms::compromised(),
                Reason::Retired => atoms::retired(),
            };
            (atoms::revoked(), r, at).encode(env)
        }
        Err(e) => error_term(env, e),
    }
}

// ---------------------------------------------------------------- messages

#[rustler::nif(schedule = "DirtyCpu")]
fn encrypt<'a>(
    env: Env<'a>,
    plain: Binary<'a>,
    recipients: ListIterator<'a>,
    sign_with: Term<'a>,
    armor: bool,
) -> NifResult<Term<'a>> {
    let signer: Option<ResourceArc<KeyRes>> =
        if sign_with.is_atom() { None } else { Some(sign_with.decode()?) };
    let certs = match cert_list(recipients) {
        Ok(c) => c,
        Err(e) => return Ok(error_term(env, e)),
    };
    let refs: Vec<&sequoia_openpgp::Cert> = certs.iter().map(|c| &**c).collect();
    let opts = EncryptOptions { sign_with: signer.as_ref().map(|k| &k.0), armor, ..Default::default() };
    let estimate = if armor { plain.len() / 3 * 4 + plain.len() / 32 + 1024 } else { plain.len() + 512 };
    let mut out = BinWriter::with_capacity(estimate);
    Ok(match encrypt::encrypt(plain.as_slice(), &refs, &opts, &mut out) {
        Ok(()) => ok_binary(env, out),
        Err(e) => error_term(env, e),
    })
}

#[rustler::nif(schedule = "DirtyCpu")]
fn decrypt<'a>(
    env: Env<'a>,
    msg: Binary<'a>,
    key: ResourceArc<KeyRes>,
    verify_with: Term<'a>,
    max_size: u64,
) -> NifResult<Term<'a>> {
    let expected = if verify_with.is_atom() {
        None
    } else {
        match cert_list(verify_with.decode()?) {
            Ok(c) => Some(c),
            Err(e) => return Ok(error_term(env, e)),
        }
    };
    let limit = usize::try_from(max_size).unwrap_or(usize::MAX);
    let mut out = BinWriter::with_limit(msg.len(), limit);
    let result = decrypt::decrypt(msg.as_slice(), &key.0, expected.as_deref(), &mut out);
    Ok(match result {
        Ok(signers) => {
            let plain = out.finish().release(env);
            (atoms::ok(), plain, signers).encode(env)
        }
        Err(_) if out.exceeded => error_term(env, Error::TooLarge),
        Err(e) => error_term(env, e),
    })
}

#[rustler::nif(schedule = "DirtyCpu")]
fn sign<'a>(env: Env<'a>, data: Binary<'a>, key: ResourceArc<KeyRes>, armor: bool) -> Term<'a> {
    let mut out = BinWriter::with_capacity(512);
    match sign::sign_detached(data.as_slice(), &key.0, armor, &mut out) {
        Ok(()) => ok_binary(env, out),
        Err(e) => error_term(env, e),
    }
}

#[rustler::nif(schedule = "DirtyCpu")]
fn verify<'a>(
    env: Env<'a>,
    data: Binary<'a>,
    sig: Binary<'a>,
    certs: ListIterator<'a>,
) -> Term<'a> {
    let certs = match cert_list(certs) {
        Ok(c) => c,
        Err(e) => return error_term(env, e),
    };
    match verify::verify_detached(data.as_slice(), sig.as_slice(), &certs) {
        Ok(fpr) => (atoms::ok(), fpr).encode(env),
        Err(e) => error_term(env, e),
    }
}

/// Like `verify`, with the good signature's creation time: `{ok, Fingerprint, UnixSeconds}`.
/// The caller judges the time (a certificate revoked in a registry from a date on).
#[rustler::nif(schedule = "DirtyCpu")]
fn verify_timed<'a>(
    env: Env<'a>,
    data: Binary<'a>,
    sig: Binary<'a>,
    certs: ListIterator<'a>,
) -> Term<'a> {
    let certs = match cert_list(certs) {
        Ok(c) => c,
        Err(e) => return error_term(env, e),
    };
    match verify::verify_detached_all(data.as_slice(), sig.as_slice(), &certs, verify::Window::default()) {
        Ok(v) => match v.first() {
            Some(first) => {
                let secs = first
                    .created
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0);
                (atoms::ok(), first.cert_fingerprint.clone(), secs).encode(env)
            }
            None => error_term(env, Error::Unsigned),
        },
        Err(e) => error_term(env, e),
    }
}

// ---------------------------------------------------------------- JSON

#[rustler::nif(schedule = "DirtyCpu")]
fn canonical_json<'a>(env: Env<'a>, value: Term<'a>) -> Term<'a> {
    binary_result(env, term_to_json(value, 0).and_then(|j| canonical::canonicalize(&j)).map_err(Error::InvalidJson))
}

/// JSON text to EJSON (`{[{Key, Value}]}` objects, binaries, numbers, atoms), for users
/// and tests outside CouchDB, where jiffy is not at hand.
#[rustler::nif(schedule = "DirtyCpu")]
fn json_decode<'a>(env: Env<'a>, text: Binary<'a>) -> Term<'a> {
    match canonical::from_text(text.as_slice()) {
        Ok(j) => (atoms::ok(), json_to_term(env, &j)).encode(env),
        Err(e) => error_term(env, Error::InvalidJson(e)),
    }
}

fn key_string(t: Term) -> Result<String, JsonError> {
    match t.get_type() {
        TermType::Binary => binary_string(t),
        TermType::Atom => t.atom_to_string().map_err(|_| JsonError::InvalidValue),
        _ => Err(JsonError::InvalidValue),
    }
}

fn binary_string(t: Term) -> Result<String, JsonError> {
    let b: Binary = t.decode().map_err(|_| JsonError::InvalidValue)?;
    std::str::from_utf8(b.as_slice())
        .map(str::to_owned)
        .map_err(|_| JsonError::InvalidUtf8)
}

fn term_to_json(t: Term, depth: usize) -> Result<Json, JsonError> {
    if depth > canonical::MAX_DEPTH {
        return Err(JsonError::InvalidValue);
    }
    match t.get_type() {
        TermType::Atom => match t.atom_to_string().map_err(|_| JsonError::InvalidValue)?.as_str() {
            "null" => Ok(Json::Null),
            "true" => Ok(Json::Bool(true)),
            "false" => Ok(Json::Bool(false)),
            _ => Err(JsonError::InvalidValue),
        },
        TermType::Binary => Ok(Json::Str(binary_string(t)?)),
        TermType::Integer => match t.decode::<i64>() {
            Ok(n) => Json::int(n as i128),
            Err(_) => Err(JsonError::NumberOutOfRange),
        },
        TermType::Float => Json::float(t.decode::<f64>().map_err(|_| JsonError::InvalidValue)?),
        TermType::List => {
            let items: ListIterator = t.decode().map_err(|_| JsonError::InvalidValue)?;
            items.map(|i| term_to_json(i, depth + 1)).collect::<Result<_, _>>().map(Json::Array)
        }
        TermType::Tuple => {
            // EJSON object: {[{Key, Value}, ...]}
            let outer = get_tuple(t).map_err(|_| JsonError::InvalidValue)?;
            if outer.len() != 1 {
                return Err(JsonError::InvalidValue);
            }
            let pairs: ListIterator = outer[0].decode().map_err(|_| JsonError::InvalidValue)?;
            let mut members = Vec::new();
            for p in pairs {
                let kv = get_tuple(p).map_err(|_| JsonError::InvalidValue)?;
                if kv.len() != 2 {
                    return Err(JsonError::InvalidValue);
                }
                members.push((key_string(kv[0])?, term_to_json(kv[1], depth + 1)?));
            }
            Json::object(members)
        }
        TermType::Map => {
            let iter = MapIterator::new(t).ok_or(JsonError::InvalidValue)?;
            let mut members = Vec::new();
            for (k, v) in iter {
                members.push((key_string(k)?, term_to_json(v, depth + 1)?));
            }
            // Distinct map keys can still collide as JSON names (an atom and a binary).
            Json::object(members)
        }
        _ => Err(JsonError::InvalidValue),
    }
}

fn json_to_term<'a>(env: Env<'a>, j: &Json) -> Term<'a> {
    match j {
        Json::Null => atoms::null().encode(env),
        Json::Bool(b) => b.encode(env),
        Json::Int(n) => n.encode(env),
        Json::Float(f) => f.encode(env),
        Json::Str(s) => s.as_str().encode(env),
        Json::Array(items) => {
            let terms: Vec<Term> = items.iter().map(|i| json_to_term(env, i)).collect();
            terms.encode(env)
        }
        Json::Object(members) => {
            let pairs: Vec<Term> = members
                .iter()
                .map(|(k, v)| make_tuple(env, &[k.as_str().encode(env), json_to_term(env, v)]))
                .collect();
            make_tuple(env, &[pairs.encode(env)])
        }
    }
}

// ---------------------------------------------------------------- session channel
//
// Scheduling: opening a 1 KiB request or sealing a 1 KiB response takes about 2 microseconds
// (no public-key work, no generator reseed), far below what a normal scheduler may be held
// for; `couch_pgp_channel` sends inputs above its measured cut-off to the `_dirty` twins.

/// New random channel keys: `{Keys, Secret}`, the 64 secret bytes for the session token.
#[rustler::nif]
fn channel_new(env: Env<'_>) -> Term<'_> {
    match ChannelKeys::generate() {
        Ok(k) => {
            let secret = k.secret();
            (atoms::ok(), ResourceArc::new(ChannelRes(k)), binary_term(env, &secret)).encode(env)
        }
        Err(e) => error_term(env, e),
    }
}

/// The keys a session token carries.
#[rustler::nif]
fn channel_from_secret<'a>(env: Env<'a>, secret: Binary<'a>) -> Term<'a> {
    match ChannelKeys::from_secret(secret.as_slice()) {
        Ok(k) => (atoms::ok(), ResourceArc::new(ChannelRes(k))).encode(env),
        Err(e) => error_term(env, e),
    }
}

fn direction(d: Atom) -> NifResult<Direction> {
    if d == atoms::client_to_server() {
        Ok(Direction::ClientToServer)
    } else if d == atoms::server_to_client() {
        Ok(Direction::ServerToClient)
    } else {
        Err(rustler::Error::BadArg)
    }
}

fn channel_seal_impl<'a>(env: Env<'a>, keys: &ChannelRes, dir: Atom, plain: Binary<'a>) -> NifResult<Term<'a>> {
    let dir = direction(dir)?;
    let mut out = BinWriter::with_capacity(plain.len() + 128);
    Ok(match channel::seal(&keys.0, dir, plain.as_slice(), &mut out) {
        Ok(()) => ok_binary(env, out),
        Err(e) => error_term(env, e),
    })
}

#[rustler::nif]
fn channel_seal<'a>(env: Env<'a>, keys: ResourceArc<ChannelRes>, dir: Atom, plain: Binary<'a>) -> NifResult<Term<'a>> {
    channel_seal_impl(env, &keys, dir, plain)
}

#[rustler::nif(schedule = "DirtyCpu")]
fn channel_seal_dirty<'a>(env: Env<'a>, keys: ResourceArc<ChannelRes>, dir: Atom, plain: Binary<'a>) -> NifResult<Term<'a>> {
    channel_seal_impl(env, &keys, dir, plain)
}

fn channel_open_impl<'a>(
    env: Env<'a>,
    keys: &ChannelRes,
    dir: Atom,
    msg: Binary<'a>,
    max_size: u64,
) -> NifResult<Term<'a>> {
    let dir = direction(dir)?;
    let limit = usize::try_from(max_size).unwrap_or(usize::MAX);
    let mut out = BinWriter::with_limit(msg.len(), limit);
    Ok(match channel::open(&keys.0, dir, msg.as_slice(), &mut out) {
        Ok(()) => ok_binary(env, out),
        Err(_) if out.exceeded => error_term(env, Error::TooLarge),
        Err(e) => error_term(env, e),
    })
}

#[rustler::nif]
fn channel_open<'a>(env: Env<'a>, keys: ResourceArc<ChannelRes>, dir: Atom, msg: Binary<'a>, max_size: u64) -> NifResult<Term<'a>> {
    channel_open_impl(env, &keys, dir, msg, max_size)
}

#[rustler::nif(schedule = "DirtyCpu")]
fn channel_open_dirty<'a>(env: Env<'a>, keys: ResourceArc<ChannelRes>, dir: Atom, msg: Binary<'a>, max_size: u64) -> NifResult<Term<'a>> {
    channel_open_impl(env, &keys, dir, msg, max_size)
}

fn open_request_impl<'a>(env: Env<'a>, keys: &ChannelRes, msg: Binary<'a>, max_size: u64) -> NifResult<Term<'a>> {
    let limit = usize::try_from(max_size).unwrap_or(usize::MAX);
    let e = match channel::open_request(&keys.0, msg.as_slice(), limit) {
        Ok(e) => e,
        Err(err) => return Ok(error_term(env, err)),
    };
    let bin = |s: &str| binary_term(env, s.as_bytes());
    let map = Term::map_new(env)
        .map_put(atoms::method(), bin(&e.method))?
        .map_put(atoms::path(), bin(&e.path))?
        .map_put(atoms::query(), bin(&e.query))?
        .map_put(atoms::ts(), e.ts)?
        .map_put(atoms::nonce(), bin(&e.nonce))?
        .map_put(atoms::content_type(), bin(&e.content_type))?
        .map_put(atoms::body(), bin(&e.body))?
        .map_put(atoms::client_cert(), atoms::undefined())?;
    Ok((atoms::ok(), map).encode(env))
}

/// Opens a request and parses its envelope in one call: `{ok, Envelope}` as
/// couch_pgp_envelope:parse_request/1 gives it.
#[rustler::nif]
fn channel_open_request<'a>(env: Env<'a>, keys: ResourceArc<ChannelRes>, msg: Binary<'a>, max_size: u64) -> NifResult<Term<'a>> {
    open_request_impl(env, &keys, msg, max_size)
}

#[rustler::nif(schedule = "DirtyCpu")]
fn channel_open_request_dirty<'a>(env: Env<'a>, keys: ResourceArc<ChannelRes>, msg: Binary<'a>, max_size: u64) -> NifResult<Term<'a>> {
    open_request_impl(env, &keys, msg, max_size)
}

#[allow(clippy::too_many_arguments)]
fn seal_response_impl<'a>(
    env: Env<'a>,
    keys: &ChannelRes,
    status: u16,
    nonce: Binary<'a>,
    content_type: Binary<'a>,
    body: Binary<'a>,
    encoding: Atom,
) -> NifResult<Term<'a>> {
    let nonce = std::str::from_utf8(nonce.as_slice()).map_err(|_| rustler::Error::BadArg)?;
    let ctype = std::str::from_utf8(content_type.as_slice()).map_err(|_| rustler::Error::BadArg)?;
    let mut sealed = Vec::with_capacity(body.len() + 256);
    if let Err(e) = channel::seal_response(&keys.0, status, nonce, ctype, body.as_slice(), &mut sealed) {
        return Ok(error_term(env, e));
    }
    if encoding == atoms::binary() {
        Ok((atoms::ok(), binary_term(env, &sealed)).encode(env))
    } else if encoding == atoms::base64() {
        use base64::Engine;
        let text = base64::engine::general_purpose::STANDARD.encode(&sealed);
        Ok((atoms::ok(), binary_term(env, text.as_bytes())).encode(env))
    } else {
        Err(rustler::Error::BadArg)
    }
}

/// Seals a response envelope in one call, as binary OpenPGP or its standard base64.
#[rustler::nif]
fn channel_seal_response<'a>(
    env: Env<'a>,
    keys: ResourceArc<ChannelRes>,
    status: u16,
    nonce: Binary<'a>,
    content_type: Binary<'a>,
    body: Binary<'a>,
    encoding: Atom,
) -> NifResult<Term<'a>> {
    seal_response_impl(env, &keys, status, nonce, content_type, body, encoding)
}

#[rustler::nif(schedule = "DirtyCpu")]
fn channel_seal_response_dirty<'a>(
    env: Env<'a>,
    keys: ResourceArc<ChannelRes>,
    status: u16,
    nonce: Binary<'a>,
    content_type: Binary<'a>,
    body: Binary<'a>,
    encoding: Atom,
) -> NifResult<Term<'a>> {
    seal_response_impl(env, &keys, status, nonce, content_type, body, encoding)
}
