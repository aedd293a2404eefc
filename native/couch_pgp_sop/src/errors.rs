//! The core's closed error set onto SOP's failure modes. The same core error means
//! different things to different subcommands: `Expired` is "cannot encrypt" for a
//! recipient, "cannot sign" for a signer, and "no acceptable signature" for a verifier.

use couch_pgp_nif::error::Error;
use sop::errors::Error as SopError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Generate,
    Extract,
    Sign,
    Verify,
    Encrypt,
    Decrypt,
    Armor,
}

/// A failure of the operation itself, once every input has loaded.
pub fn map(e: Error, op: Op) -> SopError {
    use Error as E;
    match (op, e) {
        (_, E::Internal) => SopError::UnspecifiedFailure,
        (_, E::InvalidJson(_)) => SopError::BadData,
        (Op::Generate, _) => SopError::UnspecifiedFailure,
        (Op::Extract, _) => SopError::BadData,
        (Op::Armor, _) => SopError::BadData,
        (Op::Sign, E::BadKey | E::BadCert | E::Malformed) => SopError::BadData,
        (Op::Sign, _) => SopError::KeyCannotSign,
        (Op::Verify, E::Malformed) => SopError::BadData,
        (Op::Verify, _) => SopError::NoSignature,
        (Op::Encrypt, E::NoSigningKey) => SopError::KeyCannotSign,
        (Op::Encrypt, E::EmptyPassphrase) => SopError::PasswordNotHumanReadable,
        (Op::Encrypt, E::BadKey | E::BadCert | E::Malformed) => SopError::BadData,
        (Op::Encrypt, _) => SopError::CertCannotEncrypt,
        // Not OpenPGP, or OpenPGP that is no encrypted message (a cleartext signature):
        // wrong input rather than a message we cannot open.
        (Op::Decrypt, E::Malformed | E::NotEncrypted) => SopError::BadData,
        (Op::Decrypt, _) => SopError::CannotDecrypt,
    }
}

/// A KEYS object that would not load.
pub fn map_key_load(e: Error, op: Op) -> SopError {
    match e {
        Error::BadPassphrase => SopError::KeyIsProtected,
        Error::Expired | Error::Revoked | Error::NotYetValid | Error::NoSigningKey
            if matches!(op, Op::Sign | Op::Encrypt) =>
        {
            SopError::KeyCannotSign
        }
        Error::Expired | Error::Revoked | Error::NotYetValid | Error::PolicyRejected => {
            if op == Op::Decrypt {
                SopError::CannotDecrypt
            } else {
                SopError::BadData
            }
        }
        Error::Internal => SopError::UnspecifiedFailure,
        _ => SopError::BadData,
    }
}
