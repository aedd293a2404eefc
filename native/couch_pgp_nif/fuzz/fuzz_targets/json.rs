//! canonical::from_text and canonicalize: JSON from clients (envelopes, signed documents).
#![no_main]
use couch_pgp_nif::canonical::{canonicalize, from_text, Json, MAX_SAFE_INTEGER};
use couch_pgp_nif::error::JsonError;
use libfuzzer_sys::fuzz_target;

/// A double that ECMAScript lays out as a bare integer beyond 2^53 (a text like
/// `1e17` or `9007199254740993.5`): accepted as a double, by design shared with the JS
/// client, but its canonical text reads back as an out-of-range integer. See
/// notes/README-fuzz.md, finding 1.
fn has_big_integral_float(v: &Json) -> bool {
    match v {
        Json::Float(f) => f.abs() > MAX_SAFE_INTEGER as f64 && f.abs() < 1e21 && f.fract() == 0.0,
        Json::Array(items) => items.iter().any(has_big_integral_float),
        Json::Object(members) => members.iter().any(|(_, v)| has_big_integral_float(v)),
        _ => false,
    }
}

fuzz_target!(|data: &[u8]| {
    if let Ok(v) = from_text(data) {
        if let Ok(c) = canonicalize(&v) {
            // Canonical JSON is a fixed point: it parses, and canonicalizes to itself.
            match from_text(&c) {
                Ok(back) => assert_eq!(canonicalize(&back).ok().as_deref(), Some(c.as_slice())),
                Err(e) => assert!(
                    e == JsonError::NumberOutOfRange && has_big_integral_float(&v),
                    "canonical output does not parse: {e:?}"
                ),
            }
        }
    }
});
