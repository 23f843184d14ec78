//! Weight initializers and how their bytes are made from the GGUF tensor.
//!
//! Float matrices are stored as MatMul's `[K, N]` (the GGUF rows transposed). Q4_0 and
//! Q8_0 matrices become ONNX Runtime's `com.microsoft.MatMulNBits` operands with the
//! GGUF blocks mapped exactly, with no second rounding:
//!
//! * Q4_0 (block of 32: f16 `d`, 16 bytes where byte `j` holds element `j` in its low
//!   nibble and element `j + 16` in its high nibble, value `(q - 8) · d`) → `bits = 4`,
//!   `block_size = 32`, byte `i` holding elements `2i` (low) and `2i + 1` (high), the
//!   default zero point 8, scale `f32(d)`;
//! * Q8_0 (f16 `d`, 32 signed bytes, value `q · d`) → `bits = 8`, bytes `q + 128`, zero
//!   point 128, scale `f32(d)`.
//!
//! `(q - zero_point) · scale` is then the GGUF value bit for bit.

use mote_file::TensorInfo;
use mote_tensor::DType;

use super::super::model::ExportModel;
use super::super::names::unpermute_rows;
use super::proto::ElemType;
use crate::error::{ConvertError, Result};

/// Which part of a tensor an initializer holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    /// The whole tensor as floats, rows as stored (`[N, K]`): embedding tables.
    Rows,
    /// The whole tensor as floats, transposed to `[K, N]` for MatMul.
    Transposed,
    /// MatMulNBits `B`: `[N, K / 32, blob]` bytes.
    NBitsData,
    /// MatMulNBits `scales`: `[N * K / 32]` floats.
    NBitsScales,
    /// MatMulNBits `zero_points` of Q8_0: `[N * K / 32]` bytes of 128.
    NBitsZeros,
}

#[derive(Clone, Debug)]
pub struct WeightSource {
    pub tensor: String,
    pub part: Part,
    /// Undo llama's Q/K row permutation with this many heads.
    pub unpermute: Option<usize>,
}

/// MatMulNBits' bit width for a GGUF type it holds exactly.
pub fn nbits(dtype: DType) -> Option<i64> {
    match dtype {
        DType::Q4_0 => Some(4),
        DType::Q8_0 => Some(8),
        _ => None,
    }
}

/// The initializer bytes of `src`, in `elem` for float parts.
pub fn produce(model: &ExportModel, src: &WeightSource, elem: ElemType) -> Result<Vec<u8>> {
    let info = model.tensor(&src.tensor)?;
    let (rows, cols) = info.rows_cols();
    match src.part {
        Part::Rows | Part::Transposed => {
            let mut v = model.f32_values(info)?;
            if let Some(h) = src.unpermute {
                // A bias permutes element by element, a matrix row by row.
                let row = if info.dims.len() == 1 { 1 } else { cols };
                v = unpermute_rows(&v, h, row);
            }
            if src.part == Part::Transposed {
                let mut t = vec![0f32; v.len()];
                for (r, row) in v.chunks_exact(cols).enumerate() {
                    for (c, &x) in row.iter().enumerate() {
                        t[c * rows + r] = x;
                    }
                }
                v = t;
            }
            Ok(encode_floats(&v, elem))
        }
        Part::NBitsData | Part::NBitsScales | Part::NBitsZeros => {
            let bytes = model.file.tensor_bytes(info);
            let row_bytes = info.dtype.block_bytes() * cols / info.dtype.block_len();
            let raw = match src.unpermute {
                Some(h) => unpermute_rows(bytes.as_slice(), h, row_bytes),
                None => bytes.as_slice().to_vec(),
            };
            nbits_part(info, &raw, src.part)
        }
    }
}

fn encode_floats(v: &[f32], elem: ElemType) -> Vec<u8> {
    match elem {
        ElemType::Float16 => v
            .iter()
            .flat_map(|&x| half::f16::from_f32(x).to_le_bytes())
            .collect(),
        _ => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
    }
}

fn nbits_part(info: &TensorInfo, raw: &[u8], part: Part) -> Result<Vec<u8>> {
    let block = info.dtype.block_bytes();
    let blocks = raw.chunks_exact(block);
    let n_blocks = raw.len() / block;
    let d = |b: &[u8]| half::f16::from_le_bytes([b[0], b[1]]).to_f32();
    match (info.dtype, part) {
        (_, Part::NBitsScales) => Ok(blocks.flat_map(|b| d(b).to_le_bytes()).collect()),
        (DType::Q8_0, Part::NBitsZeros) => Ok(vec![128u8; n_blocks]),
        (DType::Q8_0, Part::NBitsData) => Ok(blocks
            .flat_map(|b| b[2..34].iter().map(|&q| (q as i8 as i16 + 128) as u8))
            .collect()),
        (DType::Q4_0, Part::NBitsData) => {
            let mut out = Vec::with_capacity(n_blocks * 16);
            for b in blocks {
                let qs = &b[2..18];
                let nib = |j: usize| {
                    if j < 16 {
                        qs[j] & 0x0f
                    } else {
                        qs[j - 16] >> 4
                    }
                };
                out.extend((0..16).map(|i| nib(2 * i) | (nib(2 * i + 1) << 4)));
            }
            Ok(out)
        }
        (t, p) => Err(ConvertError::Invalid(format!(
            "tensor {:?}: no MatMulNBits {p:?} for {t}",
            info.name
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(dtype: DType, cols: u64) -> TensorInfo {
        TensorInfo {
            name: "w".into(),
            dims: vec![cols, 1],
            dtype,
            offset: 0,
            size_bytes: 0,
        }
    }

    /// MatMulNBits' own dequantization: `(q - zp) * scale`, element `2i` in the low nibble.
    fn nbits_dequant(bits: u32, data: &[u8], scales: &[u8], zp: u8) -> Vec<f32> {
        let s = f32::from_le_bytes([scales[0], scales[1], scales[2], scales[3]]);
        let q: Vec<u8> = if bits == 4 {
            data.iter().flat_map(|b| [b & 0x0f, b >> 4]).collect()
        } else {
            data.to_vec()
        };
        q.iter().map(|&q| (q as f32 - zp as f32) * s).collect()
    }

    #[test]
    fn q4_0_and_q8_0_blocks_map_exactly() {
        let values: Vec<f32> = (0..32).map(|i| ((i * 7) % 13) as f32 - 6.3).collect();
        for (dtype, bits, zp) in [(DType::Q4_0, 4, 8u8), (DType::Q8_0, 8, 128)] {
            let mut raw = vec![0u8; dtype.block_bytes()];
            mote_tensor::quant::quantize_row(dtype, &values, &mut raw).unwrap();
            let mut want = vec![0f32; 32];
            mote_tensor::quant::dequantize_row(dtype, &raw, &mut want).unwrap();
            let i = info(dtype, 32);
            let data = nbits_part(&i, &raw, Part::NBitsData).unwrap();
            let scales = nbits_part(&i, &raw, Part::NBitsScales).unwrap();
            let got = nbits_dequant(bits, &data, &scales, zp);
            assert_eq!(got, want, "{dtype}");
        }
    }
}
