//! Element types as ggml numbers them in GGUF files.
//!
//! Quantized types store `block_len` consecutive values of one row in a block of
//! `block_bytes` bytes; a row's length must be a multiple of `block_len`.

use std::fmt;

/// A tensor element type. The discriminants are ggml's `ggml_type` ids, which GGUF stores.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[allow(non_camel_case_types)]
#[repr(u32)]
pub enum DType {
    F32 = 0,
    F16 = 1,
    Q4_0 = 2,
    Q4_1 = 3,
    Q5_0 = 6,
    Q5_1 = 7,
    Q8_0 = 8,
    Q8_1 = 9,
    Q2_K = 10,
    Q3_K = 11,
    Q4_K = 12,
    Q5_K = 13,
    Q6_K = 14,
    Q8_K = 15,
    IQ2_XXS = 16,
    IQ2_XS = 17,
    IQ3_XXS = 18,
    IQ1_S = 19,
    IQ4_NL = 20,
    IQ3_S = 21,
    IQ2_S = 22,
    IQ4_XS = 23,
    I8 = 24,
    I16 = 25,
    I32 = 26,
    I64 = 27,
    F64 = 28,
    IQ1_M = 29,
    BF16 = 30,
    TQ1_0 = 34,
    TQ2_0 = 35,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DTypeError {
    #[error("unknown ggml tensor type id {0}")]
    UnknownId(u32),
    #[error("unknown tensor type name {0:?}")]
    UnknownName(String),
    #[error("row of {len} values is not a multiple of the {dtype} block length {block}")]
    RaggedRow {
        dtype: DType,
        len: usize,
        block: usize,
    },
    #[error("size of {elements} {dtype} values overflows")]
    Overflow { dtype: DType, elements: u64 },
}

impl DType {
    pub const ALL: [DType; 31] = [
        DType::F32,
        DType::F16,
        DType::Q4_0,
        DType::Q4_1,
        DType::Q5_0,
        DType::Q5_1,
        DType::Q8_0,
        DType::Q8_1,
        DType::Q2_K,
        DType::Q3_K,
        DType::Q4_K,
        DType::Q5_K,
        DType::Q6_K,
        DType::Q8_K,
        DType::IQ2_XXS,
        DType::IQ2_XS,
        DType::IQ3_XXS,
        DType::IQ1_S,
        DType::IQ4_NL,
        DType::IQ3_S,
        DType::IQ2_S,
        DType::IQ4_XS,
        DType::I8,
        DType::I16,
        DType::I32,
        DType::I64,
        DType::F64,
        DType::IQ1_M,
        DType::BF16,
        DType::TQ1_0,
        DType::TQ2_0,
    ];

    pub fn from_id(id: u32) -> Result<DType, DTypeError> {
        DType::ALL
            .iter()
            .copied()
            .find(|t| *t as u32 == id)
            .ok_or(DTypeError::UnknownId(id))
    }

    /// Case-insensitive lookup by ggml's name (`q4_k`, `F16`, ...).
    pub fn from_name(name: &str) -> Result<DType, DTypeError> {
        DType::ALL
            .iter()
            .copied()
            .find(|t| t.name().eq_ignore_ascii_case(name))
            .ok_or_else(|| DTypeError::UnknownName(name.to_string()))
    }

    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "F32",
            DType::F16 => "F16",
            DType::Q4_0 => "Q4_0",
            DType::Q4_1 => "Q4_1",
            DType::Q5_0 => "Q5_0",
            DType::Q5_1 => "Q5_1",
            DType::Q8_0 => "Q8_0",
            DType::Q8_1 => "Q8_1",
            DType::Q2_K => "Q2_K",
            DType::Q3_K => "Q3_K",
            DType::Q4_K => "Q4_K",
            DType::Q5_K => "Q5_K",
            DType::Q6_K => "Q6_K",
            DType::Q8_K => "Q8_K",
            DType::IQ2_XXS => "IQ2_XXS",
            DType::IQ2_XS => "IQ2_XS",
            DType::IQ3_XXS => "IQ3_XXS",
            DType::IQ1_S => "IQ1_S",
            DType::IQ4_NL => "IQ4_NL",
            DType::IQ3_S => "IQ3_S",
            DType::IQ2_S => "IQ2_S",
            DType::IQ4_XS => "IQ4_XS",
            DType::I8 => "I8",
            DType::I16 => "I16",
            DType::I32 => "I32",
            DType::I64 => "I64",
            DType::F64 => "F64",
            DType::IQ1_M => "IQ1_M",
            DType::BF16 => "BF16",
            DType::TQ1_0 => "TQ1_0",
            DType::TQ2_0 => "TQ2_0",
        }
    }

    /// (values per block, bytes per block), from ggml's type traits.
    pub fn block(self) -> (usize, usize) {
        match self {
            DType::F32 => (1, 4),
            DType::F16 | DType::BF16 => (1, 2),
            DType::F64 => (1, 8),
            DType::I8 => (1, 1),
            DType::I16 => (1, 2),
            DType::I32 => (1, 4),
            DType::I64 => (1, 8),
            DType::Q4_0 => (32, 18),
            DType::Q4_1 => (32, 20),
            DType::Q5_0 => (32, 22),
            DType::Q5_1 => (32, 24),
            DType::Q8_0 => (32, 34),
            DType::Q8_1 => (32, 36),
            DType::Q2_K => (256, 84),
            DType::Q3_K => (256, 110),
            DType::Q4_K => (256, 144),
            DType::Q5_K => (256, 176),
            DType::Q6_K => (256, 210),
            DType::Q8_K => (256, 292),
            DType::IQ2_XXS => (256, 66),
            DType::IQ2_XS => (256, 74),
            DType::IQ3_XXS => (256, 98),
            DType::IQ1_S => (256, 50),
            DType::IQ4_NL => (32, 18),
            DType::IQ3_S => (256, 110),
            DType::IQ2_S => (256, 82),
            DType::IQ4_XS => (256, 136),
            DType::IQ1_M => (256, 56),
            DType::TQ1_0 => (256, 54),
            DType::TQ2_0 => (256, 66),
        }
    }

    pub fn block_len(self) -> usize {
        self.block().0
    }

    pub fn block_bytes(self) -> usize {
        self.block().1
    }

    pub fn is_quantized(self) -> bool {
        self.block_len() > 1
    }

    /// Bytes taken by `elements` values; errors if not whole blocks or on overflow.
    pub fn bytes_for(self, elements: u64) -> Result<u64, DTypeError> {
        let (len, bytes) = self.block();
        if !elements.is_multiple_of(len as u64) {
            return Err(DTypeError::RaggedRow {
                dtype: self,
                len: elements as usize,
                block: len,
            });
        }
        (elements / len as u64)
            .checked_mul(bytes as u64)
            .ok_or(DTypeError::Overflow {
                dtype: self,
                elements,
            })
    }

    /// Bits stored per weight, including block scales.
    pub fn bits_per_weight(self) -> f64 {
        let (len, bytes) = self.block();
        bytes as f64 * 8.0 / len as f64
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip() {
        for t in DType::ALL {
            assert_eq!(DType::from_id(t as u32), Ok(t));
            assert_eq!(DType::from_name(&t.name().to_lowercase()), Ok(t));
        }
        assert!(DType::from_id(4).is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(DType::Q4_K.bytes_for(512), Ok(288));
        assert!(DType::Q4_K.bytes_for(100).is_err());
        assert!((DType::Q4_0.bits_per_weight() - 4.5).abs() < 1e-9);
    }
}
