//! SOP's KEYS, CERTS and SIGNATURES objects: the bytes as given, parsed by the core when an
//! operation uses them (a KEYS object cannot be unlocked before the operation has seen its
//! `--with-key-password` options).

use std::io::{self, Read};
use std::sync::Arc;

use couch_pgp_nif::armor::{self, Label};
use couch_pgp_nif::certs::{self, Cert};
use couch_pgp_nif::keys::{self, SecretKey};
use sop::errors::Error as SopError;
use sop::plumbing::SopRef;
use sop::{Load, Result, Save};

use crate::errors::{self, Op};
use crate::CouchSop;

/// Largest KEYS, CERTS or SIGNATURES object read from one file.
const MAX_OBJECT_BYTES: u64 = 64 * 1024 * 1024;

pub(crate) fn read_all(source: &mut (dyn Read + Send + Sync), limit: u64) -> Result<Vec<u8>> {
    let mut buf = Vec::new();
    source.take(limit + 1).read_to_end(&mut buf)?;
    if buf.len() as u64 > limit {
        return Err(SopError::BadData);
    }
    Ok(buf)
}

fn write_as(bytes: &[u8], armored: bool, label: Label, sink: &mut (dyn io::Write + Send + Sync)) -> Result<()> {
    let result = if armored { armor::armor(bytes, label, sink) } else { armor::dearmor(bytes, sink) };
    result.map_err(|e| errors::map(e, Op::Armor))
}

macro_rules! sop_object {
    ($name:ident, $label:expr) => {
        pub struct $name<'s> {
            sop: &'s CouchSop,
            pub(crate) bytes: Vec<u8>,
            source: Option<String>,
        }

        impl<'s> $name<'s> {
            pub(crate) fn from_vec(sop: &'s CouchSop, bytes: Vec<u8>) -> Self {
                $name { sop, bytes, source: None }
            }
        }

        impl<'s> Load<'s, CouchSop> for $name<'s> {
            fn from_reader(
                sop: &'s CouchSop,
                source: &mut (dyn Read + Send + Sync),
                source_name: Option<String>,
            ) -> Result<Self> {
                let bytes = read_all(source, MAX_OBJECT_BYTES)?;
                if bytes.is_empty() {
                    return Err(SopError::BadData);
                }
                Ok($name { sop, bytes, source: source_name })
            }

            fn source_name(&self) -> Option<&str> {
                self.source.as_deref()
            }
        }

        impl Save for $name<'_> {
            fn to_writer(&self, armored: bool, sink: &mut (dyn io::Write + Send + Sync)) -> Result<()> {
                write_as(&self.bytes, armored, $label, sink)
            }
        }

        impl<'s> SopRef<'s, CouchSop> for $name<'s> {
            fn sop(&self) -> &'s CouchSop {
                self.sop
            }
        }
    };
}

sop_object!(Keys, Label::SecretKey);
sop_object!(Certs, Label::PublicKey);
sop_object!(Sigs, Label::Signature);

impl Keys<'_> {
    /// Every secret key in the object, unlocked with the first password that fits.
    pub(crate) fn unlock(&self, passwords: &[Vec<u8>], op: Op) -> Result<Vec<SecretKey>> {
        let refs: Vec<&[u8]> = passwords.iter().map(Vec::as_slice).collect();
        keys::import_secrets(&self.bytes, &refs).map_err(|e| {
            self.sop.trace(format_args!("loading keys: {e}"));
            errors::map_key_load(e, op)
        })
    }
}

impl Certs<'_> {
    pub(crate) fn parse(&self) -> Result<Vec<Arc<Cert>>> {
        certs::parse_keyring(&self.bytes).map_err(|e| {
            self.sop.trace(format_args!("loading certificates: {e}"));
            SopError::BadData
        })
    }
}

/// All password variants SOP asks consumers to try (as given, and with trailing
/// whitespace trimmed).
pub(crate) fn password_variants(p: &sop::Password) -> Vec<Vec<u8>> {
    use sop::plumbing::PasswordsAreHumanReadable;
    p.variants().map(<[u8]>::to_vec).collect()
}

/// The one form SOP asks producers to use.
pub(crate) fn password_normalized(p: &sop::Password) -> Vec<u8> {
    use sop::plumbing::PasswordsAreHumanReadable;
    p.normalized().to_vec()
}
