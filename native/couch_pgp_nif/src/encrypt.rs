//! Encryption to certificates, optionally signed.
//!
//! Interop profile: sequoia writes SEIPDv2 only when every recipient advertises it; our v4
//! keys advertise SEIPDv1 only (see `keys::generate`), so by default the output is what
//! GnuPG 2.2 and OpenPGP.js read. No compression layer is written: it would cost time on
//! every message and opens compression side channels on mixed secret/attacker content.

use std::io::Write;

use sequoia_openpgp as openpgp;
use openpgp::armor;
use openpgp::cert::prelude::*;
use openpgp::serialize::stream::{Armorer, Encryptor, LiteralWriter, Message, Recipient, Signer};

use crate::certs;
use crate::error::{classify, Context, Error, Result};
use crate::keys::SecretKey;

pub struct EncryptOptions<'k> {
    pub sign_with: Option<&'k SecretKey>,
    pub armor: bool,
}

/// Encrypts `plain` to every valid encryption subkey of every certificate, into `sink`.
pub fn encrypt<W: Write + Send + Sync>(
    plain: &[u8],
    recipients: &[&Cert],
    opts: &EncryptOptions<'_>,
    sink: W,
) -> Result<()> {
    if recipients.is_empty() {
        return Err(Error::NoEncryptionKey);
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
    let signer = match opts.sign_with {
        Some(k) => Some(k.signer()?),
        None => None,
    };

    let fail = |e: anyhow::Error| classify(&e, Context::Other);
    let mut message = Message::new(sink);
    if opts.armor {
        message = Armorer::new(message)
            .kind(armor::Kind::Message)
            .build()
            .map_err(fail)?;
    }
    message = Encryptor::for_recipients(message, targets)
        .build()
        .map_err(fail)?;
    if let Some(kp) = signer {
        message = Signer::new(message, kp).map_err(fail)?.build().map_err(fail)?;
    }
    let mut literal = LiteralWriter::new(message).build().map_err(fail)?;
    literal.write_all(plain).map_err(|_| Error::Internal)?;
    literal.finalize().map_err(fail)?;
    Ok(())
}
