//! Quantization targets: plain types and llama.cpp's mixed presets, with the
//! `general.file_type` value (llama.cpp's `llama_ftype`) each one writes.

use mote_tensor::DType;

use crate::error::{CompressError, Result};

/// A whole-model target, as named on llama-quantize's command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Preset {
    F32,
    F16,
    BF16,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q8_0,
    Q2K,
    Q3KS,
    Q3KM,
    Q3KL,
    Q4KS,
    Q4KM,
    Q5KS,
    Q5KM,
    Q6K,
}

const ALL: [(Preset, &str); 17] = [
    (Preset::F32, "F32"),
    (Preset::F16, "F16"),
    (Preset::BF16, "BF16"),
    (Preset::Q4_0, "Q4_0"),
    (Preset::Q4_1, "Q4_1"),
    (Preset::Q5_0, "Q5_0"),
    (Preset::Q5_1, "Q5_1"),
    (Preset::Q8_0, "Q8_0"),
    (Preset::Q2K, "Q2_K"),
    (Preset::Q3KS, "Q3_K_S"),
    (Preset::Q3KM, "Q3_K_M"),
    (Preset::Q3KL, "Q3_K_L"),
    (Preset::Q4KS, "Q4_K_S"),
    (Preset::Q4KM, "Q4_K_M"),
    (Preset::Q5KS, "Q5_K_S"),
    (Preset::Q5KM, "Q5_K_M"),
    (Preset::Q6K, "Q6_K"),
];

impl Preset {
    /// Parses a target name, case-insensitively. `Q3_K`, `Q4_K` and `Q5_K` mean the
    /// `_M` presets, as in llama-quantize.
    pub fn parse(name: &str) -> Result<Preset> {
        let upper = name.to_ascii_uppercase();
        let canonical = match upper.as_str() {
            "Q3_K" => "Q3_K_M",
            "Q4_K" => "Q4_K_M",
            "Q5_K" => "Q5_K_M",
            other => other,
        };
        ALL.iter()
            .find(|(_, n)| *n == canonical)
            .map(|(p, _)| *p)
            .ok_or_else(|| {
                CompressError::Invalid(format!(
                    "unknown quantization type {name:?} (known: {})",
                    Preset::names().join(", ")
                ))
            })
    }

    pub fn names() -> Vec<&'static str> {
        ALL.iter().map(|(_, n)| *n).collect()
    }

    pub fn name(self) -> &'static str {
        ALL.iter().find(|(p, _)| *p == self).map_or("?", |(_, n)| n)
    }

    /// The type most tensors get.
    pub fn base_type(self) -> DType {
        match self {
            Preset::F32 => DType::F32,
            Preset::F16 => DType::F16,
            Preset::BF16 => DType::BF16,
            Preset::Q4_0 => DType::Q4_0,
            Preset::Q4_1 => DType::Q4_1,
            Preset::Q5_0 => DType::Q5_0,
            Preset::Q5_1 => DType::Q5_1,
            Preset::Q8_0 => DType::Q8_0,
            Preset::Q2K => DType::Q2_K,
            Preset::Q3KS | Preset::Q3KM | Preset::Q3KL => DType::Q3_K,
            Preset::Q4KS | Preset::Q4KM => DType::Q4_K,
            Preset::Q5KS | Preset::Q5KM => DType::Q5_K,
            Preset::Q6K => DType::Q6_K,
        }
    }

    /// llama.cpp's `llama_ftype` number, stored as `general.file_type`.
    pub fn file_type(self) -> u32 {
        match self {
            Preset::F32 => 0,
            Preset::F16 => 1,
            Preset::Q4_0 => 2,
            Preset::Q4_1 => 3,
            Preset::Q8_0 => 7,
            Preset::Q5_0 => 8,
            Preset::Q5_1 => 9,
            Preset::Q2K => 10,
            Preset::Q3KS => 11,
            Preset::Q3KM => 12,
            Preset::Q3KL => 13,
            Preset::Q4KS => 14,
            Preset::Q4KM => 15,
            Preset::Q5KS => 16,
            Preset::Q5KM => 17,
            Preset::Q6K => 18,
            Preset::BF16 => 32,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_aliases_resolve() {
        for n in Preset::names() {
            assert_eq!(Preset::parse(n).unwrap().name(), n);
        }
        assert_eq!(Preset::parse("q4_k").unwrap(), Preset::Q4KM);
        assert_eq!(Preset::parse("Q3_K").unwrap(), Preset::Q3KM);
        assert!(Preset::parse("Q7_0").is_err());
        assert_eq!(Preset::Q4KM.file_type(), 15);
    }
}
