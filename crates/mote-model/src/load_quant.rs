//! Quantization at load time (`LoadOptions::quantize`): the weight matrices of a float
//! model (F32/F16/BF16) are re-encoded in memory, like transformers' `load_in_8bit`.
//!
//! The type rules are the part of llama.cpp's that matters for a single target type
//! (mote-compress holds the full set; it depends on this crate, so the few rules needed
//! are restated here): the unembedding (or the token embedding when it doubles as the
//! unembedding) gets Q6_K unless the target is Q8_0 or a float type, since its errors
//! reach every logit; rows that do not split into whole blocks fall back to a type that
//! fits (Q2_K/Q3_K → Q4_0, Q4_K → Q5_0, Q5_K → Q5_1, Q6_K → Q8_0, otherwise F16).
//! Tensors that are already quantized are left as they are.

use std::sync::Mutex;
use std::time::Instant;

use mote_tensor::quant::{can_dequantize, can_quantize, dequantize_row, quantize_row};
use mote_tensor::{Bytes, DType, Matrix};

use crate::ModelError;

/// Rows handed to one pool task: enough to amortise the hand-out, small enough to
/// balance uneven cores.
const ROWS_PER_TASK: usize = 64;

/// Parses a `--quantize` value (`q8_0`, `q4_0`, `q4_k`, ...; any type mote can write).
pub fn parse_quantize_type(name: &str) -> Result<DType, ModelError> {
    let dtype = DType::from_name(name).map_err(|e| ModelError::Invalid(e.to_string()))?;
    if !can_quantize(dtype) {
        return Err(ModelError::Invalid(format!(
            "cannot quantize to {dtype} at load time"
        )));
    }
    Ok(dtype)
}

/// What load-time quantization did, for the caller to log.
#[derive(Clone, Debug)]
pub struct LoadQuantization {
    /// The requested type.
    pub target: DType,
    /// Matrices re-encoded, and the types they got (several when rules or fallbacks
    /// applied), as `(type, count)`.
    pub converted: Vec<(DType, usize)>,
    /// Matrices left alone because they were already quantized: `(name, type)`.
    pub already_quantized: Vec<(String, DType)>,
    /// Bytes of all weight matrices before and after.
    pub bytes_before: u64,
    pub bytes_after: u64,
    pub seconds: f64,
}

impl LoadQuantization {
    pub(crate) fn new(target: DType) -> LoadQuantization {
        LoadQuantization {
            target,
            converted: Vec::new(),
            already_quantized: Vec::new(),
            bytes_before: 0,
            bytes_after: 0,
            seconds: 0.0,
        }
    }

    /// One line for logs: counts, sizes and time.
    pub fn summary(&self) -> String {
        let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
        let types: Vec<String> = self
            .converted
            .iter()
            .map(|(t, n)| format!("{n} to {t}"))
            .collect();
        let mut line = format!(
            "quantized at load ({}): {} matrices ({}), weights {:.1} MiB -> {:.1} MiB in {:.2} s",
            self.target,
            self.converted.iter().map(|(_, n)| n).sum::<usize>(),
            if types.is_empty() {
                "none".to_string()
            } else {
                types.join(", ")
            },
            mib(self.bytes_before),
            mib(self.bytes_after),
            self.seconds,
        );
        if !self.already_quantized.is_empty() {
            line.push_str(&format!(
                "; {} already-quantized matrices left as they are (e.g. {} {})",
                self.already_quantized.len(),
                self.already_quantized[0].0,
                self.already_quantized[0].1
            ));
        }
        line
    }

    fn count(&mut self, dtype: DType) {
        match self.converted.iter_mut().find(|(t, _)| *t == dtype) {
            Some((_, n)) => *n += 1,
            None => self.converted.push((dtype, 1)),
        }
    }
}

/// The type a matrix with rows of `cols` values gets; `is_output` for the unembedding
/// (or a tied token embedding).
pub fn target_type(requested: DType, cols: usize, is_output: bool) -> DType {
    let wanted = if is_output && requested.is_quantized() && requested != DType::Q8_0 {
        DType::Q6_K
    } else {
        requested
    };
    fit_to_row(wanted, cols)
}

/// `ty`, or the type llama.cpp falls back to when `ty`'s blocks do not divide a row of
/// `cols` values: 256-wide k-quants step to a 32-wide legacy type of similar size, and
/// anything that still does not fit is stored as F16. (`mote quantize` uses the same rule.)
pub fn fit_to_row(ty: DType, cols: usize) -> DType {
    let fits = |t: DType| cols.is_multiple_of(t.block_len());
    if fits(ty) {
        return ty;
    }
    let smaller = match ty {
        DType::Q2_K | DType::Q3_K => DType::Q4_0,
        DType::Q4_K => DType::Q5_0,
        DType::Q5_K => DType::Q5_1,
        DType::Q6_K => DType::Q8_0,
        other => other,
    };
    if fits(smaller) {
        smaller
    } else {
        DType::F16
    }
}

/// Applies load-time quantization to one matrix, recording what happened in `report`.
pub(crate) fn requantize(
    name: &str,
    m: Matrix,
    is_output: bool,
    report: &Mutex<LoadQuantization>,
) -> Result<Matrix, ModelError> {
    let started = Instant::now();
    let mut r = report.lock().unwrap_or_else(|e| e.into_inner());
    let before = m.data().len() as u64;
    r.bytes_before += before;
    if m.dtype.is_quantized() {
        r.already_quantized.push((name.to_string(), m.dtype));
        r.bytes_after += before;
        return Ok(m);
    }
    let to = target_type(r.target, m.cols, is_output);
    if to == m.dtype {
        r.bytes_after += before;
        return Ok(m);
    }
    let out = convert(name, &m, to)?;
    r.bytes_after += out.data().len() as u64;
    r.count(to);
    r.seconds += started.elapsed().as_secs_f64();
    Ok(out)
}

/// Re-encodes every row of `m` as `to`, rows spread over the global thread pool.
fn convert(name: &str, m: &Matrix, to: DType) -> Result<Matrix, ModelError> {
    let invalid = |e: &dyn std::fmt::Display| ModelError::Invalid(format!("tensor {name:?}: {e}"));
    if !can_dequantize(m.dtype) {
        return Err(invalid(&format!("cannot read type {}", m.dtype)));
    }
    let row_in = m.row_bytes();
    let row_out = to.bytes_for(m.cols as u64).map_err(|e| invalid(&e))? as usize;
    let mut out = vec![0u8; m.rows * row_out];
    // Each task owns a disjoint chunk of the output; the mutexes are never contended
    // and only make the hand-out safe without `unsafe`.
    let chunks: Vec<Mutex<&mut [u8]>> = out
        .chunks_mut(ROWS_PER_TASK * row_out)
        .map(Mutex::new)
        .collect();
    let first_error: Mutex<Option<ModelError>> = Mutex::new(None);
    let src = m.data();
    let cols = m.cols;
    let from = m.dtype;
    let task = |t: usize| {
        let mut dst = chunks[t].lock().unwrap_or_else(|e| e.into_inner());
        let first_row = t * ROWS_PER_TASK;
        let mut row = vec![0f32; cols];
        for (i, d) in dst.chunks_mut(row_out).enumerate() {
            let r = first_row + i;
            let result = dequantize_row(from, &src[r * row_in..(r + 1) * row_in], &mut row)
                .and_then(|()| quantize_row(to, &row, d));
            if let Err(e) = result {
                first_error
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .get_or_insert(ModelError::Invalid(format!("tensor {name:?}: {e}")));
                return;
            }
        }
    };
    mote_tensor::parallel::global().run(chunks.len(), &task);
    drop(chunks);
    if let Some(e) = first_error.into_inner().unwrap_or_else(|e| e.into_inner()) {
        return Err(e);
    }
    Matrix::new(to, m.rows, m.cols, Bytes::from_vec(out)).map_err(|e| invalid(&e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_and_fallbacks() {
        assert_eq!(target_type(DType::Q8_0, 576, false), DType::Q8_0);
        assert_eq!(target_type(DType::Q8_0, 576, true), DType::Q8_0);
        assert_eq!(target_type(DType::Q4_K, 576, false), DType::Q5_0);
        assert_eq!(target_type(DType::Q4_K, 512, false), DType::Q4_K);
        assert_eq!(target_type(DType::Q4_0, 576, true), DType::Q8_0);
        assert_eq!(target_type(DType::Q4_0, 512, true), DType::Q6_K);
        assert_eq!(target_type(DType::Q4_0, 100, false), DType::F16);
        assert_eq!(target_type(DType::F16, 100, true), DType::F16);
    }

    #[test]
    fn parses_names() {
        assert_eq!(parse_quantize_type("q8_0").ok(), Some(DType::Q8_0));
        assert_eq!(parse_quantize_type("Q4_K").ok(), Some(DType::Q4_K));
        assert!(parse_quantize_type("q9_9").is_err());
    }

    #[test]
    fn converts_rows_in_parallel() {
        let (rows, cols) = (200, 64);
        let values: Vec<f32> = (0..rows * cols)
            .map(|i| ((i * 37) % 101) as f32 / 50.0 - 1.0)
            .collect();
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        let m = Matrix::new(DType::F32, rows, cols, Bytes::from_vec(bytes)).unwrap();
        let report = Mutex::new(LoadQuantization::new(DType::Q8_0));
        let q = requantize("w", m, false, &report).unwrap();
        assert_eq!(q.dtype, DType::Q8_0);
        let mut row = vec![0f32; cols];
        for r in [0, 63, 64, 199] {
            q.dequantize_row(r, &mut row).unwrap();
            for (a, b) in row.iter().zip(&values[r * cols..(r + 1) * cols]) {
                assert!((a - b).abs() < 0.01, "row {r}: {a} vs {b}");
            }
        }
        let rep = report.into_inner().unwrap();
        assert_eq!(rep.converted, vec![(DType::Q8_0, 1)]);
        assert_eq!(rep.bytes_before, (rows * cols * 4) as u64);
        assert_eq!(rep.bytes_after, (rows * cols / 32 * 34) as u64);
    }
}
