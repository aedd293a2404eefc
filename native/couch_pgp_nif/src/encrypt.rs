//! Encryption to certificates and/or passwords, optionally signed.
//!
//! Interop profile: sequoia writes SEIPDv2 only when every recipient advertises it; our v4
//! keys advertise SEIPDv1 only (see `keys::generate`), so by default the output is what
//! GnuPG 2.2 and OpenPGP.js read. Password-only messages are SEIPDv1 too (sequoia picks v2
//! only on the recipients' say-so). No compression layer is written: it would cost time on
//! every message and opens compression side channels on mixed secret/attacker content.

use std::io::Write;

use sequoia_openpgp as openpgp;
use openpgp::armor;
use openpgp::cert::prelude::*;
use openpgp::crypto::Password;
use openpgp::serialize::stream::{Armorer, Encryptor, LiteralWriter, Message, Recipient};
use openpgp::cert::Preferences;
use openpgp::types::{DataFormat, SymmetricAlgorithm};

use crate::certs;
use crate::error::{classify, Context, Error, Result};
use crate::keys::SecretKey;
use crate::sign;

#[derive(Default)]
pub struct EncryptOptions<'k> {
    pub sign_with: Option<&'k SecretKey>,
    pub armor: bool,
    /// Signers besides `sign_with`; every one signs.
    pub also_sign_with: &'k [&'k SecretKey],
    /// Each password gets its own SKESK; the message opens with any of them or any key.
    pub passwords: &'k [&'k [u8]],
    /// Mark the literal data as UTF-8 text and make text signatures (SOP `--as=text`).
    pub text: bool,
}

/// The cipher every recipient asked for: the first AES variant in the first recipient's
/// preferences that every other recipient lists too (a certificate without preferences
/// takes any). `None` keeps sequoia's default, AES-256, which is also the first preference
/// of the keys `keys::generate` makes, of GnuPG's and of OpenPGP.js's. Ciphers besides AES
/// are never chosen: every implementation reads AES, and RFC 9580 makes AES-128 mandatory.
fn common_cipher(recipients: &[ValidCert<'_>]) -> Option<SymmetricAlgorithm> {
    use SymmetricAlgorithm::{AES128, AES192, AES256};
    let first = recipients.first()?.preferred_symmetric_algorithms()?;
    first.iter().copied().filter(|a| matches!(a, AES256 | AES192 | AES128)).find(|a| {
        recipients
            .iter()
            .all(|vc| vc.preferred_symmetric_algorithms().is_none_or(|p| p.contains(a)))
    })
}

/// Encrypts `plain` to every valid encryption subkey of every certificate and to every
/// password, into `sink`.
pub fn encrypt<W: Write + Send + Sync>(
    plain: &[u8],
    recipients: &[&Cert],
    opts: &EncryptOptions<'_>,
    sink: W,
) -> Result<()> {
    if recipients.is_empty() && opts.passwords.is_empty() {
        return Err(Error::NoEncryptionKey);
    }
    if opts.passwords.iter().any(|p| p.is_empty()) {
        return Err(Error::EmptyPassphrase);
    }
    let mut valid = Vec::with_capacity(recipients.len());
    for cert in recipients {
        valid.push(certs::validate(cert, None)?);
    }
    let mut targets: Vec<Recipient> = Vec::new();
    for vc in &valid {
        let before = targets.len();
        targets.extend(
            vc.keys()
                .supported()
                .alive()
                .revoked(false)
                .for_transport_encryption()
                .for_storage_encryption()
                .map(Recipient::from),
        );
        if targets.len() == before {
            return Err(Error::NoEncryptionKey);
        }
    }
    let signing_keys: Vec<&SecretKey> =
        opts.sign_with.into_iter().chain(opts.also_sign_with.iter().copied()).collect();
    let signers = sign::Signers::of(&signing_keys)?;

    let fail = |e: anyhow::Error| classify(&e, Context::Other);
    let mut message = Message::new(sink);
    if opts.armor {
        message = Armorer::new(message)
            .kind(armor::Kind::Message)
            .build()
            .map_err(fail)?;
    }
    let passwords: Vec<Password> = opts.passwords.iter().map(|p| Password::from(*p)).collect();
    let mut encryptor = Encryptor::for_recipients(message, targets).add_passwords(passwords);
    if let Some(cipher) = common_cipher(&valid) {
        encryptor = encryptor.symmetric_algo(cipher);
    }
    message = encryptor.build().map_err(|e| match classify(&e, Context::Other) {
        // Sequoia refuses recipient key parameters it cannot use only here, with a generic
        // error (an ECDH key whose KDF hash is shorter than its key-wrap key, found by the
        // interoperability suite's "ECDH Parameters"): that recipient cannot be encrypted to.
        Error::Internal => Error::NoEncryptionKey,
        other => other,
    })?;
    message = sign::signer_stack(message, signers, opts.text, false)?;
    let format = if opts.text { DataFormat::Unicode } else { DataFormat::Binary };
    let mut literal = LiteralWriter::new(message).format(format).build().map_err(fail)?;
    literal.write_all(plain).map_err(|_| Error::Internal)?;
    literal.finalize().map_err(fail)?;
    Ok(())
}
