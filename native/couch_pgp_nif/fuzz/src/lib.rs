//! What the fuzz targets share: the fixed keys that seed messages are made with (so that a
//! mutated seed still reaches the decryption and verification code behind the outer
//! packets), and the check that turns a new sequoia panic into a libFuzzer crash.

use std::sync::Arc;

use couch_pgp_nif::certs::{self, Cert};
use couch_pgp_nif::keys::{self, SecretKey};
use once_cell::sync::Lazy;

/// The data every seed detached signature signs.
pub const SIGNED_DATA: &[u8] = b"couch_pgp fuzz: signed data\n";
/// The password of the password-encrypted seed messages and protected seed keys.
pub const PASSWORD: &[u8] = b"fuzz";

pub static RECIPIENT: Lazy<SecretKey> = Lazy::new(|| secret(include_bytes!("../keys/recipient.key")));
pub static RECIPIENT_V6: Lazy<SecretKey> =
    Lazy::new(|| secret(include_bytes!("../keys/recipient-v6.key")));
pub static SIGNER: Lazy<SecretKey> = Lazy::new(|| secret(include_bytes!("../keys/signer.key")));
pub static SIGNER_CERT: Lazy<Arc<Cert>> = Lazy::new(|| {
    certs::parse(include_bytes!("../keys/signer.cert")).expect("keys/signer.cert parses")
});

fn secret(bytes: &[u8]) -> SecretKey {
    keys::import_secret(bytes, b"").expect("the committed fuzz keys import")
}

/// Panics that `no_panic` turned into an error, by location, that are known and accepted:
/// sequoia's own `unwrap`s that the guard exists for. Anything else is a finding.
const KNOWN: &[&str] = &[
    // `reader.data_consume_hard(bl + 2).unwrap()` after a SEIPDv1 packet's header, reached by
    // a truncated SEIPD body; the reason `no_panic` exists (tests/openpgp.rs
    // `truncated_seipd_body_panics_in_sequoia_but_not_here`). Found again by `decrypt`
    // within seconds.
    "sequoia-openpgp-2.4.2/src/parse.rs:6367",
];

/// Call after each input: a panic caught by `no_panic` at a location not in `KNOWN` aborts
/// the run, so libFuzzer saves the input. Set FUZZ_ALLOW_CAUGHT_PANICS=1 to only print them.
pub fn check_caught_panics() {
    let caught = couch_pgp_nif::error::fuzzing::take_caught_panics();
    let new: Vec<_> = caught.iter().filter(|at| !KNOWN.iter().any(|k| at.ends_with(k))).collect();
    if new.is_empty() {
        return;
    }
    if std::env::var_os("FUZZ_ALLOW_CAUGHT_PANICS").is_some() {
        eprintln!("caught panic (turned into an error) at {new:?}");
    } else {
        panic!("a panic was turned into an error by no_panic at {new:?}: a new sequoia panic");
    }
}

/// Forces the lazily imported keys before the first input, so that their cost and any
/// failure is not blamed on an input.
pub fn init() {
    Lazy::force(&RECIPIENT);
    Lazy::force(&RECIPIENT_V6);
    Lazy::force(&SIGNER);
    Lazy::force(&SIGNER_CERT);
}
