//! Decryption, with signature checking when the caller names its expected signers.
//!
//! Only encrypted messages are accepted: sequoia's `Decryptor` happily passes a bare
//! literal-data packet through as if it had been decrypted, so `check` refuses any message
//! whose outermost layer is not an encryption container.
//!
//! Plaintext is released to the caller only after the whole message has been read and the
//! integrity check and signature checks have passed; on any failure it is dropped.

use std::io::{Read, Write};
use std::sync::Arc;

use sequoia_openpgp as openpgp;
use openpgp::cert::prelude::*;
use openpgp::crypto::SessionKey;
use openpgp::packet::{PKESK, SKESK};
use openpgp::parse::stream::{
    DecryptionHelper, DecryptorBuilder, MessageLayer, MessageStructure, VerificationHelper,
};
use openpgp::parse::Parse;
use openpgp::types::SymmetricAlgorithm;
use openpgp::KeyHandle;

use crate::error::{classify, classify_io, Context, Error, Result};
use crate::keys::SecretKey;
use crate::policy::POLICY;
use crate::verify::SignatureReport;

/// How much plaintext sequoia holds back internally before releasing it. We hold back the
/// whole plaintext ourselves (it goes to the caller only on success), so sequoia's own
/// 25 MiB default would only double the peak memory of large messages.
const SEQUOIA_BUFFER: usize = 64 * 1024;
const READ_CHUNK: usize = 64 * 1024;

struct Helper<'k> {
    key: &'k SecretKey,
    expected: Option<Vec<Cert>>,
    opened: bool,
    signers: Vec<String>,
    /// Our own verdict from `check`, which sequoia may hand back wrapped beyond recognition.
    failure: Option<Error>,
}

impl Helper<'_> {
    fn fail(&mut self, e: Error) -> anyhow::Error {
        self.failure = Some(e);
        e.into()
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
        let mut report = SignatureReport::default();
        report.absorb(&structure);
        if self.expected.is_some() {
            match report.require() {
                Ok(signers) => self.signers = signers,
                Err(e) => return Err(self.fail(e)),
            }
        }
        Ok(())
    }
}

impl DecryptionHelper for &mut Helper<'_> {
    fn decrypt(
        &mut self,
        pkesks: &[PKESK],
        _skesks: &[SKESK],
        sym_algo: Option<SymmetricAlgorithm>,
        decrypt: &mut dyn FnMut(Option<SymmetricAlgorithm>, &SessionKey) -> bool,
    ) -> openpgp::Result<Option<Cert>> {
        for pkesk in pkesks {
            let recipient = pkesk.recipient();
            for kp in self.key.decryptors() {
                let ours = match &recipient {
                    // Anonymous recipient ("wildcard"): try every key we hold.
                    None => true,
                    Some(h) => h.aliases(&kp.public().key_handle()),
                };
                if !ours {
                    continue;
                }
                let mut kp = kp.clone();
                if let Some((algo, sk)) = pkesk.decrypt(&mut kp, sym_algo) {
                    if decrypt(algo, &sk) {
                        self.opened = true;
                        return Ok(None);
                    }
                }
            }
        }
        Err(self.fail(Error::NoMatchingKey))
    }
}

/// Decrypts `msg` with `key` into `sink`; with `expected` signers, a good signature by one
/// of them is required. Returns the primary fingerprints of the verified signers.
pub fn decrypt<W: Write>(
    msg: &[u8],
    key: &SecretKey,
    expected: Option<&[Arc<Cert>]>,
    mut sink: W,
) -> Result<Vec<String>> {
    let mut helper = Helper {
        key,
        expected: expected.map(|cs| cs.iter().map(|c| (**c).clone()).collect()),
        opened: false,
        signers: Vec::new(),
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
        (Ok(()), _) => Ok(std::mem::take(&mut helper.signers)),
        (Err(_), Some(ours)) => Err(ours),
        // Once a session key opened the message, a parse failure inside it means the
        // ciphertext was altered (SEIPD has no other way to produce garbage).
        (Err(Error::Malformed), None) if helper.opened => Err(Error::Tampered),
        (Err(e), None) => Err(e),
    }
}
