//! decrypt::decrypt_with as the NIF calls it: the fixed keys of the seed messages, the
//! signer's signature required. No password: the NIF never offers one (only SOP does), and
//! each SKESK tried costs sequoia's default S2K (~65 MB hashed), which would bring this
//! target to a few hundred executions a second.
#![no_main]
use couch_pgp_nif::decrypt::{decrypt_with, DecryptOptions};
use couch_pgp_nif::error::Error;
use couch_pgp_nif_fuzz::{RECIPIENT, RECIPIENT_V6, SIGNER_CERT};
use libfuzzer_sys::fuzz_target;

fuzz_target!(init: couch_pgp_nif_fuzz::init(), |data: &[u8]| {
    let keys = [&*RECIPIENT, &*RECIPIENT_V6];
    let certs = [SIGNER_CERT.clone()];
    let opts = DecryptOptions {
        keys: &keys,
        verify_with: Some(&certs),
        require_signature: true,
        ..Default::default()
    };
    let mut plain = Vec::new();
    match decrypt_with(data, &opts, &mut plain) {
        Ok(d) => assert!(!d.signers.is_empty(), "required signature missing but decrypt succeeded"),
        Err(e) => assert_ne!(e, Error::Internal, "input reached Error::Internal"),
    }
    couch_pgp_nif_fuzz::check_caught_panics();
});
