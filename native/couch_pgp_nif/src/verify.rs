//! Signature verification: the policy shared by detached signatures and signed messages.
//!
//! A caller that names the certificates it expects gets success only for a good signature
//! by one of them. Unsigned, or signed only by others, is an error, never a quiet success.

use std::sync::Arc;

use sequoia_openpgp as openpgp;
use openpgp::cert::prelude::*;
use openpgp::parse::stream::{
    DetachedVerifierBuilder, MessageLayer, MessageStructure, VerificationError,
    VerificationHelper,
};
use openpgp::parse::Parse;
use openpgp::types::RevocationStatus;
use openpgp::KeyHandle;

use crate::error::{classify, Context, Error, Result};
use crate::policy::POLICY;

/// What the signature layers of one message said.
#[derive(Default)]
pub struct SignatureReport {
    /// Primary fingerprints (hex) of expected signers whose signatures verified.
    pub good: Vec<String>,
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
                            let fpr = good.ka.cert().fingerprint().to_hex();
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

struct Helper {
    certs: Vec<Cert>,
    report: SignatureReport,
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
    if sig.len() > MAX_SIG_BYTES {
        return Err(Error::Malformed);
    }
    let mut helper = Helper {
        certs: certs.iter().map(|c| (**c).clone()).collect(),
        report: SignatureReport::default(),
    };
    let mut v = DetachedVerifierBuilder::from_bytes(sig)
        .map_err(|e| classify(&e, Context::Message))?
        .with_policy(&*POLICY, None, &mut helper)
        .map_err(|e| classify(&e, Context::Message))?;
    v.verify_bytes(data)
        .map_err(|e| classify(&e, Context::Signature))?;
    drop(v);
    let mut good = std::mem::take(&mut helper.report).require()?;
    Ok(good.swap_remove(0))
}
