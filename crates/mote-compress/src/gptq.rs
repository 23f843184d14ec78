//! GPTQ (Frantar et al., 2022) for ggml's legacy 32-wide block types.
//!
//! Each weight row is quantized column by column; the rounding error of column `j` is
//! spread over the columns not yet quantized through the inverse Hessian of the layer
//! input (`H = XᵀX / N`, damped), so the product `W·x` on calibration inputs stays close
//! to the original. A block's scale (and minimum) is fixed from the *current*,
//! error-compensated values when its first column is reached.
//!
//! Rows are independent given `H⁻¹`, so instead of the paper's 128-column lazy batches
//! we run a group of rows at a time: every row of the Cholesky factor is read once per
//! group, which is the same locality for the same arithmetic.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex};

use half::f16;
use mote_file::{GgufFile, GgufWriter, MetaArray, MetaValue, TensorSpec};
use mote_model::MatmulObserver;
use mote_tensor::DType;

use crate::error::{CompressError, Result};

/// Rows processed together (one pass over the factor per group).
const ROW_GROUP: usize = 8;
const BLOCK: usize = 32;

/// Types GPTQ can write.
pub fn supports(dtype: DType) -> bool {
    matches!(
        dtype,
        DType::Q4_0 | DType::Q4_1 | DType::Q5_0 | DType::Q5_1 | DType::Q8_0
    )
}

/// `Σ x xᵀ` of one layer input (upper triangle, row-major), and the rows seen.
pub struct Hessian {
    pub cols: usize,
    pub sum: Vec<f64>,
    pub count: u64,
}

/// Collects one Hessian per distinct weight input (Q/K/V share one, gate/up another).
#[derive(Default)]
pub struct HessianCollector {
    by_input: Mutex<HashMap<String, Arc<Mutex<Hessian>>>>,
}

impl HessianCollector {
    pub fn new() -> HessianCollector {
        HessianCollector::default()
    }

    /// Tensor name to its input's Hessian.
    pub fn hessians(&self) -> HashMap<String, Arc<Mutex<Hessian>>> {
        self.by_input
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

impl MatmulObserver for HessianCollector {
    fn observe(&self, weights: &[&str], x: &[f32], n: usize, cols: usize) {
        // The output matrix only sees the rows whose logits were asked for.
        let Some(first) = weights.iter().find(|w| w.starts_with("blk.")) else {
            return;
        };
        if cols == 0 || n == 0 {
            return;
        }
        let hess = {
            let mut map = self.by_input.lock().unwrap_or_else(|e| e.into_inner());
            let h = map
                .entry(first.to_string())
                .or_insert_with(|| {
                    Arc::new(Mutex::new(Hessian {
                        cols,
                        sum: vec![0.0; cols * cols],
                        count: 0,
                    }))
                })
                .clone();
            for w in weights.iter().filter(|w| w.starts_with("blk.")) {
                map.entry(w.to_string()).or_insert_with(|| h.clone());
            }
            h
        };
        let mut h = hess.lock().unwrap_or_else(|e| e.into_inner());
        if h.cols != cols {
            return;
        }
        // Columns of X contiguous, so each entry is one dot product.
        let mut xt = vec![0f32; cols * n];
        for (t, row) in x.chunks_exact(cols).take(n).enumerate() {
            for (i, &v) in row.iter().enumerate() {
                xt[i * n + t] = v;
            }
        }
        let threads = mote_tensor::parallel::default_threads().max(1);
        let mut rows: Vec<(usize, &mut [f64])> = h.sum.chunks_mut(cols).enumerate().collect();
        let mut parts: Vec<Vec<(usize, &mut [f64])>> = (0..threads).map(|_| Vec::new()).collect();
        // Interleaved rows balance the triangle's uneven row lengths.
        for (k, r) in rows.drain(..).enumerate() {
            parts[k % threads].push(r);
        }
        let xt = &xt;
        std::thread::scope(|s| {
            for part in parts {
                s.spawn(move || {
                    for (i, hrow) in part {
                        let xi = &xt[i * n..(i + 1) * n];
                        for (j, hv) in hrow.iter_mut().enumerate().skip(i) {
                            *hv += dot(xi, &xt[j * n..(j + 1) * n]) as f64;
                        }
                    }
                });
            }
        });
        h.count += n as u64;
    }
}

/// Tensor name to the Hessian of its input; tensors sharing an input share the `Arc`.
pub type Hessians = HashMap<String, Arc<Mutex<Hessian>>>;

const HESSIAN_TYPE: &str = "mote.hessians";
const HESSIAN_SUFFIX: &str = ".hessian";
/// Version of the cache layout; files without it (or with another) are refused.
pub const HESSIAN_FORMAT_VERSION: u32 = 2;

/// Which model a Hessian cache belongs to: a hash of its tensor names, shapes and types,
/// and its file size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ModelIdentity {
    pub tensors_hash: u64,
    pub file_size: u64,
}

impl ModelIdentity {
    pub fn of(file: &GgufFile) -> ModelIdentity {
        let mut h = Fnv::new();
        for t in file.tensors() {
            h.write(t.name.as_bytes());
            h.write(&[0]);
            for d in &t.dims {
                h.write(&d.to_le_bytes());
            }
            h.write(t.dtype.to_string().as_bytes());
            h.write(&[0]);
        }
        ModelIdentity {
            tensors_hash: h.0,
            file_size: file.file_len(),
        }
    }
}

/// The calibration settings a Hessian cache was collected with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CalibrationKey {
    /// FNV-1a of the calibration text's bytes.
    pub text_hash: u64,
    /// Window size in tokens (`--calib-ctx`).
    pub ctx: usize,
    /// Windows asked for (`--calib-chunks`; `None`: all).
    pub chunks: Option<usize>,
}

impl CalibrationKey {
    pub fn new(text: &str, ctx: usize, chunks: Option<usize>) -> CalibrationKey {
        let mut h = Fnv::new();
        h.write(text.as_bytes());
        CalibrationKey {
            text_hash: h.0,
            ctx,
            chunks,
        }
    }
}

/// 64-bit FNV-1a: stable across builds and platforms, enough to tell settings apart.
struct Fnv(u64);

impl Fnv {
    fn new() -> Fnv {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
}

/// Saves collected Hessians as GGUF, so that several quantizations can share one
/// calibration run: per distinct input a tensor `<first user>.hessian` (F32,
/// `[cols, cols]`, the upper triangle of `Σ x xᵀ`), and metadata
/// `mote.hessians.<first user>.users` (string array) and `.count` (rows seen). The
/// model's identity, the calibration settings and [`HESSIAN_FORMAT_VERSION`] are
/// stored too, so [`read_hessians`] can refuse a cache made for something else.
pub fn write_hessians(
    path: &Path,
    hessians: &Hessians,
    chunks_run: usize,
    model: &ModelIdentity,
    calib: &CalibrationKey,
) -> Result<()> {
    let mut by_input: HashMap<usize, (Vec<String>, Arc<Mutex<Hessian>>)> = HashMap::new();
    for (name, h) in hessians {
        by_input
            .entry(Arc::as_ptr(h) as usize)
            .or_insert_with(|| (Vec::new(), h.clone()))
            .0
            .push(name.clone());
    }
    let mut groups: BTreeMap<String, (Vec<String>, Arc<Mutex<Hessian>>)> = BTreeMap::new();
    for (_, (mut users, h)) in by_input {
        users.sort();
        groups.insert(users[0].clone(), (users, h));
    }
    let mut meta = vec![
        (
            "general.type".to_string(),
            MetaValue::String(HESSIAN_TYPE.into()),
        ),
        (
            format!("{HESSIAN_TYPE}.format_version"),
            MetaValue::U32(HESSIAN_FORMAT_VERSION),
        ),
        (
            format!("{HESSIAN_TYPE}.model.tensors_hash"),
            MetaValue::U64(model.tensors_hash),
        ),
        (
            format!("{HESSIAN_TYPE}.model.file_size"),
            MetaValue::U64(model.file_size),
        ),
        (
            format!("{HESSIAN_TYPE}.calib.text_hash"),
            MetaValue::U64(calib.text_hash),
        ),
        (
            format!("{HESSIAN_TYPE}.calib.chunks_requested"),
            MetaValue::U64(calib.chunks.map_or(0, |c| c as u64)),
        ),
        (
            format!("{HESSIAN_TYPE}.chunk_count"),
            MetaValue::U32(chunks_run as u32),
        ),
        (
            format!("{HESSIAN_TYPE}.chunk_size"),
            MetaValue::U32(calib.ctx as u32),
        ),
    ];
    let mut specs = Vec::with_capacity(groups.len());
    for (key, (users, h)) in &groups {
        let h = h.lock().unwrap_or_else(|e| e.into_inner());
        meta.push((
            format!("{HESSIAN_TYPE}.{key}.users"),
            MetaValue::Array(MetaArray::String(users.clone())),
        ));
        meta.push((
            format!("{HESSIAN_TYPE}.{key}.count"),
            MetaValue::U64(h.count),
        ));
        specs.push(TensorSpec {
            name: format!("{key}{HESSIAN_SUFFIX}"),
            dims: vec![h.cols as u64, h.cols as u64],
            dtype: DType::F32,
        });
    }
    let mut w = GgufWriter::create(path, &meta, specs)?;
    for (key, (_, h)) in &groups {
        let h = h.lock().unwrap_or_else(|e| e.into_inner());
        let bytes: Vec<u8> = h
            .sum
            .iter()
            .flat_map(|&v| (v as f32).to_le_bytes())
            .collect();
        w.write_tensor(&format!("{key}{HESSIAN_SUFFIX}"), &bytes)?;
    }
    w.finish()?;
    Ok(())
}

/// Reads a file written by [`write_hessians`], refusing it with
/// [`CompressError::HessianCacheMismatch`] when it was made by another format version,
/// for another model (`model`), or, when `calib` is given, with other calibration
/// settings.
pub fn read_hessians(
    path: &Path,
    model: &ModelIdentity,
    calib: Option<&CalibrationKey>,
) -> Result<Hessians> {
    let file = GgufFile::open(path)?;
    let bad = |reason: String| CompressError::Invalid(format!("{}: {reason}", path.display()));
    if file.get_str("general.type")? != Some(HESSIAN_TYPE) {
        return Err(bad(format!("not a {HESSIAN_TYPE} file")));
    }
    let mismatch =
        |setting: &str, cached: String, wanted: String| CompressError::HessianCacheMismatch {
            path: path.to_path_buf(),
            setting: setting.to_string(),
            cached,
            wanted,
        };
    let u64_key = |key: &str| {
        file.get(&format!("{HESSIAN_TYPE}.{key}"))
            .and_then(MetaValue::as_u64)
    };
    let version = u64_key("format_version");
    if version != Some(HESSIAN_FORMAT_VERSION as u64) {
        return Err(mismatch(
            "format version",
            version.map_or("none (an older mote)".into(), |v| v.to_string()),
            HESSIAN_FORMAT_VERSION.to_string(),
        ));
    }
    let cached_size = u64_key("model.file_size");
    if cached_size != Some(model.file_size) {
        return Err(mismatch(
            "model file size",
            cached_size.map_or("unknown".into(), |v| format!("{v} bytes")),
            format!("{} bytes", model.file_size),
        ));
    }
    let cached_tensors = u64_key("model.tensors_hash");
    if cached_tensors != Some(model.tensors_hash) {
        return Err(mismatch(
            "model tensors (names, shapes, types)",
            cached_tensors.map_or("unknown".into(), |v| format!("hash {v:016x}")),
            format!("hash {:016x}", model.tensors_hash),
        ));
    }
    if let Some(c) = calib {
        let text = u64_key("calib.text_hash");
        if text != Some(c.text_hash) {
            return Err(mismatch(
                "calibration text (--calib-file)",
                text.map_or("unknown".into(), |v| format!("hash {v:016x}")),
                format!("hash {:016x}", c.text_hash),
            ));
        }
        let ctx = u64_key("chunk_size");
        if ctx != Some(c.ctx as u64) {
            return Err(mismatch(
                "window size (--calib-ctx)",
                ctx.map_or("unknown".into(), |v| v.to_string()),
                c.ctx.to_string(),
            ));
        }
        let chunks = u64_key("calib.chunks_requested");
        let wanted = c.chunks.map_or(0, |v| v as u64);
        if chunks != Some(wanted) {
            let show = |v: u64| {
                if v == 0 {
                    "all".to_string()
                } else {
                    v.to_string()
                }
            };
            return Err(mismatch(
                "windows (--calib-chunks)",
                chunks.map_or("unknown".into(), show),
                show(wanted),
            ));
        }
    }
    let mut out = Hessians::new();
    for info in file.tensors() {
        let Some(key) = info.name.strip_suffix(HESSIAN_SUFFIX) else {
            continue;
        };
        let cols = info.dims.first().copied().unwrap_or(0) as usize;
        if info.dtype != DType::F32 || info.dims != [cols as u64, cols as u64] || cols == 0 {
            return Err(bad(format!(
                "tensor {:?} is not a square F32 matrix",
                info.name
            )));
        }
        let bytes = file.tensor_bytes(info);
        let sum: Vec<f64> = bytes
            .as_slice()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f64)
            .collect();
        if sum.len() != cols * cols {
            return Err(bad(format!("tensor {:?} is truncated", info.name)));
        }
        let count = file
            .get_u64(&format!("{HESSIAN_TYPE}.{key}.count"))?
            .ok_or_else(|| bad(format!("{key}: no row count")))?;
        let users = file
            .get_array(&format!("{HESSIAN_TYPE}.{key}.users"))?
            .and_then(|a| a.as_strings().map(<[String]>::to_vec))
            .ok_or_else(|| bad(format!("{key}: no user list")))?;
        let h = Arc::new(Mutex::new(Hessian { cols, sum, count }));
        for u in users {
            out.insert(u, h.clone());
        }
    }
    if out.is_empty() {
        return Err(bad("no Hessians in the file".into()));
    }
    Ok(out)
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let mut ca = a.chunks_exact(8);
    let mut cb = b.chunks_exact(8);
    for (x, y) in ca.by_ref().zip(cb.by_ref()) {
        for k in 0..8 {
            acc[k] += x[k] * y[k];
        }
    }
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    acc.iter().sum::<f32>() + tail
}

/// The upper-triangular `U` with `H⁻¹ = UᵀU` (GPTQ's factor), row-major, from the
/// damped mean Hessian. Computed without forming `H⁻¹`: `H = VVᵀ` with `V` upper
/// (Cholesky of the index-reversed matrix), then `U = V⁻¹`. Also returns the columns
/// that no calibration input touched (their weights are irrelevant; GPTQ zeroes them).
///
/// With `act_order` the factor is of `H` with its columns in order of decreasing
/// diagonal (GPTQ's act-order, `desc_act`): [`Factor::perm`] holds that order, and
/// GPTQ then quantizes the most active columns first, while the error can still be
/// spread over the most others.
pub fn inverse_factor(h: &Hessian, damp: f64, damp_diag: f64, act_order: bool) -> Result<Factor> {
    let n = h.cols;
    let scale = 1.0 / h.count.max(1) as f64;
    let mut a = vec![0f64; n * n];
    for i in 0..n {
        for j in i..n {
            let v = h.sum[i * n + j] * scale;
            a[i * n + j] = v;
            a[j * n + i] = v;
        }
    }
    let dead: Vec<bool> = (0..n).map(|i| a[i * n + i] <= 0.0).collect();
    for i in 0..n {
        if dead[i] {
            a[i * n + i] = 1.0;
        }
    }
    // The undamped diagonal is the per-column mean squared activation: llama.cpp's
    // importance, used to choose each block's scale.
    let diag: Vec<f32> = (0..n)
        .map(|i| if dead[i] { 0.0 } else { a[i * n + i] as f32 })
        .collect();
    let mean_diag = (0..n).map(|i| a[i * n + i]).sum::<f64>() / n.max(1) as f64;
    // `damp_diag` scales each column's own diagonal: the objective moves towards the
    // importance-weighted one of `--imatrix` (diagonal H), which trusts the calibration
    // text's correlations less.
    for i in 0..n {
        a[i * n + i] += damp * mean_diag + damp_diag * a[i * n + i];
    }
    // Act-order: factor the permuted matrix P H Pᵀ (stable sort, so equal diagonals, the
    // dead columns among them, keep their order).
    let perm = act_order.then(|| {
        let mut p: Vec<usize> = (0..n).collect();
        p.sort_by(|&x, &y| diag[y].total_cmp(&diag[x]));
        p
    });
    let permuted: Vec<f64>;
    let m: &[f64] = match &perm {
        Some(p) => {
            permuted = (0..n * n).map(|k| a[p[k / n] * n + p[k % n]]).collect();
            &permuted
        }
        None => &a,
    };
    // Reversed Cholesky: V upper with A = V Vᵀ, filled from the last column back.
    let mut v = vec![0f64; n * n];
    for j in (0..n).rev() {
        let mut d = m[j * n + j];
        for k in j + 1..n {
            d -= v[j * n + k] * v[j * n + k];
        }
        if d <= 0.0 || !d.is_finite() {
            return Err(CompressError::Invalid(
                "GPTQ: the calibration Hessian is not positive definite; use more text".into(),
            ));
        }
        let djj = d.sqrt();
        v[j * n + j] = djj;
        for i in 0..j {
            let mut s = m[i * n + j];
            for k in j + 1..n {
                s -= v[i * n + k] * v[j * n + k];
            }
            v[i * n + j] = s / djj;
        }
    }
    // U = V⁻¹ (upper), by back substitution column by column.
    let mut u = vec![0f64; n * n];
    for j in 0..n {
        u[j * n + j] = 1.0 / v[j * n + j];
        for i in (0..j).rev() {
            let mut s = 0.0;
            for k in i + 1..=j {
                s += v[i * n + k] * u[k * n + j];
            }
            u[i * n + j] = -s / v[i * n + i];
        }
    }
    let h = a.iter().map(|&x| x as f32).collect();
    Ok(Factor {
        u,
        dead,
        diag,
        h,
        perm,
    })
}

/// Scale (and minimum) of one block, chosen the way ggml's reference quantizer does,
/// with the values stored as f16.
#[derive(Clone, Copy)]
struct BlockParams {
    d: f32,
    m: f32,
    lo: i32,
    hi: i32,
    /// Symmetric types store `q - offset`.
    offset: i32,
}

/// Like [`plain_block_params`], but the scale (and minimum) come from ggml's
/// importance-weighted search over the block, with the columns' mean squared
/// activations as importance: the grid then fits the values that matter most, and GPTQ's
/// error feedback handles the rest.
fn block_params(dtype: DType, x: &[f32], importance: &[f32]) -> BlockParams {
    let plain = plain_block_params(dtype, x);
    if !mote_tensor::quant::uses_importance(dtype) || importance.iter().all(|&w| w <= 0.0) {
        return plain;
    }
    let mut bytes = [0u8; 24];
    let Ok(n) = dtype.bytes_for(BLOCK as u64) else {
        return plain;
    };
    let block = &mut bytes[..n as usize];
    if mote_tensor::quant::quantize_row_weighted(dtype, x, Some(importance), block).is_err() {
        return plain;
    }
    let f = |at: usize| f16::from_le_bytes([block[at], block[at + 1]]).to_f32();
    match dtype {
        DType::Q4_1 | DType::Q5_1 => BlockParams {
            d: f(0),
            m: f(2),
            ..plain
        },
        _ => BlockParams { d: f(0), ..plain },
    }
}

fn plain_block_params(dtype: DType, x: &[f32]) -> BlockParams {
    let r = |v: f32| f16::from_f32(v).to_f32();
    match dtype {
        DType::Q4_0 | DType::Q5_0 => {
            let half = if dtype == DType::Q4_0 { 8 } else { 16 };
            let max = x
                .iter()
                .fold(0f32, |m, &v| if v.abs() > m.abs() { v } else { m });
            BlockParams {
                d: r(max / -(half as f32)),
                m: 0.0,
                lo: 0,
                hi: 2 * half - 1,
                offset: half,
            }
        }
        DType::Q8_0 => {
            let amax = x.iter().fold(0f32, |m, &v| m.max(v.abs()));
            BlockParams {
                d: r(amax / 127.0),
                m: 0.0,
                lo: -127,
                hi: 127,
                offset: 0,
            }
        }
        _ => {
            let levels = if dtype == DType::Q4_1 { 15 } else { 31 };
            let min = x.iter().fold(f32::INFINITY, |m, &v| m.min(v));
            let max = x.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
            BlockParams {
                d: r((max - min) / levels as f32),
                m: r(min),
                lo: 0,
                hi: levels,
                offset: 0,
            }
        }
    }
}

impl BlockParams {
    /// Code and reconstructed value of `x`.
    fn quantize(&self, x: f32) -> (i32, f32) {
        if self.d == 0.0 {
            let q = if self.offset > 0 { self.offset } else { 0 };
            return (q, self.m);
        }
        let q = (((x - self.m) / self.d).round() as i32 + self.offset).clamp(self.lo, self.hi);
        (q, (q - self.offset) as f32 * self.d + self.m)
    }
}

/// Writes one block's codes in ggml's layout.
fn encode_block(dtype: DType, p: &BlockParams, q: &[i32; BLOCK], out: &mut Vec<u8>) {
    out.extend_from_slice(&f16::from_f32(p.d).to_le_bytes());
    match dtype {
        DType::Q8_0 => out.extend(q.iter().map(|&v| v as i8 as u8)),
        _ => {
            if matches!(dtype, DType::Q4_1 | DType::Q5_1) {
                out.extend_from_slice(&f16::from_f32(p.m).to_le_bytes());
            }
            if matches!(dtype, DType::Q5_0 | DType::Q5_1) {
                let mut qh = 0u32;
                for j in 0..BLOCK / 2 {
                    qh |= (((q[j] >> 4) & 1) as u32) << j;
                    qh |= (((q[j + 16] >> 4) & 1) as u32) << (j + 16);
                }
                out.extend_from_slice(&qh.to_le_bytes());
            }
            for j in 0..BLOCK / 2 {
                out.push(((q[j] & 0xF) | ((q[j + 16] & 0xF) << 4)) as u8);
            }
        }
    }
}

/// What GPTQ needs of one layer input's Hessian, from [`inverse_factor`].
pub struct Factor {
    /// `U` with `H⁻¹ = UᵀU`, row-major, upper triangular; with [`Factor::perm`], of the
    /// permuted `H` (row `t` belongs to column `perm[t]`).
    pub u: Vec<f64>,
    /// Columns no calibration input touched.
    pub dead: Vec<bool>,
    /// The undamped diagonal of `H` (mean squared activation per column).
    pub diag: Vec<f32>,
    /// The damped `H` itself (full, row-major): the objective `ΔᵀHΔ` GPTQ minimizes,
    /// used to re-fit the block scales and to compare candidate encodings of a row.
    pub h: Vec<f32>,
    /// Act-order: the order GPTQ visits the columns in (decreasing diagonal of `H`).
    /// `u` is in this order; `dead`, `diag` and `h` stay in the tensor's.
    pub perm: Option<Vec<usize>>,
}

/// GPTQ-quantizes a `rows × cols` row-major f32 matrix into `dtype` blocks, given the
/// factor from [`inverse_factor`]. Rows are spread over `threads` workers.
///
/// `refits` rounds of refinement follow the first GPTQ pass: each re-fits every block's
/// scale (and minimum) of a row jointly to the row's codes, by least squares under `H`
/// (the codes fixed, `ΔᵀHΔ` is quadratic in the scales), then runs GPTQ again on the
/// re-fitted grids. Of all encodings tried for a row, ggml's importance-weighted
/// rounding included, the one with the smallest `ΔᵀHΔ` is written.
pub fn quantize_matrix(
    dtype: DType,
    w: &[f32],
    rows: usize,
    cols: usize,
    factor: &Factor,
    refits: usize,
    threads: usize,
) -> Result<Vec<u8>> {
    if !supports(dtype) {
        return Err(CompressError::Invalid(format!("GPTQ cannot write {dtype}")));
    }
    if !cols.is_multiple_of(BLOCK)
        || w.len() != rows * cols
        || factor.u.len() != cols * cols
        || factor.h.len() != cols * cols
        || factor.diag.len() != cols
        || factor.dead.len() != cols
        || factor.perm.as_ref().is_some_and(|p| p.len() != cols)
    {
        return Err(CompressError::Invalid(format!(
            "GPTQ: a {rows}x{cols} matrix does not fit {dtype} blocks or the Hessian"
        )));
    }
    let row_bytes = dtype
        .bytes_for(cols as u64)
        .map_err(|e| CompressError::Invalid(e.to_string()))? as usize;
    let groups: Vec<&[f32]> = w.chunks(ROW_GROUP * cols).collect();
    let per_worker = groups.len().div_ceil(threads.max(1)).max(1);
    let encoded: Vec<Vec<u8>> = std::thread::scope(|s| {
        let handles: Vec<_> = groups
            .chunks(per_worker)
            .map(|mine| {
                s.spawn(move || {
                    let mut out = Vec::with_capacity(mine.len() * ROW_GROUP * row_bytes);
                    for g in mine {
                        out.extend(quantize_group(dtype, g, cols, factor, refits));
                    }
                    out
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_default())
            .collect()
    });
    let out: Vec<u8> = encoded.concat();
    if out.len() != rows * row_bytes {
        return Err(CompressError::Invalid(
            "GPTQ: a worker thread failed".into(),
        ));
    }
    Ok(out)
}

/// One encoding of a group of rows: per block its grid and codes, per row `ΔᵀHΔ`.
#[derive(Clone)]
struct Encoding {
    params: Vec<BlockParams>,
    codes: Vec<[i32; BLOCK]>,
    loss: Vec<f64>,
}

const NO_PARAMS: BlockParams = BlockParams {
    d: 0.0,
    m: 0.0,
    lo: 0,
    hi: 0,
    offset: 0,
};

/// One GPTQ pass over a group of rows (`w`: the original weights, dead columns zeroed).
/// With `fixed`, the block grids are given; otherwise each is chosen when its first
/// column is reached, from the error-compensated values. The loss comes for free: the
/// sum of the squared scaled errors is exactly `ΔᵀHΔ`.
///
/// With act-order ([`Factor::perm`]) the columns are visited in the factor's order, so
/// a block's columns are no longer consecutive: without `fixed`, every block's grid is
/// chosen first from the original weights ("static groups"), and each column is
/// rounded on its own block's grid. Codes and grids stay in the tensor's layout.
fn gptq_pass(
    dtype: DType,
    w: &[f64],
    cols: usize,
    factor: &Factor,
    fixed: Option<&[BlockParams]>,
) -> Encoding {
    let u = &factor.u;
    let perm = factor.perm.as_deref();
    let n_rows = w.len() / cols;
    let blocks = cols / BLOCK;
    let mut cur = [0f32; BLOCK];
    let mut params = match fixed {
        Some(p) => p.to_vec(),
        None if perm.is_some() => w
            .chunks(BLOCK)
            .enumerate()
            .map(|(i, chunk)| {
                for (c, v) in cur.iter_mut().zip(chunk) {
                    *c = *v as f32;
                }
                let j = (i % blocks) * BLOCK;
                block_params(dtype, &cur, &factor.diag[j..j + BLOCK])
            })
            .collect(),
        None => vec![NO_PARAMS; n_rows * blocks],
    };
    // The working copy in visiting order.
    let mut w: Vec<f64> = match perm {
        Some(p) => w
            .chunks(cols)
            .flat_map(|row| p.iter().map(move |&j| row[j]))
            .collect(),
        None => w.to_vec(),
    };
    let mut codes = vec![[0i32; BLOCK]; n_rows * blocks];
    let mut loss = vec![0f64; n_rows];
    for t in 0..cols {
        let urow = &u[t * cols..(t + 1) * cols];
        let j = perm.map_or(t, |p| p[t]);
        let (b, k) = (j / BLOCK, j % BLOCK);
        for r in 0..n_rows {
            let wr = &mut w[r * cols..(r + 1) * cols];
            if k == 0 && fixed.is_none() && perm.is_none() {
                for (c, v) in cur.iter_mut().zip(&wr[j..j + BLOCK]) {
                    *c = *v as f32;
                }
                params[r * blocks + b] = block_params(dtype, &cur, &factor.diag[j..j + BLOCK]);
            }
            let (q, deq) = params[r * blocks + b].quantize(wr[t] as f32);
            codes[r * blocks + b][k] = q;
            let err = (wr[t] - deq as f64) / urow[t];
            loss[r] += err * err;
            wr[t] = deq as f64;
            for (v, &uk) in wr[t + 1..].iter_mut().zip(&urow[t + 1..]) {
                *v -= err * uk;
            }
        }
    }
    Encoding {
        params,
        codes,
        loss,
    }
}

/// ggml-style rounding of each block on its importance-weighted grid (no error
/// feedback): what `--imatrix` writes, as a candidate. Its loss is filled in by
/// [`refit`].
fn rounding_pass(dtype: DType, w: &[f64], cols: usize, factor: &Factor) -> Encoding {
    let n_rows = w.len() / cols;
    let blocks = cols / BLOCK;
    let mut params = Vec::with_capacity(n_rows * blocks);
    let mut codes = Vec::with_capacity(n_rows * blocks);
    let mut cur = [0f32; BLOCK];
    for (i, chunk) in w.chunks(BLOCK).enumerate() {
        for (c, v) in cur.iter_mut().zip(chunk) {
            *c = *v as f32;
        }
        let j = (i % blocks) * BLOCK;
        let p = block_params(dtype, &cur, &factor.diag[j..j + BLOCK]);
        let mut q = [0i32; BLOCK];
        for (qk, &x) in q.iter_mut().zip(&cur) {
            *qk = p.quantize(x).0;
        }
        params.push(p);
        codes.push(q);
    }
    Encoding {
        params,
        codes,
        loss: vec![f64::INFINITY; n_rows],
    }
}

/// Parameters per block that [`refit`] solves for: the scale, and the minimum for the
/// types that have one.
fn params_per_block(dtype: DType) -> usize {
    if matches!(dtype, DType::Q4_1 | DType::Q5_1) {
        2
    } else {
        1
    }
}

/// Re-fits the grids of `enc` to its codes: per row, the block scales (and minima)
/// minimizing `(w − ŵ)ᵀH(w − ŵ)`, rounded to f16. `ŵ` is linear in them, so this is
/// one small least-squares system per row (`P = blocks × params_per_block` unknowns):
/// `M x = c` with `M = AᵀHA`, `c = AᵀHw`, where `A`'s columns are the codes (and
/// ones) of each block. Returns the re-fitted encoding with its loss; with `other`, also
/// fills in that encoding's loss (same pass over `H`).
fn refit(
    dtype: DType,
    w: &[f64],
    cols: usize,
    factor: &Factor,
    enc: &Encoding,
    mut other: Option<&mut Encoding>,
) -> Encoding {
    let h = &factor.h;
    let n_rows = w.len() / cols;
    let blocks = cols / BLOCK;
    let k = params_per_block(dtype);
    let np = blocks * k;
    let wf: Vec<f32> = w.iter().map(|&v| v as f32).collect();
    // Per row: the code of every column as a multiple of the scale.
    let basis: Vec<f32> = (0..n_rows * cols)
        .map(|i| {
            let (r, j) = (i / cols, i % cols);
            let e = r * blocks + j / BLOCK;
            (enc.codes[e][j % BLOCK] - enc.params[e].offset) as f32
        })
        .collect();
    // The other encoding's error, to score it.
    let other_err: Option<Vec<f32>> = other.as_ref().map(|o| {
        (0..n_rows * cols)
            .map(|i| {
                let (r, j) = (i / cols, i % cols);
                let e = r * blocks + j / BLOCK;
                let p = &o.params[e];
                let v = (o.codes[e][j % BLOCK] - p.offset) as f32 * p.d + p.m;
                wf[i] - v
            })
            .collect()
    });
    let mut m = vec![0f64; n_rows * np * np];
    let mut hw = vec![0f64; n_rows * cols];
    let mut other_loss = vec![0f64; n_rows];
    let mut block_sums = vec![0f32; blocks];
    for i in 0..cols {
        let hrow = &h[i * cols..(i + 1) * cols];
        let bi = i / BLOCK;
        if k == 2 {
            for (s, hb) in block_sums.iter_mut().zip(hrow.chunks_exact(BLOCK)) {
                *s = hb.iter().sum();
            }
        }
        for r in 0..n_rows {
            let row = r * cols..(r + 1) * cols;
            hw[r * cols + i] = dot(hrow, &wf[row.clone()]) as f64;
            if let Some(e) = &other_err {
                other_loss[r] += (e[r * cols + i] * dot(hrow, &e[row.clone()])) as f64;
            }
            let a_i = basis[r * cols + i] as f64;
            let mr = &mut m[r * np * np..(r + 1) * np * np];
            for (b, (hb, cb)) in hrow
                .chunks_exact(BLOCK)
                .zip(basis[row.clone()].chunks_exact(BLOCK))
                .enumerate()
            {
                // (H A)[i, (b, scale)], added into M's rows for column i's parameters.
                let g = dot(hb, cb) as f64;
                mr[(bi * k) * np + b * k] += a_i * g;
                if k == 2 {
                    let s = block_sums[b] as f64;
                    mr[(bi * k) * np + b * k + 1] += a_i * s;
                    mr[(bi * k + 1) * np + b * k] += g;
                    mr[(bi * k + 1) * np + b * k + 1] += s;
                }
            }
        }
    }
    let mut out = enc.clone();
    for r in 0..n_rows {
        let hwr = &hw[r * cols..(r + 1) * cols];
        let whw: f64 = w[r * cols..(r + 1) * cols]
            .iter()
            .zip(hwr)
            .map(|(a, b)| a * b)
            .sum();
        let mut c = vec![0f64; np];
        for (i, &v) in hwr.iter().enumerate() {
            let b = i / BLOCK;
            c[b * k] += basis[r * cols + i] as f64 * v;
            if k == 2 {
                c[b * k + 1] += v;
            }
        }
        let mr = &m[r * np * np..(r + 1) * np * np];
        let loss_of = |x: &[f64]| -> f64 {
            let mut l = whw;
            for p in 0..np {
                let mx: f64 = (0..np).map(|q| mr[p * np + q] * x[q]).sum();
                l += x[p] * (mx - 2.0 * c[p]);
            }
            l
        };
        if let Some(x) = solve_spd(mr, &c, np) {
            let x: Vec<f64> = x.iter().map(|&v| f16::from_f64(v).to_f64()).collect();
            if x.iter().all(|v| v.is_finite()) {
                for b in 0..blocks {
                    let p = &mut out.params[r * blocks + b];
                    p.d = x[b * k] as f32;
                    if k == 2 {
                        p.m = x[b * k + 1] as f32;
                    }
                }
                out.loss[r] = loss_of(&x);
            }
        }
        if let Some(o) = other.as_deref_mut() {
            o.loss[r] = other_loss[r];
        }
    }
    out
}

/// Solves `M x = c` for a symmetric positive semi-definite `M` (`n × n`, row-major) by
/// Cholesky with a small ridge; `None` when it still fails.
fn solve_spd(m: &[f64], c: &[f64], n: usize) -> Option<Vec<f64>> {
    let trace: f64 = (0..n).map(|i| m[i * n + i]).sum();
    let ridge = 1e-9 * trace / n.max(1) as f64 + 1e-30;
    let mut l = vec![0f64; n * n];
    for i in 0..n {
        for j in 0..=i {
            let mut s = m[i * n + j];
            if i == j {
                s += ridge;
            }
            for p in 0..j {
                s -= l[i * n + p] * l[j * n + p];
            }
            if i == j {
                if s <= 0.0 || !s.is_finite() {
                    return None;
                }
                l[i * n + i] = s.sqrt();
            } else {
                l[i * n + j] = s / l[j * n + j];
            }
        }
    }
    let mut y = vec![0f64; n];
    for i in 0..n {
        let s: f64 = (0..i).map(|p| l[i * n + p] * y[p]).sum();
        y[i] = (c[i] - s) / l[i * n + i];
    }
    let mut x = vec![0f64; n];
    for i in (0..n).rev() {
        let s: f64 = (i + 1..n).map(|p| l[p * n + i] * x[p]).sum();
        x[i] = (y[i] - s) / l[i * n + i];
    }
    Some(x)
}

fn quantize_group(dtype: DType, g: &[f32], cols: usize, factor: &Factor, refits: usize) -> Vec<u8> {
    let blocks = cols / BLOCK;
    let mut w: Vec<f64> = g.iter().map(|&v| v as f64).collect();
    for row in w.chunks_mut(cols) {
        for (v, &is_dead) in row.iter_mut().zip(&factor.dead) {
            if is_dead {
                *v = 0.0;
            }
        }
    }
    let mut best = gptq_pass(dtype, &w, cols, factor, None);
    if refits > 0 {
        let mut rounded = rounding_pass(dtype, &w, cols, factor);
        let mut enc = best.clone();
        for round in 0..refits {
            let fitted = refit(
                dtype,
                &w,
                cols,
                factor,
                &enc,
                (round == 0).then_some(&mut rounded),
            );
            keep_better(&mut best, &fitted, blocks);
            enc = gptq_pass(dtype, &w, cols, factor, Some(&fitted.params));
            keep_better(&mut best, &enc, blocks);
        }
        keep_better(&mut best, &rounded, blocks);
    }
    let mut out = Vec::new();
    for (p, q) in best.params.iter().zip(&best.codes) {
        encode_block(dtype, p, q, &mut out);
    }
    out
}

/// Row by row, takes `cand`'s encoding where its loss is lower.
fn keep_better(best: &mut Encoding, cand: &Encoding, blocks: usize) {
    for r in 0..best.loss.len() {
        if cand.loss[r] < best.loss[r] {
            best.loss[r] = cand.loss[r];
            let s = r * blocks..(r + 1) * blocks;
            best.params[s.clone()].copy_from_slice(&cand.params[s.clone()]);
            best.codes[s.clone()].copy_from_slice(&cand.codes[s]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mote_tensor::quant::dequantize_row;

    fn lcg(seed: &mut u64) -> f32 {
        *seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((*seed >> 33) as f32 / (1u64 << 31) as f32) - 0.5
    }

    /// With an identity Hessian GPTQ is plain rounding; the encoded blocks must decode
    /// to values on each block's grid, and the error must be small.
    #[test]
    fn encodes_valid_blocks() {
        let (rows, cols) = (4, 64);
        let mut seed = 7;
        let w: Vec<f32> = (0..rows * cols).map(|_| lcg(&mut seed)).collect();
        let h = Hessian {
            cols,
            sum: (0..cols * cols)
                .map(|i| if i % (cols + 1) == 0 { 1.0 } else { 0.0 })
                .collect(),
            count: 1,
        };
        let f = inverse_factor(&h, 0.0, 0.0, false).unwrap();
        for dtype in [
            DType::Q4_0,
            DType::Q4_1,
            DType::Q5_0,
            DType::Q5_1,
            DType::Q8_0,
        ] {
            let bytes = quantize_matrix(dtype, &w, rows, cols, &f, 1, 2).unwrap();
            let mut back = vec![0f32; rows * cols];
            dequantize_row(dtype, &bytes, &mut back).unwrap();
            let err = w
                .iter()
                .zip(&back)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            let tol = if dtype == DType::Q8_0 { 0.01 } else { 0.07 };
            assert!(err < tol, "{dtype}: max error {err}");
        }
    }

    /// The factor satisfies UᵀU = H⁻¹, i.e. H·UᵀU = I.
    #[test]
    fn factor_inverts() {
        let n = 5;
        let mut seed = 3;
        let x: Vec<f32> = (0..n * 40).map(|_| lcg(&mut seed)).collect();
        let c = HessianCollector::new();
        c.observe(&["blk.0.attn_q.weight"], &x, 40, n);
        let hs = c.hessians();
        let h = hs["blk.0.attn_q.weight"].lock().unwrap();
        let u = inverse_factor(&h, 0.0, 0.0, false).unwrap().u;
        let mut a = vec![0f64; n * n];
        for i in 0..n {
            for j in 0..n {
                let (lo, hi) = (i.min(j), i.max(j));
                a[i * n + j] = h.sum[lo * n + hi] / 40.0;
            }
        }
        for i in 0..n {
            for j in 0..n {
                let mut s = 0.0;
                for k in 0..n {
                    let mut hinv = 0.0;
                    for m in 0..n {
                        hinv += u[m * n + k] * u[m * n + j];
                    }
                    s += a[i * n + k] * hinv;
                }
                let want = if i == j { 1.0 } else { 0.0 };
                assert!((s - want).abs() < 1e-9, "({i},{j}) = {s}");
            }
        }
    }

    /// A Hessian from correlated random inputs (so error feedback matters).
    fn correlated_hessian(cols: usize, n: usize, seed: &mut u64) -> Hessian {
        let c = HessianCollector::new();
        let mut x = vec![0f32; n * cols];
        for t in 0..n {
            let common = lcg(seed);
            for i in 0..cols {
                let scale = 1.0 + (i % 7) as f32;
                x[t * cols + i] = scale * (lcg(seed) + 0.8 * common);
            }
        }
        c.observe(&["blk.0.ffn_up.weight"], &x, n, cols);
        let hs = c.hessians();
        let h = hs["blk.0.ffn_up.weight"].lock().unwrap();
        Hessian {
            cols,
            sum: h.sum.clone(),
            count: h.count,
        }
    }

    fn h_loss(f: &Factor, w: &[f32], q: &[f32], cols: usize) -> f64 {
        let d: Vec<f64> = w.iter().zip(q).map(|(a, b)| (a - b) as f64).collect();
        let mut l = 0.0;
        for i in 0..cols {
            for j in 0..cols {
                l += d[i] * f.h[i * cols + j] as f64 * d[j];
            }
        }
        l
    }

    /// GPTQ's summed squared scaled errors are exactly ΔᵀHΔ; a re-fit does not raise
    /// it beyond f16 rounding; the written rows never lose to plain GPTQ or to
    /// importance-weighted rounding (ggml's `--imatrix` encoding).
    #[test]
    fn loss_identity_and_refit() {
        let (rows, cols) = (8, 96);
        let mut seed = 11;
        let h = correlated_hessian(cols, 300, &mut seed);
        let f = inverse_factor(&h, 0.01, 0.1, false).unwrap();
        let w: Vec<f32> = (0..rows * cols).map(|_| lcg(&mut seed)).collect();
        for dtype in [DType::Q4_0, DType::Q4_1, DType::Q5_0] {
            let w64: Vec<f64> = w.iter().map(|&v| v as f64).collect();
            let enc = gptq_pass(dtype, &w64, cols, &f, None);
            let mut bytes = Vec::new();
            for (p, q) in enc.params.iter().zip(&enc.codes) {
                encode_block(dtype, p, q, &mut bytes);
            }
            let mut back = vec![0f32; rows * cols];
            dequantize_row(dtype, &bytes, &mut back).unwrap();
            let mut plain_gptq = 0.0;
            for r in 0..rows {
                let s = r * cols..(r + 1) * cols;
                let l = h_loss(&f, &w[s.clone()], &back[s], cols);
                assert!(
                    (l - enc.loss[r]).abs() <= 1e-3 * l,
                    "{dtype} row {r}: {l} vs {}",
                    enc.loss[r]
                );
                plain_gptq += l;
            }
            let mut rounded = rounding_pass(dtype, &w64, cols, &f);
            let fitted = refit(dtype, &w64, cols, &f, &enc, Some(&mut rounded));
            for r in 0..rows {
                assert!(fitted.loss[r] <= enc.loss[r] * 1.001, "{dtype} row {r}");
                assert!(rounded.loss[r].is_finite());
            }

            let bytes = quantize_matrix(dtype, &w, rows, cols, &f, 2, 2).unwrap();
            dequantize_row(dtype, &bytes, &mut back).unwrap();
            let mut ggml = vec![0u8; bytes.len()];
            let mut ggml_back = vec![0f32; rows * cols];
            let (mut ours, mut theirs) = (0.0, 0.0);
            for r in 0..rows {
                let s = r * cols..(r + 1) * cols;
                let rb = bytes.len() / rows;
                mote_tensor::quant::quantize_row_weighted(
                    dtype,
                    &w[s.clone()],
                    Some(&f.diag),
                    &mut ggml[r * rb..(r + 1) * rb],
                )
                .unwrap();
                dequantize_row(
                    dtype,
                    &ggml[r * rb..(r + 1) * rb],
                    &mut ggml_back[s.clone()],
                )
                .unwrap();
                ours += h_loss(&f, &w[s.clone()], &back[s.clone()], cols);
                theirs += h_loss(&f, &w[s.clone()], &ggml_back[s], cols);
            }
            assert!(
                ours <= plain_gptq * 1.001,
                "{dtype}: {ours} vs GPTQ {plain_gptq}"
            );
            assert!(
                ours <= theirs * 1.001,
                "{dtype}: {ours} vs rounding {theirs}"
            );
        }
    }

    /// Act-order on a Hessian whose diagonal spans three orders of magnitude, in no
    /// particular column order: the permutation is not the identity, the tensor keeps
    /// its layout (it decodes close to the input), and `ΔᵀHΔ` is not higher than
    /// without act-order, for plain GPTQ and for the full encoder.
    #[test]
    fn act_order_keeps_layout_and_lowers_error() {
        let (rows, cols, n) = (16, 128, 600);
        let mut seed = 21;
        let scales: Vec<f32> = (0..cols)
            .map(|_| 10f32.powf(3.0 * (lcg(&mut seed) + 0.5) - 1.5))
            .collect();
        let c = HessianCollector::new();
        let mut x = vec![0f32; n * cols];
        for t in 0..n {
            let common = lcg(&mut seed);
            for i in 0..cols {
                x[t * cols + i] = scales[i] * (lcg(&mut seed) + 0.6 * common);
            }
        }
        c.observe(&["blk.0.ffn_down.weight"], &x, n, cols);
        let hs = c.hessians();
        let h = hs["blk.0.ffn_down.weight"].lock().unwrap();
        let w: Vec<f32> = (0..rows * cols).map(|_| lcg(&mut seed)).collect();
        let w64: Vec<f64> = w.iter().map(|&v| v as f64).collect();
        for (damp_diag, dtype) in [(0.0, DType::Q4_0), (1.0, DType::Q4_0), (0.0, DType::Q4_1)] {
            let plain = inverse_factor(&h, 0.01, damp_diag, false).unwrap();
            let act = inverse_factor(&h, 0.01, damp_diag, true).unwrap();
            let perm = act.perm.as_ref().unwrap();
            assert!(perm.iter().enumerate().any(|(t, &j)| t != j));
            assert!(perm.windows(2).all(|p| act.diag[p[0]] >= act.diag[p[1]]));
            let loss =
                |f: &Factor| -> f64 { gptq_pass(dtype, &w64, cols, f, None).loss.iter().sum() };
            let (l_plain, l_act) = (loss(&plain), loss(&act));
            eprintln!("{dtype} damp_diag {damp_diag}: GPTQ {l_plain:.4} act-order {l_act:.4}");
            assert!(l_act <= l_plain, "{dtype}: act-order {l_act} vs {l_plain}");
            // The loss identity holds in the permuted order too: the decoded tensor's
            // ΔᵀHΔ under the unpermuted H is the pass's summed squared errors.
            let enc = gptq_pass(dtype, &w64, cols, &act, None);
            let mut bytes = Vec::new();
            for (p, q) in enc.params.iter().zip(&enc.codes) {
                encode_block(dtype, p, q, &mut bytes);
            }
            let mut back = vec![0f32; rows * cols];
            dequantize_row(dtype, &bytes, &mut back).unwrap();
            for r in 0..rows {
                let s = r * cols..(r + 1) * cols;
                let l = h_loss(&act, &w[s.clone()], &back[s], cols);
                assert!((l - enc.loss[r]).abs() <= 1e-3 * l, "{dtype} row {r}");
            }

            let mut full = [0f64; 2];
            for (k, f) in [&plain, &act].into_iter().enumerate() {
                let bytes = quantize_matrix(dtype, &w, rows, cols, f, 1, 2).unwrap();
                let mut back = vec![0f32; rows * cols];
                dequantize_row(dtype, &bytes, &mut back).unwrap();
                // The layout is the tensor's: every value decodes near its own weight
                // (a 4-bit step of a block spanning about [-0.5, 0.5], plus the error
                // feedback's moves).
                let err = w
                    .iter()
                    .zip(&back)
                    .map(|(a, b)| (a - b).abs())
                    .fold(0f32, f32::max);
                assert!(err < 0.35, "{dtype}: max error {err}");
                for r in 0..rows {
                    let s = r * cols..(r + 1) * cols;
                    full[k] += h_loss(f, &w[s.clone()], &back[s], cols);
                }
            }
            eprintln!(
                "{dtype} damp_diag {damp_diag}: full {:.4} act-order {:.4}",
                full[0], full[1]
            );
            assert!(
                full[1] <= full[0] * 1.001,
                "{dtype}: {} vs {}",
                full[1],
                full[0]
            );
        }
    }

    /// Saved Hessians read back with the same sums, counts and sharing.
    #[test]
    fn hessians_round_trip() {
        let mut seed = 5;
        let c = HessianCollector::new();
        let x: Vec<f32> = (0..4 * 3).map(|_| lcg(&mut seed)).collect();
        c.observe(&["blk.0.attn_q.weight", "blk.0.attn_k.weight"], &x, 4, 3);
        let y: Vec<f32> = (0..2 * 2).map(|_| lcg(&mut seed)).collect();
        c.observe(&["blk.0.attn_output.weight"], &y, 2, 2);
        let hs = c.hessians();
        let dir = std::env::temp_dir().join(format!("mote-hessians-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("h.gguf");
        let model = ModelIdentity {
            tensors_hash: 1,
            file_size: 2,
        };
        let calib = CalibrationKey::new("some text", 4, None);
        write_hessians(&path, &hs, 1, &model, &calib).unwrap();
        let back = read_hessians(&path, &model, Some(&calib)).unwrap();
        assert_eq!(back.len(), 3);
        assert!(Arc::ptr_eq(
            &back["blk.0.attn_q.weight"],
            &back["blk.0.attn_k.weight"]
        ));
        for (name, h) in &hs {
            let (a, b) = (h.lock().unwrap(), back[name].lock().unwrap());
            assert_eq!((a.cols, a.count), (b.cols, b.count));
            for (x, y) in a.sum.iter().zip(&b.sum) {
                assert!((x - y).abs() <= 1e-6 * x.abs().max(1.0));
            }
        }
        assert!(read_hessians(&dir.join("missing.gguf"), &model, None).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A cache made with other settings is refused, naming the setting; without
    /// calibration settings only the model is checked.
    #[test]
    fn hessian_cache_key_mismatch() {
        let mut seed = 9;
        let c = HessianCollector::new();
        let x: Vec<f32> = (0..4 * 3).map(|_| lcg(&mut seed)).collect();
        c.observe(&["blk.0.attn_q.weight"], &x, 4, 3);
        let dir = std::env::temp_dir().join(format!("mote-hessian-key-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("h.gguf");
        let model = ModelIdentity {
            tensors_hash: 0xabc,
            file_size: 1000,
        };
        let calib = CalibrationKey::new("calibration text", 512, Some(16));
        write_hessians(&path, &c.hessians(), 16, &model, &calib).unwrap();
        assert!(read_hessians(&path, &model, Some(&calib)).is_ok());
        assert!(read_hessians(&path, &model, None).is_ok());
        let setting_of =
            |m: &ModelIdentity, k: Option<&CalibrationKey>| match read_hessians(&path, m, k) {
                Err(CompressError::HessianCacheMismatch { setting, .. }) => setting,
                Err(e) => panic!("wrong error: {e}"),
                Ok(_) => panic!("a mismatching cache was accepted"),
            };
        let other_text = CalibrationKey::new("other text", 512, Some(16));
        assert!(setting_of(&model, Some(&other_text)).contains("--calib-file"));
        let other_ctx = CalibrationKey { ctx: 256, ..calib };
        assert!(setting_of(&model, Some(&other_ctx)).contains("--calib-ctx"));
        let all_chunks = CalibrationKey {
            chunks: None,
            ..calib
        };
        assert!(setting_of(&model, Some(&all_chunks)).contains("--calib-chunks"));
        let bigger = ModelIdentity {
            file_size: 1001,
            ..model
        };
        assert!(setting_of(&bigger, None).contains("size"));
        let renamed = ModelIdentity {
            tensors_hash: 0xabd,
            ..model
        };
        assert!(setting_of(&renamed, Some(&calib)).contains("tensors"));
        let msg = read_hessians(&path, &model, Some(&other_ctx))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(msg.contains("delete the file"), "{msg}");

        // A cache without a format version (an older mote's) is refused too.
        let old = dir.join("old.gguf");
        let file = GgufFile::open(&path).unwrap();
        let meta: Vec<(String, MetaValue)> = file
            .metadata_owned()
            .into_iter()
            .filter(|(k, _)| !k.ends_with(".format_version"))
            .collect();
        let specs = file.tensors().iter().map(TensorSpec::from).collect();
        let mut w = GgufWriter::create(&old, &meta, specs).unwrap();
        for t in file.tensors() {
            w.write_tensor(&t.name, file.tensor_bytes(t).as_slice())
                .unwrap();
        }
        w.finish().unwrap();
        match read_hessians(&old, &model, None) {
            Err(CompressError::HessianCacheMismatch { setting, .. }) => {
                assert_eq!(setting, "format version")
            }
            _ => panic!("a cache without a version was accepted"),
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// The model identity is stable and records the file size.
    #[test]
    fn model_identity_tracks_tensors() {
        let tiny = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/tiny.gguf");
        let Ok(file) = GgufFile::open(&tiny) else {
            return;
        };
        let a = ModelIdentity::of(&file);
        assert_eq!(a, ModelIdentity::of(&file));
        assert_eq!(a.file_size, std::fs::metadata(&tiny).unwrap().len());
    }
}
