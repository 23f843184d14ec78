//! Causal multi-head attention over the cache, with grouped K/V heads and an optional
//! sliding window.
//!
//! Queries are taken in blocks of [`QUERY_BLOCK`] tokens and keys in blocks of
//! [`KEY_BLOCK`] positions, with an online softmax (running maximum and sum per query),
//! so memory is a few small tiles whatever the sequence length. All query heads that
//! share a K/V head are processed together, four at a time through the `four` form of
//! the `mote-tensor` dot kernels: each key (and value) row is read once for four
//! queries. Query blocks of all sequences in a batch are spread over the thread pool.

use std::cell::RefCell;
use std::sync::Mutex;

use mote_tensor::kernels::{quantize_q8, BlockQ8, Dot, Kernels, Q8_BLOCK};
use mote_tensor::{parallel, quant, DType};

use crate::cache::{KvCache, KvPrecision, LayerKv};
use mote_tensor::ggml_math::{dot16_tile, exp_sub, f16_to_f32, reduce16, LANES};

/// Tokens per query block (one task on the pool).
const QUERY_BLOCK: usize = 16;
/// Positions per key block.
const KEY_BLOCK: usize = 128;
/// Keys per block of the llama.cpp-order score loop: 16 keys of Gemma's 256 dimensions
/// in f32 are 16 KiB, half of a typical L1.
const KEYS_IN_L1: usize = 16;
/// Below this many query·key products a batch's attention runs on the calling thread.
const PARALLEL_MIN_PAIRS: usize = 2 * 1024;

/// Shapes and settings shared by all queries of one layer.
pub struct AttnParams {
    pub n_head: usize,
    pub n_head_kv: usize,
    pub head_dim_k: usize,
    pub head_dim_v: usize,
    pub scale: f32,
    /// `Some(w)`: a query at position `p` sees keys at `p-w+1..=p`.
    pub window: Option<usize>,
}

/// The attention of one sequence's new tokens in one layer.
pub struct SeqAttn<'a> {
    /// `n * n_head * head_dim_k` roped queries.
    pub q: &'a [f32],
    /// The sequence's cache, already holding the new tokens' keys and values.
    pub cache: &'a KvCache,
    pub layer: usize,
    /// Position of the first new token.
    pub start: usize,
    pub n: usize,
    /// `n * n_head * head_dim_v` outputs.
    pub out: &'a mut [f32],
}

/// What a task reads of one sequence (copied out of [`SeqAttn`] so that its output
/// can be lent to the tasks separately).
#[derive(Clone, Copy)]
struct SeqView<'a> {
    q: &'a [f32],
    cache: &'a KvCache,
    layer: usize,
    start: usize,
}

/// One task: tokens `t0..t1` of sequence `seq`, K/V heads `heads`, writing into
/// `outs[out]` (shared by the tasks that split one query block's heads).
struct Task {
    seq: usize,
    t0: usize,
    t1: usize,
    heads: std::ops::Range<usize>,
    out: usize,
}

/// Computes attention for every sequence in `seqs`.
pub fn attend(p: &AttnParams, seqs: &mut [SeqAttn]) {
    let hv = p.n_head * p.head_dim_v;
    let mut views = Vec::with_capacity(seqs.len());
    let mut blocks = Vec::new();
    let mut outs = Vec::new();
    let mut pairs = 0usize;
    for (i, s) in seqs.iter_mut().enumerate() {
        pairs += s.n * (s.start + s.n) * p.n_head;
        views.push(SeqView {
            q: s.q,
            cache: s.cache,
            layer: s.layer,
            start: s.start,
        });
        for (b, out) in s.out.chunks_mut(QUERY_BLOCK * hv).enumerate() {
            let t0 = b * QUERY_BLOCK;
            blocks.push((i, t0, t0 + out.len() / hv));
            outs.push(Mutex::new(out));
        }
    }
    // Decoding gives one query block per sequence, fewer than the threads: split the
    // K/V heads of each block over tasks too (heads are independent, so every result
    // keeps its bits); one sequence's attention at a few hundred positions otherwise
    // ran on one thread for a fifth of a decode step.
    let threads = parallel::global().threads();
    let per_block = if blocks.len() < 2 * threads {
        p.n_head_kv.min((2 * threads).div_ceil(blocks.len().max(1)))
    } else {
        1
    };
    let heads_each = p.n_head_kv.div_ceil(per_block.max(1)).max(1);
    let mut tasks = Vec::with_capacity(blocks.len() * per_block);
    for (out, &(seq, t0, t1)) in blocks.iter().enumerate() {
        for g0 in (0..p.n_head_kv).step_by(heads_each) {
            let heads = g0..(g0 + heads_each).min(p.n_head_kv);
            tasks.push(Task {
                seq,
                t0,
                t1,
                heads,
                out,
            });
        }
    }
    // Later query blocks see more keys: start them first so they do not finish last.
    tasks.sort_by_key(|t| std::cmp::Reverse(views[t.seq].start + t.t1));
    let kernels = Kernels::active();
    let run = |i: usize| {
        let task = &tasks[i];
        let out = &outs[task.out];
        SCRATCH.with(|sc| {
            let mut sc = sc.borrow_mut();
            let view = &views[task.seq];
            let span = (task.t0, task.t1, task.heads.clone());
            if ggml_order_applies(p, view.cache) {
                attend_block_ggml(p, view, span, out, &mut sc);
            } else {
                attend_block(p, kernels, view, span, out, &mut sc);
            }
        });
    };
    if tasks.len() > 1 && pairs >= PARALLEL_MIN_PAIRS {
        parallel::global().run(tasks.len(), &run);
    } else {
        (0..tasks.len()).for_each(run);
    }
}

/// Per-thread buffers, kept so that attention does not allocate per call.
#[derive(Default)]
struct Scratch {
    /// Query rows of one K/V head group (rounded to f16 for an F16 cache).
    q: Vec<f32>,
    q8: Vec<BlockQ8>,
    /// Scores, then attention weights: one `KEY_BLOCK` row per query row.
    s: Vec<f32>,
    max: Vec<f32>,
    sum: Vec<f32>,
    acc: Vec<f32>,
    /// Decoded value rows (position-major Q8_0 values only; one transposed row on the
    /// llama.cpp-order path).
    v: Vec<f32>,
    half: Vec<half::f16>,
    /// One block of keys decoded to f32 (llama.cpp-order path).
    k: Vec<f32>,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

/// Rounds `x` to f16 precision in place (llama.cpp converts queries and attention
/// weights to the cache's f16 before multiplying them with keys and values).
fn round_to_f16(x: &mut [f32], tmp: &mut Vec<half::f16>) {
    use half::slice::HalfFloatSliceExt;
    tmp.resize(x.len(), half::f16::ZERO);
    tmp.convert_from_f32_slice(x);
    tmp.convert_to_f32_slice(x);
}

/// Applies `dot` to one weight row and the activation rows `acts(r)` for `r in 0..rows`,
/// four at a time, passing each result to `emit(r, value)`.
fn dot_rows<'a, A: 'static>(
    dot: Dot<A>,
    w: &[u8],
    rows: usize,
    acts: impl Fn(usize) -> &'a [A],
    mut emit: impl FnMut(usize, f32),
) {
    let mut r = 0;
    while r + 4 <= rows {
        let v = (dot.four)(w, [acts(r), acts(r + 1), acts(r + 2), acts(r + 3)]);
        for (i, x) in v.into_iter().enumerate() {
            emit(r + i, x);
        }
        r += 4;
    }
    match rows - r {
        0 => {}
        1 => emit(r, (dot.one)(w, acts(r))),
        left => {
            // Two or three rows left: one four-row call with the last row repeated costs
            // less than separate calls (grouped-query heads often come in threes).
            let last = rows - 1;
            let v = (dot.four)(w, [acts(r), acts(r + 1), acts(last), acts(last)]);
            for (i, x) in v.into_iter().take(left).enumerate() {
                emit(r + i, x);
            }
        }
    }
}

/// Whether [`attend_block_ggml`] handles this cache: F16 keys and (transposed) values,
/// the default, with head sizes that tinyBLAS takes in 16-wide vectors.
fn ggml_order_applies(p: &AttnParams, cache: &KvCache) -> bool {
    cache.precisions() == (KvPrecision::F16, KvPrecision::F16)
        && cache.v_transposed()
        && p.head_dim_k.is_multiple_of(LANES)
}

/// [`attend_block`] computed exactly as llama.cpp does without flash attention and
/// with an F16 cache (see [`mote_tensor::ggml_math`] for why): queries rounded to f16;
/// scores `K·q` by tinyBLAS's 16-lane chains; the softmax of a whole row at once, with
/// ggml's `expf`, partial sums of 16 keys (aligned to position 0) added in f64, and the
/// weights normalised before they are rounded to f16; then `V·p`, again 16-lane chains
/// over keys aligned to position 0.
///
/// Both products run as 4 × 4 tiles of such chains ([`dot16_tile`]): four query rows
/// against four keys, then four weight rows against four value dimensions. A tile spans
/// the key range of all its rows; a row's chain over keys it cannot see adds only zero
/// weights (its scores there are never written, its weights are 0), which leaves the
/// chain's value unchanged, so every result has the bits of the one-row computation.
fn attend_block_ggml(
    p: &AttnParams,
    s: &SeqView,
    (t0, t1, heads): (usize, usize, std::ops::Range<usize>),
    out: &Mutex<&mut [f32]>,
    sc: &mut Scratch,
) {
    let (dk, dv) = (p.head_dim_k, p.head_dim_v);
    let group = p.n_head / p.n_head_kv;
    let rows = (t1 - t0) * group;
    let cache = s.cache;
    let layer: &LayerKv = &cache.layers[s.layer];
    let k_rb = cache.k_row_bytes();
    let first_key = |pos: usize| p.window.map_or(0, |w| (pos + 1).saturating_sub(w));
    // Keys this block can see, widened down to a multiple of 16: ggml's lanes are
    // aligned to cache position 0. Below, key indices are relative to `base`.
    let (lo, hi) = (first_key(s.start + t0), s.start + t1);
    let base = lo - lo % LANES;
    let span = (hi - base).div_ceil(LANES) * LANES;
    let v_row = layer.v_slots * 2;
    // Visible keys `a..b` of query row `r`, and the 16-aligned range `c0..c1` around them.
    let keys = |r: usize| {
        let pos = s.start + t0 + r / group;
        let (a, b) = (first_key(pos) - base, pos + 1 - base);
        (a, b, a - a % LANES, b.div_ceil(LANES) * LANES)
    };
    // Row indices of the tile starting at `r0`, the last one repeated past the end.
    let quad =
        |r0: usize, end: usize| -> [usize; 4] { std::array::from_fn(|i| (r0 + i).min(end - 1)) };

    sc.q.resize(rows * dk, 0.0);
    sc.s.resize(rows * span, 0.0);
    sc.k.resize(KEYS_IN_L1 * dk, 0.0);
    sc.v.resize(4 * span, 0.0);
    sc.acc.resize(rows * dv, 0.0);
    for g in heads {
        for (r, qr) in sc.q.chunks_exact_mut(dk).enumerate() {
            let (t, j) = (t0 + r / group, r % group);
            let h = g * group + j;
            qr.copy_from_slice(&s.q[(t * p.n_head + h) * dk..][..dk]);
        }
        round_to_f16(&mut sc.q, &mut sc.half);

        // Scores, four query rows by four keys at a time, over blocks of keys that stay
        // in L1 while every row tile passes by (row-major order re-read all keys from L2
        // for every four rows, and the products waited on those loads).
        sc.s[..rows * span].fill(0.0);
        let (first, last) = (keys(0).0, keys(rows - 1).1);
        for kb in (first..last).step_by(KEYS_IN_L1) {
            let kb_end = (kb + KEYS_IN_L1).min(last);
            // The block's keys widened to f32 (exactly) where they stay in L1; widening
            // every key up front wrote and re-read span · dk floats through L2.
            for j in kb..kb_end {
                let krow = &layer.k[((j + base) * p.n_head_kv + g) * k_rb..][..k_rb];
                f16_to_f32(krow, &mut sc.k[(j - kb) * dk..][..dk]);
            }
            for r0 in (0..rows).step_by(4) {
                let rr = quad(r0, rows);
                let (from, to) = (keys(rr[0]).0.max(kb), keys(rr[3]).1.min(kb_end));
                let qs = rr.map(|r| &sc.q[r * dk..][..dk]);
                for j0 in (from..to).step_by(4) {
                    let jj = quad(j0, to);
                    let tile = dot16_tile(qs, jj.map(|j| &sc.k[(j - kb) * dk..][..dk]), dk);
                    for (i, &r) in rr.iter().enumerate().take(rows - r0) {
                        let (a, b, _, _) = keys(r);
                        for (x, &j) in tile[i].iter().zip(&jj).take(to - j0) {
                            if (a..b).contains(&j) {
                                sc.s[r * span + j] = x * p.scale;
                            }
                        }
                    }
                }
            }
        }
        // Softmax, one row at a time.
        for r in 0..rows {
            let (a, b, c0, c1) = keys(r);
            let srow = &mut sc.s[r * span..][..span];
            let max = srow[a..b].iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x));
            exp_sub(&mut srow[a..b], max);
            let sum: f64 = srow[c0..c1]
                .chunks_exact(LANES)
                .map(|c| reduce16(c.try_into().unwrap_or(&[0.0; LANES])) as f64)
                .sum();
            let inv = (1.0 / sum) as f32;
            srow[a..b].iter_mut().for_each(|x| *x *= inv);
        }
        round_to_f16(&mut sc.s[..rows * span], &mut sc.half);

        // Weighted values: four transposed value rows (output dimensions) by four weight
        // rows at a time.
        for d0 in (0..dv).step_by(4) {
            let dd = quad(d0, dv);
            for (i, &d) in dd.iter().enumerate() {
                let vrow = &layer.v[(g * dv + d) * v_row..][..v_row];
                let dst = &mut sc.v[i * span..][..span];
                dst[..lo - base].fill(0.0);
                dst[hi - base..].fill(0.0);
                f16_to_f32(&vrow[lo * 2..hi * 2], &mut dst[lo - base..]);
            }
            for r0 in (0..rows).step_by(4) {
                let rr = quad(r0, rows);
                let (c0, c1) = (keys(rr[0]).2, keys(rr[3]).3);
                let ws = rr.map(|r| &sc.s[r * span + c0..r * span + c1]);
                let vs: [&[f32]; 4] = std::array::from_fn(|i| &sc.v[i * span + c0..i * span + c1]);
                let tile = dot16_tile(ws, vs, c1 - c0);
                for (i, &r) in rr.iter().enumerate().take(rows - r0) {
                    let o = &mut sc.acc[r * dv..][..dv];
                    for (x, &d) in tile[i].iter().zip(&dd).take(dv - d0) {
                        o[d] = *x;
                    }
                }
            }
        }
        let mut out = out.lock().unwrap_or_else(|e| e.into_inner());
        for (r, o) in sc.acc.chunks_exact(dv).take(rows).enumerate() {
            let (t, j) = (r / group, r % group);
            out[(t * p.n_head + g * group + j) * dv..][..dv].copy_from_slice(o);
        }
    }
}

/// Attention of tokens `t0..t1` of `s`, K/V heads `heads` (and their query heads);
/// `out` holds all heads' `(t1 - t0) * n_head * head_dim_v` outputs.
fn attend_block(
    p: &AttnParams,
    kernels: &Kernels,
    s: &SeqView,
    (t0, t1, heads): (usize, usize, std::ops::Range<usize>),
    out: &Mutex<&mut [f32]>,
    sc: &mut Scratch,
) {
    let (dk, dv) = (p.head_dim_k, p.head_dim_v);
    let group = p.n_head / p.n_head_kv;
    let rows = (t1 - t0) * group;
    let cache = s.cache;
    let layer: &LayerKv = &cache.layers[s.layer];
    let (k_type, v_type) = cache.precisions();
    let k_rb = cache.k_row_bytes();
    let first_key = |pos: usize| p.window.map_or(0, |w| (pos + 1).saturating_sub(w));
    // Keys this block can see: from the first query's window start to the last query.
    let (lo, hi) = (first_key(s.start + t0), s.start + t1);

    sc.q.resize(rows * dk, 0.0);
    sc.s.resize(rows * KEY_BLOCK, 0.0);
    sc.max.resize(rows, 0.0);
    sc.sum.resize(rows, 0.0);
    sc.acc.resize(rows * dv, 0.0);
    for g in heads {
        // Query rows r = (token, head within the group), token-major.
        for (r, qr) in sc.q.chunks_exact_mut(dk).enumerate() {
            let (t, j) = (t0 + r / group, r % group);
            let h = g * group + j;
            qr.copy_from_slice(&s.q[(t * p.n_head + h) * dk..][..dk]);
        }
        if k_type == KvPrecision::F16 {
            round_to_f16(&mut sc.q, &mut sc.half);
        }
        if k_type == KvPrecision::Q8_0 {
            let per = dk / Q8_BLOCK;
            sc.q8.resize(rows * per, BlockQ8::default());
            for (qr, blocks) in sc.q.chunks_exact(dk).zip(sc.q8.chunks_exact_mut(per)) {
                quantize_q8(qr, blocks);
            }
        }
        sc.max.fill(f32::NEG_INFINITY);
        sc.sum.fill(0.0);
        sc.acc.fill(0.0);

        for kb in (lo..hi).step_by(KEY_BLOCK) {
            let ke = (kb + KEY_BLOCK).min(hi);
            let nb = ke - kb;
            // Scores: one key row against every query row of the group.
            for j in kb..ke {
                let krow = &layer.k[(j * p.n_head_kv + g) * k_rb..][..k_rb];
                let s_out = &mut sc.s;
                let emit = |r: usize, x: f32| s_out[r * KEY_BLOCK + (j - kb)] = x;
                match k_type {
                    KvPrecision::Q8_0 => {
                        let per = dk / Q8_BLOCK;
                        let q8 = &sc.q8;
                        dot_rows(kernels.q8_0, krow, rows, |r| &q8[r * per..][..per], emit);
                    }
                    KvPrecision::F16 | KvPrecision::F32 => {
                        let dot = if k_type == KvPrecision::F16 {
                            kernels.f16
                        } else {
                            kernels.f32
                        };
                        let q = &sc.q;
                        dot_rows(dot, krow, rows, |r| &q[r * dk..][..dk], emit);
                    }
                }
            }
            // Online softmax: rescale what was accumulated if the maximum grew.
            for r in 0..rows {
                let pos = s.start + t0 + r / group;
                let (a, b) = (first_key(pos).max(kb), (pos + 1).min(ke));
                let srow = &mut sc.s[r * KEY_BLOCK..][..nb];
                if a >= b {
                    srow.fill(0.0);
                    continue;
                }
                let (a, b) = (a - kb, b - kb);
                let block_max = srow[a..b]
                    .iter()
                    .fold(f32::NEG_INFINITY, |m, &x| m.max(x * p.scale));
                let new_max = sc.max[r].max(block_max);
                let c = (sc.max[r] - new_max).exp();
                if c != 1.0 {
                    sc.sum[r] *= c;
                    sc.acc[r * dv..][..dv].iter_mut().for_each(|x| *x *= c);
                }
                sc.max[r] = new_max;
                let mut sum = 0.0;
                for (i, x) in srow.iter_mut().enumerate() {
                    *x = if (a..b).contains(&i) {
                        (*x * p.scale - new_max).exp()
                    } else {
                        0.0
                    };
                    sum += *x;
                }
                sc.sum[r] += sum;
            }
            if v_type == KvPrecision::F16 {
                round_to_f16(&mut sc.s[..rows * KEY_BLOCK], &mut sc.half);
            }
            // Weighted values.
            if cache.v_transposed() {
                let dot = if v_type == KvPrecision::F16 {
                    kernels.f16
                } else {
                    kernels.f32
                };
                let eb = v_type.dtype().block_bytes();
                let row = layer.v_slots * eb;
                let weights = &sc.s;
                let acc = &mut sc.acc;
                for d in 0..dv {
                    let vrow = &layer.v[(g * dv + d) * row + kb * eb..][..nb * eb];
                    dot_rows(
                        dot,
                        vrow,
                        rows,
                        |r| &weights[r * KEY_BLOCK..][..nb],
                        |r, x| acc[r * dv + d] += x,
                    );
                }
            } else {
                let v_rb = cache.v_row_bytes();
                sc.v.resize(nb * dv, 0.0);
                for (j, vr) in (kb..ke).zip(sc.v.chunks_exact_mut(dv)) {
                    let bytes = &layer.v[(j * p.n_head_kv + g) * v_rb..][..v_rb];
                    // Cannot fail: the row length matches the type by construction.
                    let _ = quant::dequantize_row(DType::Q8_0, bytes, vr);
                }
                for r in 0..rows {
                    let acc = &mut sc.acc[r * dv..][..dv];
                    for (&w, vr) in sc.s[r * KEY_BLOCK..][..nb]
                        .iter()
                        .zip(sc.v.chunks_exact(dv))
                    {
                        if w != 0.0 {
                            acc.iter_mut().zip(vr).for_each(|(a, &x)| *a += w * x);
                        }
                    }
                }
            }
        }
        let mut out = out.lock().unwrap_or_else(|e| e.into_inner());
        for r in 0..rows {
            let (t, j) = (r / group, r % group);
            let h = g * group + j;
            let inv = if sc.sum[r] > 0.0 {
                1.0 / sc.sum[r]
            } else {
                0.0
            };
            let o = &mut out[(t * p.n_head + h) * dv..][..dv];
            for (o, &a) in o.iter_mut().zip(&sc.acc[r * dv..][..dv]) {
                *o = a * inv;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Plain softmax attention, in f64, straight from the definition.
    fn reference(
        p: &AttnParams,
        q: &[f32],
        k: &[f32],
        v: &[f32],
        start: usize,
        n: usize,
    ) -> Vec<f32> {
        let (dk, dv, kvh) = (p.head_dim_k, p.head_dim_v, p.n_head_kv);
        let group = p.n_head / kvh;
        let mut out = vec![0f32; n * p.n_head * dv];
        for t in 0..n {
            let pos = start + t;
            let first = p.window.map_or(0, |w| (pos + 1).saturating_sub(w));
            for h in 0..p.n_head {
                let g = h / group;
                let qh = &q[(t * p.n_head + h) * dk..][..dk];
                let scores: Vec<f64> = (first..=pos)
                    .map(|j| {
                        let kj = &k[(j * kvh + g) * dk..][..dk];
                        qh.iter().zip(kj).map(|(a, b)| (a * b) as f64).sum::<f64>() * p.scale as f64
                    })
                    .collect();
                let max = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let w: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
                let total: f64 = w.iter().sum();
                for d in 0..dv {
                    let x: f64 = (first..=pos)
                        .zip(&w)
                        .map(|(j, w)| w * v[(j * kvh + g) * dv + d] as f64)
                        .sum();
                    out[(t * p.n_head + h) * dv + d] = (x / total) as f32;
                }
            }
        }
        out
    }

    fn values(len: usize, seed: u32) -> Vec<f32> {
        let mut s = seed;
        (0..len)
            .map(|_| {
                s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                (s >> 8) as f32 / (1u32 << 24) as f32 * 2.0 - 1.0
            })
            .collect()
    }

    #[test]
    fn matches_reference_for_every_precision_window_and_split() {
        let (n_head, kvh, dk, dv) = (6, 2, 64, 32);
        for window in [None, Some(5), Some(70)] {
            let p = AttnParams {
                n_head,
                n_head_kv: kvh,
                head_dim_k: dk,
                head_dim_v: dv,
                scale: 0.3,
                window,
            };
            let total = 150;
            let q = values(total * n_head * dk, 1);
            let k = values(total * kvh * dk, 2);
            let v = values(total * kvh * dv, 3);
            let want = reference(&p, &q, &k, &v, 0, total);
            for (prec, tol) in [
                (KvPrecision::F32, 1e-5),
                (KvPrecision::F16, 4e-3),
                (KvPrecision::Q8_0, 3e-2),
            ] {
                // All at once, then the rest one token at a time after a prefix.
                for split in [total, 37] {
                    let mut cache = KvCache::new(1, kvh, (dk, dv), total, (prec, prec));
                    let mut got = vec![0f32; total * n_head * dv];
                    let mut at = 0;
                    while at < total {
                        let n = if at == 0 { split } else { 1 };
                        let (kw, vw) = (kvh * dk, kvh * dv);
                        cache.write(0, &k[at * kw..(at + n) * kw], &v[at * vw..(at + n) * vw], n);
                        let hq = n_head * dk;
                        let ho = n_head * dv;
                        let mut seqs = [SeqAttn {
                            q: &q[at * hq..(at + n) * hq],
                            cache: &cache,
                            layer: 0,
                            start: at,
                            n,
                            out: &mut got[at * ho..(at + n) * ho],
                        }];
                        attend(&p, &mut seqs);
                        cache.commit(n);
                        at += n;
                    }
                    let err = got
                        .iter()
                        .zip(&want)
                        .map(|(a, b)| (a - b).abs())
                        .fold(0f32, f32::max);
                    assert!(err < tol, "{prec} window {window:?} split {split}: {err}");
                }
            }
        }
    }
}
