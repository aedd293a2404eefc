//! Signature verification: the policy shared by detached signatures and signed messages.
//!
//! A caller that names the certificates it expects gets success only for a good signature
//! by one of them. Unsigned, or signed only by others, is an error, never a quiet success.

use std::sync::Arc;
use std::time::SystemTime;

use sequoia_openpgp as openpgp;
use openpgp::cert::prelude::*;
use openpgp::parse::stream::{
    DetachedVerifierBuilder, MessageLayer, MessageStructure, VerificationError,
    VerificationHelper,
};
use openpgp::parse::Parse;
use openpgp::types::{RevocationStatus, SignatureType};
use openpgp::KeyHandle;

use crate::error::{classify, no_panic, Context, Error, Result};
use crate::policy::POLICY;

/// One good signature, with what SOP's VERIFICATION line reports about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verification {
    pub created: SystemTime,
    /// The (sub)key that made the signature, hex.
    pub key_fingerprint: String,
    /// The certificate's primary key, hex.
    pub cert_fingerprint: String,
    /// A text signature (type 0x01): line endings were normalised before hashing.
    pub text: bool,
}

/// Signatures made outside `[not_before, not_after]` count as bad. Sequoia already refuses
/// signatures from the future (beyond its clock-skew tolerance), so the default is open.
#[derive(Debug, Clone, Copy, Default)]
pub struct Window {
    pub not_before: Option<SystemTime>,
    pub not_after: Option<SystemTime>,
}

impl Window {
    fn admits(&self, t: SystemTime) -> bool {
        self.not_before.is_none_or(|nb| t >= nb) && self.not_after.is_none_or(|na| t <= na)
    }
}

/// A primary key takes its key flags from a binding: a direct-key signature or a user
/// ID's self-signature. When every user ID is revoked at the time of the signature and
/// there is no direct-key signature, nothing binds the key then, so it could not sign;
/// sequoia still reads the flags from the revoked user ID's self-signature. (Found by the
/// interoperability suite, "Temporary validity", certificate B: a user ID revoked for a
/// month by an expiring revocation.) `ka` is evaluated at the signature's creation time.
fn primary_unbound(ka: &ValidErasedKeyAmalgamation<'_, openpgp::packet::key::PublicParts>) -> bool {
    if !ka.primary() {
        return false;
    }
    let vc = ka.valid_cert();
    if vc.direct_key_signature().is_ok() {
        return false;
    }
    vc.userids().next().is_some() && vc.userids().revoked(false).next().is_none()
}

/// What the signature layers of one message said.
#[derive(Default)]
pub struct SignatureReport {
    /// Primary fingerprints (hex) of expected signers whose signatures verified.
    pub good: Vec<String>,
    /// Every good signature inside the window, in message order.
    pub verified: Vec<Verification>,
    pub window: Window,
    /// The strongest reason a signature by an expected signer failed.
    pub bad: Option<Error>,
    /// A signature was there, by someone we were not told to expect.
    pub unknown: bool,
}

impl SignatureReport {
    pub fn absorb(&mut self, structure: &MessageStructure) {
        for layer in structure.iter() {
            if let MessageLayer::SignatureGroup { results } = layer {
                for r in results {
                    match r {
                        Ok(good) => {
                            let Some(created) = good.sig.signature_creation_time() else {
                                self.note_bad(Error::BadSignature);
                                continue;
                            };
                            if !self.window.admits(created) {
                                self.note_bad(Error::BadSignature);
                                continue;
                            }
                            if primary_unbound(&good.ka) {
                                self.note_bad(Error::Revoked);
                                continue;
                            }
                            let fpr = good.ka.cert().fingerprint().to_hex();
                            self.verified.push(Verification {
                                created,
                                key_fingerprint: good.ka.key().fingerprint().to_hex(),
                                cert_fingerprint: fpr.clone(),
                                text: good.sig.typ() == SignatureType::Text,
                            });
                            if !self.good.contains(&fpr) {
                                self.good.push(fpr);
                            }
                        }
                        Err(VerificationError::MissingKey { .. }) => self.unknown = true,
                        Err(VerificationError::BadKey { ka, error, .. }) => {
                            let why = match classify(error, Context::Signature) {
                                Error::Expired => Error::Expired,
                                _ => match ka.cert().revocation_status(&*POLICY, None) {
                                    RevocationStatus::Revoked(_) => Error::Revoked,
                                    _ => match ka.revocation_status() {
                                        RevocationStatus::Revoked(_) => Error::Revoked,
                                        _ => Error::BadSignature,
                                    },
                                },
                            };
                            self.note_bad(why);
                        }
                        Err(VerificationError::UnboundKey { cert, .. }) => {
                            let why = match cert.revocation_status(&*POLICY, None) {
                                RevocationStatus::Revoked(_) => Error::Revoked,
                                _ => Error::BadSignature,
                            };
                            self.note_bad(why);
                        }
                        Err(_) => self.note_bad(Error::BadSignature),
                    }
                }
            }
        }
    }

    fn note_bad(&mut self, e: Error) {
        // Revocation and expiry say more than a bare "bad signature".
        match (self.bad, e) {
            (None, _) | (Some(Error::BadSignature), _) => self.bad = Some(e),
            _ => {}
        }
    }

    /// The verdict when the caller demanded a signature by one of its certificates, with
    /// each good signature.
    pub fn require_verified(self) -> Result<Vec<Verification>> {
        if !self.verified.is_empty() {
            return Ok(self.verified);
        }
        self.require().map(|_| Vec::new())
    }

    /// The verdict when the caller demanded a signature by one of its certificates.
    pub fn require(self) -> Result<Vec<String>> {
        if !self.good.is_empty() {
            return Ok(self.good);
        }
        if let Some(e) = self.bad {
            return Err(e);
        }
        if self.unknown {
            return Err(Error::UnknownSigner);
        }
        Err(Error::Unsigned)
    }
}

/// Hands sequoia the caller's certificates and collects the report; shared with `inline`.
pub(crate) struct Helper {
    pub(crate) certs: Vec<Cert>,
    pub(crate) report: SignatureReport,
}

impl VerificationHelper for &mut Helper {
    fn get_certs(&mut self, _ids: &[KeyHandle]) -> openpgp::Result<Vec<Cert>> {
        Ok(self.certs.clone())
    }

    fn check(&mut self, structure: MessageStructure) -> openpgp::Result<()> {
        self.report.absorb(&structure);
        Ok(())
    }
}

/// Largest detached signature accepted (a v4 RSA-4096 signature is ~600 bytes armored).
const MAX_SIG_BYTES: usize = 64 * 1024;

/// Verifies a detached signature over `data`; the primary fingerprint of the first expected
/// signer whose signature is good.
pub fn verify_detached(data: &[u8], sig: &[u8], certs: &[Arc<Cert>]) -> Result<String> {
    let mut good = detached_report(data, sig, certs, Window::default())?.require()?;
    Ok(good.swap_remove(0))
}

/// Verifies every signature in `sig` (one or more) over `data`; each good one by an expected
/// signer made inside `window`, or the reason there is none.
pub fn verify_detached_all(
    data: &[u8],
    sig: &[u8],
    certs: &[Arc<Cert>],
    window: Window,
) -> Result<Vec<Verification>> {
    detached_report(data, sig, certs, window)?.require_verified()
}

fn detached_report(
    data: &[u8],
    sig: &[u8],
    certs: &[Arc<Cert>],
    window: Window,
) -> Result<SignatureReport> {
    if sig.len() > MAX_SIG_BYTES {
        return Err(Error::Malformed);
    }
    no_panic(|| Error::Malformed, || verify_guarded(data, sig, certs, window))
}

fn verify_guarded(
    data: &[u8],
    sig: &[u8],
    certs: &[Arc<Cert>],
    window: Window,
) -> Result<SignatureReport> {
    let mut helper = Helper {
        certs: certs.iter().map(|c| (**c).clone()).collect(),
        report: SignatureReport { window, ..Default::default() },
    };
    let mut v = DetachedVerifierBuilder::from_bytes(sig)
        .map_err(|e| classify(&e, Context::Message))?
        .with_policy(&*POLICY, None, &mut helper)
        .map_err(|e| classify(&e, Context::Message))?;
    v.verify_bytes(data)
        .map_err(|e| classify(&e, Context::Signature))?;
    drop(v);
    Ok(std::mem::take(&mut helper.report))
}
