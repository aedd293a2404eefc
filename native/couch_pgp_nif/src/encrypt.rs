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
use openpgp::types::DataFormat;

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
    let mut signers = Vec::new();
    for k in opts.sign_with.iter().chain(opts.also_sign_with.iter()) {
        signers.push(k.signer()?);
    }

    let fail = |e: anyhow::Error| classify(&e, Context::Other);
    let mut message = Message::new(sink);
    if opts.armor {
        message = Armorer::new(message)
            .kind(armor::Kind::Message)
            .build()
            .map_err(fail)?;
    }
    let passwords: Vec<Password> = opts.passwords.iter().map(|p| Password::from(*p)).collect();
    message = Encryptor::for_recipients(message, targets)
        .add_passwords(passwords)
        .build()
        .map_err(fail)?;
    message = sign::signer_stack(message, signers, opts.text, false)?;
    let format = if opts.text { DataFormat::Unicode } else { DataFormat::Binary };
    let mut literal = LiteralWriter::new(message).format(format).build().map_err(fail)?;
    literal.write_all(plain).map_err(|_| Error::Internal)?;
    literal.finalize().map_err(fail)?;
    Ok(())
}
