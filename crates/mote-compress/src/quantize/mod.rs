//! `mote quantize`: GGUF in, GGUF out, one tensor at a time.
//!
//! Peak memory is one output tensor plus a row of f32 per worker; the input stays
//! memory-mapped. The output is written to a temporary name and renamed at the end, and
//! cancelling (Ctrl-C sets the flag) removes the temporary file, so an interrupted run
//! leaves nothing behind.

pub mod policy;
pub mod preset;
pub mod source;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use mote_file::gguf::set_metadata;
use mote_file::{GgufFile, GgufWriter, MetaValue, TensorInfo, TensorSpec};
use mote_tensor::quant::{can_dequantize, can_quantize, dequantize_row, quantize_row_weighted};
use mote_tensor::DType;
use regex::Regex;
use serde::Serialize;

use crate::error::{CompressError, Result};
use crate::gptq::{self, Hessian};
pub use policy::{Policy, Reason};
pub use preset::Preset;
pub use source::TensorSource;

/// ggml's quantization format version, written as `general.quantization_version`.
const QUANTIZATION_VERSION: u32 = 2;

/// Per-tensor importance (imatrix): tensor name to one weight per input column.
pub type Importance = HashMap<String, Vec<f32>>;

pub struct QuantizeOptions {
    pub preset: Preset,
    /// No mixing: every quantizable tensor gets the preset's base type.
    pub pure: bool,
    /// `PATTERN=TYPE` overrides: the first regex that matches a tensor name wins.
    pub overrides: Vec<(Regex, DType)>,
    /// Dequantize already-quantized tensors instead of refusing.
    pub allow_requantize: bool,
    pub importance: Option<Importance>,
    /// GPTQ: per tensor name, the Hessian of its input; tensors listed here whose target
    /// type GPTQ can write are quantized with error compensation.
    pub gptq: Option<HashMap<String, Arc<Mutex<Hessian>>>>,
    /// GPTQ dampening, as a fraction of the mean Hessian diagonal.
    pub gptq_damp: f64,
    /// GPTQ dampening proportional to each column's own Hessian diagonal.
    pub gptq_damp_diag: f64,
    /// GPTQ refinement rounds (scale re-fit under the Hessian, then GPTQ again).
    pub gptq_refits: usize,
    /// GPTQ act-order: visit columns by decreasing Hessian diagonal (block grids from
    /// the original weights, "static groups").
    pub gptq_act_order: bool,
    /// Plan and report only; write nothing.
    pub dry_run: bool,
    /// Worker threads (0: all cores).
    pub threads: usize,
}

impl QuantizeOptions {
    pub fn new(preset: Preset) -> QuantizeOptions {
        QuantizeOptions {
            preset,
            pure: false,
            overrides: Vec::new(),
            allow_requantize: false,
            importance: None,
            gptq: None,
            gptq_damp: 0.01,
            gptq_damp_diag: 1.0,
            gptq_refits: 1,
            gptq_act_order: false,
            dry_run: false,
            threads: 0,
        }
    }
}

/// Parses `PATTERN=TYPE` (type names as in GGUF: Q4_K, Q8_0, F16, ...).
pub fn parse_override(spec: &str) -> Result<(Regex, DType)> {
    let (pat, ty) = spec.rsplit_once('=').ok_or_else(|| {
        CompressError::Invalid(format!("--tensor-type {spec:?}: expected PATTERN=TYPE"))
    })?;
    let re = Regex::new(pat)
        .map_err(|e| CompressError::Invalid(format!("--tensor-type pattern {pat:?}: {e}")))?;
    let dtype = DType::from_name(&ty.to_ascii_uppercase())
        .map_err(|e| CompressError::Invalid(format!("--tensor-type {spec:?}: {e}")))?;
    if !can_quantize(dtype) {
        return Err(CompressError::Invalid(format!(
            "--tensor-type {spec:?}: cannot write {dtype}"
        )));
    }
    Ok((re, dtype))
}

#[derive(Clone, Debug, Serialize)]
pub struct TensorReport {
    pub name: String,
    pub dims: Vec<u64>,
    pub from: String,
    pub to: String,
    pub bytes_in: u64,
    pub bytes_out: u64,
    #[serde(skip)]
    pub reason: Reason,
    pub used_importance: bool,
    pub gptq: bool,
}

#[derive(Clone, Debug, Serialize)]
pub struct QuantizeSummary {
    pub preset: String,
    pub file_type: u32,
    pub tensors: Vec<TensorReport>,
    pub elements: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub bpw_in: f64,
    pub bpw_out: f64,
    /// Output type name to tensor count.
    pub type_counts: BTreeMap<String, usize>,
    pub fallbacks: usize,
    pub overrides: usize,
    pub seconds: f64,
}

struct Planned<'a> {
    info: &'a TensorInfo,
    to: DType,
    reason: Reason,
}

fn model_ints(meta: &[(String, MetaValue)]) -> Result<(usize, usize)> {
    let arch = source::meta_str(meta, "general.architecture").ok_or_else(|| {
        CompressError::Invalid("general.architecture is missing or not a string".into())
    })?;
    let int = |k: &str| source::meta_u64(meta, &format!("{arch}.{k}"));
    let n_layer = int("block_count").unwrap_or(0) as usize;
    let n_gqa = match (int("attention.head_count"), int("attention.head_count_kv")) {
        (Some(h), Some(kv)) if kv > 0 => (h / kv) as usize,
        _ => 1,
    };
    Ok((n_layer, n_gqa))
}

fn plan<'a>(
    tensors: &'a [TensorInfo],
    meta: &[(String, MetaValue)],
    opts: &QuantizeOptions,
) -> Result<Vec<Planned<'a>>> {
    let mut policy = Policy::new(opts.preset, opts.pure, opts.overrides.clone());
    (policy.n_layer, policy.n_gqa) = model_ints(meta)?;
    policy.has_imatrix = opts.importance.is_some();
    let mut order: Vec<&TensorInfo> = tensors.iter().collect();
    order.sort_by(|a, b| policy::llama_order(&a.name, &b.name));
    policy.survey(order.iter().map(|t| t.name.as_str()));
    let mut out = Vec::with_capacity(order.len());
    for info in order {
        let (to, reason) = policy.choose(&info.name, &info.dims, info.dtype);
        if to != info.dtype {
            if !can_dequantize(info.dtype) {
                return Err(CompressError::Invalid(format!(
                    "tensor {:?}: cannot read type {}",
                    info.name, info.dtype
                )));
            }
            if !can_quantize(to) {
                return Err(CompressError::Invalid(format!(
                    "tensor {:?}: cannot write type {to}",
                    info.name
                )));
            }
            if info.dtype.is_quantized() && !opts.allow_requantize {
                return Err(CompressError::Requantize {
                    tensor: info.name.clone(),
                    dtype: info.dtype.to_string(),
                });
            }
        }
        out.push(Planned { info, to, reason });
    }
    Ok(out)
}

fn output_metadata(source: Vec<(String, MetaValue)>, preset: Preset) -> Vec<(String, MetaValue)> {
    let mut meta: Vec<(String, MetaValue)> = source
        .into_iter()
        .filter(|(k, _)| !k.starts_with("split."))
        .collect();
    set_metadata(
        &mut meta,
        "general.quantization_version",
        MetaValue::U32(QUANTIZATION_VERSION),
    );
    set_metadata(
        &mut meta,
        "general.file_type",
        MetaValue::U32(preset.file_type()),
    );
    meta
}

fn tensor_bytes_out(dims: &[u64], dtype: DType) -> Result<u64> {
    let elements = dims.iter().try_fold(1u64, |a, &d| a.checked_mul(d));
    elements
        .and_then(|e| dtype.bytes_for(e).ok())
        .ok_or_else(|| {
            CompressError::Invalid(format!("tensor of shape {dims:?} does not fit {dtype}"))
        })
}

/// Quantizes `input` into `output`. `progress(done_elements, total_elements, tensor)` is
/// called after each tensor; setting `cancel` stops at the next row batch.
pub fn quantize_file(
    input: &Path,
    output: &Path,
    opts: &QuantizeOptions,
    cancel: &AtomicBool,
    progress: &mut dyn FnMut(u64, u64, &TensorReport),
) -> Result<QuantizeSummary> {
    let file = GgufFile::open(input)?;
    quantize_source(&file, output, opts, cancel, progress)
}

/// [`quantize_file`] from any [`TensorSource`] (a GGUF file, a Hugging Face folder).
pub fn quantize_source(
    file: &dyn TensorSource,
    output: &Path,
    opts: &QuantizeOptions,
    cancel: &AtomicBool,
    progress: &mut dyn FnMut(u64, u64, &TensorReport),
) -> Result<QuantizeSummary> {
    let started = std::time::Instant::now();
    let meta = file.metadata();
    let planned = plan(file.tensors(), &meta, opts)?;
    let specs: Vec<TensorSpec> = planned
        .iter()
        .map(|p| TensorSpec {
            name: p.info.name.clone(),
            dims: p.info.dims.clone(),
            dtype: p.to,
        })
        .collect();
    let mut writer = if opts.dry_run {
        None
    } else {
        Some(GgufWriter::create(
            output,
            &output_metadata(meta, opts.preset),
            specs,
        )?)
    };

    let total: u64 = planned.iter().map(|p| p.info.elements()).sum();
    let threads = if opts.threads == 0 {
        mote_tensor::parallel::default_threads()
    } else {
        opts.threads
    };
    let mut done = 0u64;
    // Q/K/V (and gate/up) share an input, so they share one factorization.
    let mut factors: HashMap<usize, Arc<gptq::Factor>> = HashMap::new();
    let mut reports = Vec::with_capacity(planned.len());
    for p in &planned {
        if cancel.load(Ordering::Relaxed) {
            return Err(CompressError::Interrupted);
        }
        let name = &p.info.name;
        let importance = opts
            .importance
            .as_ref()
            .and_then(|m| m.get(name))
            .filter(|v| v.len() as u64 == p.info.dims.first().copied().unwrap_or(0))
            .map(Vec::as_slice);
        let bytes_out = tensor_bytes_out(&p.info.dims, p.to)?;
        if let Some(w) = writer.as_mut() {
            let src = file.tensor_data(p.info)?;
            let hessian = opts
                .gptq
                .as_ref()
                .and_then(|m| m.get(name))
                .filter(|_| p.to != p.info.dtype && gptq::supports(p.to));
            if p.to == p.info.dtype {
                w.write_tensor(name, src.as_slice())?;
            } else if let Some(h) = hessian {
                let key = Arc::as_ptr(h) as usize;
                let factor = match factors.get(&key) {
                    Some(f) => f.clone(),
                    None => {
                        let hess = h.lock().unwrap_or_else(|e| e.into_inner());
                        let f = Arc::new(gptq::inverse_factor(
                            &hess,
                            opts.gptq_damp,
                            opts.gptq_damp_diag,
                            opts.gptq_act_order,
                        )?);
                        factors.insert(key, f.clone());
                        f
                    }
                };
                let (rows, cols) = p.info.rows_cols();
                let mut wf = vec![0f32; rows * cols];
                dequantize_row(p.info.dtype, src.as_slice(), &mut wf).map_err(|source| {
                    CompressError::Quant {
                        tensor: name.clone(),
                        source,
                    }
                })?;
                let data = gptq::quantize_matrix(
                    p.to,
                    &wf,
                    rows,
                    cols,
                    &factor,
                    opts.gptq_refits,
                    threads,
                )?;
                w.write_tensor(name, &data)?;
            } else {
                let data = convert(src.as_slice(), p.info, p.to, importance, threads, cancel)?;
                w.write_tensor(name, &data)?;
            }
        }
        done += p.info.elements();
        let report = TensorReport {
            name: name.clone(),
            dims: p.info.dims.clone(),
            from: p.info.dtype.to_string(),
            to: p.to.to_string(),
            bytes_in: p.info.size_bytes,
            bytes_out,
            reason: p.reason,
            used_importance: importance.is_some() && p.to != p.info.dtype,
            gptq: opts.gptq.as_ref().is_some_and(|m| m.contains_key(name))
                && p.to != p.info.dtype
                && gptq::supports(p.to),
        };
        progress(done, total, &report);
        reports.push(report);
    }
    if let Some(w) = writer {
        w.finish()?;
    }
    Ok(summarize(
        opts.preset,
        reports,
        started.elapsed().as_secs_f64(),
    ))
}

fn summarize(preset: Preset, tensors: Vec<TensorReport>, seconds: f64) -> QuantizeSummary {
    let elements: u64 = tensors.iter().map(|t| t.dims.iter().product::<u64>()).sum();
    let bytes_in: u64 = tensors.iter().map(|t| t.bytes_in).sum();
    let bytes_out: u64 = tensors.iter().map(|t| t.bytes_out).sum();
    let mut type_counts = BTreeMap::new();
    for t in &tensors {
        *type_counts.entry(t.to.clone()).or_insert(0) += 1;
    }
    let bpw = |b: u64| b as f64 * 8.0 / elements.max(1) as f64;
    QuantizeSummary {
        preset: preset.name().to_string(),
        file_type: preset.file_type(),
        fallbacks: tensors
            .iter()
            .filter(|t| t.reason == Reason::Fallback)
            .count(),
        overrides: tensors
            .iter()
            .filter(|t| t.reason == Reason::Override)
            .count(),
        bpw_in: bpw(bytes_in),
        bpw_out: bpw(bytes_out),
        elements,
        bytes_in,
        bytes_out,
        type_counts,
        tensors,
        seconds,
    }
}

/// Re-encodes one tensor row by row, rows split across `threads` workers.
fn convert(
    src: &[u8],
    info: &TensorInfo,
    to: DType,
    importance: Option<&[f32]>,
    threads: usize,
    cancel: &AtomicBool,
) -> Result<Vec<u8>> {
    let (rows, cols) = info.rows_cols();
    let from = info.dtype;
    let quant_err = |source| CompressError::Quant {
        tensor: info.name.clone(),
        source,
    };
    let row_in = from
        .bytes_for(cols as u64)
        .map_err(|e| CompressError::Invalid(format!("tensor {:?}: {e}", info.name)))?
        as usize;
    let row_out = to
        .bytes_for(cols as u64)
        .map_err(|e| CompressError::Invalid(format!("tensor {:?}: {e}", info.name)))?
        as usize;
    if src.len() != rows * row_in {
        return Err(CompressError::Invalid(format!(
            "tensor {:?}: {} bytes, expected {}",
            info.name,
            src.len(),
            rows * row_in
        )));
    }
    let mut out = vec![0u8; rows * row_out];
    let per_worker = rows.div_ceil(threads.max(1)).max(1);
    let results: Vec<Result<()>> = std::thread::scope(|s| {
        let handles: Vec<_> = out
            .chunks_mut(per_worker * row_out)
            .zip(src.chunks(per_worker * row_in))
            .map(|(dst, src)| {
                s.spawn(move || -> Result<()> {
                    let mut row = vec![0f32; cols];
                    for (d, sr) in dst.chunks_mut(row_out).zip(src.chunks(row_in)) {
                        if cancel.load(Ordering::Relaxed) {
                            return Err(CompressError::Interrupted);
                        }
                        dequantize_row(from, sr, &mut row).map_err(quant_err)?;
                        quantize_row_weighted(to, &row, importance, d).map_err(quant_err)?;
                    }
                    Ok(())
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| {
                    Err(CompressError::Invalid("a worker thread panicked".into()))
                })
            })
            .collect()
    });
    for r in results {
        r?;
    }
    Ok(out)
}
