//! The session channel: requests and responses sealed with symmetric keys of the session,
//! as OpenPGP messages (RFC 9580 SEIPDv2, AES-256-GCM) with the key given outright.
//!
//! A session has two 32-byte keys, one per direction (client to server, server to client),
//! so that a response can never be reflected as a request. Both are random, made when the
//! session is made, sealed into its token, and sent to the client encrypted to its
//! certificate and signed by the session key (couch_pgp_tokens). A message is one SEIPDv2
//! packet with no key packet before it; the per-message key and nonce come from the packet's
//! random salt (HKDF, RFC 9580 section 5.13.2), so one session key seals many messages.
//!
//! Sealing builds the packet here, with sequoia's public AEAD schedule and contexts, because
//! sequoia's message writer draws the salt from the backend's generator, which the Nettle
//! backend rebuilds and reseeds on every call (most of the cost of a small message). The salt
//! only has to be unique, so it comes from `rand`'s thread-local CSPRNG. Opening first checks
//! strictly that the message is one SEIPDv2 AES-256-GCM packet; the usual shape (one literal
//! packet inside, definite or partial lengths) is then opened here with the same schedule,
//! every other shape by sequoia's full message parser with the direction's key as the session
//! key.

use std::borrow::Cow;
use std::io::Write;

use rand::{RngCore, TryRngCore};
use sequoia_openpgp as openpgp;
use openpgp::crypto::aead::{DecryptionContext, EncryptionContext, SEIPv2Schedule, Schedule};
use openpgp::crypto::SessionKey;
use openpgp::types::{AEADAlgorithm, SymmetricAlgorithm};

use crate::armor;
use crate::canonical::{self, Json};
use crate::decrypt::{self, DecryptOptions, RawSessionKey};
use crate::error::{no_panic, Error, Result};

pub const KEY_LEN: usize = 32;
const SALT_LEN: usize = 32;
const TAG_LEN: usize = 16;
const SYM: SymmetricAlgorithm = SymmetricAlgorithm::AES256;
const AEAD: AEADAlgorithm = AEADAlgorithm::GCM;
/// Packet tag 18 (SEIPD), new format.
const SEIPD_CTB: u8 = 0xC0 | 18;
/// Packet tag 11 (literal data), new format.
const LITERAL_CTB: u8 = 0xC0 | 11;
/// RFC 9580 chunk sizes run from 2^6 to 2^22 bytes.
const MIN_CHUNK_OCTET: u8 = 0;
const MAX_CHUNK_OCTET: u8 = 16;

/// The two keys of a session's channel. Held by the NIF in a resource; never an Erlang term.
pub struct ChannelKeys {
    client_to_server: SessionKey,
    server_to_client: SessionKey,
}

/// Which way a message travels, and so which key seals it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    ClientToServer,
    ServerToClient,
}

impl ChannelKeys {
    /// Fresh random keys for a new session, from the operating system's generator.
    pub fn generate() -> Result<ChannelKeys> {
        let mut secret = [0u8; 2 * KEY_LEN];
        rand::rngs::OsRng.try_fill_bytes(&mut secret).map_err(|_| Error::Internal)?;
        let keys = ChannelKeys::from_secret(&secret);
        secret.fill(0);
        keys
    }

    /// Keys as a session token carries them: client-to-server then server-to-client.
    pub fn from_secret(secret: &[u8]) -> Result<ChannelKeys> {
        if secret.len() != 2 * KEY_LEN {
            return Err(Error::BadKey);
        }
        Ok(ChannelKeys::from_parts(&secret[..KEY_LEN], &secret[KEY_LEN..]))
    }

    fn from_parts(c2s: &[u8], s2c: &[u8]) -> ChannelKeys {
        ChannelKeys { client_to_server: SessionKey::from(c2s), server_to_client: SessionKey::from(s2c) }
    }

    /// The 64 secret bytes (to seal into a token, or to send to the client encrypted).
    pub fn secret(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(2 * KEY_LEN);
        v.extend_from_slice(&self.client_to_server);
        v.extend_from_slice(&self.server_to_client);
        v
    }

    fn key(&self, dir: Direction) -> &SessionKey {
        match dir {
            Direction::ClientToServer => &self.client_to_server,
            Direction::ServerToClient => &self.server_to_client,
        }
    }
}

/// Seals `plain` as one binary OpenPGP message under the direction's key: a SEIPDv2 packet
/// holding one literal data packet (format 'b', no file name, date 0).
pub fn seal<W: Write>(keys: &ChannelKeys, dir: Direction, plain: &[u8], mut sink: W) -> Result<()> {
    let mut salt = [0u8; SALT_LEN];
    rand::rng().fill_bytes(&mut salt);
    seal_with_salt(keys.key(dir), &salt, plain, &mut sink)
}

fn seal_with_salt<W: Write>(key: &SessionKey, salt: &[u8; SALT_LEN], plain: &[u8], sink: &mut W) -> Result<()> {
    let literal_body_len = 6 + plain.len();
    let mut literal_header = Vec::with_capacity(12);
    literal_header.push(LITERAL_CTB);
    push_length(&mut literal_header, literal_body_len)?;
    literal_header.extend_from_slice(&[b'b', 0, 0, 0, 0, 0]);
    let inner_len = literal_header.len() + plain.len();

    // The smallest chunk that holds the whole message (one chunk, one tag), up to 4 MiB.
    let octet = chunk_octet(inner_len);
    let chunk_size = 1usize << (octet + 6);
    let chunks = inner_len.div_ceil(chunk_size).max(1);
    let seipd_body_len = 4 + SALT_LEN + inner_len + chunks * TAG_LEN + TAG_LEN;

    let mut header = Vec::with_capacity(8 + 4 + SALT_LEN);
    header.push(SEIPD_CTB);
    push_length(&mut header, seipd_body_len)?;
    header.extend_from_slice(&[2, SYM.into(), AEAD.into(), octet]);
    header.extend_from_slice(salt);
    sink.write_all(&header).map_err(|_| Error::Internal)?;

    // Chunk by chunk with sequoia's schedule, as open_simple reads them. (sequoia's streaming
    // Encryptor does the same, but its drop after finalize() makes and discards an error, and
    // with RUST_BACKTRACE set in the node's environment that error captured a backtrace on
    // every message: ~10 us per answer in perf.)
    let schedule = SEIPv2Schedule::new(key, SYM, AEAD, chunk_size, salt).map_err(|_| Error::Internal)?;
    let mut inner = Vec::with_capacity(inner_len);
    inner.extend_from_slice(&literal_header);
    inner.extend_from_slice(plain);
    let mut sealed = vec![0u8; chunk_size.min(inner_len) + TAG_LEN];
    let mut index = 0u64;
    for chunk in inner.chunks(chunk_size) {
        let out = &mut sealed[..chunk.len() + TAG_LEN];
        Schedule::<EncryptionContext>::chunk(&schedule, index, &mut |k, nonce, ad| {
            AEAD.context(SYM, k, ad, nonce)?.for_encryption()
        })
        .and_then(|mut ctx| ctx.encrypt_seal(out, chunk))
        .map_err(|_| Error::Internal)?;
        sink.write_all(out).map_err(|_| Error::Internal)?;
        index += 1;
    }
    let mut final_tag = [0u8; TAG_LEN];
    Schedule::<EncryptionContext>::finalizer(&schedule, index, inner_len as u64, &mut |k, nonce, ad| {
        AEAD.context(SYM, k, ad, nonce)?.for_encryption()
    })
    .and_then(|mut ctx| ctx.encrypt_seal(&mut final_tag, &[]))
    .map_err(|_| Error::Internal)?;
    sink.write_all(&final_tag).map_err(|_| Error::Internal)?;
    Ok(())
}

/// Opens a message sealed under the direction's key, into `sink`. Anything but one SEIPDv2
/// AES-256-GCM packet is refused before any decryption (`not_encrypted` for other OpenPGP,
/// `malformed` for garbage); a failed tag is `tampered`; a message under the other direction's
/// key fails its tag too.
pub fn open<W: Write>(keys: &ChannelKeys, dir: Direction, msg: &[u8], mut sink: W) -> Result<()> {
    no_panic(|| Error::Malformed, || {
        check_shape(msg)?;
        let key = keys.key(dir);
        if let Some(result) = open_simple(key, msg, &mut sink) {
            return result;
        }
        let raw = [RawSessionKey { algo: Some(SYM.into()), key: key.to_vec() }];
        let opts = DecryptOptions { session_keys: &raw, ..Default::default() };
        match decrypt::decrypt_with(msg, &opts, sink) {
            Ok(_) => Ok(()),
            // The only key we offer did not open it: for an AEAD packet, a failed tag.
            Err(Error::NoMatchingKey) => Err(Error::Tampered),
            Err(e) => Err(e),
        }
    })
}

/// The direct path for the message shapes `seal` and the usual writers write: one SEIPDv2
/// packet whose plaintext is one literal data packet, each with a definite length or in
/// partial lengths (OpenPGP.js streams every message that way). Every chunk tag and the final
/// tag are checked before anything reaches `sink`. `None` for any other shape, which then goes
/// through sequoia's general parser (compression, padding, other packets, odd lengths).
fn open_simple<W: Write>(key: &SessionKey, msg: &[u8], sink: &mut W) -> Option<Result<()>> {
    let body = whole_body(msg.get(1..)?)?;
    let body = &body[..];
    let chunk_size = 1usize << (body.get(3)? + 6);
    let salt = body.get(4..4 + SALT_LEN)?;
    let sealed = body.get(4 + SALT_LEN..body.len().checked_sub(TAG_LEN)?)?;
    let final_tag = &body[body.len() - TAG_LEN..];
    let schedule = match SEIPv2Schedule::new(key, SYM, AEAD, chunk_size, salt) {
        Ok(s) => s,
        Err(_) => return Some(Err(Error::Malformed)),
    };
    let mut plain = Vec::with_capacity(sealed.len());
    let mut index = 0u64;
    for chunk in sealed.chunks(chunk_size + TAG_LEN) {
        if chunk.len() <= TAG_LEN {
            return Some(Err(Error::Malformed));
        }
        let start = plain.len();
        plain.resize(start + chunk.len() - TAG_LEN, 0);
        let r = Schedule::<DecryptionContext>::chunk(&schedule, index, &mut |k, nonce, ad| {
            AEAD.context(SYM, k, ad, nonce)?.for_decryption()
        })
        .and_then(|mut ctx| ctx.decrypt_verify(&mut plain[start..], chunk));
        if r.is_err() {
            return Some(Err(Error::Tampered));
        }
        index += 1;
    }
    let r = Schedule::<DecryptionContext>::finalizer(&schedule, index, plain.len() as u64, &mut |k, nonce, ad| {
        AEAD.context(SYM, k, ad, nonce)?.for_decryption()
    })
    .and_then(|mut ctx| ctx.decrypt_verify(&mut [], final_tag));
    if r.is_err() {
        return Some(Err(Error::Tampered));
    }
    // Authentic; now it must be exactly one literal data packet, else the general parser
    // decides (it handles compression, partial lengths, padding and other packets).
    let (body, data_start) = literal_data(&plain)?;
    Some(sink.write_all(&body[data_start..]).map_err(|_| Error::TooLarge))
}

/// The body of a plaintext that is exactly one new-format literal packet, and where its data
/// starts in it.
fn literal_data(plain: &[u8]) -> Option<(Cow<'_, [u8]>, usize)> {
    if *plain.first()? != LITERAL_CTB {
        return None;
    }
    let body = whole_body(plain.get(1..)?)?;
    let name_len = *body.get(1)? as usize;
    // Format octet, name length, name, 4-octet date.
    let skip = 2 + name_len + 4;
    (body.len() >= skip).then_some((body, skip))
}

/// The body of the packet whose length octets start `b`, when the packet is all of `b`: the
/// octets themselves for a definite length, the parts joined for partial lengths. `None`
/// when anything follows the packet, when a length is cut short, or when the first part is
/// shorter than the 512 octets RFC 9580 section 4.2.1.4 requires (the general parser then
/// decides).
fn whole_body(b: &[u8]) -> Option<Cow<'_, [u8]>> {
    match read_length(b)? {
        (Length::Definite(len), used) => {
            let body = b.get(used..)?;
            (body.len() == len).then_some(Cow::Borrowed(body))
        }
        (Length::Partial(first), _) if first < 512 => None,
        (Length::Partial(_), _) => {
            let mut joined = Vec::with_capacity(b.len());
            let mut rest = b;
            loop {
                let (len, used) = read_length(rest)?;
                let (part, last) = match len {
                    Length::Partial(n) => (n, false),
                    Length::Definite(n) => (n, true),
                };
                let end = used.checked_add(part)?;
                joined.extend_from_slice(rest.get(used..end)?);
                rest = &rest[end..];
                if last {
                    return rest.is_empty().then_some(Cow::Owned(joined));
                }
            }
        }
    }
}

/// A request envelope as the client sealed it (README "Encrypted requests"); the checks
/// against the HTTP request (method, path, query, time, nonce) are the caller's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestEnvelope {
    pub method: String,
    pub path: String,
    pub query: String,
    pub ts: i64,
    pub nonce: String,
    pub content_type: String,
    pub body: String,
}

/// Opens a request in one step: armor (if any) removed, the message opened under the
/// client-to-server key with at most `max_plain` bytes of plaintext, and the envelope parsed
/// (`bad_envelope` when it is not one). `too_large` when the plaintext would exceed the limit.
pub fn open_request(keys: &ChannelKeys, msg: &[u8], max_plain: usize) -> Result<RequestEnvelope> {
    let binary;
    let msg = if armor::looks_armored(msg) {
        let mut b = Vec::with_capacity(msg.len());
        armor::dearmor(msg, &mut b)?;
        binary = b;
        &binary[..]
    } else {
        msg
    };
    let mut plain = LimitedVec { buf: Vec::with_capacity(msg.len()), limit: max_plain, exceeded: false };
    match open(keys, Direction::ClientToServer, msg, &mut plain) {
        Ok(()) => {}
        Err(_) if plain.exceeded => return Err(Error::TooLarge),
        Err(e) => return Err(e),
    }
    parse_request(&plain.buf)
}

/// The envelope members, typed; `bad_envelope` for anything else (duplicate members, other
/// types, `v` not 1). Unknown members are ignored, as in the signed mode.
pub fn parse_request(plain: &[u8]) -> Result<RequestEnvelope> {
    let Ok(Json::Object(members)) = canonical::from_text(plain) else {
        return Err(Error::BadEnvelope);
    };
    // Taken out by value: the body may be most of the message, and is not copied again.
    let mut members: Vec<(String, Option<Json>)> = members.into_iter().map(|(k, v)| (k, Some(v))).collect();
    let mut take = |name: &str| members.iter_mut().find(|(k, _)| k == name).and_then(|(_, v)| v.take());
    match take("v") {
        Some(Json::Int(1)) => {}
        _ => return Err(Error::BadEnvelope),
    }
    let Some(Json::Int(ts)) = take("ts") else {
        return Err(Error::BadEnvelope);
    };
    let mut string = |name: &str| match take(name) {
        Some(Json::Str(s)) => Ok(s),
        _ => Err(Error::BadEnvelope),
    };
    Ok(RequestEnvelope {
        method: string("method")?,
        path: string("path")?,
        query: string("query")?,
        ts,
        nonce: string("nonce")?,
        content_type: string("content_type")?,
        body: string("body")?,
    })
}

/// Seals a response in one step: the response envelope's canonical JSON, sealed under the
/// server-to-client key, as binary OpenPGP. `invalid_json` when the body is not text.
pub fn seal_response<W: Write>(
    keys: &ChannelKeys,
    status: u16,
    nonce: &str,
    content_type: &str,
    body: &[u8],
    sink: W,
) -> Result<()> {
    let body = std::str::from_utf8(body).map_err(|_| Error::InvalidJson(crate::error::JsonError::InvalidUtf8))?;
    let plain = response_envelope(status, nonce, content_type, body);
    seal(keys, Direction::ServerToClient, &plain, sink)
}

/// The response envelope's canonical JSON, written directly (its member names are already in
/// canonical order) so that the body, often most of the message, is escaped straight into
/// the output and never copied into a JSON tree first.
fn response_envelope(status: u16, nonce: &str, content_type: &str, body: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + nonce.len() + content_type.len() + 64);
    out.extend_from_slice(b"{\"body\":");
    canonical::write_string(body, &mut out);
    out.extend_from_slice(b",\"content_type\":");
    canonical::write_string(content_type, &mut out);
    out.extend_from_slice(b",\"nonce\":");
    canonical::write_string(nonce, &mut out);
    out.extend_from_slice(b",\"status\":");
    out.extend_from_slice(status.to_string().as_bytes());
    out.extend_from_slice(b",\"v\":1}");
    out
}

/// A Vec that refuses to grow past a limit, and says so afterwards.
struct LimitedVec {
    buf: Vec<u8>,
    limit: usize,
    exceeded: bool,
}

impl Write for LimitedVec {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        if self.buf.len() + data.len() > self.limit {
            self.exceeded = true;
            return Err(std::io::Error::other("size limit"));
        }
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The message must start with a SEIPDv2 packet for AES-256-GCM. With a definite length the
/// packet must be the whole message; with partial lengths (what a streaming writer emits)
/// sequoia's parser checks the rest, and refuses anything after the packet.
fn check_shape(msg: &[u8]) -> Result<()> {
    let first = *msg.first().ok_or(Error::Malformed)?;
    if first & 0x80 == 0 {
        return Err(Error::Malformed);
    }
    if first != SEIPD_CTB {
        return Err(Error::NotEncrypted);
    }
    let (len, header_len) = read_length(&msg[1..]).ok_or(Error::Malformed)?;
    let start = 1 + header_len;
    let body = &msg[start..];
    match len {
        Length::Definite(n) if body.len() != n => return Err(Error::Malformed),
        _ => {}
    }
    if body.len() < 4 + SALT_LEN + TAG_LEN {
        return Err(Error::Malformed);
    }
    if body[0] != 2 || body[1] != u8::from(SYM) || body[2] != u8::from(AEAD) {
        return Err(Error::PolicyRejected);
    }
    if !(MIN_CHUNK_OCTET..=MAX_CHUNK_OCTET).contains(&body[3]) {
        return Err(Error::Malformed);
    }
    Ok(())
}

fn chunk_octet(len: usize) -> u8 {
    let mut octet = MIN_CHUNK_OCTET;
    while octet < MAX_CHUNK_OCTET && (1usize << (octet + 6)) < len {
        octet += 1;
    }
    octet
}

/// RFC 9580 section 4.2.1.1: one-, two- or five-octet body lengths.
fn push_length(out: &mut Vec<u8>, len: usize) -> Result<()> {
    if len < 192 {
        out.push(len as u8);
    } else if len < 8384 {
        let l = len - 192;
        out.push(((l >> 8) as u8) + 192);
        out.push((l & 0xff) as u8);
    } else {
        let l = u32::try_from(len).map_err(|_| Error::TooLarge)?;
        out.push(0xff);
        out.extend_from_slice(&l.to_be_bytes());
    }
    Ok(())
}

#[derive(Debug, PartialEq, Eq)]
enum Length {
    Definite(usize),
    /// The length of the first part of a body sent in parts.
    Partial(usize),
}

/// A new-format body length and the octets it used (RFC 9580 section 4.2.1).
fn read_length(b: &[u8]) -> Option<(Length, usize)> {
    let o = *b.first()?;
    match o {
        0..=191 => Some((Length::Definite(o as usize), 1)),
        192..=223 => {
            let o2 = *b.get(1)?;
            Some((Length::Definite(((o as usize - 192) << 8) + o2 as usize + 192), 2))
        }
        224..=254 => Some((Length::Partial(1usize << (o & 0x1f)), 1)),
        255 => {
            let bytes: [u8; 4] = b.get(1..5)?.try_into().ok()?;
            Some((Length::Definite(u32::from_be_bytes(bytes) as usize), 5))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_round_trip() -> Result<()> {
        for len in [0usize, 1, 191, 192, 193, 8383, 8384, 70000, 5 << 20] {
            let mut v = Vec::new();
            push_length(&mut v, len)?;
            assert_eq!(read_length(&v), Some((Length::Definite(len), v.len())), "{len}");
        }
        Ok(())
    }

    #[test]
    fn response_envelope_is_canonical_json() -> Result<()> {
        for (status, nonce, ctype, body) in [
            (200, "n1", "application/json", "{\"_id\":\"a\",\"x\":\"\\u0001\\n\"}"),
            (404, "", "text/plain;charset=utf-8", ""),
            (201, "ü\"\\", "a/b", "line\nbreak\t\u{1}é😀"),
        ] {
            let tree = Json::Object(vec![
                ("body".into(), Json::Str(body.into())),
                ("content_type".into(), Json::Str(ctype.into())),
                ("nonce".into(), Json::Str(nonce.into())),
                ("status".into(), Json::Int(i64::from(status))),
                ("v".into(), Json::Int(1)),
            ]);
            assert_eq!(response_envelope(status, nonce, ctype, body), canonical::canonicalize(&tree)?);
        }
        Ok(())
    }

    #[test]
    fn whole_bodies_in_definite_and_partial_lengths() -> Result<()> {
        let data: Vec<u8> = (0..2000u32).map(|i| i as u8).collect();
        let mut definite = Vec::new();
        push_length(&mut definite, data.len())?;
        definite.extend_from_slice(&data);
        assert_eq!(whole_body(&definite).as_deref(), Some(&data[..]));
        // 512 + 1024 in parts, the rest with a definite length.
        let mut parts = vec![224 + 9];
        parts.extend_from_slice(&data[..512]);
        parts.push(224 + 10);
        parts.extend_from_slice(&data[512..1536]);
        push_length(&mut parts, data.len() - 1536)?;
        parts.extend_from_slice(&data[1536..]);
        assert_eq!(whole_body(&parts).as_deref(), Some(&data[..]));
        // Anything after the packet, a cut, or a first part under 512 octets: not this path.
        for bad in [
            [&definite[..], b"x"].concat(),
            [&parts[..], b"x"].concat(),
            definite[..definite.len() - 1].to_vec(),
            parts[..parts.len() - 1].to_vec(),
            parts[..600].to_vec(),
            [&[224 + 8][..], &data[..256], &[0]].concat(),
            Vec::new(),
        ] {
            assert_eq!(whole_body(&bad), None, "{} octets", bad.len());
        }
        Ok(())
    }

    #[test]
    fn chunk_octets() {
        assert_eq!(chunk_octet(0), 0);
        assert_eq!(chunk_octet(64), 0);
        assert_eq!(chunk_octet(65), 1);
        assert_eq!(chunk_octet(1024), 4);
        assert_eq!(chunk_octet(100 << 20), 16);
    }
}
