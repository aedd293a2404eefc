//! Revocation certificates for a key the caller holds, and reading them back.
//!
//! An identity key that is retired or compromised is announced revoked by publishing its
//! certificate with a key revocation signature (type 0x20) made by the key itself, carrying
//! a reason code and a human-readable message. Any OpenPGP implementation then sees the
//! certificate as revoked; nobody without the secret key can make such a signature.

use std::time::{SystemTime, UNIX_EPOCH};

use sequoia_openpgp as openpgp;
use openpgp::cert::prelude::*;
#[cfg(test)]
use openpgp::parse::Parse;
use openpgp::types::{ReasonForRevocation, RevocationStatus};

use crate::certs;
use crate::error::{no_panic, Error, Result};
use crate::keys::SecretKey;
use crate::policy::POLICY;

/// The reasons RFC 4880 section 5.2.3.23 defines for revoking a whole key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    Unspecified,
    Superseded,
    Compromised,
    Retired,
}

impl Reason {
    fn openpgp(self) -> ReasonForRevocation {
        match self {
            Reason::Unspecified => ReasonForRevocation::Unspecified,
            Reason::Superseded => ReasonForRevocation::KeySuperseded,
            Reason::Compromised => ReasonForRevocation::KeyCompromised,
            Reason::Retired => ReasonForRevocation::KeyRetired,
        }
    }

    fn of(r: ReasonForRevocation) -> Reason {
        match r {
            ReasonForRevocation::KeySuperseded => Reason::Superseded,
            ReasonForRevocation::KeyCompromised => Reason::Compromised,
            ReasonForRevocation::KeyRetired => Reason::Retired,
            _ => Reason::Unspecified,
        }
    }
}

/// Longest message accepted in a revocation (it is shown to people, not parsed).
pub const MAX_MESSAGE_BYTES: usize = 1024;

/// The key's public certificate with a key revocation signature by its primary key merged
/// in, ASCII-armored.
pub fn revoke(key: &SecretKey, reason: Reason, message: &[u8]) -> Result<Vec<u8>> {
    if message.len() > MAX_MESSAGE_BYTES {
        return Err(Error::Malformed);
    }
    no_panic(|| Error::Internal, || {
        let cert = key.cert();
        let mut signer = cert
            .primary_key()
            .key()
            .clone()
            .parts_into_secret()
            .map_err(|_| Error::BadKey)?
            .into_keypair()
            .map_err(|_| Error::BadKey)?;
        let sig = CertRevocationBuilder::new()
            .set_reason_for_revocation(reason.openpgp(), message)
            .map_err(|_| Error::Internal)?
            .build(&mut signer, cert, None)
            .map_err(|_| Error::Internal)?;
        let public = cert.clone().strip_secret_key_material();
        let (revoked, _) = public.insert_packets(sig).map_err(|_| Error::Internal)?;
        certs::armored(&revoked)
    })
}

/// What a certificate says about its own revocation: `None` when it is not revoked, else
/// the reason and when the revocation was made (unix seconds). Only revocations by the
/// key itself count (sequoia checks them against the primary key).
pub fn status(bytes: &[u8]) -> Result<Option<(Reason, u64)>> {
    let cert = certs::parse(bytes)?;
    no_panic(|| Error::BadCert, || {
        match cert.revocation_status(&*POLICY, None) {
            RevocationStatus::Revoked(sigs) => {
                let sig = sigs.first().ok_or(Error::BadCert)?;
                let reason = sig
                    .reason_for_revocation()
                    .map(|(r, _)| Reason::of(r))
                    // A revocation without its reason subpacket is still a revocation.
                    .unwrap_or(Reason::Unspecified);
                let created = sig
                    .signature_creation_time()
                    .unwrap_or(SystemTime::UNIX_EPOCH)
                    .duration_since(UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0);
                Ok(Some((reason, created)))
            }
            _ => Ok(None),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::{generate, GenerateOptions};

    type TestResult = std::result::Result<(), Box<dyn std::error::Error>>;

    #[test]
    fn a_revoked_cert_says_why_and_when() -> TestResult {
        let key = generate(&GenerateOptions::default())?;
        let public = key.public_binary()?;
        assert_eq!(status(&public)?, None);
        let before = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
        let revoked = revoke(&key, Reason::Compromised, b"key file copied")?;
        let (reason, at) = status(&revoked)?.ok_or("not revoked")?;
        assert_eq!(reason, Reason::Compromised);
        assert!(at + 5 >= before && at <= before + 5);
        // A revoked certificate is refused where certificates are imported.
        assert_eq!(certs::import(&revoked), Err(Error::Revoked));
        Ok(())
    }

    #[test]
    fn a_revocation_by_another_key_does_not_count() -> TestResult {
        let key = generate(&GenerateOptions::default())?;
        let other = generate(&GenerateOptions::default())?;
        let revoked_other = revoke(&other, Reason::Retired, b"")?;
        // Graft the other key's revocation signature onto our certificate.
        let theirs = Cert::from_bytes(&revoked_other)?;
        let sig = theirs.primary_key().self_revocations().next().ok_or("no revocation")?.clone();
        let ours = key.cert().clone().strip_secret_key_material();
        let (grafted, _) = ours.insert_packets(sig)?;
        assert_eq!(status(&certs::armored(&grafted)?)?, None);
        Ok(())
    }

    #[test]
    fn too_long_a_message_is_refused() -> TestResult {
        let key = generate(&GenerateOptions::default())?;
        let long = vec![b'x'; MAX_MESSAGE_BYTES + 1];
        assert_eq!(revoke(&key, Reason::Retired, &long), Err(Error::Malformed));
        Ok(())
    }
}
