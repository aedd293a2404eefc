//! Public certificates: parsing (cached), validation and export.
//!
//! Certificates cross the NIF boundary as bytes (armored or binary). Parsing armor and
//! checking self-signatures costs far more than an encryption of a small message, so each
//! distinct byte string is parsed once and kept. The cache is keyed by the exact bytes, so a
//! lookup can never hand back a different certificate than the one the caller passed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use once_cell::sync::Lazy;
use sequoia_openpgp as openpgp;
use openpgp::cert::prelude::*;
use openpgp::parse::Parse;
use openpgp::serialize::SerializeInto;
use openpgp::types::RevocationStatus;

use crate::error::{classify, no_panic, Context, Error, Result};
use crate::policy::POLICY;

/// The certificate type every function here hands out, for callers without sequoia.
pub use openpgp::Cert;

/// Enough for every live session of a busy node; past it the cache starts again empty,
/// which costs one re-parse per certificate, never a wrong answer.
const CACHE_CAPACITY: usize = 4096;
/// Certificates larger than this are refused before parsing (a typical v4 Cv25519
/// certificate is under 1 KiB armored; an RSA-4096 one with many user ids a few KiB).
pub const MAX_CERT_BYTES: usize = 256 * 1024;

static CACHE: Lazy<Mutex<HashMap<Vec<u8>, Arc<Cert>>>> =
    Lazy::new(|| Mutex::new(HashMap::new()));

/// Parses one certificate, public parts only, from armored or binary bytes; cached.
pub fn parse(bytes: &[u8]) -> Result<Arc<Cert>> {
    if let Ok(cache) = CACHE.lock() {
        if let Some(cert) = cache.get(bytes) {
            return Ok(cert.clone());
        }
    }
    if bytes.len() > MAX_CERT_BYTES {
        return Err(Error::BadCert);
    }
    let cert = no_panic(|| Error::BadCert, || {
        Cert::from_bytes(bytes).map_err(|e| classify(&e, Context::Cert))
    })?;
    // Whatever the caller handed us, a secret never stays in the shared cache.
    let cert = Arc::new(cert.strip_secret_key_material());
    if let Ok(mut cache) = CACHE.lock() {
        if cache.len() >= CACHE_CAPACITY {
            cache.clear();
        }
        cache.insert(bytes.to_vec(), cert.clone());
    }
    Ok(cert)
}

/// Checks the certificate itself: acceptable to the policy, alive and not revoked at `t`.
pub fn validate(cert: &Cert, t: Option<SystemTime>) -> Result<ValidCert<'_>> {
    let vc = cert
        .with_policy(&*POLICY, t)
        .map_err(|e| classify(&e, Context::Cert))?;
    if let RevocationStatus::Revoked(_) = vc.revocation_status() {
        return Err(Error::Revoked);
    }
    vc.alive().map_err(|e| match classify(&e, Context::Cert) {
        Error::BadCert => Error::Expired,
        other => other,
    })?;
    Ok(vc)
}

/// Until when messages can be encrypted to the certificate, judged now from its own
/// signatures: the latest expiry among its live encryption keys, capped by the primary key's
/// (the certificate's) expiry; `None` if that is never. The errors of `validate`, or
/// `no_encryption_key` when no key can be encrypted to now.
pub fn encryptable_until(cert: &Cert) -> Result<Option<SystemTime>> {
    let vc = validate(cert, None)?;
    // None: no key seen yet; Some(None): one that never expires.
    let mut latest: Option<Option<SystemTime>> = None;
    for ka in vc
        .keys()
        .supported()
        .alive()
        .revoked(false)
        .for_transport_encryption()
        .for_storage_encryption()
    {
        let t = ka.key_expiration_time();
        latest = Some(match latest {
            None => t,
            Some(prev) => prev.zip(t).map(|(a, b)| a.max(b)),
        });
    }
    let keys = latest.ok_or(Error::NoEncryptionKey)?;
    Ok(match (vc.primary_key().key_expiration_time(), keys) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    })
}

/// Import: parse, validate now, and return the normalised armored public certificate.
pub fn import(bytes: &[u8]) -> Result<Vec<u8>> {
    let cert = parse(bytes)?;
    validate(&cert, None)?;
    armored(&cert)
}

pub fn armored(cert: &Cert) -> Result<Vec<u8>> {
    cert.armored().to_vec().map_err(|_| Error::Internal)
}

pub fn fingerprint_hex(cert: &Cert) -> String {
    cert.fingerprint().to_hex()
}

/// The certificates a verifier accepts, parsed once per call.
pub fn parse_all<'a, I>(certs: I) -> Result<Vec<Arc<Cert>>>
where
    I: IntoIterator<Item = &'a [u8]>,
{
    certs.into_iter().map(parse).collect()
}

/// Most certificates one `parse_keyring` call reads.
pub const MAX_KEYRING_CERTS: usize = 256;

/// Parses one or more certificates (a keyring, as SOP's CERTS takes), public parts only.
/// A single certificate goes through the cache like `parse`.
pub fn parse_keyring(bytes: &[u8]) -> Result<Vec<Arc<Cert>>> {
    if let Ok(one) = parse(bytes) {
        return Ok(vec![one]);
    }
    if bytes.len() > MAX_CERT_BYTES * MAX_KEYRING_CERTS {
        return Err(Error::BadCert);
    }
    no_panic(|| Error::BadCert, || parse_keyring_guarded(bytes))
}

fn parse_keyring_guarded(bytes: &[u8]) -> Result<Vec<Arc<Cert>>> {
    let parser = CertParser::from_bytes(bytes).map_err(|e| classify(&e, Context::Cert))?;
    let mut out = Vec::new();
    for cert in parser {
        let cert = cert.map_err(|e| classify(&e, Context::Cert))?;
        if out.len() == MAX_KEYRING_CERTS {
            return Err(Error::BadCert);
        }
        out.push(Arc::new(cert.strip_secret_key_material()));
    }
    if out.is_empty() {
        return Err(Error::BadCert);
    }
    Ok(out)
}

/// Public certificates, one after the other, armored as one block or binary.
pub fn serialize_many(certs: &[&Cert], armor: bool) -> Result<Vec<u8>> {
    use openpgp::serialize::Serialize;
    use std::io::Write;
    let mut binary = Vec::new();
    for cert in certs {
        // `Cert::serialize` writes public parts only, whatever the certificate holds.
        cert.serialize(&mut binary).map_err(|_| Error::Internal)?;
    }
    if !armor {
        return Ok(binary);
    }
    let mut out = Vec::new();
    let mut w = openpgp::armor::Writer::new(&mut out, openpgp::armor::Kind::PublicKey)
        .map_err(|_| Error::Internal)?;
    w.write_all(&binary).map_err(|_| Error::Internal)?;
    w.finalize().map_err(|_| Error::Internal)?;
    Ok(out)
}
