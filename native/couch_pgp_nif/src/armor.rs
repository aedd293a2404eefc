//! ASCII armor (RFC 9580 section 6) on and off.
//!
//! Both directions are idempotent, as SOP asks: armoring armored data re-armors it (the
//! label is kept, headers and line-length quirks are normalised), dearmoring binary data
//! passes it through once it is seen to be OpenPGP.

use std::io::{Read, Write};

use sequoia_openpgp as openpgp;
use openpgp::armor::{self, Kind, ReaderMode};
use openpgp::parse::{PacketParser, PacketParserResult, Parse};
use openpgp::Packet;

use crate::error::{no_panic, Error, Result};

/// Largest input either direction accepts; armored keys and messages of this project are
/// far smaller, and the whole input is held in memory.
pub const MAX_ARMOR_BYTES: usize = 256 * 1024 * 1024;

/// What `armor` labels its output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Label {
    /// From the first packet: key, certificate, signature, or else message.
    Auto,
    Message,
    Signature,
    PublicKey,
    SecretKey,
}

pub fn looks_armored(data: &[u8]) -> bool {
    let start = data.iter().position(|b| !b.is_ascii_whitespace()).unwrap_or(data.len());
    data[start..].starts_with(b"-----BEGIN PGP ")
}

/// Armors `data` (binary or already armored) into `sink`.
pub fn armor<W: Write>(data: &[u8], label: Label, sink: W) -> Result<()> {
    if data.len() > MAX_ARMOR_BYTES {
        return Err(Error::Malformed);
    }
    let (binary, found) = if looks_armored(data) {
        let (bytes, kind) = decode(data)?;
        (std::borrow::Cow::Owned(bytes), kind)
    } else {
        (std::borrow::Cow::Borrowed(data), None)
    };
    let kind = match label {
        Label::Message => Kind::Message,
        Label::Signature => Kind::Signature,
        Label::PublicKey => Kind::PublicKey,
        Label::SecretKey => Kind::SecretKey,
        Label::Auto => match found {
            // Re-armoring keeps what the sender said, except the cleartext framework's
            // label, which has no binary form to re-armor.
            Some(k) if k != Kind::File => k,
            _ => sniff(&binary)?,
        },
    };
    let mut w = armor::Writer::new(sink, kind).map_err(|_| Error::Internal)?;
    w.write_all(&binary).map_err(|_| Error::Internal)?;
    w.finalize().map_err(|_| Error::Internal)?;
    Ok(())
}

/// Removes the armor from `data` into `sink`; binary OpenPGP passes through unchanged.
pub fn dearmor<W: Write>(data: &[u8], mut sink: W) -> Result<()> {
    if data.len() > MAX_ARMOR_BYTES {
        return Err(Error::Malformed);
    }
    if looks_armored(data) {
        let (bytes, _) = decode(data)?;
        sink.write_all(&bytes).map_err(|_| Error::Internal)
    } else {
        sniff(data)?;
        sink.write_all(data).map_err(|_| Error::Internal)
    }
}

fn decode(data: &[u8]) -> Result<(Vec<u8>, Option<Kind>)> {
    no_panic(|| Error::Malformed, || decode_guarded(data))
}

fn decode_guarded(data: &[u8]) -> Result<(Vec<u8>, Option<Kind>)> {
    let mut r = armor::Reader::from_bytes(data, ReaderMode::Tolerant(None));
    let mut out = Vec::new();
    r.read_to_end(&mut out).map_err(|_| Error::Malformed)?;
    if out.is_empty() {
        return Err(Error::Malformed);
    }
    Ok((out, r.kind()))
}

/// The armor kind that fits binary OpenPGP data, from its first packet; not OpenPGP at
/// all is `Malformed`.
fn sniff(binary: &[u8]) -> Result<Kind> {
    no_panic(|| Error::Malformed, || sniff_guarded(binary))
}

fn sniff_guarded(binary: &[u8]) -> Result<Kind> {
    let ppr = PacketParser::from_bytes(binary).map_err(|_| Error::Malformed)?;
    match ppr {
        PacketParserResult::Some(pp) => Ok(match &pp.packet {
            Packet::SecretKey(_) => Kind::SecretKey,
            Packet::PublicKey(_) => Kind::PublicKey,
            Packet::Signature(_) => Kind::Signature,
            Packet::Unknown(_) => return Err(Error::Malformed),
            _ => Kind::Message,
        }),
        PacketParserResult::EOF(_) => Err(Error::Malformed),
    }
}
