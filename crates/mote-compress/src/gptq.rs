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

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use half::f16;
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
pub fn inverse_factor(h: &Hessian, damp: f64) -> Result<Factor> {
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
    let mean_diag = (0..n).map(|i| a[i * n + i]).sum::<f64>() / n.max(1) as f64;
    for i in 0..n {
        a[i * n + i] += damp * mean_diag;
    }
    // Reversed Cholesky: V upper with A = V Vᵀ, filled from the last column back.
    let mut v = vec![0f64; n * n];
    for j in (0..n).rev() {
        let mut d = a[j * n + j];
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
            let mut s = a[i * n + j];
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
    Ok((u, dead))
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

fn block_params(dtype: DType, x: &[f32]) -> BlockParams {
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

/// `U` (row-major, upper) and the dead-column flags, from [`inverse_factor`].
pub type Factor = (Vec<f64>, Vec<bool>);

/// GPTQ-quantizes a `rows × cols` row-major f32 matrix into `dtype` blocks, given the
/// factor from [`inverse_factor`]. Rows are spread over `threads` workers.
pub fn quantize_matrix(
    dtype: DType,
    w: &[f32],
    rows: usize,
    cols: usize,
    factor: &Factor,
    threads: usize,
) -> Result<Vec<u8>> {
    if !supports(dtype) {
        return Err(CompressError::Invalid(format!("GPTQ cannot write {dtype}")));
    }
    if !cols.is_multiple_of(BLOCK) || w.len() != rows * cols || factor.0.len() != cols * cols {
        return Err(CompressError::Invalid(format!(
            "GPTQ: a {rows}x{cols} matrix does not fit {dtype} blocks or the Hessian"
        )));
    }
    let row_bytes = dtype
        .bytes_for(cols as u64)
        .map_err(|e| CompressError::Invalid(e.to_string()))? as usize;
    let (u, dead) = factor;
    let groups: Vec<&[f32]> = w.chunks(ROW_GROUP * cols).collect();
    let per_worker = groups.len().div_ceil(threads.max(1)).max(1);
    let encoded: Vec<Vec<u8>> = std::thread::scope(|s| {
        let handles: Vec<_> = groups
            .chunks(per_worker)
            .map(|mine| {
                s.spawn(move || {
                    let mut out = Vec::with_capacity(mine.len() * ROW_GROUP * row_bytes);
                    for g in mine {
                        out.extend(quantize_group(dtype, g, cols, u, dead));
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

fn quantize_group(dtype: DType, g: &[f32], cols: usize, u: &[f64], dead: &[bool]) -> Vec<u8> {
    let n_rows = g.len() / cols;
    let blocks = cols / BLOCK;
    let mut w: Vec<f64> = g.iter().map(|&v| v as f64).collect();
    for row in w.chunks_mut(cols) {
        for (v, &is_dead) in row.iter_mut().zip(dead) {
            if is_dead {
                *v = 0.0;
            }
        }
    }
    let mut codes = vec![[0i32; BLOCK]; n_rows * blocks];
    let mut params = Vec::with_capacity(n_rows * blocks);
    params.resize(
        n_rows * blocks,
        BlockParams {
            d: 0.0,
            m: 0.0,
            lo: 0,
            hi: 0,
            offset: 0,
        },
    );
    let mut cur = [0f32; BLOCK];
    for j in 0..cols {
        let urow = &u[j * cols..(j + 1) * cols];
        let (b, k) = (j / BLOCK, j % BLOCK);
        for r in 0..n_rows {
            let wr = &mut w[r * cols..(r + 1) * cols];
            if k == 0 {
                for (c, v) in cur.iter_mut().zip(&wr[j..j + BLOCK]) {
                    *c = *v as f32;
                }
                params[r * blocks + b] = block_params(dtype, &cur);
            }
            let (q, deq) = params[r * blocks + b].quantize(wr[j] as f32);
            codes[r * blocks + b][k] = q;
            let err = (wr[j] - deq as f64) / urow[j];
            wr[j] = deq as f64;
            for (v, &uk) in wr[j + 1..].iter_mut().zip(&urow[j + 1..]) {
                *v -= err * uk;
            }
        }
    }
    let mut out = Vec::new();
    for (p, q) in params.iter().zip(&codes) {
        encode_block(dtype, p, q, &mut out);
    }
    out
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
        let f = inverse_factor(&h, 0.0).unwrap();
        for dtype in [
            DType::Q4_0,
            DType::Q4_1,
            DType::Q5_0,
            DType::Q5_1,
            DType::Q8_0,
        ] {
            let bytes = quantize_matrix(dtype, &w, rows, cols, &f, 2).unwrap();
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
        let (u, _) = inverse_factor(&h, 0.0).unwrap();
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
}
