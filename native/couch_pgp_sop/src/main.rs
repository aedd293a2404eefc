//! `couch-pgp-sop`: the Stateless OpenPGP command line over couch_pgp's native core.
//!
//! Everything OpenPGP happens in `couch_pgp_nif` (the functions the NIF calls); this crate
//! only maps SOP's arguments onto them, moves bytes between stdin/stdout and the core, and
//! turns the core's errors into SOP exit codes. The command-line parsing and special
//! designators (`@ENV:`, `@FD:`) are the `sop` crate's.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod armor;
mod crypt;
mod errors;
mod keygen;
mod objects;
mod signing;

use sop::ops::{
    CertifyUserID, ChangeKeyPassword, Decrypt, Encrypt, ExtractCert, GenerateKey, InlineDetach,
    InlineSign, InlineVerify, MergeCerts, RevokeKey, Sign, UpdateKey, ValidateUserID, Verify,
    Version, VersionInfo,
};
use sop::{Result, SOP};

pub use objects::{Certs, Keys, Sigs};

/// The SOP implementation; it holds no state between operations.
#[derive(Default)]
pub struct CouchSop {
    debug: bool,
}

impl CouchSop {
    /// Writes a diagnostic to stderr when `--debug` was given.
    pub fn trace(&self, what: std::fmt::Arguments<'_>) {
        if self.debug {
            eprintln!("couch-pgp-sop: {what}");
        }
    }
}

struct Versions;

impl Version<'_> for Versions {
    fn frontend(&self) -> Result<VersionInfo> {
        Ok(VersionInfo { name: "couch-pgp-sop".into(), version: env!("CARGO_PKG_VERSION").into() })
    }

    fn backend(&self) -> Result<VersionInfo> {
        let (name, version) = couch_pgp_nif::backend_version();
        Ok(VersionInfo { name: name.into(), version: version.into() })
    }

    fn extended(&self) -> Result<String> {
        let (name, version) = couch_pgp_nif::backend_version();
        Ok(format!(
            "couch_pgp_nif {}\n{name} {version} (crypto backend: nettle)\n\
             profile: v4 keys advertising SEIPDv1; SEIPDv2 only when every recipient \
             advertises it; no compression written",
            env!("CARGO_PKG_VERSION")
        ))
    }
}

impl<'s> SOP<'s> for CouchSop {
    type Keys = Keys<'s>;
    type Certs = Certs<'s>;
    type Sigs = Sigs<'s>;

    fn debug(&mut self, enable: bool) {
        self.debug = enable;
    }

    fn sopv_version(&'s self) -> Result<&'static str> {
        Ok("1.0")
    }

    fn version(&self) -> Result<Box<dyn Version<'_>>> {
        Ok(Box::new(Versions))
    }

    fn generate_key(&'s self) -> Result<Box<dyn GenerateKey<'s, Self, Self::Keys> + 's>> {
        Ok(Box::new(keygen::Generate::new(self)))
    }

    fn change_key_password(
        &'s self,
    ) -> Result<Box<dyn ChangeKeyPassword<'s, Self, Self::Keys> + 's>> {
        Err(sop::errors::Error::NotImplemented)
    }

    fn revoke_key(&'s self) -> Result<Box<dyn RevokeKey<'s, Self, Self::Certs, Self::Keys> + 's>> {
        Err(sop::errors::Error::NotImplemented)
    }

    fn extract_cert(
        &'s self,
    ) -> Result<Box<dyn ExtractCert<'s, Self, Self::Certs, Self::Keys> + 's>> {
        Ok(Box::new(keygen::Extract { sop: self }))
    }

    fn update_key(&'s self) -> Result<Box<dyn UpdateKey<'s, Self, Self::Certs, Self::Keys> + 's>> {
        Err(sop::errors::Error::NotImplemented)
    }

    fn merge_certs(&'s self) -> Result<Box<dyn MergeCerts<'s, Self, Self::Certs> + 's>> {
        Err(sop::errors::Error::NotImplemented)
    }

    fn certify_userid(
        &'s self,
    ) -> Result<Box<dyn CertifyUserID<'s, Self, Self::Certs, Self::Keys> + 's>> {
        Err(sop::errors::Error::NotImplemented)
    }

    fn validate_userid(&'s self) -> Result<Box<dyn ValidateUserID<'s, Self, Self::Certs> + 's>> {
        Err(sop::errors::Error::NotImplemented)
    }

    fn sign(&'s self) -> Result<Box<dyn Sign<'s, Self, Self::Keys, Self::Sigs> + 's>> {
        Ok(Box::new(signing::DetachedSign::new(self)))
    }

    fn verify(&'s self) -> Result<Box<dyn Verify<'s, Self, Self::Certs, Self::Sigs> + 's>> {
        Ok(Box::new(signing::DetachedVerify::new(self)))
    }

    fn encrypt(&'s self) -> Result<Box<dyn Encrypt<'s, Self, Self::Certs, Self::Keys> + 's>> {
        Ok(Box::new(crypt::Encryption::new(self)))
    }

    fn decrypt(&'s self) -> Result<Box<dyn Decrypt<'s, Self, Self::Certs, Self::Keys> + 's>> {
        Ok(Box::new(crypt::Decryption::new(self)))
    }

    fn armor(&'s self) -> Result<Box<dyn sop::ops::Armor<'s> + 's>> {
        Ok(Box::new(armor::Armor::default()))
    }

    fn dearmor(&'s self) -> Result<Box<dyn sop::ops::Dearmor<'s> + 's>> {
        Ok(Box::new(armor::Dearmor))
    }

    fn inline_detach(&'s self) -> Result<Box<dyn InlineDetach<'s, Self::Sigs> + 's>> {
        Err(sop::errors::Error::NotImplemented)
    }

    fn inline_verify(&'s self) -> Result<Box<dyn InlineVerify<'s, Self, Self::Certs> + 's>> {
        Ok(Box::new(signing::InlineVerification::new(self)))
    }

    fn inline_sign(&'s self) -> Result<Box<dyn InlineSign<'s, Self, Self::Keys> + 's>> {
        Ok(Box::new(signing::InlineSigning::new(self)))
    }
}

fn main() {
    sop::cli::main(&mut CouchSop::default(), sop::cli::Variant::Full);
}
