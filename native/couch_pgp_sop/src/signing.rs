//! `sign`, `verify`, `inline-sign` and `inline-verify`.

use std::io::{Read, Write};
use std::sync::Arc;
use std::time::SystemTime;

use couch_pgp_nif::certs::{self, Cert};
use couch_pgp_nif::inline::{self, InlineMode};
use couch_pgp_nif::sign::{self, SignOptions};
use couch_pgp_nif::verify::{self, Window};
use sop::errors::Error as SopError;
use sop::ops::{
    InlineSign, InlineSignAs, InlineVerify, Micalg, Ready, SignAs, SignatureMode, Verify,
    VerifySignatures,
};
use sop::{Load, Password, Result};

use crate::errors::{self, Op};
use crate::objects::{password_variants, read_all, Certs, Keys, Sigs};
use crate::CouchSop;

/// Largest data or message read from stdin; it is held in memory whole.
pub(crate) const MAX_DATA: u64 = 1024 * 1024 * 1024;

/// Certificates a verifier was given, with the names SOP prints for them.
#[derive(Default)]
pub(crate) struct Verifiers {
    certs: Vec<(Arc<Cert>, Option<String>)>,
}

impl Verifiers {
    pub(crate) fn add(&mut self, certs: &Certs<'_>) -> Result<()> {
        let name = certs.source_name().map(str::to_owned);
        for c in certs.parse()? {
            self.certs.push((c, name.clone()));
        }
        Ok(())
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.certs.is_empty()
    }

    pub(crate) fn certs(&self) -> Vec<Arc<Cert>> {
        self.certs.iter().map(|(c, _)| c.clone()).collect()
    }

    /// SOP's VERIFICATION lines for the core's good signatures.
    pub(crate) fn report(&self, found: &[verify::Verification]) -> Result<Vec<sop::ops::Verification>> {
        found
            .iter()
            .map(|v| {
                let mode = if v.text { SignatureMode::Text } else { SignatureMode::Binary };
                let mut out = sop::ops::Verification::new(
                    v.created,
                    &v.key_fingerprint,
                    &v.cert_fingerprint,
                    mode,
                    None,
                )?;
                let named = self.certs.iter().find(|(c, _)| certs::fingerprint_hex(c) == v.cert_fingerprint);
                if let Some((_, Some(name))) = named {
                    out.add_signer(name);
                }
                Ok(out)
            })
            .collect()
    }
}

/// Signing keys and the passwords to unlock them, gathered in whichever order SOP's
/// options arrive.
#[derive(Default)]
pub(crate) struct Signers {
    objects: Vec<Vec<u8>>,
    passwords: Vec<Vec<u8>>,
}

impl Signers {
    pub(crate) fn add_keys(&mut self, keys: &Keys<'_>) {
        self.objects.push(keys.bytes.clone());
    }

    pub(crate) fn add_password(&mut self, p: &Password) {
        self.passwords.extend(password_variants(p));
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.objects.is_empty()
    }

    /// Loads every key; each must be able to sign now.
    pub(crate) fn load(&self, sop: &CouchSop, op: Op) -> Result<Vec<couch_pgp_nif::keys::SecretKey>> {
        let mut out = Vec::new();
        for bytes in &self.objects {
            let keys = Keys::from_vec(sop, bytes.clone());
            for k in keys.unlock(&self.passwords, op)? {
                if let Err(e) = k.signer() {
                    sop.trace(format_args!("signing key {}: {e}", k.fingerprint()));
                    return Err(SopError::KeyCannotSign);
                }
                out.push(k);
            }
        }
        Ok(out)
    }
}

pub struct DetachedSign<'s> {
    sop: &'s CouchSop,
    text: bool,
    signers: Signers,
}

impl<'s> DetachedSign<'s> {
    pub fn new(sop: &'s CouchSop) -> Self {
        DetachedSign { sop, text: false, signers: Signers::default() }
    }
}

impl<'s> sop::ops::Sign<'s, CouchSop, Keys<'s>, Sigs<'s>> for DetachedSign<'s> {
    fn mode(mut self: Box<Self>, mode: SignAs) -> Box<dyn sop::ops::Sign<'s, CouchSop, Keys<'s>, Sigs<'s>> + 's> {
        self.text = mode == SignAs::Text;
        self
    }

    fn keys(
        mut self: Box<Self>,
        keys: &Keys<'s>,
    ) -> Result<Box<dyn sop::ops::Sign<'s, CouchSop, Keys<'s>, Sigs<'s>> + 's>> {
        self.signers.add_keys(keys);
        Ok(self)
    }

    fn with_key_password(
        mut self: Box<Self>,
        password: Password,
    ) -> Result<Box<dyn sop::ops::Sign<'s, CouchSop, Keys<'s>, Sigs<'s>> + 's>> {
        self.signers.add_password(&password);
        Ok(self)
    }

    fn data(self: Box<Self>, data: &mut (dyn Read + Send + Sync)) -> Result<(Micalg, Sigs<'s>)> {
        if self.signers.is_empty() {
            return Err(SopError::MissingArg);
        }
        let keys = self.signers.load(self.sop, Op::Sign)?;
        let refs: Vec<_> = keys.iter().collect();
        let input = read_all(data, MAX_DATA)?;
        let text = self.text;
        if text && std::str::from_utf8(&input).is_err() {
            return Err(SopError::ExpectedText);
        }
        let mut out = Vec::new();
        let hash = sign::sign_detached_with(&input, &refs, SignOptions { armor: false, text }, &mut out)
            .map_err(|e| errors::map(e, Op::Sign))?;
        Ok((Micalg::from(hash), Sigs::from_vec(self.sop, out)))
    }
}

pub struct DetachedVerify<'s> {
    sop: &'s CouchSop,
    window: Window,
    verifiers: Verifiers,
}

impl<'s> DetachedVerify<'s> {
    pub fn new(sop: &'s CouchSop) -> Self {
        DetachedVerify { sop, window: Window::default(), verifiers: Verifiers::default() }
    }
}

impl<'s> Verify<'s, CouchSop, Certs<'s>, Sigs<'s>> for DetachedVerify<'s> {
    fn not_before(mut self: Box<Self>, t: SystemTime) -> Box<dyn Verify<'s, CouchSop, Certs<'s>, Sigs<'s>> + 's> {
        self.window.not_before = Some(t);
        self
    }

    fn not_after(mut self: Box<Self>, t: SystemTime) -> Box<dyn Verify<'s, CouchSop, Certs<'s>, Sigs<'s>> + 's> {
        self.window.not_after = Some(t);
        self
    }

    fn certs(
        mut self: Box<Self>,
        certs: &Certs<'s>,
    ) -> Result<Box<dyn Verify<'s, CouchSop, Certs<'s>, Sigs<'s>> + 's>> {
        self.verifiers.add(certs)?;
        Ok(self)
    }

    fn signatures<'sigs>(
        self: Box<Self>,
        signatures: &'sigs Sigs<'s>,
    ) -> Result<Box<dyn VerifySignatures<'sigs> + 'sigs>>
    where
        's: 'sigs,
    {
        Ok(Box::new(PendingVerify { op: *self, sigs: &signatures.bytes }))
    }
}

struct PendingVerify<'s, 'sigs> {
    op: DetachedVerify<'s>,
    sigs: &'sigs [u8],
}

impl VerifySignatures<'_> for PendingVerify<'_, '_> {
    fn data(self: Box<Self>, data: &mut (dyn Read + Send + Sync)) -> Result<Vec<sop::ops::Verification>> {
        if self.op.verifiers.is_empty() {
            return Err(SopError::MissingArg);
        }
        let input = read_all(data, MAX_DATA)?;
        let found = verify::verify_detached_all(&input, self.sigs, &self.op.verifiers.certs(), self.op.window)
            .map_err(|e| {
                self.op.sop.trace(format_args!("verify: {e}"));
                errors::map(e, Op::Verify)
            })?;
        self.op.verifiers.report(&found)
    }
}

pub struct InlineSigning<'s> {
    sop: &'s CouchSop,
    armor: bool,
    mode: InlineSignAs,
    signers: Signers,
}

impl<'s> InlineSigning<'s> {
    pub fn new(sop: &'s CouchSop) -> Self {
        InlineSigning { sop, armor: true, mode: InlineSignAs::Binary, signers: Signers::default() }
    }
}

impl<'s> InlineSign<'s, CouchSop, Keys<'s>> for InlineSigning<'s> {
    fn no_armor(mut self: Box<Self>) -> Box<dyn InlineSign<'s, CouchSop, Keys<'s>> + 's> {
        self.armor = false;
        self
    }

    fn mode(mut self: Box<Self>, mode: InlineSignAs) -> Box<dyn InlineSign<'s, CouchSop, Keys<'s>> + 's> {
        self.mode = mode;
        self
    }

    fn keys(mut self: Box<Self>, keys: &Keys<'s>) -> Result<Box<dyn InlineSign<'s, CouchSop, Keys<'s>> + 's>> {
        self.signers.add_keys(keys);
        Ok(self)
    }

    fn with_key_password(
        mut self: Box<Self>,
        password: Password,
    ) -> Result<Box<dyn InlineSign<'s, CouchSop, Keys<'s>> + 's>> {
        self.signers.add_password(&password);
        Ok(self)
    }

    fn data<'d>(self: Box<Self>, data: &'d mut (dyn Read + Send + Sync)) -> Result<Box<dyn Ready + 'd>>
    where
        's: 'd,
    {
        if self.mode == InlineSignAs::ClearSigned && !self.armor {
            return Err(SopError::IncompatibleOptions);
        }
        if self.signers.is_empty() {
            return Err(SopError::MissingArg);
        }
        Ok(Box::new(PendingInlineSign { op: *self, data }))
    }
}

struct PendingInlineSign<'s, 'd> {
    op: InlineSigning<'s>,
    data: &'d mut (dyn Read + Send + Sync),
}

impl Ready for PendingInlineSign<'_, '_> {
    fn to_writer(self: Box<Self>, sink: &mut (dyn Write + Send + Sync)) -> Result<()> {
        let keys = self.op.signers.load(self.op.sop, Op::Sign)?;
        let refs: Vec<_> = keys.iter().collect();
        let input = read_all(self.data, MAX_DATA)?;
        let mode = match self.op.mode {
            InlineSignAs::Binary => InlineMode::Binary,
            InlineSignAs::Text => InlineMode::Text,
            InlineSignAs::ClearSigned => InlineMode::Cleartext,
        };
        if mode != InlineMode::Binary && std::str::from_utf8(&input).is_err() {
            return Err(SopError::ExpectedText);
        }
        let mut out = Vec::new();
        inline::inline_sign(&input, &refs, mode, self.op.armor, &mut out)
            .map_err(|e| errors::map(e, Op::Sign))?;
        sink.write_all(&out)?;
        Ok(())
    }
}

pub struct InlineVerification<'s> {
    sop: &'s CouchSop,
    window: Window,
    verifiers: Verifiers,
}

impl<'s> InlineVerification<'s> {
    pub fn new(sop: &'s CouchSop) -> Self {
        InlineVerification { sop, window: Window::default(), verifiers: Verifiers::default() }
    }
}

impl<'s> InlineVerify<'s, CouchSop, Certs<'s>> for InlineVerification<'s> {
    fn not_before(mut self: Box<Self>, t: SystemTime) -> Box<dyn InlineVerify<'s, CouchSop, Certs<'s>> + 's> {
        self.window.not_before = Some(t);
        self
    }

    fn not_after(mut self: Box<Self>, t: SystemTime) -> Box<dyn InlineVerify<'s, CouchSop, Certs<'s>> + 's> {
        self.window.not_after = Some(t);
        self
    }

    fn certs(mut self: Box<Self>, certs: &Certs<'s>) -> Result<Box<dyn InlineVerify<'s, CouchSop, Certs<'s>> + 's>> {
        self.verifiers.add(certs)?;
        Ok(self)
    }

    fn message<'d>(
        self: Box<Self>,
        data: &'d mut (dyn Read + Send + Sync),
    ) -> Result<Box<dyn Ready<Vec<sop::ops::Verification>> + 'd>>
    where
        's: 'd,
    {
        if self.verifiers.is_empty() {
            return Err(SopError::MissingArg);
        }
        Ok(Box::new(PendingInlineVerify { op: *self, data }))
    }
}

struct PendingInlineVerify<'s, 'd> {
    op: InlineVerification<'s>,
    data: &'d mut (dyn Read + Send + Sync),
}

impl Ready<Vec<sop::ops::Verification>> for PendingInlineVerify<'_, '_> {
    fn to_writer(self: Box<Self>, sink: &mut (dyn Write + Send + Sync)) -> Result<Vec<sop::ops::Verification>> {
        let input = read_all(self.data, MAX_DATA)?;
        let mut out = Vec::new();
        let found = inline::inline_verify(&input, &self.op.verifiers.certs(), self.op.window, &mut out)
            .map_err(|e| {
                self.op.sop.trace(format_args!("inline-verify: {e}"));
                errors::map(e, Op::Verify)
            })?;
        let lines = self.op.verifiers.report(&found)?;
        sink.write_all(&out)?;
        Ok(lines)
    }
}
