//! armor::dearmor and armor::armor: ASCII armor in, binary out, and back.
#![no_main]
use couch_pgp_nif::armor::{armor, dearmor, Label};
use libfuzzer_sys::fuzz_target;

fuzz_target!(init: couch_pgp_nif_fuzz::init(), |data: &[u8]| {
    let mut binary = Vec::new();
    let _ = dearmor(data, &mut binary);
    let mut armored = Vec::new();
    if armor(data, Label::Auto, &mut armored).is_ok() {
        // What armor wrote, dearmor must read.
        let mut again = Vec::new();
        assert!(dearmor(&armored, &mut again).is_ok(), "dearmor refused armor's own output");
    }
    couch_pgp_nif_fuzz::check_caught_panics();
});
