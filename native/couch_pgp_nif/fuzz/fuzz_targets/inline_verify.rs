//! inline::inline_verify: one-pass-signed and cleartext-signed messages.
#![no_main]
use couch_pgp_nif::inline::inline_verify;
use couch_pgp_nif::verify::Window;
use couch_pgp_nif_fuzz::SIGNER_CERT;
use libfuzzer_sys::fuzz_target;

fuzz_target!(init: couch_pgp_nif_fuzz::init(), |data: &[u8]| {
    let certs = [SIGNER_CERT.clone()];
    let mut out = Vec::new();
    if let Ok(v) = inline_verify(data, &certs, Window::default(), &mut out) {
        assert!(!v.is_empty());
    }
    couch_pgp_nif_fuzz::check_caught_panics();
});
