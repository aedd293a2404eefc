//! `armor` and `dearmor`.

use std::io::Read;

use couch_pgp_nif::armor::{self, Label};
use sop::ops::{ArmorLabel, Ready};
use sop::Result;

use crate::errors::{self, Op};
use crate::objects::read_all;

/// Largest input either direction reads (the core's own bound).
const MAX_INPUT: u64 = armor::MAX_ARMOR_BYTES as u64;

#[derive(Default)]
pub struct Armor {
    label: Option<ArmorLabel>,
}

impl<'s> sop::ops::Armor<'s> for Armor {
    #[allow(deprecated)]
    fn label(mut self: Box<Self>, label: ArmorLabel) -> Box<dyn sop::ops::Armor<'s> + 's> {
        self.label = Some(label);
        self
    }

    fn data<'d>(self: Box<Self>, data: &'d mut (dyn Read + Send + Sync)) -> Result<Box<dyn Ready + 'd>>
    where
        's: 'd,
    {
        let label = match self.label.unwrap_or_default() {
            ArmorLabel::Auto => Label::Auto,
            ArmorLabel::Sig => Label::Signature,
            ArmorLabel::Key => Label::SecretKey,
            ArmorLabel::Cert => Label::PublicKey,
            ArmorLabel::Message => Label::Message,
        };
        Ok(Box::new(Pending { data, armor: Some(label) }))
    }
}

pub struct Dearmor;

impl<'s> sop::ops::Dearmor<'s> for Dearmor {
    fn data<'d>(self: Box<Self>, data: &'d mut (dyn Read + Send + Sync)) -> Result<Box<dyn Ready + 'd>>
    where
        's: 'd,
    {
        Ok(Box::new(Pending { data, armor: None }))
    }
}

struct Pending<'d> {
    data: &'d mut (dyn Read + Send + Sync),
    /// `None` dearmors.
    armor: Option<Label>,
}

impl Ready for Pending<'_> {
    fn to_writer(self: Box<Self>, sink: &mut (dyn std::io::Write + Send + Sync)) -> Result<()> {
        let input = read_all(self.data, MAX_INPUT)?;
        // The whole result is built first: a failure must not leave half an output.
        let mut out = Vec::with_capacity(input.len() * 4 / 3 + 128);
        let result = match self.armor {
            Some(label) => armor::armor(&input, label, &mut out),
            None => armor::dearmor(&input, &mut out),
        };
        result.map_err(|e| errors::map(e, Op::Armor))?;
        sink.write_all(&out)?;
        Ok(())
    }
}
