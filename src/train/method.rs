//! What a run trains: every weight (full fine-tuning), adapters over an fp32-or-16-bit base (LoRA), or adapters over
//! a quantized base (QLoRA).

use crate::quant::Format;
use crate::{bail, Error, Result};
use std::fmt;
use std::str::FromStr;

/// Why full fine-tuning refuses a quantized or 16-bit base (each refusal adds what applies where it is raised).
pub const FULL_KEEPS_FP32: &str = "full fine-tuning trains the base weights themselves, so they stay fp32";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Method {
    Full,
    Lora,
    Qlora,
}

impl Method {
    pub const ALL: [Method; 3] = [Method::Full, Method::Lora, Method::Qlora];

    pub fn name(self) -> &'static str {
        match self {
            Method::Full => "full",
            Method::Lora => "lora",
            Method::Qlora => "qlora",
        }
    }

    /// The base storage a method uses when none is given: QLoRA's is NF4, the others keep fp32.
    pub fn default_format(self) -> Format {
        match self {
            Method::Qlora => Format::Nf4,
            _ => Format::Fp32,
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Method {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "full" => Ok(Method::Full),
            "lora" => Ok(Method::Lora),
            "qlora" => Ok(Method::Qlora),
            _ => bail!("unknown method {s:?}; expected full, lora or qlora"),
        }
    }
}
