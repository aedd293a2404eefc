//! `encrypt` and `decrypt`.

use std::io::{Read, Write};
use std::time::SystemTime;

use couch_pgp_nif::decrypt::{self, DecryptOptions, RawSessionKey};
use couch_pgp_nif::encrypt::{self, EncryptOptions};
use couch_pgp_nif::verify::Window;
use sop::errors::Error as SopError;
use sop::ops::{Decrypt, Encrypt, EncryptAs, Ready};
use sop::{Password, Result, SessionKey};

use crate::errors::{self, Op};
use crate::objects::{password_normalized, password_variants, read_all, Certs, Keys};
use crate::signing::{Signers, Verifiers, MAX_DATA};
use crate::CouchSop;

pub struct Encryption<'s> {
    sop: &'s CouchSop,
    armor: bool,
    text: bool,
    signers: Signers,
    passwords: Vec<Vec<u8>>,
    recipients: Vec<Vec<u8>>,
}

impl<'s> Encryption<'s> {
    pub fn new(sop: &'s CouchSop) -> Self {
        Encryption {
            sop,
            armor: true,
            text: false,
            signers: Signers::default(),
            passwords: Vec::new(),
            recipients: Vec::new(),
        }
    }
}

type EncryptOp<'s> = Box<dyn Encrypt<'s, CouchSop, Certs<'s>, Keys<'s>> + 's>;

impl<'s> Encrypt<'s, CouchSop, Certs<'s>, Keys<'s>> for Encryption<'s> {
    fn no_armor(mut self: Box<Self>) -> EncryptOp<'s> {
        self.armor = false;
        self
    }

    fn list_profiles(&self) -> Vec<(String, String)> {
        vec![(
            "rfc4880".into(),
            "SEIPDv1 unless every recipient advertises SEIPDv2 (default)".into(),
        )]
    }

    fn profile(self: Box<Self>, profile: &str) -> Result<EncryptOp<'s>> {
        match profile {
            "default" | "rfc4880" => Ok(self),
            _ => Err(SopError::UnsupportedProfile),
        }
    }

    fn mode(mut self: Box<Self>, mode: EncryptAs) -> EncryptOp<'s> {
        self.text = mode == EncryptAs::Text;
        self
    }

    fn sign_with_keys(mut self: Box<Self>, keys: &Keys<'s>) -> Result<EncryptOp<'s>> {
        self.signers.add_keys(keys);
        Ok(self)
    }

    fn with_key_password(mut self: Box<Self>, password: Password) -> Result<EncryptOp<'s>> {
        self.signers.add_password(&password);
        Ok(self)
    }

    fn with_password(mut self: Box<Self>, password: Password) -> Result<EncryptOp<'s>> {
        let p = password_normalized(&password);
        if p.is_empty() {
            return Err(SopError::PasswordNotHumanReadable);
        }
        self.passwords.push(p);
        Ok(self)
    }

    fn with_certs(mut self: Box<Self>, certs: &Certs<'s>) -> Result<EncryptOp<'s>> {
        // Parsed now, so a key or garbage where a certificate belongs fails early.
        certs.parse()?;
        self.recipients.push(certs.bytes.clone());
        Ok(self)
    }

    fn plaintext<'d>(
        self: Box<Self>,
        plaintext: &'d mut (dyn Read + Send + Sync),
    ) -> Result<Box<dyn Ready<Option<SessionKey>> + 'd>>
    where
        's: 'd,
    {
        if self.recipients.is_empty() && self.passwords.is_empty() {
            return Err(SopError::MissingArg);
        }
        Ok(Box::new(PendingEncrypt { op: *self, plaintext }))
    }
}

struct PendingEncrypt<'s, 'd> {
    op: Encryption<'s>,
    plaintext: &'d mut (dyn Read + Send + Sync),
}

impl Ready<Option<SessionKey>> for PendingEncrypt<'_, '_> {
    fn to_writer(self: Box<Self>, sink: &mut (dyn Write + Send + Sync)) -> Result<Option<SessionKey>> {
        let op = self.op;
        let signers = op.signers.load(op.sop, Op::Encrypt)?;
        let signer_refs: Vec<_> = signers.iter().collect();
        let mut certs = Vec::new();
        for bytes in &op.recipients {
            certs.extend(Certs::from_vec(op.sop, bytes.clone()).parse()?);
        }
        let cert_refs: Vec<_> = certs.iter().map(|c| &**c).collect();
        let passwords: Vec<&[u8]> = op.passwords.iter().map(Vec::as_slice).collect();
        let plain = read_all(self.plaintext, MAX_DATA)?;
        if op.text && std::str::from_utf8(&plain).is_err() {
            return Err(SopError::ExpectedText);
        }
        let opts = EncryptOptions {
            sign_with: None,
            armor: op.armor,
            also_sign_with: &signer_refs,
            passwords: &passwords,
            text: op.text,
        };
        let mut out = Vec::with_capacity(plain.len() + 1024);
        encrypt::encrypt(&plain, &cert_refs, &opts, &mut out).map_err(|e| {
            op.sop.trace(format_args!("encrypt: {e}"));
            errors::map(e, Op::Encrypt)
        })?;
        sink.write_all(&out)?;
        Ok(None)
    }
}

pub struct Decryption<'s> {
    sop: &'s CouchSop,
    keys: Vec<Vec<u8>>,
    key_passwords: Vec<Vec<u8>>,
    passwords: Vec<Vec<u8>>,
    session_keys: Vec<RawSessionKey>,
    verifiers: Verifiers,
    window: Window,
}

impl<'s> Decryption<'s> {
    pub fn new(sop: &'s CouchSop) -> Self {
        Decryption {
            sop,
            keys: Vec::new(),
            key_passwords: Vec::new(),
            passwords: Vec::new(),
            session_keys: Vec::new(),
            verifiers: Verifiers::default(),
            window: Window::default(),
        }
    }
}

type DecryptOp<'s> = Box<dyn Decrypt<'s, CouchSop, Certs<'s>, Keys<'s>> + 's>;

impl<'s> Decrypt<'s, CouchSop, Certs<'s>, Keys<'s>> for Decryption<'s> {
    fn verify_not_before(mut self: Box<Self>, t: SystemTime) -> DecryptOp<'s> {
        self.window.not_before = Some(t);
        self
    }

    fn verify_not_after(mut self: Box<Self>, t: SystemTime) -> DecryptOp<'s> {
        self.window.not_after = Some(t);
        self
    }

    fn verify_with_certs(mut self: Box<Self>, certs: &Certs<'s>) -> Result<DecryptOp<'s>> {
        self.verifiers.add(certs)?;
        Ok(self)
    }

    fn with_session_key(mut self: Box<Self>, sk: SessionKey) -> Result<DecryptOp<'s>> {
        self.session_keys.push(RawSessionKey { algo: Some(sk.algorithm()), key: sk.key().to_vec() });
        Ok(self)
    }

    fn with_password(mut self: Box<Self>, password: Password) -> Result<DecryptOp<'s>> {
        self.passwords.extend(password_variants(&password));
        Ok(self)
    }

    fn with_keys(mut self: Box<Self>, keys: &Keys<'s>) -> Result<DecryptOp<'s>> {
        self.keys.push(keys.bytes.clone());
        Ok(self)
    }

    fn with_key_password(mut self: Box<Self>, password: Password) -> Result<DecryptOp<'s>> {
        self.key_passwords.extend(password_variants(&password));
        Ok(self)
    }

    fn ciphertext<'d>(
        self: Box<Self>,
        ciphertext: &'d mut (dyn Read + Send + Sync),
    ) -> Result<Box<dyn Ready<(Option<SessionKey>, Vec<sop::ops::Verification>)> + 'd>>
    where
        's: 'd,
    {
        if self.keys.is_empty() && self.passwords.is_empty() && self.session_keys.is_empty() {
            return Err(SopError::MissingArg);
        }
        Ok(Box::new(PendingDecrypt { op: *self, ciphertext }))
    }
}

struct PendingDecrypt<'s, 'd> {
    op: Decryption<'s>,
    ciphertext: &'d mut (dyn Read + Send + Sync),
}

impl Ready<(Option<SessionKey>, Vec<sop::ops::Verification>)> for PendingDecrypt<'_, '_> {
    fn to_writer(
        self: Box<Self>,
        sink: &mut (dyn Write + Send + Sync),
    ) -> Result<(Option<SessionKey>, Vec<sop::ops::Verification>)> {
        let op = self.op;
        let mut keys = Vec::new();
        for bytes in &op.keys {
            keys.extend(Keys::from_vec(op.sop, bytes.clone()).unlock(&op.key_passwords, Op::Decrypt)?);
        }
        let key_refs: Vec<_> = keys.iter().collect();
        let passwords: Vec<&[u8]> = op.passwords.iter().map(Vec::as_slice).collect();
        let certs = op.verifiers.certs();
        let msg = read_all(self.ciphertext, MAX_DATA)?;
        let opts = DecryptOptions {
            keys: &key_refs,
            passwords: &passwords,
            session_keys: &op.session_keys,
            verify_with: (!certs.is_empty()).then_some(certs.as_slice()),
            require_signature: false,
            window: op.window,
        };
        let mut out = Vec::with_capacity(msg.len());
        let done = decrypt::decrypt_with(&msg, &opts, &mut out).map_err(|e| {
            op.sop.trace(format_args!("decrypt: {e}"));
            errors::map(e, Op::Decrypt)
        })?;
        let lines = op.verifiers.report(&done.verifications)?;
        sink.write_all(&out)?;
        let sk = match done.session_key {
            Some(RawSessionKey { algo: Some(a), key }) => Some(SessionKey::new(a, key)?),
            _ => None,
        };
        Ok((sk, lines))
    }
}
