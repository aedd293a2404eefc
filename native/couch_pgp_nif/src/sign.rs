//! Detached signatures, and the signing layer shared with `encrypt` and `inline`.

use std::io::Write;

use sequoia_openpgp as openpgp;
use openpgp::armor;
use openpgp::crypto::KeyPair;
use openpgp::packet::signature::SignatureBuilder;
use openpgp::parse::{PacketParser, PacketParserResult, Parse};
use openpgp::serialize::stream::{Armorer, Message, Signer};
use openpgp::types::{HashAlgorithm, SignatureType};
use openpgp::Packet;

use crate::error::{classify, Context, Error, Result};
use crate::keys::SecretKey;

/// How a detached signature is made and written.
#[derive(Debug, Clone, Copy, Default)]
pub struct SignOptions {
    pub armor: bool,
    /// A text signature (type 0x01): line endings are normalised to CRLF before hashing, so
    /// it survives transports that rewrite them.
    pub text: bool,
}

/// How the signatures sit relative to the signed data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    /// One-pass signatures around a literal packet the caller writes next.
    Inline,
    Detached,
    /// The Cleartext Signature Framework: sequoia writes the whole armored text itself.
    Cleartext,
}

/// The key pairs that sign one message, and the hash algorithm they use.
pub(crate) struct Signers {
    pairs: Vec<KeyPair>,
    /// The first signer's preference (see `SecretKey::preferred_hash`); sequoia's default
    /// otherwise.
    hash: Option<HashAlgorithm>,
}

impl Signers {
    /// Every key must be able to sign now; no keys means no signing layer.
    pub(crate) fn of(keys: &[&SecretKey]) -> Result<Signers> {
        let pairs = keys.iter().map(|k| k.signer()).collect::<Result<Vec<_>>>()?;
        let hash = keys.first().and_then(|k| k.preferred_hash());
        Ok(Signers { pairs, hash })
    }
}

/// Pushes a signer for every key pair onto `message`; with none, `message` is unchanged.
pub(crate) fn signer_stack<'a>(
    message: Message<'a>,
    signers: Signers,
    text: bool,
    detached: bool,
) -> Result<Message<'a>> {
    let framing = if detached { Framing::Detached } else { Framing::Inline };
    signer_stack_framed(message, signers, text, framing)
}

pub(crate) fn signer_stack_framed<'a>(
    message: Message<'a>,
    signers: Signers,
    text: bool,
    framing: Framing,
) -> Result<Message<'a>> {
    let fail = |e: anyhow::Error| classify(&e, Context::Other);
    let mut pairs = signers.pairs.into_iter();
    let Some(first) = pairs.next() else {
        return Ok(message);
    };
    let typ = if text { SignatureType::Text } else { SignatureType::Binary };
    let mut signer =
        Signer::with_template(message, first, SignatureBuilder::new(typ)).map_err(fail)?;
    if let Some(h) = signers.hash {
        signer = signer.hash_algo(h).map_err(fail)?;
    }
    for kp in pairs {
        signer = signer.add_signer(kp).map_err(fail)?;
    }
    signer = match framing {
        Framing::Inline => signer,
        Framing::Detached => signer.detached(),
        Framing::Cleartext => signer.cleartext(),
    };
    signer.build().map_err(fail)
}

/// The signers for an operation that must sign: at least one key, each able to sign now.
pub(crate) fn key_pairs(keys: &[&SecretKey]) -> Result<Signers> {
    if keys.is_empty() {
        return Err(Error::NoSigningKey);
    }
    Signers::of(keys)
}

/// A detached signature over `data` by `key`'s signing key, into `sink`.
pub fn sign_detached<W: Write + Send + Sync>(
    data: &[u8],
    key: &SecretKey,
    armor: bool,
    sink: W,
) -> Result<()> {
    sign_detached_with(data, &[key], SignOptions { armor, text: false }, sink).map(|_| ())
}

/// Detached signatures over `data` by every key in `keys`, into `sink`. Returns the hash
/// algorithm (its RFC 9580 octet) of the first signature, for a PGP/MIME `micalg`.
pub fn sign_detached_with<W: Write + Send + Sync>(
    data: &[u8],
    keys: &[&SecretKey],
    opts: SignOptions,
    mut sink: W,
) -> Result<u8> {
    let pairs = key_pairs(keys)?;
    let fail = |e: anyhow::Error| classify(&e, Context::Other);
    // Signatures are small: build them in memory, so the hash algorithm can be read back.
    let mut binary = Vec::new();
    {
        let message = Message::new(&mut binary);
        let mut signer = signer_stack(message, pairs, opts.text, true)?;
        signer.write_all(data).map_err(|_| Error::Internal)?;
        signer.finalize().map_err(fail)?;
    }
    let hash = first_signature_hash(&binary)?;
    if opts.armor {
        let mut w = armor::Writer::new(&mut sink, armor::Kind::Signature)
            .map_err(|_| Error::Internal)?;
        w.write_all(&binary).map_err(|_| Error::Internal)?;
        w.finalize().map_err(|_| Error::Internal)?;
    } else {
        sink.write_all(&binary).map_err(|_| Error::Internal)?;
    }
    Ok(hash)
}

fn first_signature_hash(sigs: &[u8]) -> Result<u8> {
    let ppr = PacketParser::from_bytes(sigs).map_err(|_| Error::Internal)?;
    if let PacketParserResult::Some(pp) = ppr {
        if let Packet::Signature(sig) = &pp.packet {
            return Ok(u8::from(sig.hash_algo()));
        }
    }
    Err(Error::Internal)
}

/// Writes an armored or binary message through `sink` (shared by the signing writers).
pub(crate) fn message_into<'a, W: Write + Send + Sync + 'a>(
    sink: W,
    armor_kind: Option<armor::Kind>,
) -> Result<Message<'a>> {
    let message = Message::new(sink);
    match armor_kind {
        Some(kind) => Armorer::new(message)
            .kind(kind)
            .build()
            .map_err(|e| classify(&e, Context::Other)),
        None => Ok(message),
    }
}
