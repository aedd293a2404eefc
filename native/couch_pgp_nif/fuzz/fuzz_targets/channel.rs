//! channel::open_request: what a client sends in the session channel (before anything about
//! it is trusted: the AEAD tag is checked inside).
#![no_main]
use couch_pgp_nif::channel::{open_request, ChannelKeys};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Fixed keys, so that the corpus (made by fuzz_seeds with the same secret) stays openable.
    let Ok(keys) = ChannelKeys::from_secret(&[7u8; 64]) else { return };
    let _ = open_request(&keys, data, 1 << 20);
});
