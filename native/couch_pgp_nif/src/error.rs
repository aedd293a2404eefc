//! The closed set of errors the core reports.
//!
//! Each variant becomes `{error, Atom}` or `{error, {Atom, Detail}}` in Erlang (see `nif.rs`);
//! the atom names are the public contract written at the top of `couch_pgp.erl`. Nothing here
//! carries plaintext, key material or a sequoia Debug string.

use sequoia_openpgp as openpgp;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum JsonError {
    #[error("duplicate object key")]
    DuplicateKey,
    #[error("number outside the IEEE 754 double range that RFC 8785 allows")]
    NumberOutOfRange,
    #[error("string is not valid UTF-8 or holds a lone surrogate")]
    InvalidUtf8,
    #[error("value has no JSON form")]
    InvalidValue,
    #[error("not JSON text")]
    Syntax,
}

impl JsonError {
    pub fn atom_name(self) -> &'static str {
        match self {
            JsonError::DuplicateKey => "duplicate_key",
            JsonError::NumberOutOfRange => "number_out_of_range",
            JsonError::InvalidUtf8 => "invalid_utf8",
            JsonError::InvalidValue => "invalid_value",
            JsonError::Syntax => "syntax",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The secret key is unusable (no secret parts, no usable subkey).
    #[error("secret key is not usable")]
    BadKey,
    /// The bytes are not one OpenPGP certificate.
    #[error("not an OpenPGP certificate")]
    BadCert,
    #[error("certificate has no valid encryption-capable key")]
    NoEncryptionKey,
    #[error("key has no valid signing-capable key")]
    NoSigningKey,
    #[error("key or certificate has expired")]
    Expired,
    #[error("key or certificate is not yet valid")]
    NotYetValid,
    #[error("key or certificate is revoked")]
    Revoked,
    #[error("algorithm or packet rejected by policy")]
    PolicyRejected,
    /// Input parsed as OpenPGP, but it is not an encrypted message.
    #[error("not an encrypted OpenPGP message")]
    NotEncrypted,
    #[error("malformed OpenPGP data")]
    Malformed,
    /// No secret key we hold can open the message.
    #[error("message is not encrypted to this key")]
    NoMatchingKey,
    /// The session key opened the message but its content failed integrity checks.
    #[error("message integrity check failed")]
    Tampered,
    #[error("message carries no signature")]
    Unsigned,
    #[error("signature does not verify")]
    BadSignature,
    /// Signed, but by nobody the caller named.
    #[error("signed by a key that was not expected")]
    UnknownSigner,
    #[error("wrong passphrase")]
    BadPassphrase,
    #[error("passphrase must not be empty")]
    EmptyPassphrase,
    #[error("invalid JSON: {0}")]
    InvalidJson(JsonError),
    /// The plaintext would exceed the caller's limit (a compressed "bomb", or simply big).
    #[error("plaintext exceeds the size limit")]
    TooLarge,
    /// A channel message opened, but its plaintext is not a request envelope.
    #[error("not a couch_pgp request envelope")]
    BadEnvelope,
    /// Not expected from any input; reported instead of panicking.
    #[error("internal error")]
    Internal,
}

impl From<JsonError> for Error {
    fn from(e: JsonError) -> Self {
        Error::InvalidJson(e)
    }
}

pub type Result<T> = std::result::Result<T, Error>;

/// What an unrecognised failure means depends on the operation that saw it.
#[derive(Debug, Clone, Copy)]
pub enum Context {
    Cert,
    Message,
    Signature,
    Other,
}

/// Maps a sequoia (anyhow) error to our closed set.
///
/// Our own `Error`s returned from sequoia's helper callbacks come back inside anyhow, and
/// sometimes inside an io::Error, where they cannot always be downcast; callers that return
/// errors from callbacks therefore also remember them (see `decrypt::Helper::failure`).
pub fn classify(e: &anyhow::Error, ctx: Context) -> Error {
    for cause in e.chain() {
        if let Some(ours) = cause.downcast_ref::<Error>() {
            return *ours;
        }
        if let Some(pgp) = cause.downcast_ref::<openpgp::Error>() {
            return from_openpgp(pgp, ctx);
        }
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            if let Some(inner) = io.get_ref() {
                if let Some(ours) = inner.downcast_ref::<Error>() {
                    return *ours;
                }
                if let Some(pgp) = inner.downcast_ref::<openpgp::Error>() {
                    return from_openpgp(pgp, ctx);
                }
            }
            if io.kind() == std::io::ErrorKind::UnexpectedEof {
                return fallback(ctx);
            }
        }
    }
    fallback(ctx)
}

pub fn classify_io(e: &std::io::Error, ctx: Context) -> Error {
    if let Some(inner) = e.get_ref() {
        if let Some(ours) = inner.downcast_ref::<Error>() {
            return *ours;
        }
        if let Some(pgp) = inner.downcast_ref::<openpgp::Error>() {
            return from_openpgp(pgp, ctx);
        }
    }
    fallback(ctx)
}

fn fallback(ctx: Context) -> Error {
    match ctx {
        Context::Cert => Error::BadCert,
        Context::Message => Error::Malformed,
        Context::Signature => Error::BadSignature,
        Context::Other => Error::Internal,
    }
}

fn from_openpgp(e: &openpgp::Error, ctx: Context) -> Error {
    use openpgp::Error as E;
    match e {
        E::ManipulatedMessage => Error::Tampered,
        E::Expired(_) => Error::Expired,
        E::NotYetLive(_) => Error::NotYetValid,
        E::InvalidPassword => Error::BadPassphrase,
        E::PolicyViolation(_, _) => Error::PolicyRejected,
        E::BadSignature(_) => Error::BadSignature,
        E::MissingSessionKey(_) => Error::NoMatchingKey,
        E::InvalidSessionKey(_) => Error::NoMatchingKey,
        E::UnsupportedHashAlgorithm(_)
        | E::UnsupportedPublicKeyAlgorithm(_)
        | E::UnsupportedEllipticCurve(_)
        | E::UnsupportedSymmetricAlgorithm(_)
        | E::UnsupportedAEADAlgorithm(_)
        | E::UnsupportedCompressionAlgorithm(_)
        | E::UnsupportedSignatureType(_) => Error::PolicyRejected,
        _ => fallback(ctx),
    }
}

/// Runs `f`, turning a panic inside it (sequoia has a few `unwrap`s that crafted input can
/// reach; see tests/openpgp.rs `truncated_seipd_body_panics_in_sequoia_but_not_here`) into
/// `on_panic`. Such panics are not printed: the caller gets the error instead, and the
/// default hook's message would only be noise in CouchDB's log.
pub fn no_panic<T>(on_panic: impl FnOnce() -> Error, f: impl FnOnce() -> Result<T>) -> Result<T> {
    use std::cell::Cell;
    use std::panic::{self, AssertUnwindSafe};
    use std::sync::Once;

    thread_local! {
        static GUARDED: Cell<bool> = const { Cell::new(false) };
    }
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if !GUARDED.with(Cell::get) {
                previous(info);
            } else {
                #[cfg(feature = "fuzzing")]
                fuzzing::record(info);
            }
        }));
    });

    let was = GUARDED.with(|g| g.replace(true));
    let result = panic::catch_unwind(AssertUnwindSafe(f));
    GUARDED.with(|g| g.set(was));
    match result {
        Ok(r) => r,
        Err(_) => Err(on_panic()),
    }
}

/// For the fuzz targets (`fuzz/`): where each panic that `no_panic` turned into an error was
/// raised, so that a harness can tell a known sequoia `unwrap` from a new one. Production
/// builds never enable the feature and keep no record.
#[cfg(feature = "fuzzing")]
pub mod fuzzing {
    use std::sync::Mutex;

    static CAUGHT: Mutex<Vec<String>> = Mutex::new(Vec::new());

    pub(super) fn record(info: &std::panic::PanicHookInfo<'_>) {
        let at = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        if let Ok(mut v) = CAUGHT.lock() {
            v.push(at);
        }
    }

    /// The locations (`file:line`) of the panics caught since the last call.
    pub fn take_caught_panics() -> Vec<String> {
        CAUGHT.lock().map(|mut v| std::mem::take(&mut *v)).unwrap_or_default()
    }
}
