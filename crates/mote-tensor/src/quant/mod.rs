//! Block quantization: ggml's layouts, bit-exact. `dequantize_row` turns any supported
//! type back into f32; `quantize_row` (reference, scalar) does the reverse.

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
}

/// Checks that `bytes` holds exactly `values` values of `dtype`.
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

/// Decodes `out.len()` values of `dtype` from `src` into f32.
pub fn dequantize_row(dtype: DType, src: &[u8], out: &mut [f32]) -> Result<(), QuantError> {
    check_len(dtype, src.len(), out.len())?;
    match dtype {
        DType::F32 => {
            for (o, b) in out.iter_mut().zip(src.chunks_exact(4)) {
                *o = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            }
        }
        DType::F16 => {
            for (o, b) in out.iter_mut().zip(src.chunks_exact(2)) {
                *o = half::f16::from_le_bytes([b[0], b[1]]).to_f32();
            }
        }
        DType::BF16 => {
            for (o, b) in out.iter_mut().zip(src.chunks_exact(2)) {
                *o = half::bf16::from_le_bytes([b[0], b[1]]).to_f32();
            }
        }
        other => return Err(QuantError::Unsupported(other)),
    }
    Ok(())
}
