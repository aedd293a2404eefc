//! The session channel without the BEAM: round trips, sequoia's own SEIPDv2 writer and
//! parser on the other end, and every refusal with its exact error.

use std::io::Write;

use couch_pgp_nif::channel::{self, ChannelKeys, Direction};
use couch_pgp_nif::error::Error;
use sequoia_openpgp as openpgp;
use openpgp::crypto::SessionKey;
use openpgp::parse::stream::{DecryptionHelper, DecryptorBuilder, MessageStructure, VerificationHelper};
use openpgp::parse::Parse;
use openpgp::policy::StandardPolicy;
use openpgp::serialize::stream::{Encryptor, LiteralWriter, Message};
use openpgp::types::{AEADAlgorithm, SymmetricAlgorithm};

const C2S: Direction = Direction::ClientToServer;
const S2C: Direction = Direction::ServerToClient;

fn keys() -> ChannelKeys {
    ChannelKeys::generate().expect("keys")
}

fn seal(k: &ChannelKeys, dir: Direction, plain: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    channel::seal(k, dir, plain, &mut out).expect("seal");
    out
}

fn open(k: &ChannelKeys, dir: Direction, msg: &[u8]) -> Result<Vec<u8>, Error> {
    let mut out = Vec::new();
    channel::open(k, dir, msg, &mut out).map(|()| out)
}

fn key_bytes(k: &ChannelKeys, dir: Direction) -> Vec<u8> {
    let s = k.secret();
    match dir {
        Direction::ClientToServer => s[..32].to_vec(),
        Direction::ServerToClient => s[32..].to_vec(),
    }
}

#[test]
fn round_trips_at_every_size_class() {
    let k = keys();
    for len in [0usize, 1, 40, 58, 59, 191, 192, 1024, 8384, 70_000, (4 << 20) + 17] {
        let plain: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        let msg = seal(&k, S2C, &plain);
        assert_eq!(open(&k, S2C, &msg).as_deref(), Ok(plain.as_slice()), "{len} bytes");
    }
}

#[test]
fn each_message_has_its_own_salt() {
    let k = keys();
    assert_ne!(seal(&k, C2S, b"same"), seal(&k, C2S, b"same"));
}

#[test]
fn the_other_direction_and_other_sessions_cannot_open() {
    let k = keys();
    let msg = seal(&k, C2S, b"{\"a\":1}");
    assert_eq!(open(&k, S2C, &msg), Err(Error::Tampered), "a request is not a response");
    assert_eq!(open(&keys(), C2S, &msg), Err(Error::Tampered));
}

#[test]
fn every_flipped_byte_is_refused() {
    let k = keys();
    let msg = seal(&k, C2S, b"patient record 0001");
    for i in 0..msg.len() {
        let mut bad = msg.clone();
        bad[i] ^= 0x01;
        let r = open(&k, C2S, &bad);
        assert!(r.is_err(), "byte {i} flipped and still opened");
    }
}

#[test]
fn truncation_and_garbage_are_refused_without_panics() {
    let k = keys();
    let msg = seal(&k, C2S, &[7u8; 300]);
    for cut in 0..msg.len() {
        assert!(open(&k, C2S, &msg[..cut]).is_err(), "cut at {cut}");
    }
    let mut longer = msg.clone();
    longer.push(0);
    assert_eq!(open(&k, C2S, &longer), Err(Error::Malformed));
    assert_eq!(open(&k, C2S, b""), Err(Error::Malformed));
    assert_eq!(open(&k, C2S, b"not openpgp"), Err(Error::Malformed));
}

/// Sequoia's own message writer, given the same key: what another RFC 9580 implementation
/// sends (the salt from sequoia's generator, its own chunking).
fn sequoia_seal(key: &[u8], plain: &[u8], aead: AEADAlgorithm) -> Vec<u8> {
    let mut out = Vec::new();
    {
        let m = Message::new(&mut out);
        let m = Encryptor::with_session_key(m, SymmetricAlgorithm::AES256, SessionKey::from(key))
            .expect("encryptor")
            .aead_algo(aead)
            .build()
            .expect("build");
        let mut w = LiteralWriter::new(m).build().expect("literal");
        w.write_all(plain).expect("write");
        w.finalize().expect("finalize");
    }
    out
}

#[test]
fn opens_what_sequoia_writes_and_refuses_other_algorithms() {
    let k = keys();
    let msg = sequoia_seal(&key_bytes(&k, C2S), b"from sequoia", AEADAlgorithm::GCM);
    assert_eq!(open(&k, C2S, &msg).as_deref(), Ok(&b"from sequoia"[..]));
    let eax = sequoia_seal(&key_bytes(&k, C2S), b"eax", AEADAlgorithm::EAX);
    assert_eq!(open(&k, C2S, &eax), Err(Error::PolicyRejected));
}

struct KeyHelper(Vec<u8>);

impl VerificationHelper for KeyHelper {
    fn get_certs(&mut self, _: &[openpgp::KeyHandle]) -> openpgp::Result<Vec<openpgp::Cert>> {
        Ok(Vec::new())
    }
    fn check(&mut self, _: MessageStructure) -> openpgp::Result<()> {
        Ok(())
    }
}

impl DecryptionHelper for KeyHelper {
    fn decrypt(
        &mut self,
        _: &[openpgp::packet::PKESK],
        _: &[openpgp::packet::SKESK],
        algo: Option<SymmetricAlgorithm>,
        decrypt: &mut dyn FnMut(Option<SymmetricAlgorithm>, &SessionKey) -> bool,
    ) -> openpgp::Result<Option<openpgp::Cert>> {
        assert!(decrypt(algo, &SessionKey::from(self.0.as_slice())));
        Ok(None)
    }
}

#[test]
fn sequoia_opens_what_we_write() {
    // One chunk, and three (chunks are at most 4 MiB).
    for len in [5000usize, (9 << 20) + 7] {
        sequoia_opens(len);
    }
}

fn sequoia_opens(len: usize) {
    let k = keys();
    let plain: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
    let msg = seal(&k, S2C, &plain);
    let policy = StandardPolicy::new();
    let mut d = DecryptorBuilder::from_bytes(&msg)
        .expect("parse")
        .with_policy(&policy, None, KeyHelper(key_bytes(&k, S2C)))
        .expect("decrypt");
    let mut out = Vec::new();
    std::io::copy(&mut d, &mut out).expect("read");
    assert_eq!(out, plain);
}

#[test]
fn secrets_round_trip_and_bad_lengths_are_refused() {
    let k = keys();
    let again = ChannelKeys::from_secret(&k.secret()).expect("from secret");
    let msg = seal(&k, C2S, b"x");
    assert_eq!(open(&again, C2S, &msg).as_deref(), Ok(&b"x"[..]));
    assert!(ChannelKeys::from_secret(&[0u8; 63]).is_err());
}

/// The same packet with its body re-sent in partial-length parts of 2^`power` bytes (as a
/// streaming writer would), the last part with a definite length.
fn as_partial(msg: &[u8], power: u8) -> Vec<u8> {
    assert_eq!(msg[1], 0xff, "test input must have a five-octet length");
    let body = &msg[6..];
    let part = 1usize << power;
    let mut out = vec![msg[0]];
    let mut rest = body;
    while rest.len() > part {
        out.push(224 + power);
        out.extend_from_slice(&rest[..part]);
        rest = &rest[part..];
    }
    out.push(0xff);
    out.extend_from_slice(&(rest.len() as u32).to_be_bytes());
    out.extend_from_slice(rest);
    out
}

#[test]
fn opens_messages_sent_in_partial_body_parts() {
    let k = keys();
    let plain = vec![9u8; 300_000];
    let msg = as_partial(&seal(&k, C2S, &plain), 12);
    assert_eq!(msg[1], 224 + 12);
    assert_eq!(open(&k, C2S, &msg), Ok(plain.clone()));
    let theirs = as_partial(&sequoia_seal(&key_bytes(&k, C2S), &plain, AEADAlgorithm::GCM), 9);
    assert_eq!(open(&k, C2S, &theirs), Ok(plain));
    let mut trailing = msg.clone();
    trailing.extend_from_slice(&msg);
    assert!(open(&k, C2S, &trailing).is_err(), "a second message after the first is refused");
}

#[test]
fn partial_messages_with_a_flipped_byte_are_refused() {
    let k = keys();
    let plain = vec![7u8; 20_000];
    let msg = as_partial(&seal(&k, C2S, &plain), 10);
    assert_eq!(open(&k, C2S, &msg), Ok(plain));
    // Length octets, salt, chunk data and the final tag, in every part.
    for i in (1..msg.len()).step_by(97).chain([1, 1025, msg.len() - 1]) {
        let mut bad = msg.clone();
        bad[i] ^= 0x01;
        assert!(open(&k, C2S, &bad).is_err(), "byte {i} flipped was accepted");
    }
}
