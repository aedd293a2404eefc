//! Inline-signed messages: one-pass signatures around literal data, and the Cleartext
//! Signature Framework (RFC 9580 section 7).
//!
//! Verification accepts either form (sequoia's verifier recognises a cleartext-signed text
//! by its armor header) but never an encrypted message: that is `decrypt`'s business. As
//! with decryption, the signed data reaches the caller only once a signature has verified.

use std::io::{Read, Write};
use std::sync::Arc;

use sequoia_openpgp as openpgp;
use openpgp::armor;
use openpgp::cert::prelude::*;
use openpgp::parse::stream::VerifierBuilder;
use openpgp::parse::Parse;
use openpgp::serialize::stream::{LiteralWriter, Message};
use openpgp::types::DataFormat;

use crate::error::{classify, classify_io, no_panic, Context, Error, Result};
use crate::keys::SecretKey;
use crate::policy::POLICY;
use crate::sign::{self, Framing};
use crate::verify::{self, SignatureReport, Verification, Window};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InlineMode {
    Binary,
    /// UTF-8 literal data and text signatures.
    Text,
    /// Cleartext signature: readable text followed by an armored text signature.
    Cleartext,
}

/// Signs `data` with every key in `keys` into one inline-signed message. `armor` is ignored
/// for `Cleartext`, which is armor by definition; callers that must refuse the combination
/// check for it themselves.
pub fn inline_sign<W: Write + Send + Sync>(
    data: &[u8],
    keys: &[&SecretKey],
    mode: InlineMode,
    armor: bool,
    sink: W,
) -> Result<()> {
    let pairs = sign::key_pairs(keys)?;
    let fail = |e: anyhow::Error| classify(&e, Context::Other);
    if mode == InlineMode::Cleartext {
        let message = Message::new(sink);
        let mut signer = sign::signer_stack_framed(message, pairs, true, Framing::Cleartext)?;
        signer.write_all(data).map_err(|_| Error::Internal)?;
        signer.finalize().map_err(fail)?;
        return Ok(());
    }
    let text = mode == InlineMode::Text;
    let message = sign::message_into(sink, armor.then_some(armor::Kind::Message))?;
    let message = sign::signer_stack(message, pairs, text, false)?;
    let format = if text { DataFormat::Unicode } else { DataFormat::Binary };
    let mut literal = LiteralWriter::new(message).format(format).build().map_err(fail)?;
    literal.write_all(data).map_err(|_| Error::Internal)?;
    literal.finalize().map_err(fail)?;
    Ok(())
}

/// Verifies an inline-signed or cleartext-signed message; on success writes the signed data
/// to `sink` and returns every good signature by one of `certs` made inside `window`.
pub fn inline_verify<W: Write>(
    msg: &[u8],
    certs: &[Arc<Cert>],
    window: Window,
    mut sink: W,
) -> Result<Vec<Verification>> {
    let data_and_report = no_panic(|| Error::Malformed, || verify_guarded(msg, certs, window))?;
    let (data, report) = data_and_report;
    let verified = report.require_verified()?;
    sink.write_all(&data).map_err(|_| Error::Internal)?;
    Ok(verified)
}

fn verify_guarded(
    msg: &[u8],
    certs: &[Arc<Cert>],
    window: Window,
) -> Result<(Vec<u8>, SignatureReport)> {
    let mut helper = verify::Helper {
        certs: certs.iter().map(|c| (**c).clone()).collect(),
        report: SignatureReport { window, ..Default::default() },
    };
    let mut data = Vec::new();
    {
        let mut v = VerifierBuilder::from_bytes(msg)
            .map_err(|e| classify(&e, Context::Message))?
            .with_policy(&*POLICY, None, &mut helper)
            .map_err(|e| classify(&e, Context::Message))?;
        v.read_to_end(&mut data).map_err(|e| classify_io(&e, Context::Message))?;
        if !v.message_processed() {
            return Err(Error::Malformed);
        }
    }
    Ok((data, std::mem::take(&mut helper.report)))
}
