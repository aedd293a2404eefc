//! canonical::from_text and canonicalize: JSON from clients (envelopes, signed documents).
#![no_main]
use couch_pgp_nif::canonical::{canonicalize, from_text};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(v) = from_text(data) {
        if let Ok(c) = canonicalize(&v) {
            // Canonical JSON is a fixed point: it parses, and canonicalizes to itself.
            let back = from_text(&c).expect("canonical output parses");
            assert_eq!(canonicalize(&back).ok().as_deref(), Some(c.as_slice()));
        }
    }
});
