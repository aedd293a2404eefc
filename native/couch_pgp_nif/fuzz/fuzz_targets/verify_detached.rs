//! verify::verify_detached_all: a detached signature (the input) over fixed data.
#![no_main]
use couch_pgp_nif::verify::{verify_detached_all, Window};
use couch_pgp_nif_fuzz::{SIGNED_DATA, SIGNER_CERT};
use libfuzzer_sys::fuzz_target;

fuzz_target!(init: couch_pgp_nif_fuzz::init(), |data: &[u8]| {
    let certs = [SIGNER_CERT.clone()];
    if let Ok(v) = verify_detached_all(SIGNED_DATA, data, &certs, Window::default()) {
        assert!(!v.is_empty());
    }
    couch_pgp_nif_fuzz::check_caught_panics();
});
