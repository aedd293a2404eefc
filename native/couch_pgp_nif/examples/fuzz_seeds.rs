//! Writes the seed corpora of the fuzz targets (fuzz/, see notes/README-fuzz.md):
//! `fuzz_seeds <dir>` fills `<dir>/<target>/` with real messages, signatures, certificates,
//! secret keys and JSON made with the fixed keys in fuzz/keys/ (so that mutations of a seed
//! reach the layers behind its outer packets), and copies in fuzz/seeds/<target>/, the
//! committed seeds made by other implementations (sqop, gpg).
//! `fuzz_seeds --new-v6-key <file>` made fuzz/keys/recipient-v6.key once.
//!
//! cargo run --release --no-default-features --features crypto-nettle --example fuzz_seeds -- DIR

use std::fs;
use std::path::{Path, PathBuf};

use couch_pgp_nif::armor::{armor, Label};
use couch_pgp_nif::certs;
use couch_pgp_nif::encrypt::{encrypt, EncryptOptions};
use couch_pgp_nif::inline::{inline_sign, InlineMode};
use couch_pgp_nif::keys::{self, GenerateOptions, Profile, SecretKey};
use couch_pgp_nif::sign::{sign_detached_with, SignOptions};

const SIGNED_DATA: &[u8] = b"couch_pgp fuzz: signed data\n";
const PASSWORD: &[u8] = b"fuzz";
const KEYS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fuzz/keys");
const SEEDS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fuzz/seeds");
const VECTORS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../test/vectors/canonical_json.json");

fn read(name: &str) -> Vec<u8> {
    fs::read(Path::new(KEYS).join(name)).expect("fuzz key file")
}

fn secret(name: &str) -> SecretKey {
    keys::import_secret(&read(name), b"").expect("fuzz key imports")
}

struct Out(PathBuf);

impl Out {
    fn put(&self, target: &str, name: &str, bytes: &[u8]) {
        let dir = self.0.join(target);
        fs::create_dir_all(&dir).expect("mkdir");
        fs::write(dir.join(name), bytes).expect("write seed");
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--new-v6-key") {
        let k = keys::generate(&GenerateOptions {
            user_id: Some("fuzz recipient v6 <recipient-v6@fuzz.invalid>".into()),
            profile: Profile::Rfc9580,
            ..Default::default()
        })
        .expect("keygen");
        fs::write(&args[1], keys::export_key(&k, None, true).expect("export")).expect("write");
        return;
    }
    let out = Out(PathBuf::from(args.first().expect("usage: fuzz_seeds DIR")));

    let recipient = secret("recipient.key");
    let recipient_v6 = secret("recipient-v6.key");
    let signer = secret("signer.key");
    let rc = certs::parse(recipient.public_armored().expect("armor")).expect("cert");
    let rc6 = certs::parse(recipient_v6.public_armored().expect("armor")).expect("cert");
    let sc = certs::parse(&read("signer.cert")).expect("cert");

    // Encrypted messages, as clients send them (signed, to the session key), and variants.
    let plain = br#"{"v":1,"method":"PUT","path":"/db/doc","query":"","ts":1764370000000,"nonce":"AAAAAAAAAAAAAAAAAAAAAA==","content_type":"application/json","body":"{}"}"#;
    let mut n = 0;
    for (to, tag) in [(vec![&*rc], "v4"), (vec![&*rc6], "v6"), (vec![&*rc, &*rc6], "both")] {
        for armor in [false, true] {
            for (sign, pw) in [(true, false), (false, false), (true, true)] {
                let pws: &[&[u8]] = if pw { &[PASSWORD] } else { &[] };
                let opts = EncryptOptions {
                    sign_with: sign.then_some(&signer),
                    armor,
                    passwords: pws,
                    ..Default::default()
                };
                let mut m = Vec::new();
                encrypt(plain, &to, &opts, &mut m).expect("encrypt");
                n += 1;
                out.put("decrypt", &format!("{n:02}-{tag}-armor{armor}-sign{sign}-pw{pw}"), &m);
            }
        }
    }
    let mut m = Vec::new();
    let opts = EncryptOptions { sign_with: Some(&signer), passwords: &[PASSWORD], ..Default::default() };
    encrypt(b"password only", &[], &opts, &mut m).expect("encrypt");
    out.put("decrypt", "password-only", &m);

    // Session channel requests under the channel target's fixed keys, in both directions
    // (a response is a refusal the target must reach too), binary and armored.
    let ch = couch_pgp_nif::channel::ChannelKeys::from_secret(&[7u8; 64]).expect("channel keys");
    for (dir, tag) in [
        (couch_pgp_nif::channel::Direction::ClientToServer, "c2s"),
        (couch_pgp_nif::channel::Direction::ServerToClient, "s2c"),
    ] {
        let mut m = Vec::new();
        couch_pgp_nif::channel::seal(&ch, dir, plain, &mut m).expect("seal");
        out.put("channel", &format!("{tag}.bin"), &m);
        let mut a = Vec::new();
        couch_pgp_nif::armor::armor(&m, couch_pgp_nif::armor::Label::Message, &mut a).expect("armor");
        out.put("channel", &format!("{tag}.asc"), &a);
    }

    // Signatures: detached over SIGNED_DATA, inline and cleartext.
    for (text, armor) in [(false, false), (false, true), (true, false), (true, true)] {
        let mut s = Vec::new();
        sign_detached_with(SIGNED_DATA, &[&signer], SignOptions { armor, text }, &mut s).expect("sign");
        out.put("verify_detached", &format!("text{text}-armor{armor}"), &s);
        out.put("armor", &format!("sig-armor{armor}-text{text}"), &s);
    }
    let mut s = Vec::new();
    sign_detached_with(SIGNED_DATA, &[&signer, &recipient_v6], SignOptions { armor: false, text: false }, &mut s)
        .expect("sign");
    out.put("verify_detached", "two-signers", &s);
    for (mode, armor) in [(InlineMode::Binary, false), (InlineMode::Binary, true), (InlineMode::Text, false), (InlineMode::Cleartext, true)] {
        let mut m = Vec::new();
        inline_sign(SIGNED_DATA, &[&signer], mode, armor, &mut m).expect("inline sign");
        out.put("inline_verify", &format!("{mode:?}-armor{armor}"), &m);
        out.put("decrypt", &format!("not-encrypted-{mode:?}-armor{armor}"), &m);
        out.put("armor", &format!("inline-{mode:?}-armor{armor}"), &m);
    }

    // Certificates and secret keys.
    for (name, k) in [("recipient", &recipient), ("recipient-v6", &recipient_v6), ("signer", &signer)] {
        let public = k.public_armored().expect("armor").to_vec();
        let binary = k.public_binary().expect("binary");
        out.put("cert", &format!("{name}.asc"), &public);
        out.put("cert", &format!("{name}.bin"), &binary);
        out.put("armor", &format!("{name}.cert.asc"), &public);
        out.put("secret_key", &format!("{name}.asc"), &keys::export_key(k, None, true).expect("export"));
        out.put("secret_key", &format!("{name}.bin"), &keys::export_key(k, None, false).expect("export"));
        match keys::export_key(k, Some(PASSWORD), false) {
            Ok(p) => out.put("secret_key", &format!("{name}-protected.bin"), &p),
            Err(e) => eprintln!("fuzz_seeds: {name}: protected export refused: {e:?}"),
        }
    }
    let ring = certs::serialize_many(&[&rc, &rc6, &sc], false).expect("ring");
    out.put("cert", "keyring.bin", &ring);
    let mut armored_ring = Vec::new();
    armor(&ring, Label::PublicKey, &mut armored_ring).expect("armor");
    out.put("armor", "keyring.asc", &armored_ring);
    let mut tsks = keys::export_key(&signer, None, false).expect("export");
    tsks.extend(keys::export_key(&recipient, Some(PASSWORD), false).expect("export"));
    out.put("secret_key", "two-keys.bin", &tsks);

    // JSON: every input of the shared canonical-JSON vectors, and envelopes.
    let vectors: serde_json::Value =
        serde_json::from_slice(&fs::read(VECTORS).expect("vectors")).expect("vectors parse");
    for group in ["cases", "invalid"] {
        for (i, case) in vectors[group].as_array().into_iter().flatten().enumerate() {
            if let Some(input) = case["input"].as_str() {
                out.put("json", &format!("{group}-{i:02}"), input.as_bytes());
            }
        }
    }
    out.put("json", "envelope", plain);
    out.put("json", "tunnel-inner", br#"{"method":"GET","path":"/db/_changes","query":"since=0","headers":{"accept":"application/json"},"body":"","body_base64":false}"#);

    // Seeds made by other implementations, committed under fuzz/seeds/.
    for entry in fs::read_dir(SEEDS).into_iter().flatten().flatten() {
        let target = entry.file_name().to_string_lossy().into_owned();
        for f in fs::read_dir(entry.path()).into_iter().flatten().flatten() {
            let bytes = fs::read(f.path()).expect("seed");
            out.put(&target, &f.file_name().to_string_lossy(), &bytes);
        }
    }
}
