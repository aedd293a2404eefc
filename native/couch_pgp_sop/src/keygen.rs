//! `generate-key` and `extract-cert`.

use couch_pgp_nif::keys::{self, GenerateOptions, Profile};
use sop::errors::Error as SopError;
use sop::ops::{ExtractCert, GenerateKey};
use sop::{Password, Result};

use crate::errors::{self, Op};
use crate::objects::{password_normalized, Certs, Keys};
use crate::CouchSop;

/// The profile names `list-profiles generate-key` shows; the first is the default, and is
/// the core's default (the NIF's too).
const PROFILES: [(&str, &str, Profile); 2] = [
    (
        "rfc4880",
        "v4 Curve25519 key advertising SEIPDv1 only (default; read by GnuPG 2.2, OpenPGP.js)",
        Profile::Rfc4880,
    ),
    ("rfc9580", "v6 Curve25519 key advertising SEIPDv2 (RFC 9580)", Profile::Rfc9580),
];

pub struct Generate<'s> {
    sop: &'s CouchSop,
    opts: GenerateOptions,
    password: Option<Vec<u8>>,
}

impl<'s> Generate<'s> {
    pub fn new(sop: &'s CouchSop) -> Self {
        Generate { sop, opts: GenerateOptions::default(), password: None }
    }
}

impl<'s> GenerateKey<'s, CouchSop, Keys<'s>> for Generate<'s> {
    fn list_profiles(&self) -> Vec<(String, String)> {
        PROFILES.iter().map(|(n, d, _)| (n.to_string(), d.to_string())).collect()
    }

    fn profile(
        mut self: Box<Self>,
        profile: &str,
    ) -> Result<Box<dyn GenerateKey<'s, CouchSop, Keys<'s>> + 's>> {
        let chosen = match profile {
            "default" => Some(PROFILES[0].2),
            name => PROFILES.iter().find(|(n, _, _)| *n == name).map(|p| p.2),
        };
        self.opts.profile = chosen.ok_or(SopError::UnsupportedProfile)?;
        Ok(self)
    }

    fn signing_only(mut self: Box<Self>) -> Box<dyn GenerateKey<'s, CouchSop, Keys<'s>> + 's> {
        self.opts.signing_only = true;
        self
    }

    fn with_key_password(
        mut self: Box<Self>,
        password: Password,
    ) -> Result<Box<dyn GenerateKey<'s, CouchSop, Keys<'s>> + 's>> {
        let p = password_normalized(&password);
        if p.is_empty() {
            return Err(SopError::PasswordNotHumanReadable);
        }
        self.password = Some(p);
        Ok(self)
    }

    fn userid(mut self: Box<Self>, userid: &str) -> Box<dyn GenerateKey<'s, CouchSop, Keys<'s>> + 's> {
        if self.opts.user_id.is_none() {
            self.opts.user_id = Some(userid.to_owned());
        } else {
            self.opts.more_user_ids.push(userid.to_owned());
        }
        self
    }

    fn generate(self: Box<Self>) -> Result<Keys<'s>> {
        let key = keys::generate(&self.opts).map_err(|e| errors::map(e, Op::Generate))?;
        let bytes = keys::export_key(&key, self.password.as_deref(), false)
            .map_err(|e| errors::map(e, Op::Generate))?;
        Ok(Keys::from_vec(self.sop, bytes))
    }
}

pub struct Extract<'s> {
    pub sop: &'s CouchSop,
}

impl<'s> ExtractCert<'s, CouchSop, Certs<'s>, Keys<'s>> for Extract<'s> {
    fn keys(self: Box<Self>, keys: &Keys<'s>) -> Result<Certs<'s>> {
        let bytes = keys::extract_certs(&keys.bytes, false).map_err(|e| errors::map(e, Op::Extract))?;
        Ok(Certs::from_vec(self.sop, bytes))
    }
}
