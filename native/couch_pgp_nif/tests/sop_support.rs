//! The core functions the SOP front end (native/couch_pgp_sop) stands on: passwords,
//! several keys, session keys, inline and cleartext signatures, verification details and
//! time windows, armor; plus what the OpenPGP interoperability test suite found.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use couch_pgp_nif::armor::{self, Label};
use couch_pgp_nif::certs::{self, Cert};
use couch_pgp_nif::decrypt::{decrypt_with, DecryptOptions, RawSessionKey};
use couch_pgp_nif::encrypt::{encrypt, EncryptOptions};
use couch_pgp_nif::error::Error;
use couch_pgp_nif::inline::{inline_sign, inline_verify, InlineMode};
use couch_pgp_nif::keys::{self, GenerateOptions, SecretKey};
use couch_pgp_nif::sign::{sign_detached_with, SignOptions};
use couch_pgp_nif::verify::{verify_detached_all, Window};
use sequoia_openpgp as openpgp;
use openpgp::packet::signature::SignatureBuilder;
use openpgp::parse::Parse;
use openpgp::serialize::SerializeInto;
use openpgp::types::{HashAlgorithm, SignatureType};

fn key() -> SecretKey {
    keys::generate(&GenerateOptions { user_id: Some("t <t@example.org>".into()), ..Default::default() })
        .expect("keygen")
}

fn cert_of(k: &SecretKey) -> Arc<Cert> {
    certs::parse(k.public_armored().expect("armor")).expect("parse")
}

fn seal(plain: &[u8], to: &[&Cert], opts: &EncryptOptions<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    encrypt(plain, to, opts, &mut out).expect("encrypt");
    out
}

#[test]
fn password_round_trip_and_wrong_password() {
    let msg = seal(b"by password", &[], &EncryptOptions { passwords: &[b"hunter2"], ..Default::default() });
    let mut out = Vec::new();
    let d = decrypt_with(&msg, &DecryptOptions { passwords: &[b"nope", b"hunter2"], ..Default::default() }, &mut out)
        .expect("decrypt");
    assert_eq!(out, b"by password");
    assert!(d.session_key.is_some());
    let r = decrypt_with(&msg, &DecryptOptions { passwords: &[b"nope"], ..Default::default() }, &mut Vec::new());
    assert_eq!(r.err(), Some(Error::BadPassphrase));
    // An empty password would make an SKESK anyone can open.
    let r = encrypt(b"x", &[], &EncryptOptions { passwords: &[b""], ..Default::default() }, Vec::new());
    assert_eq!(r.err(), Some(Error::EmptyPassphrase));
    assert_eq!(encrypt(b"x", &[], &EncryptOptions::default(), Vec::new()).err(), Some(Error::NoEncryptionKey));
}

#[test]
fn password_and_recipient_each_open_the_message() {
    let bob = key();
    let msg = seal(b"both", &[&cert_of(&bob)], &EncryptOptions { passwords: &[b"pw"], ..Default::default() });
    let mut a = Vec::new();
    decrypt_with(&msg, &DecryptOptions { keys: &[&bob], ..Default::default() }, &mut a).expect("by key");
    let mut b = Vec::new();
    decrypt_with(&msg, &DecryptOptions { passwords: &[b"pw"], ..Default::default() }, &mut b).expect("by password");
    assert_eq!((a.as_slice(), b.as_slice()), (&b"both"[..], &b"both"[..]));
}

#[test]
fn any_of_several_keys_and_the_session_key_open_the_message() {
    let (alice, bob) = (key(), key());
    let msg = seal(b"for bob", &[&cert_of(&bob)], &EncryptOptions::default());
    let mut out = Vec::new();
    let d = decrypt_with(&msg, &DecryptOptions { keys: &[&alice, &bob], ..Default::default() }, &mut out)
        .expect("decrypt");
    assert_eq!(out, b"for bob");
    let sk: RawSessionKey = d.session_key.expect("session key");
    assert_eq!(sk.algo, Some(9), "AES-256 for a SEIPDv1 message");
    // SOP's --with-session-key: no secret key needed.
    let mut again = Vec::new();
    decrypt_with(&msg, &DecryptOptions { session_keys: &[sk], ..Default::default() }, &mut again).expect("by sk");
    assert_eq!(again, b"for bob");
    let r = decrypt_with(&msg, &DecryptOptions { keys: &[&alice], ..Default::default() }, &mut Vec::new());
    assert_eq!(r.err(), Some(Error::NoMatchingKey));
}

#[test]
fn decrypt_reports_signatures_without_requiring_them() {
    let (alice, bob, carol) = (key(), key(), key());
    let msg = seal(b"signed", &[&cert_of(&bob)], &EncryptOptions { sign_with: Some(&alice), ..Default::default() });
    let alice_cert = [cert_of(&alice)];
    let carol_cert = [cert_of(&carol)];
    let opts = DecryptOptions { keys: &[&bob], verify_with: Some(&alice_cert), ..Default::default() };
    let d = decrypt_with(&msg, &opts, &mut Vec::new()).expect("decrypt");
    assert_eq!(d.verifications.len(), 1);
    let v = &d.verifications[0];
    assert_eq!(v.cert_fingerprint, alice.fingerprint());
    assert!(!v.text);
    // Only reported: a signer nobody asked about yields plaintext and no verification.
    let opts = DecryptOptions { keys: &[&bob], verify_with: Some(&carol_cert), ..Default::default() };
    let mut out = Vec::new();
    let d = decrypt_with(&msg, &opts, &mut out).expect("decrypt");
    assert!(d.verifications.is_empty());
    assert_eq!(out, b"signed");
    // Required (the NIF's contract): the same message is refused.
    let opts = DecryptOptions { require_signature: true, ..opts };
    assert_eq!(decrypt_with(&msg, &opts, &mut Vec::new()).err(), Some(Error::UnknownSigner));
}

#[test]
fn detached_signatures_by_several_keys_text_mode_and_time_window() {
    let (alice, bob) = (key(), key());
    let data = b"line one\nline two\n";
    let mut sig = Vec::new();
    let hash = sign_detached_with(data, &[&alice, &bob], SignOptions { armor: true, text: true }, &mut sig)
        .expect("sign");
    assert_eq!(hash, u8::from(HashAlgorithm::SHA512));
    let both = [cert_of(&alice), cert_of(&bob)];
    let found = verify_detached_all(data, &sig, &both, Window::default()).expect("verify");
    assert_eq!(found.len(), 2);
    assert!(found.iter().all(|v| v.text));
    // A text signature does not care about line endings.
    verify_detached_all(b"line one\r\nline two\r\n", &sig, &both, Window::default()).expect("crlf");
    let future = Window { not_before: Some(SystemTime::now() + Duration::from_secs(3600)), not_after: None };
    assert_eq!(verify_detached_all(data, &sig, &both, future).err(), Some(Error::BadSignature));
    let past = Window { not_before: None, not_after: Some(SystemTime::now() - Duration::from_secs(3600)) };
    assert_eq!(verify_detached_all(data, &sig, &both, past).err(), Some(Error::BadSignature));
    assert_eq!(verify_detached_all(b"other", &sig, &both, Window::default()).err(), Some(Error::BadSignature));
    assert_eq!(verify_detached_all(data, b"not a signature", &both, Window::default()).err(), Some(Error::Malformed));
}

#[test]
fn inline_signed_messages_in_every_form() {
    let alice = key();
    let certs = [cert_of(&alice)];
    let data = b"Hello\nWorld\n";
    for (mode, armor) in [
        (InlineMode::Binary, true),
        (InlineMode::Binary, false),
        (InlineMode::Text, true),
        (InlineMode::Cleartext, true),
    ] {
        let mut msg = Vec::new();
        inline_sign(data, &[&alice], mode, armor, &mut msg).expect("sign");
        if mode == InlineMode::Cleartext {
            assert!(msg.starts_with(b"-----BEGIN PGP SIGNED MESSAGE-----"));
        }
        let mut out = Vec::new();
        let found = inline_verify(&msg, &certs, Window::default(), &mut out).expect("verify");
        assert_eq!(out, data, "{mode:?}");
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].text, mode != InlineMode::Binary);
    }
    // Nothing is released when nobody we know signed.
    let mut msg = Vec::new();
    inline_sign(data, &[&alice], InlineMode::Binary, true, &mut msg).expect("sign");
    let other = [cert_of(&key())];
    let mut out = Vec::new();
    assert_eq!(inline_verify(&msg, &other, Window::default(), &mut out).err(), Some(Error::UnknownSigner));
    assert!(out.is_empty());
    // An encrypted message is decrypt's business.
    let sealed = seal(b"x", &[&certs[0]], &EncryptOptions { armor: true, ..Default::default() });
    assert!(inline_verify(&sealed, &certs, Window::default(), &mut Vec::new()).is_err());
}

#[test]
fn armor_labels_and_idempotence() {
    let k = key();
    let public = k.public_binary().expect("binary");
    let secret = keys::export_key(&k, None, false).expect("tsk");
    let mut sig = Vec::new();
    sign_detached_with(b"x", &[&k], SignOptions::default(), &mut sig).expect("sign");
    for (binary, header) in [
        (&public, "-----BEGIN PGP PUBLIC KEY BLOCK-----"),
        (&secret, "-----BEGIN PGP PRIVATE KEY BLOCK-----"),
        (&sig, "-----BEGIN PGP SIGNATURE-----"),
    ] {
        let mut armored = Vec::new();
        armor::armor(binary, Label::Auto, &mut armored).expect("armor");
        assert!(armored.starts_with(header.as_bytes()));
        let mut twice = Vec::new();
        armor::armor(&armored, Label::Auto, &mut twice).expect("armor again");
        assert!(twice.starts_with(header.as_bytes()));
        let (mut back, mut back2) = (Vec::new(), Vec::new());
        armor::dearmor(&twice, &mut back).expect("dearmor");
        armor::dearmor(&back, &mut back2).expect("dearmor binary");
        assert_eq!((&back, &back2), (binary, binary));
    }
    assert_eq!(armor::dearmor(b"plain text", &mut Vec::new()).err(), Some(Error::Malformed));
    assert_eq!(armor::armor(b"plain text", Label::Auto, &mut Vec::new()).err(), Some(Error::Malformed));
}

#[test]
fn keyrings_locked_keys_and_extracted_certificates() {
    let (a, b) = (key(), key());
    let mut ring = keys::export_key(&a, None, true).expect("a");
    ring.extend(keys::export_key(&b, Some(b"pw"), true).expect("b"));
    assert_eq!(keys::import_secrets(&ring, &[]).err(), Some(Error::BadPassphrase));
    let both = keys::import_secrets(&ring, &[b"wrong", b"pw"]).expect("unlocked");
    let fprs: Vec<&str> = both.iter().map(|k| k.fingerprint()).collect();
    assert_eq!(fprs, [a.fingerprint(), b.fingerprint()]);
    // Certificates come out without a passphrase, both in one armor block.
    let armored = keys::extract_certs(&ring, true).expect("certs");
    let parsed = certs::parse_keyring(&armored).expect("keyring");
    assert_eq!(parsed.len(), 2);
    assert!(parsed.iter().all(|c| !c.is_tsk()));
    // A certificate is no key.
    assert_eq!(keys::import_secrets(a.public_armored().expect("pub"), &[]).err(), Some(Error::BadKey));
    assert_eq!(keys::extract_certs(a.public_armored().expect("pub"), true).err(), Some(Error::BadKey));
}

#[test]
fn generate_with_several_user_ids_and_signing_only() {
    let k = keys::generate(&GenerateOptions {
        user_id: Some("A <a@example.org>".into()),
        more_user_ids: vec!["B <b@example.org>".into()],
        signing_only: true,
        ..Default::default()
    })
    .expect("keygen");
    let uids: Vec<String> =
        k.cert().userids().map(|u| String::from_utf8_lossy(u.userid().value()).into_owned()).collect();
    assert_eq!(uids, ["A <a@example.org>", "B <b@example.org>"]);
    assert!(k.decryptors().is_empty());
    let r = encrypt(b"x", &[&cert_of(&k)], &EncryptOptions::default(), Vec::new());
    assert_eq!(r.err(), Some(Error::NoEncryptionKey));
}

/// Found by the interoperability suite ("Hash Algorithms: Detached Sign-Verify roundtrip
/// with key 'Bob', SHA256/SHA384/SHA224"): signatures ignored the signer's preferred hash
/// algorithms and always used SHA-512.
#[test]
fn signatures_use_the_signers_preferred_hash() {
    let k = key();
    let cert = k.cert().clone();
    let mut signer = cert.primary_key().key().clone().parts_into_secret().expect("secret").into_keypair().expect("kp");
    let uid = cert.userids().next().expect("uid");
    let template = SignatureBuilder::from(uid.self_signatures().next().expect("binding").clone())
        .set_signature_creation_time(SystemTime::now() - Duration::from_secs(20))
        .expect("time")
        .set_preferred_hash_algorithms(vec![HashAlgorithm::SHA256])
        .expect("prefs");
    let binding = uid.userid().bind(&mut signer, &cert, template).expect("bind");
    let (cert, _) = cert.insert_packets(binding).expect("insert");
    let k = keys::import_secret(&cert.as_tsk().to_vec().expect("tsk"), b"").expect("import");
    assert_eq!(k.preferred_hash(), Some(HashAlgorithm::SHA256));
    let mut sig = Vec::new();
    let hash = sign_detached_with(b"x", &[&k], SignOptions::default(), &mut sig).expect("sign");
    assert_eq!(hash, u8::from(HashAlgorithm::SHA256));
    let parsed = openpgp::Packet::from_bytes(&sig).expect("packet");
    match parsed {
        openpgp::Packet::Signature(s) => {
            assert_eq!(s.hash_algo(), HashAlgorithm::SHA256);
            assert_eq!(s.typ(), SignatureType::Binary);
        }
        other => panic!("not a signature: {other:?}"),
    }
    // A preference the policy refuses (SHA-1 for new signatures) falls back to the default.
    let weak = SignatureBuilder::from(k.cert().userids().next().expect("uid").binding_signature(&*couch_pgp_nif::policy::POLICY, None).expect("b").clone())
        .set_signature_creation_time(SystemTime::now() - Duration::from_secs(10))
        .expect("time")
        .set_preferred_hash_algorithms(vec![HashAlgorithm::SHA1])
        .expect("prefs");
    let mut signer = k.cert().primary_key().key().clone().parts_into_secret().expect("secret").into_keypair().expect("kp");
    let uid = k.cert().userids().next().expect("uid");
    let binding = uid.userid().bind(&mut signer, k.cert(), weak).expect("bind");
    let (cert, _) = k.cert().clone().insert_packets(binding).expect("insert");
    let k = keys::import_secret(&cert.as_tsk().to_vec().expect("tsk"), b"").expect("import");
    assert_eq!(k.preferred_hash(), None);
}

/// Found by the interoperability suite ("Temporary validity", certificate B): a signature
/// made while the certificate's only user ID was revoked verified, though at that time no
/// binding gave the primary key its signing flag. Before the revocation it still verifies.
#[test]
fn signature_while_every_user_id_is_revoked_is_refused() {
    use openpgp::serialize::stream::{Message, Signer};
    use openpgp::types::ReasonForRevocation;
    use std::io::Write;

    let day = Duration::from_secs(24 * 3600);
    let now = SystemTime::now();
    let k = keys::generate(&GenerateOptions {
        user_id: Some("u <u@example.org>".into()),
        signing_only: true,
        creation_time: Some(now - 10 * day),
        ..Default::default()
    })
    .expect("keygen");
    // Like GnuPG's certificates (and the suite's): the user ID's self-signature is the
    // only binding; sequoia's builder would add a direct-key signature too.
    let cert = openpgp::Cert::from_packets(k.cert().clone().into_packets().filter(
        |p| !matches!(p, openpgp::Packet::Signature(s) if s.typ() == SignatureType::DirectKey),
    ))
    .expect("cert");
    let secret_primary = || k.cert().primary_key().key().clone().parts_into_secret().expect("s").into_keypair().expect("kp");
    let mut primary = secret_primary();
    let uid = cert.userids().next().expect("uid").userid().clone();
    let revocation = uid
        .bind(
            &mut primary,
            &cert,
            SignatureBuilder::new(SignatureType::CertificationRevocation)
                .set_signature_creation_time(now - 5 * day)
                .expect("time")
                .set_reason_for_revocation(ReasonForRevocation::UIDRetired, b"retired")
                .expect("reason"),
        )
        .expect("revoke");
    let (revoked, _) = cert.insert_packets(revocation).expect("insert");
    let public = [Arc::new(revoked.clone().strip_secret_key_material())];

    let sign_at = |t: SystemTime| {
        let mut sig = Vec::new();
        let kp = secret_primary();
        let mut s = Signer::new(Message::new(&mut sig), kp).expect("signer").detached().creation_time(t).build().expect("build");
        s.write_all(b"data").expect("write");
        s.finalize().expect("finalize");
        sig
    };
    let before = sign_at(now - 7 * day);
    let during = sign_at(now - day);
    assert_eq!(verify_detached_all(b"data", &before, &public, Window::default()).expect("before").len(), 1);
    assert_eq!(verify_detached_all(b"data", &during, &public, Window::default()).err(), Some(Error::Revoked));
}

/// Re-binds the user ID of `k` with `edit` applied to its self-signature, and reloads it.
fn rebind(k: &SecretKey, edit: impl FnOnce(SignatureBuilder) -> SignatureBuilder) -> SecretKey {
    let cert = k.cert().clone();
    let mut signer = cert.primary_key().key().clone().parts_into_secret().expect("secret").into_keypair().expect("kp");
    let uid = cert.userids().next().expect("uid");
    let template = SignatureBuilder::from(uid.self_signatures().next().expect("binding").clone())
        .set_signature_creation_time(SystemTime::now() - Duration::from_secs(20))
        .expect("time");
    let binding = uid.userid().bind(&mut signer, &cert, edit(template)).expect("bind");
    let (cert, _) = cert.insert_packets(binding).expect("insert");
    let tsk = cert.as_tsk().to_vec().expect("tsk");
    keys::import_secret(&tsk, b"").expect("import")
}

/// Found by the interoperability suite ("Encrypt-Decrypt roundtrip with key 'Bob',
/// AES128"): messages used AES-256 whatever the recipients preferred.
#[test]
fn encryption_uses_the_recipients_common_aes_cipher() {
    use openpgp::types::SymmetricAlgorithm as Sym;
    let only_128 = rebind(&key(), |b| b.set_preferred_symmetric_algorithms(vec![Sym::AES128]).expect("prefs"));
    let open_algo = |msg: &[u8], k: &SecretKey| {
        decrypt_with(msg, &DecryptOptions { keys: &[k], ..Default::default() }, &mut Vec::new())
            .expect("decrypt")
            .session_key
            .and_then(|s| s.algo)
    };
    let msg = seal(b"x", &[&cert_of(&only_128)], &EncryptOptions::default());
    assert_eq!(open_algo(&msg, &only_128), Some(u8::from(Sym::AES128)));
    // With a recipient preferring AES-256 then AES-128, AES-128 is what both list.
    let default = key();
    let msg = seal(b"x", &[&cert_of(&default), &cert_of(&only_128)], &EncryptOptions::default());
    assert_eq!(open_algo(&msg, &default), Some(u8::from(Sym::AES128)));
    // Our own keys prefer AES-256: unchanged default.
    let msg = seal(b"x", &[&cert_of(&default)], &EncryptOptions::default());
    assert_eq!(open_algo(&msg, &default), Some(u8::from(Sym::AES256)));
    // Preferences naming no AES leave sequoia's default.
    let camellia = rebind(&key(), |b| b.set_preferred_symmetric_algorithms(vec![Sym::Camellia256]).expect("prefs"));
    let msg = seal(b"x", &[&cert_of(&camellia)], &EncryptOptions::default());
    assert_eq!(open_algo(&msg, &camellia), Some(u8::from(Sym::AES256)));
}

/// Found by the interoperability suite ("ECDH Parameters", AES256 with SHA224): an ECDH
/// subkey whose KDF hash is shorter than its key-wrap key made encryption fail with
/// `internal`; it is a recipient that cannot be encrypted to.
#[test]
fn ecdh_subkey_with_unusable_kdf_is_no_encryption_key() {
    use openpgp::packet::key::{Key4, SecretParts, SubordinateRole};
    use openpgp::types::{KeyFlags, SymmetricAlgorithm as Sym};
    let k = keys::generate(&GenerateOptions {
        user_id: Some("e <e@example.org>".into()),
        signing_only: true,
        ..Default::default()
    })
    .expect("keygen");
    let created = SystemTime::now() - Duration::from_secs(30);
    let subkey: openpgp::packet::Key<SecretParts, SubordinateRole> =
        Key4::import_secret_cv25519(&[7u8; 32], HashAlgorithm::SHA224, Sym::AES256, created).expect("subkey").into();
    let cert = k.cert().clone();
    let mut primary = cert.primary_key().key().clone().parts_into_secret().expect("s").into_keypair().expect("kp");
    let binding = subkey
        .bind(
            &mut primary,
            &cert,
            SignatureBuilder::new(SignatureType::SubkeyBinding)
                .set_signature_creation_time(created)
                .expect("time")
                .set_key_flags(KeyFlags::empty().set_transport_encryption().set_storage_encryption())
                .expect("flags"),
        )
        .expect("bind");
    let (cert, _) = cert.insert_packets(vec![openpgp::Packet::from(subkey), binding.into()]).expect("insert");
    let public = cert.strip_secret_key_material();
    let r = encrypt(b"x", &[&public], &EncryptOptions::default(), Vec::new());
    assert_eq!(r.err(), Some(Error::NoEncryptionKey));
}
