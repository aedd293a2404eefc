//! Detached signatures.

use std::io::Write;

use sequoia_openpgp as openpgp;
use openpgp::armor;
use openpgp::serialize::stream::{Armorer, Message, Signer};

use crate::error::{classify, Context, Error, Result};
use crate::keys::SecretKey;

/// A detached signature over `data` by `key`'s signing key, into `sink`.
pub fn sign_detached<W: Write + Send + Sync>(
    data: &[u8],
    key: &SecretKey,
    armor: bool,
    sink: W,
) -> Result<()> {
    let kp = key.signer()?;
    let fail = |e: anyhow::Error| classify(&e, Context::Other);
    let mut message = Message::new(sink);
    if armor {
        message = Armorer::new(message)
            .kind(armor::Kind::Signature)
            .build()
            .map_err(fail)?;
    }
    let mut signer = Signer::new(message, kp)
        .map_err(fail)?
        .detached()
        .build()
        .map_err(fail)?;
    signer.write_all(data).map_err(|_| Error::Internal)?;
    signer.finalize().map_err(fail)?;
    Ok(())
}
