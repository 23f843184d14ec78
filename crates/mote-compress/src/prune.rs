//! `mote prune`: zero weights (unstructured or N:M) or drop whole blocks.
//!
//! Unstructured and N:M pruning keep every tensor in its type: a pruned tensor is
//! decoded, zeroed and encoded again (quantized types pay one more rounding). Zeros in
//! a dense type neither shrink the file nor speed up dense kernels; they only pay off
//! with sparse formats or kernels. Dropping blocks (`layers:K`) really removes them:
//! `blk.N` tensors are renumbered and `block_count` rewritten.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use mote_file::gguf::set_metadata;
use mote_file::{GgufFile, GgufWriter, MetaArray, MetaValue, TensorSpec};
use mote_model::MatmulObserver;
use mote_tensor::quant::{can_dequantize, can_quantize, dequantize_row, quantize_row};
use serde::Serialize;

use crate::error::{CompressError, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PruneMethod {
    Magnitude,
    Random,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PruneScope {
    /// The fraction is removed from each tensor.
    Layer,
    /// One magnitude threshold for all pruned tensors.
    Global,
}

/// What to remove.
#[derive(Clone, Debug)]
pub enum PruneSpec {
    /// Zero a fraction of the weights of every block matrix.
    Unstructured {
        method: PruneMethod,
        amount: f32,
        scope: PruneScope,
        seed: u64,
    },
    /// In every group of `m` consecutive weights of a row keep the `n` largest.
    NofM { n: usize, m: usize },
    /// Remove these blocks (indices into the original model).
    DropBlocks(Vec<usize>),
}

#[derive(Clone, Debug, Serialize)]
pub struct PrunedTensor {
    pub name: String,
    pub dtype: String,
    pub elements: u64,
    /// Fraction of zero weights after pruning (measured before re-encoding).
    pub sparsity: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct PruneReport {
    pub tensors: Vec<PrunedTensor>,
    pub params_before: u64,
    /// Parameters left: all elements minus zeroed ones (or of the remaining blocks).
    pub params_after: u64,
    pub blocks_before: usize,
    pub blocks_after: usize,
    pub dropped_blocks: Vec<usize>,
}

/// Parses `N:M` (e.g. `2:4`).
pub fn parse_nm(s: &str) -> Result<(usize, usize)> {
    let bad = || CompressError::Invalid(format!("--nm {s:?}: expected N:M with 0 < N < M"));
    let (n, m) = s.split_once(':').ok_or_else(bad)?;
    let (n, m): (usize, usize) = (
        n.trim().parse().map_err(|_| bad())?,
        m.trim().parse().map_err(|_| bad())?,
    );
    if n == 0 || n >= m {
        return Err(bad());
    }
    Ok((n, m))
}

/// Parses `layers:K`.
pub fn parse_structured(s: &str) -> Result<usize> {
    s.strip_prefix("layers:")
        .and_then(|k| k.trim().parse().ok())
        .filter(|&k| k > 0)
        .ok_or_else(|| {
            CompressError::Invalid(format!("--structured {s:?}: expected layers:K with K > 0"))
        })
}

/// The block matrices pruning applies to (embeddings, output and norms are kept).
fn is_prunable(name: &str, dims: &[u64]) -> bool {
    name.starts_with("blk.") && name.ends_with(".weight") && dims.len() == 2 && dims[1] > 1
}

fn block_index(name: &str) -> Option<usize> {
    name.strip_prefix("blk.")?.split('.').next()?.parse().ok()
}

/// A small deterministic generator (SplitMix64) for random pruning.
fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The `k`-th smallest |w| of `values` (k < len), from a sample when the set is huge.
fn magnitude_threshold(values: &[f32], fraction: f32) -> f32 {
    let stride = (values.len() / 4_000_000).max(1);
    let mut mags: Vec<f32> = values.iter().step_by(stride).map(|v| v.abs()).collect();
    if mags.is_empty() || fraction <= 0.0 {
        return f32::NEG_INFINITY;
    }
    let k = ((mags.len() as f64 * fraction as f64) as usize).min(mags.len() - 1);
    let (_, kth, _) = mags.select_nth_unstable_by(k, |a, b| a.total_cmp(b));
    *kth
}

/// Zeroes the smallest `fraction` by magnitude (exactly that many in `layer` scope).
fn prune_magnitude_exact(w: &mut [f32], fraction: f32) {
    let k = (w.len() as f64 * fraction as f64).round() as usize;
    if k == 0 {
        return;
    }
    let mut idx: Vec<u32> = (0..w.len() as u32).collect();
    if k < w.len() {
        idx.select_nth_unstable_by(k, |&a, &b| {
            w[a as usize].abs().total_cmp(&w[b as usize].abs())
        });
    }
    for &i in &idx[..k.min(w.len())] {
        w[i as usize] = 0.0;
    }
}

fn prune_nm(w: &mut [f32], cols: usize, n: usize, m: usize) {
    let mut order: Vec<usize> = Vec::with_capacity(m);
    for row in w.chunks_mut(cols) {
        for group in row.chunks_mut(m) {
            order.clear();
            order.extend(0..group.len());
            order.sort_by(|&a, &b| group[b].abs().total_cmp(&group[a].abs()));
            for &i in order.iter().skip(n) {
                group[i] = 0.0;
            }
        }
    }
}

fn decode(file: &GgufFile, name: &str) -> Result<Vec<f32>> {
    let info = file
        .tensor(name)
        .ok_or_else(|| CompressError::Invalid(format!("tensor {name:?} is missing")))?;
    if !can_dequantize(info.dtype) || !can_quantize(info.dtype) {
        return Err(CompressError::Invalid(format!(
            "tensor {name:?}: cannot re-encode type {}",
            info.dtype
        )));
    }
    let mut out = vec![0f32; info.elements() as usize];
    dequantize_row(info.dtype, file.tensor_bytes(info).as_slice(), &mut out).map_err(|source| {
        CompressError::Quant {
            tensor: name.to_string(),
            source,
        }
    })?;
    Ok(out)
}

/// Prunes `input` into `output`.
pub fn prune_file(input: &Path, output: &Path, spec: &PruneSpec) -> Result<PruneReport> {
    let file = GgufFile::open(input)?;
    let arch = file.architecture()?.to_string();
    let block_key = format!("{arch}.block_count");
    let n_blocks = file.get_u32(&block_key)?.unwrap_or(0) as usize;
    let params_before: u64 = file.tensors().iter().map(|t| t.elements()).sum();
    match spec {
        PruneSpec::DropBlocks(drop) => drop_blocks(&file, output, drop, n_blocks, &block_key),
        _ => zero_weights(&file, output, spec, params_before, n_blocks),
    }
}

fn zero_weights(
    file: &GgufFile,
    output: &Path,
    spec: &PruneSpec,
    params_before: u64,
    n_blocks: usize,
) -> Result<PruneReport> {
    let targets: Vec<&str> = file
        .tensors()
        .iter()
        .filter(|t| is_prunable(&t.name, &t.dims))
        .map(|t| t.name.as_str())
        .collect();
    let global_threshold = match spec {
        PruneSpec::Unstructured {
            method: PruneMethod::Magnitude,
            amount,
            scope: PruneScope::Global,
            ..
        } => {
            let mut sample = Vec::new();
            for name in &targets {
                let w = decode(file, name)?;
                let stride = (w.len() / 200_000).max(1);
                sample.extend(w.iter().step_by(stride));
            }
            Some(magnitude_threshold(&sample, *amount))
        }
        _ => None,
    };
    let specs: Vec<TensorSpec> = file.tensors().iter().map(TensorSpec::from).collect();
    let mut writer = GgufWriter::create(output, &file.metadata_owned(), specs)?;
    let mut reports = Vec::new();
    let mut zeroed = 0u64;
    for (ti, info) in file.tensors().iter().enumerate() {
        if !targets.contains(&info.name.as_str()) {
            writer.write_tensor(&info.name, file.tensor_bytes(info).as_slice())?;
            continue;
        }
        let (_, cols) = info.rows_cols();
        let mut w = decode(file, &info.name)?;
        match spec {
            PruneSpec::Unstructured {
                method,
                amount,
                seed,
                ..
            } => match (method, global_threshold) {
                (PruneMethod::Magnitude, Some(t)) => {
                    w.iter_mut().filter(|v| v.abs() <= t).for_each(|v| *v = 0.0)
                }
                (PruneMethod::Magnitude, None) => prune_magnitude_exact(&mut w, *amount),
                (PruneMethod::Random, _) => {
                    let mut state = seed.wrapping_add(ti as u64);
                    let cut = (*amount as f64 * u64::MAX as f64) as u64;
                    for v in w.iter_mut() {
                        if splitmix(&mut state) < cut {
                            *v = 0.0;
                        }
                    }
                }
            },
            PruneSpec::NofM { n, m } => prune_nm(&mut w, cols, *n, *m),
            PruneSpec::DropBlocks(_) => {}
        }
        let zeros = w.iter().filter(|v| **v == 0.0).count() as u64;
        zeroed += zeros;
        let mut bytes = vec![0u8; info.size_bytes as usize];
        quantize_row(info.dtype, &w, &mut bytes).map_err(|source| CompressError::Quant {
            tensor: info.name.clone(),
            source,
        })?;
        writer.write_tensor(&info.name, &bytes)?;
        reports.push(PrunedTensor {
            name: info.name.clone(),
            dtype: info.dtype.to_string(),
            elements: w.len() as u64,
            sparsity: zeros as f64 / w.len().max(1) as f64,
        });
    }
    writer.finish()?;
    Ok(PruneReport {
        tensors: reports,
        params_before,
        params_after: params_before - zeroed,
        blocks_before: n_blocks,
        blocks_after: n_blocks,
        dropped_blocks: Vec::new(),
    })
}

fn drop_blocks(
    file: &GgufFile,
    output: &Path,
    drop: &[usize],
    n_blocks: usize,
    block_key: &str,
) -> Result<PruneReport> {
    if drop.iter().any(|&b| b >= n_blocks) || drop.len() >= n_blocks {
        return Err(CompressError::Invalid(format!(
            "cannot drop blocks {drop:?} of a model with {n_blocks}"
        )));
    }
    let kept: Vec<usize> = (0..n_blocks).filter(|b| !drop.contains(b)).collect();
    let new_index: BTreeMap<usize, usize> = kept.iter().enumerate().map(|(i, &b)| (b, i)).collect();
    let rename = |name: &str| -> Option<String> {
        match block_index(name) {
            None => Some(name.to_string()),
            Some(b) => {
                let rest = &name[format!("blk.{b}").len()..];
                new_index.get(&b).map(|i| format!("blk.{i}{rest}"))
            }
        }
    };
    let mut meta = file.metadata_owned();
    // Per-layer arrays (e.g. head counts per layer) lose the dropped entries.
    for (_, v) in meta.iter_mut() {
        if let MetaValue::Array(a) = v {
            if a.len() == n_blocks {
                if let Some(kept_arr) = keep_entries(a, &kept) {
                    *a = kept_arr;
                }
            }
        }
    }
    set_metadata(&mut meta, block_key, MetaValue::U32(kept.len() as u32));
    let mut plan = Vec::new();
    for info in file.tensors() {
        if let Some(new_name) = rename(&info.name) {
            plan.push((info, new_name));
        }
    }
    let specs = plan
        .iter()
        .map(|(info, new_name)| TensorSpec {
            name: new_name.clone(),
            dims: info.dims.clone(),
            dtype: info.dtype,
        })
        .collect();
    let mut writer = GgufWriter::create(output, &meta, specs)?;
    for (info, new_name) in &plan {
        writer.write_tensor(new_name, file.tensor_bytes(info).as_slice())?;
    }
    writer.finish()?;
    Ok(PruneReport {
        tensors: Vec::new(),
        params_before: file.tensors().iter().map(|t| t.elements()).sum(),
        params_after: plan.iter().map(|(i, _)| i.elements()).sum(),
        blocks_before: n_blocks,
        blocks_after: kept.len(),
        dropped_blocks: drop.to_vec(),
    })
}

fn keep_entries(a: &MetaArray, kept: &[usize]) -> Option<MetaArray> {
    fn pick<T: Clone>(v: &[T], kept: &[usize]) -> Vec<T> {
        kept.iter().filter_map(|&i| v.get(i).cloned()).collect()
    }
    Some(match a {
        MetaArray::U8(v) => MetaArray::U8(pick(v, kept)),
        MetaArray::I8(v) => MetaArray::I8(pick(v, kept)),
        MetaArray::U16(v) => MetaArray::U16(pick(v, kept)),
        MetaArray::I16(v) => MetaArray::I16(pick(v, kept)),
        MetaArray::U32(v) => MetaArray::U32(pick(v, kept)),
        MetaArray::I32(v) => MetaArray::I32(pick(v, kept)),
        MetaArray::F32(v) => MetaArray::F32(pick(v, kept)),
        MetaArray::Bool(v) => MetaArray::Bool(pick(v, kept)),
        MetaArray::U64(v) => MetaArray::U64(pick(v, kept)),
        MetaArray::I64(v) => MetaArray::I64(pick(v, kept)),
        MetaArray::F64(v) => MetaArray::F64(pick(v, kept)),
        _ => return None,
    })
}

/// Block importance for `layers:K` (ShortGPT's "block influence"): one minus the mean
/// cosine between a block's input and output residual stream on calibration text. The
/// observer sees each block's normalized input `g ⊙ x / rms(x)`; dividing by the norm
/// gain `g` gives back the direction of `x`, which is all a cosine needs.
pub struct BlockInfluence {
    gains: Vec<Vec<f32>>,
    state: Mutex<InfluenceState>,
}

#[derive(Default)]
struct InfluenceState {
    prev: Vec<Option<Vec<f32>>>,
    cos_sum: Vec<f64>,
    rows: Vec<u64>,
}

impl BlockInfluence {
    /// `gains[i]` is block `i`'s `attn_norm` weight.
    pub fn new(gains: Vec<Vec<f32>>) -> Arc<BlockInfluence> {
        let n = gains.len();
        Arc::new(BlockInfluence {
            gains,
            state: Mutex::new(InfluenceState {
                prev: vec![None; n],
                cos_sum: vec![0.0; n],
                rows: vec![0; n],
            }),
        })
    }

    /// Reads the `attn_norm` gains of every block.
    pub fn gains_of(file: &GgufFile, n_blocks: usize) -> Result<Vec<Vec<f32>>> {
        (0..n_blocks)
            .map(|b| decode_any(file, &format!("blk.{b}.attn_norm.weight")))
            .collect()
    }

    /// Influence of blocks `0..n-1` (the last block, whose output the observer does not
    /// see, gets +∞ so it is never dropped).
    pub fn scores(&self) -> Vec<f64> {
        let st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let n = self.gains.len();
        (0..n)
            .map(|b| {
                if b + 1 < n && st.rows[b] > 0 {
                    1.0 - st.cos_sum[b] / st.rows[b] as f64
                } else {
                    f64::INFINITY
                }
            })
            .collect()
    }
}

fn decode_any(file: &GgufFile, name: &str) -> Result<Vec<f32>> {
    let info = file
        .tensor(name)
        .ok_or_else(|| CompressError::Invalid(format!("tensor {name:?} is missing")))?;
    let mut out = vec![0f32; info.elements() as usize];
    dequantize_row(info.dtype, file.tensor_bytes(info).as_slice(), &mut out).map_err(|source| {
        CompressError::Quant {
            tensor: name.to_string(),
            source,
        }
    })?;
    Ok(out)
}

impl MatmulObserver for BlockInfluence {
    fn observe(&self, weights: &[&str], x: &[f32], n: usize, cols: usize) {
        let Some(b) = weights
            .first()
            .filter(|w| w.ends_with(".attn_q.weight"))
            .and_then(|w| block_index(w))
        else {
            return;
        };
        let Some(g) = self.gains.get(b).filter(|g| g.len() == cols) else {
            return;
        };
        let mut dir: Vec<f32> = x[..n * cols].to_vec();
        for row in dir.chunks_exact_mut(cols) {
            for (v, &gv) in row.iter_mut().zip(g) {
                *v = if gv != 0.0 { *v / gv } else { 0.0 };
            }
        }
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if b > 0 {
            if let Some(prev) = st.prev[b - 1].take().filter(|p| p.len() == dir.len()) {
                let mut sum = 0.0;
                for (a, c) in prev.chunks_exact(cols).zip(dir.chunks_exact(cols)) {
                    let dot: f64 = a
                        .iter()
                        .zip(c)
                        .map(|(p, q)| (*p as f64) * (*q as f64))
                        .sum();
                    let na: f64 = a.iter().map(|p| (*p as f64).powi(2)).sum::<f64>().sqrt();
                    let nc: f64 = c.iter().map(|p| (*p as f64).powi(2)).sum::<f64>().sqrt();
                    if na > 0.0 && nc > 0.0 {
                        sum += dot / (na * nc);
                    }
                }
                st.cos_sum[b - 1] += sum;
                st.rows[b - 1] += n as u64;
            }
        }
        st.prev[b] = Some(dir);
    }
}

/// The `k` blocks with the lowest influence.
pub fn least_influential(scores: &[f64], k: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    let mut drop: Vec<usize> = order.into_iter().take(k).collect();
    drop.sort_unstable();
    drop
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nm_keeps_largest() {
        let mut w = vec![0.1, -0.9, 0.3, 0.2, 5.0, 1.0, -2.0, 0.0];
        prune_nm(&mut w, 8, 2, 4);
        assert_eq!(w, vec![0.0, -0.9, 0.3, 0.0, 5.0, 0.0, -2.0, 0.0]);
        assert_eq!(parse_nm("2:4").unwrap(), (2, 4));
        assert!(parse_nm("4:2").is_err());
        assert_eq!(parse_structured("layers:3").unwrap(), 3);
        assert!(parse_structured("heads:3").is_err());
    }

    #[test]
    fn magnitude_exact_fraction() {
        let mut w: Vec<f32> = (1..=100)
            .map(|i| i as f32 * if i % 2 == 0 { 1.0 } else { -1.0 })
            .collect();
        prune_magnitude_exact(&mut w, 0.3);
        assert_eq!(w.iter().filter(|v| **v == 0.0).count(), 30);
        assert!(w[..30].iter().all(|v| *v == 0.0));
    }

    #[test]
    fn least_influential_picks_lowest() {
        assert_eq!(
            least_influential(&[0.5, 0.1, 0.3, f64::INFINITY], 2),
            vec![1, 2]
        );
    }
}
