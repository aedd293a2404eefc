//! couch_pgp's native core: OpenPGP through sequoia, and RFC 8785 canonical JSON.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[cfg(feature = "nif")]
mod alloc;
pub mod armor;
pub mod canonical;
pub mod channel;
mod cv25519_keygen;
pub mod certs;
pub mod decrypt;
pub mod encrypt;
pub mod error;
pub mod inline;
pub mod keys;
#[cfg(feature = "nif")]
mod nif;
pub mod policy;
pub mod revoke;
pub mod sign;
pub mod verify;

/// The OpenPGP library underneath, for version reports.
pub fn backend_version() -> (&'static str, &'static str) {
    ("sequoia-openpgp", sequoia_openpgp::VERSION)
}

#[cfg(feature = "nif")]
rustler::init!("couch_pgp_nif");
