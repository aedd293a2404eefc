//! certs::parse / import / parse_keyring: a client's certificate (session start, login,
//! /_pgp/certs, verify_with lists).
#![no_main]
use couch_pgp_nif::certs;
use libfuzzer_sys::fuzz_target;

fuzz_target!(init: couch_pgp_nif_fuzz::init(), |data: &[u8]| {
    if let Ok(cert) = certs::parse(data) {
        let _ = certs::validate(&cert, None);
        let _ = certs::fingerprint_hex(&cert);
        // What import hands back must import again, to the same certificate.
        if let Ok(armored) = certs::import(data) {
            let again = certs::parse(&armored).expect("import's own output parses");
            assert_eq!(again.fingerprint(), cert.fingerprint());
        }
    }
    let _ = certs::parse_keyring(data);
    couch_pgp_nif_fuzz::check_caught_panics();
});
