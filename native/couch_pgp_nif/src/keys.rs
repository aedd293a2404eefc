//! Secret keys: generation, persistence, and the in-memory handle Erlang holds.
//!
//! A `SecretKey` never leaves Rust. Erlang holds it as a resource; when the last reference
//! goes, sequoia's `Protected` buffers zero the secret material.

use std::time::{Duration, SystemTime};

use once_cell::sync::OnceCell;
use sequoia_openpgp as openpgp;
use openpgp::cert::prelude::*;
use openpgp::crypto::{KeyPair, Password, S2K};
use openpgp::packet::{key, Key};
use openpgp::parse::Parse;
use openpgp::serialize::SerializeInto;
use openpgp::policy::HashAlgoSecurity;
use openpgp::types::{Features, HashAlgorithm, KeyFlags, SymmetricAlgorithm};
use openpgp::cert::Preferences;
use openpgp::Profile as PgpProfile;

use crate::certs;
use crate::cv25519_keygen;
use crate::error::{classify, no_panic, Context, Error, Result};
use crate::policy::POLICY;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Suite {
    Cv25519,
    Rsa3072,
    Rsa4096,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// v4 keys; messages to them use SEIPDv1 (what GnuPG 2.2 and OpenPGP.js read).
    Rfc4880,
    /// v6 keys (RFC 9580); messages use SEIPDv2 when every recipient supports it.
    Rfc9580,
}

#[derive(Debug, Clone)]
pub struct GenerateOptions {
    pub user_id: Option<String>,
    /// User ids after `user_id`; the first user id given is the primary one.
    pub more_user_ids: Vec<String>,
    /// No encryption subkey.
    pub signing_only: bool,
    pub suite: Suite,
    pub profile: Profile,
    pub expires_in: Option<Duration>,
    /// Only for tests that need keys from the past.
    pub creation_time: Option<SystemTime>,
}

impl Default for GenerateOptions {
    fn default() -> Self {
        GenerateOptions {
            user_id: None,
            more_user_ids: Vec::new(),
            signing_only: false,
            suite: Suite::Cv25519,
            profile: Profile::Rfc4880,
            expires_in: None,
            creation_time: None,
        }
    }
}

/// A certificate with its secret parts, and the key pairs derived from it once.
pub struct SecretKey {
    cert: Cert,
    fingerprint: String,
    signer: Option<KeyPair>,
    signer_expiry: Option<SystemTime>,
    decryptors: Vec<KeyPair>,
    preferred_hash: Option<HashAlgorithm>,
    public_armored: OnceCell<Vec<u8>>,
}

impl SecretKey {
    pub fn from_cert(cert: Cert) -> Result<SecretKey> {
        let vc = certs::validate(&cert, None)?;
        let signing = vc
            .keys()
            .secret()
            .for_signing()
            .alive()
            .revoked(false)
            .next();
        let (signer, signer_expiry) = match signing {
            Some(ka) => {
                let expiry = ka.key_expiration_time();
                let kp = ka
                    .key()
                    .clone()
                    .into_keypair()
                    .map_err(|_| Error::BadKey)?;
                (Some(kp), expiry)
            }
            None => (None, None),
        };
        // Old encryption subkeys stay usable for decryption after they expire.
        let mut decryptors = Vec::new();
        for ka in cert
            .keys()
            .with_policy(&*POLICY, None)
            .secret()
            .for_transport_encryption()
            .for_storage_encryption()
        {
            if let Ok(kp) = ka.key().clone().into_keypair() {
                decryptors.push(kp);
            }
        }
        if signer.is_none() && decryptors.is_empty() {
            return Err(Error::BadKey);
        }
        let preferred_hash = acceptable_hash(&vc);
        let fingerprint = cert.fingerprint().to_hex();
        Ok(SecretKey {
            cert,
            fingerprint,
            signer,
            signer_expiry,
            decryptors,
            preferred_hash,
            public_armored: OnceCell::new(),
        })
    }

    pub fn cert(&self) -> &Cert {
        &self.cert
    }

    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// A signing key pair, refused once the signing key has expired.
    pub fn signer(&self) -> Result<KeyPair> {
        let kp = self.signer.as_ref().ok_or(Error::NoSigningKey)?;
        if let Some(t) = self.signer_expiry {
            if t <= SystemTime::now() {
                return Err(Error::Expired);
            }
        }
        Ok(kp.clone())
    }

    pub fn decryptors(&self) -> &[KeyPair] {
        &self.decryptors
    }

    /// The hash algorithm the key's owner asked signers to use (see `acceptable_hash`),
    /// found once when the key is loaded.
    pub fn preferred_hash(&self) -> Option<HashAlgorithm> {
        self.preferred_hash
    }

    /// The public certificate, binary.
    pub fn public_binary(&self) -> Result<Vec<u8>> {
        self.cert.clone().strip_secret_key_material().to_vec().map_err(|_| Error::Internal)
    }

    /// The armored public certificate, serialised once.
    pub fn public_armored(&self) -> Result<&[u8]> {
        self.public_armored
            .get_or_try_init(|| {
                self.cert
                    .clone()
                    .strip_secret_key_material()
                    .armored()
                    .to_vec()
            })
            .map(|v| v.as_slice())
            .map_err(|_| Error::Internal)
    }
}

/// The first of the certificate's preferred hash algorithms that the policy accepts for
/// new signatures; `None` leaves the choice to sequoia (SHA-512).
fn acceptable_hash(vc: &ValidCert<'_>) -> Option<HashAlgorithm> {
    let prefs = vc.preferred_hash_algorithms()?;
    let now = SystemTime::now();
    prefs.iter().copied().find(|h| {
        h.is_supported()
            && POLICY
                .hash_cutoff(*h, HashAlgoSecurity::CollisionResistance)
                .is_none_or(|cutoff| cutoff > now)
    })
}

/// How far a new key is backdated when no creation time is given (as sequoia's `CertBuilder`
/// does).
const BACKDATE_SECS: u64 = 60;

/// A new key. Cv25519 keys (the default) are built by `cv25519_keygen` from the operating
/// system's generator; RSA keys by sequoia's `CertBuilder`.
pub fn generate(opts: &GenerateOptions) -> Result<SecretKey> {
    let cert = match opts.suite {
        Suite::Cv25519 => cv25519_keygen::generate(&cv25519_keygen::Plan {
            opts,
            features: features(opts.profile),
            validity: validity(opts),
            creation_time: opts
                .creation_time
                .unwrap_or_else(|| SystemTime::now() - Duration::from_secs(BACKDATE_SECS)),
        })?,
        Suite::Rsa3072 | Suite::Rsa4096 => generate_with_cert_builder(opts)?,
    };
    SecretKey::from_cert(cert)
}

/// The features a new key advertises: SEIPDv1 only for v4 keys (what GnuPG 2.2 reads),
/// sequoia's default set for v6 keys.
fn features(profile: Profile) -> Features {
    match profile {
        Profile::Rfc4880 => Features::empty().set_seipdv1(),
        Profile::Rfc9580 => Features::sequoia(),
    }
}

/// The key's validity period: new keys are backdated by a minute (room for later
/// self-signature updates) and the validity counts from creation, so that minute is added
/// back: `expires_in` means from now.
fn validity(opts: &GenerateOptions) -> Option<Duration> {
    opts.expires_in.map(|d| match opts.creation_time {
        Some(_) => d,
        None => d + Duration::from_secs(BACKDATE_SECS),
    })
}

/// A new certificate from sequoia's `CertBuilder` (with the revocation certificate it also
/// makes dropped). RSA keys, and the reference the Cv25519 path is tested against.
pub fn generate_with_cert_builder(opts: &GenerateOptions) -> Result<Cert> {
    let suite = match opts.suite {
        Suite::Cv25519 => CipherSuite::Cv25519,
        Suite::Rsa3072 => CipherSuite::RSA3k,
        Suite::Rsa4096 => CipherSuite::RSA4k,
    };
    let mut builder = CertBuilder::new()
        .set_cipher_suite(suite)
        .set_primary_key_flags(KeyFlags::empty().set_certification().set_signing());
    if !opts.signing_only {
        builder = builder.add_subkey(
            KeyFlags::empty()
                .set_transport_encryption()
                .set_storage_encryption(),
            None,
            None,
        );
    }
    builder = builder
        .set_validity_period(validity(opts))
        .set_profile(match opts.profile {
            Profile::Rfc4880 => PgpProfile::RFC4880,
            Profile::Rfc9580 => PgpProfile::RFC9580,
        })
        .and_then(|b| b.set_features(features(opts.profile)))
        .map_err(|_| Error::Internal)?;
    for uid in opts.user_id.iter().chain(opts.more_user_ids.iter()) {
        builder = builder.add_userid(uid.as_str());
    }
    if let Some(t) = opts.creation_time {
        builder = builder.set_creation_time(t);
    }
    let (cert, _revocation) = builder.generate().map_err(|e| classify(&e, Context::Other))?;
    Ok(cert)
}

/// The whole key, every secret protected by `passphrase` (sequoia's default S2K), armored.
pub fn export_secret(key: &SecretKey, passphrase: &[u8]) -> Result<Vec<u8>> {
    if passphrase.is_empty() {
        return Err(Error::EmptyPassphrase);
    }
    export_key(key, Some(passphrase), true)
}

/// The whole key, armored or binary; secrets protected by `passphrase` if one is given,
/// else left in the clear (SOP's `generate-key` without `--with-key-password`).
pub fn export_key(key: &SecretKey, passphrase: Option<&[u8]>, armor: bool) -> Result<Vec<u8>> {
    let tsk = match passphrase {
        None => key.cert.clone(),
        Some([]) => return Err(Error::EmptyPassphrase),
        Some(p) => protect(key, p)?,
    };
    let out = if armor { tsk.as_tsk().armored().to_vec() } else { tsk.as_tsk().to_vec() };
    out.map_err(|_| Error::Internal)
}

/// Shortest input an S2K for a random passphrase may hash: RFC 9580's smallest iteration
/// count (1,024 bytes).
const MIN_S2K_BYTES: u32 = 1024;
/// A passphrase that is a random secret has at least this many bytes (128 bits).
const MIN_RANDOM_PASSPHRASE: usize = 16;

/// The whole key, binary, its secrets protected by `passphrase` with the least S2K stretching
/// RFC 9580 allows. Only for a passphrase that is itself a random secret of at least 128 bits
/// (a session token's: 24 random bytes), which no amount of stretching makes harder to guess;
/// the default S2K hashes 62 MB, ~150 ms per export and again per import, which each new
/// session paid on every node. `empty_passphrase` for a passphrase shorter than 16 bytes.
pub fn export_secret_random_pass(key: &SecretKey, passphrase: &[u8]) -> Result<Vec<u8>> {
    if passphrase.len() < MIN_RANDOM_PASSPHRASE {
        return Err(Error::EmptyPassphrase);
    }
    let s2k = S2K::new_iterated(HashAlgorithm::SHA256, MIN_S2K_BYTES).map_err(|_| Error::Internal)?;
    protect_with(key, passphrase, Some(s2k))?.as_tsk().to_vec().map_err(|_| Error::Internal)
}

fn protect(key: &SecretKey, passphrase: &[u8]) -> Result<Cert> {
    protect_with(key, passphrase, None)
}

/// Secrets encrypted under `passphrase`, with sequoia's default S2K or the one given.
fn protect_with(key: &SecretKey, passphrase: &[u8], s2k: Option<S2K>) -> Result<Cert> {
    let password = Password::from(passphrase);
    let mut protected = Vec::new();
    for ka in key.cert.keys().secret() {
        let k = ka.key().clone().role_into_unspecified();
        let k = match &s2k {
            None => k.encrypt_secret(&password),
            Some(s2k) => {
                let (public, secret) = k.take_secret();
                secret
                    .encrypt_with(&public, s2k.clone(), SymmetricAlgorithm::AES256, None, &password)
                    .map(|secret| public.add_secret(secret).0)
            }
        }
        .map_err(|_| Error::Internal)?;
        protected.push(as_packet(k, ka.primary()));
    }
    let (cert, _) = key
        .cert
        .clone()
        .insert_packets(protected)
        .map_err(|_| Error::Internal)?;
    Ok(cert)
}

fn as_packet(k: Key<key::SecretParts, key::UnspecifiedRole>, primary: bool) -> openpgp::Packet {
    if primary {
        openpgp::Packet::from(k.role_into_primary())
    } else {
        openpgp::Packet::from(k.role_into_subordinate())
    }
}

/// Reads a secret key exported by us, GnuPG, sq or OpenPGP.js; protected secrets are
/// unlocked with `passphrase`, unprotected ones are taken as they are.
pub fn import_secret(bytes: &[u8], passphrase: &[u8]) -> Result<SecretKey> {
    no_panic(|| Error::BadKey, || import_secret_guarded(bytes, passphrase))
}

fn import_secret_guarded(bytes: &[u8], passphrase: &[u8]) -> Result<SecretKey> {
    if bytes.len() > certs::MAX_CERT_BYTES {
        return Err(Error::BadKey);
    }
    let cert = Cert::from_bytes(bytes).map_err(|e| match classify(&e, Context::Cert) {
        Error::BadCert => Error::BadKey,
        other => other,
    })?;
    if !cert.is_tsk() {
        return Err(Error::BadKey);
    }
    let password = Password::from(passphrase);
    let mut unlocked = Vec::new();
    for ka in cert.keys().secret() {
        let k = ka.key().clone().role_into_unspecified();
        if k.has_unencrypted_secret() {
            continue;
        }
        let k = k.decrypt_secret(&password).map_err(|_| Error::BadPassphrase)?;
        unlocked.push(as_packet(k, ka.primary()));
    }
    let (cert, _) = cert.insert_packets(unlocked).map_err(|_| Error::Internal)?;
    SecretKey::from_cert(cert)
}

/// Most secret keys one `import_secrets` or `extract_certs` call reads.
pub const MAX_KEYS: usize = 64;

/// Reads one or more secret keys (a keyring, as SOP's KEYS takes), unlocking each protected
/// secret with the first of `passphrases` that fits.
pub fn import_secrets(bytes: &[u8], passphrases: &[&[u8]]) -> Result<Vec<SecretKey>> {
    no_panic(|| Error::BadKey, || import_secrets_guarded(bytes, passphrases))
}

fn import_secrets_guarded(bytes: &[u8], passphrases: &[&[u8]]) -> Result<Vec<SecretKey>> {
    let mut out = Vec::new();
    for cert in tsks(bytes)? {
        out.push(unlock(cert, passphrases)?);
    }
    Ok(out)
}

/// The public certificates of one or more secret keys (SOP's `extract-cert`), armored as
/// one block or binary. Locked secrets need no passphrase for this.
pub fn extract_certs(bytes: &[u8], armor: bool) -> Result<Vec<u8>> {
    no_panic(|| Error::BadKey, || {
        let all = tsks(bytes)?;
        let refs: Vec<&Cert> = all.iter().collect();
        certs::serialize_many(&refs, armor)
    })
}

/// Every certificate in `bytes`, each of which must carry secret key material.
fn tsks(bytes: &[u8]) -> Result<Vec<Cert>> {
    if bytes.len() > certs::MAX_CERT_BYTES * MAX_KEYS {
        return Err(Error::BadKey);
    }
    let parser = CertParser::from_bytes(bytes).map_err(|_| Error::BadKey)?;
    let mut out = Vec::new();
    for cert in parser {
        let cert = cert.map_err(|e| match classify(&e, Context::Cert) {
            Error::BadCert => Error::BadKey,
            other => other,
        })?;
        if !cert.is_tsk() || out.len() == MAX_KEYS {
            return Err(Error::BadKey);
        }
        out.push(cert);
    }
    if out.is_empty() {
        return Err(Error::BadKey);
    }
    Ok(out)
}

/// Decrypts every protected secret of `cert` with the first passphrase that fits.
fn unlock(cert: Cert, passphrases: &[&[u8]]) -> Result<SecretKey> {
    let mut unlocked = Vec::new();
    for ka in cert.keys().secret() {
        let k = ka.key().clone().role_into_unspecified();
        if k.has_unencrypted_secret() {
            continue;
        }
        let k = passphrases
            .iter()
            .find_map(|p| k.clone().decrypt_secret(&Password::from(*p)).ok())
            .ok_or(Error::BadPassphrase)?;
        unlocked.push(as_packet(k, ka.primary()));
    }
    let (cert, _) = cert.insert_packets(unlocked).map_err(|_| Error::Internal)?;
    SecretKey::from_cert(cert)
}
