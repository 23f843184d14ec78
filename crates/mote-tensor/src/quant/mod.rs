//! Block quantization: ggml's layouts, bit-exact. `dequantize_row` turns any supported
//! type back into f32; `quantize_row` (reference, scalar) does the reverse, and
//! `quantize_row_weighted` is the importance-matrix-aware variant.
//!
//! One module per family, each documenting its block layout:
//! [`float`] (F32, F16, BF16), [`legacy`] (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q8_1) and one
//! per k-quant (Q2_K … Q8_K). The quantizers reproduce ggml's reference algorithms in
//! the same floating-point order, so their bytes match ggml's (and gguf-py's).

mod float;
mod k_common;
mod legacy;
mod q2_k;
mod q3_k;
mod q4_k;
mod q5_k;
mod q6_k;
mod q8_k;
pub(crate) mod search;

use crate::DType;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum QuantError {
    #[error("tensor type {0} is not supported for this operation")]
    Unsupported(DType),
    #[error("{dtype}: {values} values need {expected} bytes, got {got}")]
    SizeMismatch {
        dtype: DType,
        values: usize,
        expected: usize,
        got: usize,
    },
    #[error("{dtype}: {values} values is not a multiple of the block length {block}")]
    Ragged {
        dtype: DType,
        values: usize,
        block: usize,
    },
    #[error("{dtype}: importance weights must match the row's {values} values, got {got}")]
    ImportanceLength {
        dtype: DType,
        values: usize,
        got: usize,
    },
}

/// Checks that `bytes` holds exactly `values` values of `dtype`.
// `is_multiple_of` would need Rust 1.87; the workspace supports 1.80.
#[allow(clippy::manual_is_multiple_of)]
pub fn check_len(dtype: DType, bytes: usize, values: usize) -> Result<(), QuantError> {
    let (len, size) = dtype.block();
    if values % len != 0 {
        return Err(QuantError::Ragged {
            dtype,
            values,
            block: len,
        });
    }
    let expected = values / len * size;
    if bytes != expected {
        return Err(QuantError::SizeMismatch {
            dtype,
            values,
            expected,
            got: bytes,
        });
    }
    Ok(())
}

/// Types [`dequantize_row`] can decode.
pub fn can_dequantize(dtype: DType) -> bool {
    dequantizer(dtype).is_some()
}

/// Types [`quantize_row`] can encode.
pub fn can_quantize(dtype: DType) -> bool {
    quantizer(dtype).is_some()
}

/// Types for which [`quantize_row_weighted`] uses the importance weights (the others
/// accept and ignore them, as ggml does).
pub fn uses_importance(dtype: DType) -> bool {
    weighted_quantizer(dtype).is_some()
}

type Decode = fn(&[u8], &mut [f32]);
type Encode = fn(&[f32], &mut [u8]);
type EncodeWeighted = fn(&[f32], &[f32], &mut [u8]);

fn dequantizer(dtype: DType) -> Option<Decode> {
    Some(match dtype {
        DType::F32 => float::decode_f32,
        DType::F16 => float::decode_f16,
        DType::BF16 => float::decode_bf16,
        DType::Q4_0 => legacy::dequantize_q4_0,
        DType::Q4_1 => legacy::dequantize_q4_1,
        DType::Q5_0 => legacy::dequantize_q5_0,
        DType::Q5_1 => legacy::dequantize_q5_1,
        DType::Q8_0 => legacy::dequantize_q8_0,
        DType::Q8_1 => legacy::dequantize_q8_1,
        DType::Q2_K => q2_k::dequantize,
        DType::Q3_K => q3_k::dequantize,
        DType::Q4_K => q4_k::dequantize,
        DType::Q5_K => q5_k::dequantize,
        DType::Q6_K => q6_k::dequantize,
        DType::Q8_K => q8_k::dequantize,
        _ => return None,
    })
}

fn quantizer(dtype: DType) -> Option<Encode> {
    Some(match dtype {
        DType::F32 => float::encode_f32,
        DType::F16 => float::encode_f16,
        DType::BF16 => float::encode_bf16,
        DType::Q4_0 => legacy::quantize_q4_0,
        DType::Q4_1 => legacy::quantize_q4_1,
        DType::Q5_0 => legacy::quantize_q5_0,
        DType::Q5_1 => legacy::quantize_q5_1,
        DType::Q8_0 => legacy::quantize_q8_0,
        DType::Q8_1 => legacy::quantize_q8_1,
        DType::Q2_K => q2_k::quantize,
        DType::Q3_K => q3_k::quantize,
        DType::Q4_K => q4_k::quantize,
        DType::Q5_K => q5_k::quantize,
        DType::Q6_K => q6_k::quantize,
        DType::Q8_K => q8_k::quantize,
        _ => return None,
    })
}

fn weighted_quantizer(dtype: DType) -> Option<EncodeWeighted> {
    Some(match dtype {
        DType::Q4_0 => legacy::quantize_q4_0_weighted,
        DType::Q4_1 => legacy::quantize_q4_1_weighted,
        DType::Q5_0 => legacy::quantize_q5_0_weighted,
        DType::Q5_1 => legacy::quantize_q5_1_weighted,
        DType::Q2_K => q2_k::quantize_weighted,
        DType::Q3_K => q3_k::quantize_weighted,
        DType::Q4_K => q4_k::quantize_weighted,
        DType::Q5_K => q5_k::quantize_weighted,
        DType::Q6_K => q6_k::quantize_weighted,
        _ => return None,
    })
}

/// Decodes `out.len()` values of `dtype` from `src` into f32.
pub fn dequantize_row(dtype: DType, src: &[u8], out: &mut [f32]) -> Result<(), QuantError> {
    check_len(dtype, src.len(), out.len())?;
    let decode = dequantizer(dtype).ok_or(QuantError::Unsupported(dtype))?;
    decode(src, out);
    Ok(())
}

/// Encodes `src` as `dtype` into `dst` (which must be exactly the encoded size) with
/// ggml's reference quantizer. Output depends only on `src`, never on `dst`'s old
/// contents.
pub fn quantize_row(dtype: DType, src: &[f32], dst: &mut [u8]) -> Result<(), QuantError> {
    check_len(dtype, dst.len(), src.len())?;
    let encode = quantizer(dtype).ok_or(QuantError::Unsupported(dtype))?;
    encode(src, dst);
    Ok(())
}

/// Like [`quantize_row`], but with per-column importance weights (llama.cpp's
/// imatrix): `importance[i]` is how much the model's output depends on column i, and
/// the quantizer minimises importance-weighted error instead. `src` must be one whole
/// tensor row (the legacy types use whole-row statistics), with `importance` of the
/// same length. With `None`, or for types that have no weighted quantizer (see
/// [`uses_importance`]), this is exactly [`quantize_row`], as in ggml.
pub fn quantize_row_weighted(
    dtype: DType,
    src: &[f32],
    importance: Option<&[f32]>,
    dst: &mut [u8],
) -> Result<(), QuantError> {
    check_len(dtype, dst.len(), src.len())?;
    let (Some(qw), Some(encode)) = (importance, weighted_quantizer(dtype)) else {
        return quantize_row(dtype, src, dst);
    };
    if qw.len() != src.len() {
        return Err(QuantError::ImportanceLength {
            dtype,
            values: src.len(),
            got: qw.len(),
        });
    }
    encode(src, qw, dst);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_errors_are_reported() {
        let mut out = [0f32; 32];
        assert!(matches!(
            dequantize_row(DType::Q4_0, &[0u8; 17], &mut out),
            Err(QuantError::SizeMismatch { .. })
        ));
        assert!(matches!(
            quantize_row(DType::Q4_K, &[0f32; 32], &mut [0u8; 18]),
            Err(QuantError::Ragged { .. })
        ));
        assert_eq!(
            quantize_row(DType::IQ2_XS, &[0f32; 256], &mut [0u8; 74]),
            Err(QuantError::Unsupported(DType::IQ2_XS))
        );
        assert!(matches!(
            quantize_row_weighted(
                DType::Q4_K,
                &[0f32; 256],
                Some(&[1.0; 255]),
                &mut [0u8; 144]
            ),
            Err(QuantError::ImportanceLength { .. })
        ));
    }
}
