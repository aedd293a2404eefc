//! Cv25519 certificates (the default suite) built from sequoia's parts instead of its
//! `CertBuilder`, packet for packet and subpacket for subpacket what `CertBuilder` makes for
//! the same options (a test compares the two).
//!
//! Why: with the Nettle backend, `CertBuilder` draws every secret scalar from a freshly
//! seeded Yarrow generator (about 1,500 SHA-256 rounds each) and signs a revocation
//! certificate that couch_pgp discards. Measured with perf, those five reseeds were 58 % of a
//! key generation. Here the two secret scalars come from the operating system's generator
//! (`OsRng`, as the session channel's keys do), are imported with sequoia's
//! `import_secret_*`, and no revocation is made. The binding signatures are sequoia's own
//! (Ed25519 in Nettle: deterministic, constant time); each v4 signature still draws its salt
//! notation through the backend, each v6 one gets its prefix salt from `OsRng` here.

use std::time::SystemTime;

use openpgp::cert::Cert;
use openpgp::crypto::mem::Protected;
use openpgp::packet::key::{Key4, Key6, PrimaryRole, SecretParts, SubordinateRole};
use openpgp::packet::signature::SignatureBuilder;
use openpgp::packet::{Key, UserID};
use openpgp::types::{Features, HashAlgorithm, KeyFlags, SignatureType, SymmetricAlgorithm};
use openpgp::Packet;
use rand::TryRngCore;
use sequoia_openpgp as openpgp;

use crate::error::{Error, Result};
use crate::keys::{GenerateOptions, Profile};

/// What `CertBuilder` would be given: the options, the features to advertise, the validity
/// period (already corrected for backdating) and the creation time.
pub struct Plan<'a> {
    pub opts: &'a GenerateOptions,
    pub features: Features,
    pub validity: Option<std::time::Duration>,
    pub creation_time: SystemTime,
}

pub fn generate(plan: &Plan<'_>) -> Result<Cert> {
    build(plan).map_err(|_| Error::Internal)
}

fn build(plan: &Plan<'_>) -> openpgp::Result<Cert> {
    let opts = plan.opts;
    let v6 = opts.profile == Profile::Rfc9580;
    let ctime = plan.creation_time;
    let primary_flags = KeyFlags::empty().set_certification().set_signing();

    let primary: Key<SecretParts, PrimaryRole> = {
        let secret = random32()?;
        if v6 {
            Key6::import_secret_ed25519(&secret, ctime)?.into()
        } else {
            Key4::import_secret_ed25519(&secret, ctime)?.into()
        }
    };
    let mut signer = primary.clone().into_keypair()?;

    // CertBuilder's `signature_common` and `add_primary_key_metadata`.
    let common = |typ: SignatureType| -> openpgp::Result<SignatureBuilder> {
        let b = SignatureBuilder::new(typ)
            .set_hash_algo(HashAlgorithm::SHA512)
            .set_signature_creation_time(ctime)?;
        if v6 {
            let mut salt = vec![0; HashAlgorithm::SHA512.salt_size()?];
            fill_random(&mut salt)?;
            Ok(b.set_prefix_salt(salt).0)
        } else {
            Ok(b)
        }
    };
    let with_metadata = |b: SignatureBuilder| -> openpgp::Result<SignatureBuilder> {
        b.set_features(plan.features.clone())?
            .set_key_flags(primary_flags.clone())?
            .set_key_validity_period(plan.validity)?
            .set_preferred_hash_algorithms(vec![HashAlgorithm::SHA512, HashAlgorithm::SHA256])?
            .set_preferred_symmetric_algorithms(vec![
                SymmetricAlgorithm::AES256,
                SymmetricAlgorithm::AES128,
            ])
    };

    let direct = with_metadata(common(SignatureType::DirectKey)?)?
        .sign_direct_key(&mut signer, primary.parts_as_public())?;
    let cert = Cert::try_from(vec![Packet::from(primary.clone())])?;
    let mut acc: Vec<Packet> = vec![direct.into()];

    // The first user id is the primary one, as CertBuilder marks it.
    for (i, uid) in opts
        .user_id
        .iter()
        .chain(opts.more_user_ids.iter())
        .enumerate()
    {
        let uid = UserID::from(uid.as_str());
        let mut b = with_metadata(common(SignatureType::PositiveCertification)?)?;
        if i == 0 {
            b = b.set_primary_userid(true)?;
        }
        let sig = uid.bind(&mut signer, &cert, b)?;
        acc.push(uid.into());
        acc.push(sig.into());
    }

    if !opts.signing_only {
        let subkey: Key<SecretParts, SubordinateRole> = {
            let secret = random32()?;
            if v6 {
                Key6::import_secret_x25519(&secret, ctime)?.into()
            } else {
                Key4::import_secret_cv25519(&secret, None, None, ctime)?.into()
            }
        };
        let b = common(SignatureType::SubkeyBinding)?
            .set_key_flags(
                KeyFlags::empty()
                    .set_transport_encryption()
                    .set_storage_encryption(),
            )?
            .set_key_validity_period(plan.validity)?;
        let sig = subkey.bind(&mut signer, &cert, b)?;
        acc.push(subkey.into());
        acc.push(sig.into());
    }

    Ok(cert.insert_packets(acc)?.0)
}

/// 32 bytes from the operating system, in a buffer that is zeroed when dropped.
fn random32() -> openpgp::Result<Protected> {
    let mut secret: Protected = vec![0; 32].into();
    fill_random(&mut secret)?;
    Ok(secret)
}

fn fill_random(buf: &mut [u8]) -> openpgp::Result<()> {
    rand::rngs::OsRng
        .try_fill_bytes(buf)
        .map_err(|e| anyhow::anyhow!("operating system generator: {e}"))
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    use openpgp::packet::signature::subpacket::SubpacketValue;
    use openpgp::packet::Signature;

    use super::*;
    use crate::keys::{self, Suite};

    /// Everything about a certificate except what must differ between two new keys: key
    /// material, signature values, salts (described by their length) and the issuer (said to
    /// be the primary key or not).
    fn shape(cert: &Cert) -> Vec<String> {
        let primary = cert.fingerprint();
        cert.clone()
            .into_tsk()
            .into_packets()
            .map(|p| match p {
                Packet::SecretKey(k) => key_shape(
                    "primary",
                    k.parts_into_public().role_into_unspecified(),
                    true,
                ),
                Packet::SecretSubkey(k) => key_shape(
                    "subkey",
                    k.parts_into_public().role_into_unspecified(),
                    true,
                ),
                Packet::PublicKey(k) => key_shape("primary", k.role_into_unspecified(), false),
                Packet::PublicSubkey(k) => key_shape("subkey", k.role_into_unspecified(), false),
                Packet::UserID(u) => format!("uid {:?}", String::from_utf8_lossy(u.value())),
                Packet::Signature(s) => sig_shape(&s, &primary),
                other => format!("unexpected {:?}", other.tag()),
            })
            .collect()
    }

    fn key_shape(
        what: &str,
        k: Key<openpgp::packet::key::PublicParts, openpgp::packet::key::UnspecifiedRole>,
        secret: bool,
    ) -> String {
        let kdf = match k.mpis() {
            openpgp::crypto::mpi::PublicKey::ECDH {
                curve, hash, sym, ..
            } => format!(" {curve:?} {hash:?} {sym:?}"),
            openpgp::crypto::mpi::PublicKey::EdDSA { curve, .. } => format!(" {curve:?}"),
            _ => String::new(),
        };
        format!(
            "{what} v{} {:?}{kdf} created {:?} secret {secret}",
            k.version(),
            k.pk_algo(),
            k.creation_time()
        )
    }

    fn sig_shape(s: &Signature, primary: &openpgp::Fingerprint) -> String {
        let area = |a: &openpgp::packet::signature::subpacket::SubpacketArea| -> Vec<String> {
            a.iter()
                .map(|sp| match sp.value() {
                    SubpacketValue::NotationData(n)
                        if n.name() == "salt@notations.sequoia-pgp.org" =>
                    {
                        format!("salt notation of {} bytes", n.value().len())
                    }
                    SubpacketValue::IssuerFingerprint(f) => {
                        format!("issuer fpr primary={}", f == primary)
                    }
                    SubpacketValue::Issuer(id) => {
                        format!("issuer id primary={}", *id == openpgp::KeyID::from(primary))
                    }
                    v => format!("{:?} {v:?}", sp.tag()),
                })
                .collect()
        };
        let salt = match s {
            Signature::V6(s6) => s6.salt().len(),
            _ => 0,
        };
        format!(
            "sig v{} {:?} {:?} {:?} salt {} hashed {:?} unhashed {:?}",
            s.version(),
            s.typ(),
            s.pk_algo(),
            s.hash_algo(),
            salt,
            area(s.hashed_area()),
            area(s.unhashed_area())
        )
    }

    #[test]
    fn same_certificate_as_cert_builder() -> Result<()> {
        // Whole seconds: OpenPGP timestamps have no finer resolution.
        let secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_err(|_| Error::Internal)?
            .as_secs()
            - 3600;
        let t = UNIX_EPOCH + Duration::from_secs(secs);
        let mut compared = 0;
        for profile in [Profile::Rfc4880, Profile::Rfc9580] {
            for signing_only in [false, true] {
                for uids in [0, 1, 3] {
                    for expires_in in [None, Some(Duration::from_secs(86_400))] {
                        let opts = GenerateOptions {
                            user_id: (uids > 0).then(|| "Alice <alice@example.org>".to_string()),
                            more_user_ids: (1..uids).map(|i| format!("alias {i}")).collect(),
                            signing_only,
                            suite: Suite::Cv25519,
                            profile,
                            expires_in,
                            creation_time: Some(t),
                        };
                        let ours = keys::generate(&opts)?;
                        let reference = keys::generate_with_cert_builder(&opts)?;
                        let (a, b) = (shape(ours.cert()), shape(&reference));
                        assert_eq!(a, b, "{opts:?}");
                        assert_ne!(ours.cert().fingerprint(), reference.fingerprint());
                        // Sanity of the comparison itself: keys, signatures, subpackets.
                        assert!(a.iter().any(|l| l.contains("KeyFlags")), "{a:#?}");
                        assert!(
                            a[0].starts_with("primary") && a[0].ends_with("secret true"),
                            "{a:#?}"
                        );
                        let salted = |l: &&String| {
                            l.contains("salt notation of 32 bytes") || l.contains("salt 32")
                        };
                        assert_eq!(
                            a.iter().filter(|l| l.starts_with("sig")).count(),
                            a.iter().filter(salted).count(),
                            "every signature salted: {a:#?}"
                        );
                        compared += 1;
                    }
                }
            }
        }
        assert_eq!(compared, 24);
        Ok(())
    }

    #[test]
    fn secrets_differ() -> Result<()> {
        let a = keys::generate(&GenerateOptions::default())?;
        let b = keys::generate(&GenerateOptions::default())?;
        assert_ne!(a.cert().fingerprint(), b.cert().fingerprint());
        let sub = |k: &keys::SecretKey| {
            k.cert()
                .keys()
                .subkeys()
                .next()
                .map(|s| s.key().fingerprint())
        };
        assert!(sub(&a).is_some());
        assert_ne!(sub(&a), sub(&b));
        Ok(())
    }
}
