//! Decryption, with signature checking when the caller names its expected signers.
//!
//! Only encrypted messages are accepted: sequoia's `Decryptor` happily passes a bare
//! literal-data packet through as if it had been decrypted, so `check` refuses any message
//! whose outermost layer is not an encryption container.
//!
//! Plaintext is released to the caller only after the whole message has been read and the
//! integrity check and signature checks have passed; on any failure it is dropped.
//!
//! A message is opened by whichever of the caller's secrets fits: a session key given
//! outright, a secret key named by (or, for anonymous recipients, tried against) a PKESK,
//! or a password for an SKESK.

use std::io::{Read, Write};
use std::sync::Arc;

use sequoia_openpgp as openpgp;
use openpgp::cert::prelude::*;
use openpgp::crypto::{Password, SessionKey};
use openpgp::packet::{PKESK, SKESK};
use openpgp::parse::stream::{
    DecryptionHelper, DecryptorBuilder, MessageLayer, MessageStructure, VerificationHelper,
};
use openpgp::parse::Parse;
use openpgp::types::SymmetricAlgorithm;
use openpgp::KeyHandle;

use crate::error::{classify, classify_io, no_panic, Context, Error, Result};
use crate::keys::SecretKey;
use crate::policy::POLICY;
use crate::verify::{SignatureReport, Verification, Window};

/// How much plaintext sequoia holds back internally before releasing it. We hold back the
/// whole plaintext ourselves (it goes to the caller only on success), so sequoia's own
/// 25 MiB default would only double the peak memory of large messages.
const SEQUOIA_BUFFER: usize = 64 * 1024;
const READ_CHUNK: usize = 64 * 1024;
/// Secret-key attempts on one message's recipient packets (see `Helper::decrypt`).
pub const MAX_KEY_ATTEMPTS: usize = 8;

/// A symmetric session key as SOP writes it: the cipher octet (absent for SEIPDv2, whose
/// packet names the cipher itself) and the key bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct RawSessionKey {
    pub algo: Option<u8>,
    pub key: Vec<u8>,
}

impl std::fmt::Debug for RawSessionKey {
    // Never print the key itself.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RawSessionKey({:?}, {} bytes)", self.algo, self.key.len())
    }
}

/// What to open a message with and what to check about its signatures.
#[derive(Default)]
pub struct DecryptOptions<'a> {
    pub keys: &'a [&'a SecretKey],
    pub passwords: &'a [&'a [u8]],
    pub session_keys: &'a [RawSessionKey],
    /// Certificates whose signatures are checked; `None` checks nothing.
    pub verify_with: Option<&'a [Arc<Cert>]>,
    /// Fail unless one of `verify_with` made a good signature (the NIF's contract). Without
    /// it, signatures are only reported (SOP's contract).
    pub require_signature: bool,
    pub window: Window,
}

/// The outcome of a successful decryption.
#[derive(Debug, Default)]
pub struct Decrypted {
    /// Primary fingerprints of the expected signers whose signatures verified.
    pub signers: Vec<String>,
    pub verifications: Vec<Verification>,
    /// The session key that opened the message.
    pub session_key: Option<RawSessionKey>,
}

struct Helper<'a> {
    opts: &'a DecryptOptions<'a>,
    expected: Option<Vec<Cert>>,
    opened: bool,
    report: Option<SignatureReport>,
    session_key: Option<RawSessionKey>,
    /// Our own verdict from `check`, which sequoia may hand back wrapped beyond recognition.
    failure: Option<Error>,
}

impl Helper<'_> {
    fn fail(&mut self, e: Error) -> anyhow::Error {
        self.failure = Some(e);
        e.into()
    }

    fn opened_with(&mut self, algo: Option<SymmetricAlgorithm>, sk: &SessionKey) {
        self.opened = true;
        self.session_key = Some(RawSessionKey { algo: algo.map(u8::from), key: sk.to_vec() });
    }
}

impl VerificationHelper for &mut Helper<'_> {
    fn get_certs(&mut self, _ids: &[KeyHandle]) -> openpgp::Result<Vec<Cert>> {
        Ok(self.expected.clone().unwrap_or_default())
    }

    fn check(&mut self, structure: MessageStructure) -> openpgp::Result<()> {
        match structure.iter().next() {
            Some(MessageLayer::Encryption { .. }) => {}
            _ => return Err(self.fail(Error::NotEncrypted)),
        }
        let mut report = SignatureReport { window: self.opts.window, ..Default::default() };
        report.absorb(&structure);
        if self.expected.is_some() && self.opts.require_signature {
            let verified = report.verified.clone();
            match report.require() {
                Ok(signers) => {
                    report = SignatureReport { good: signers, verified, ..Default::default() };
                }
                Err(e) => return Err(self.fail(e)),
            }
        }
        self.report = Some(report);
        Ok(())
    }
}

impl DecryptionHelper for &mut Helper<'_> {
    fn decrypt(
        &mut self,
        pkesks: &[PKESK],
        skesks: &[SKESK],
        sym_algo: Option<SymmetricAlgorithm>,
        decrypt: &mut dyn FnMut(Option<SymmetricAlgorithm>, &SessionKey) -> bool,
    ) -> openpgp::Result<Option<Cert>> {
        for raw in self.opts.session_keys {
            let algo = match raw.algo {
                Some(a) => Some(SymmetricAlgorithm::from(a)),
                None => sym_algo,
            };
            let sk = SessionKey::from(raw.key.as_slice());
            if decrypt(algo, &sk) {
                self.opened_with(algo, &sk);
                return Ok(None);
            }
        }
        // Each attempt is a secret-key operation (an ECDH for Cv25519), and anonymous
        // ("wildcard") recipients are tried against every key: a message packed with them
        // would otherwise buy one such operation per ~90 bytes before anything is
        // authenticated (an encrypted login is that). A real message needs one attempt per
        // recipient packet that may be ours; a few are allowed, then the search stops.
        let mut attempts = 0usize;
        for pkesk in pkesks {
            let recipient = pkesk.recipient();
            for key in self.opts.keys {
                for kp in key.decryptors() {
                    let ours = match &recipient {
                        // Anonymous recipient ("wildcard"): try every key we hold.
                        None => true,
                        Some(h) => h.aliases(kp.public().key_handle()),
                    };
                    if !ours {
                        continue;
                    }
                    if attempts == MAX_KEY_ATTEMPTS {
                        return Err(self.fail(Error::NoMatchingKey));
                    }
                    attempts += 1;
                    let mut kp = kp.clone();
                    if let Some((algo, sk)) = pkesk.decrypt(&mut kp, sym_algo) {
                        if decrypt(algo, &sk) {
                            self.opened_with(algo.or(sym_algo), &sk);
                            return Ok(None);
                        }
                    }
                }
            }
        }
        for skesk in skesks {
            for pw in self.opts.passwords {
                let pw = Password::from(*pw);
                if let Ok((algo, sk)) = skesk.decrypt(&pw) {
                    if decrypt(algo, &sk) {
                        self.opened_with(algo.or(sym_algo), &sk);
                        return Ok(None);
                    }
                }
            }
        }
        let why = if self.opts.keys.is_empty() && !self.opts.passwords.is_empty() {
            Error::BadPassphrase
        } else {
            Error::NoMatchingKey
        };
        Err(self.fail(why))
    }
}

/// Decrypts `msg` with `key` into `sink`; with `expected` signers, a good signature by one
/// of them is required. Returns the primary fingerprints of the verified signers.
pub fn decrypt<W: Write>(
    msg: &[u8],
    key: &SecretKey,
    expected: Option<&[Arc<Cert>]>,
    sink: W,
) -> Result<Vec<String>> {
    let keys = [key];
    let opts = DecryptOptions {
        keys: &keys,
        verify_with: expected,
        require_signature: expected.is_some(),
        ..Default::default()
    };
    decrypt_with(msg, &opts, sink).map(|d| d.signers)
}

/// Decrypts `msg` into `sink` with whatever `opts` offers.
pub fn decrypt_with<W: Write>(msg: &[u8], opts: &DecryptOptions<'_>, sink: W) -> Result<Decrypted> {
    // A cleartext signature (RFC 9580 section 7) is OpenPGP that is by definition not
    // encrypted; sequoia's message parser does not take the framework, so say so here
    // instead of reporting it as malformed.
    if is_cleartext_signed(msg) {
        return Err(Error::NotEncrypted);
    }
    // Crafted ciphertext can reach `unwrap`s inside sequoia's parser.
    no_panic(|| Error::Malformed, || decrypt_guarded(msg, opts, sink))
}

fn decrypt_guarded<W: Write>(msg: &[u8], opts: &DecryptOptions<'_>, mut sink: W) -> Result<Decrypted> {
    let mut helper = Helper {
        opts,
        expected: opts.verify_with.map(|cs| cs.iter().map(|c| (**c).clone()).collect()),
        opened: false,
        report: None,
        session_key: None,
        failure: None,
    };
    let result = (|| -> Result<()> {
        let mut d = DecryptorBuilder::from_bytes(msg)
            .map_err(|e| classify(&e, Context::Message))?
            .buffer_size(SEQUOIA_BUFFER)
            .with_policy(&*POLICY, None, &mut helper)
            .map_err(|e| classify(&e, Context::Message))?;
        let mut buf = vec![0u8; READ_CHUNK];
        loop {
            let n = d.read(&mut buf).map_err(|e| classify_io(&e, Context::Message))?;
            if n == 0 {
                break;
            }
            sink.write_all(&buf[..n]).map_err(|_| Error::Internal)?;
        }
        Ok(())
    })();
    match (result, helper.failure) {
        (Ok(()), _) => {
            let report = helper.report.take().unwrap_or_default();
            Ok(Decrypted {
                signers: report.good,
                verifications: report.verified,
                session_key: helper.session_key.take(),
            })
        }
        (Err(_), Some(ours)) => Err(ours),
        // Once a session key opened the message, a parse failure inside it means the
        // ciphertext was altered (SEIPD has no other way to produce garbage).
        (Err(Error::Malformed), None) if helper.opened => Err(Error::Tampered),
        (Err(e), None) => Err(e),
    }
}

fn is_cleartext_signed(msg: &[u8]) -> bool {
    let start = msg.iter().position(|b| !b.is_ascii_whitespace()).unwrap_or(msg.len());
    msg[start..].starts_with(b"-----BEGIN PGP SIGNED MESSAGE-----")
}
