//! keys::import_secret / import_secrets / extract_certs: secret keys from the key store's
//! configuration, session tokens and SOP's KEYS.
#![no_main]
use couch_pgp_nif::keys;
use couch_pgp_nif_fuzz::PASSWORD;
use libfuzzer_sys::fuzz_target;

fuzz_target!(init: couch_pgp_nif_fuzz::init(), |data: &[u8]| {
    if let Ok(k) = keys::import_secret(data, PASSWORD) {
        let _ = k.public_armored();
        let _ = k.signer();
    }
    let _ = keys::import_secrets(data, &[PASSWORD, b""]);
    let _ = keys::extract_certs(data, true);
    couch_pgp_nif_fuzz::check_caught_panics();
});
