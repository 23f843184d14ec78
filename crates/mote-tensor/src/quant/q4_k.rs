//! Q4_K: 256 values in 144 bytes (4.5 bits per weight), and the scale/minimum fitting
//! that Q5_K shares with it.
//!
//! Layout: `d: f16`, `dmin: f16`, `scales[12]` (eight 6-bit scales and eight 6-bit
//! minimums, one pair per 32-value sub-block, packed as in
//! [`k_common::scale_min_6bit`]), `qs[128]` (4-bit levels: each 64-value chunk c
//! takes 32 bytes; byte l holds value 64c + l in its low nibble and 64c + 32 + l in
//! its high nibble). Value v of sub-block j = v/32: `d·sc_j·q − dmin·m_j`.

use super::float::{f16_at, f16_bytes};
use super::k_common::{self, QK_K};
use super::search::{self, nearest_int, MinSearch};

const BLOCK_BYTES: usize = 144;
pub(crate) const SUB: usize = 32;
pub(crate) const SUBS: usize = QK_K / SUB;
/// `d`, `dmin` and the packed scales: the first 16 bytes of Q4_K and Q5_K blocks.
pub(crate) const HEADER_BYTES: usize = 16;

/// The (scale, minimum) multipliers of sub-block `j` from a Q4_K/Q5_K header.
#[inline]
pub(crate) fn sub_block_scale_min(header: &[u8], j: usize) -> (f32, f32) {
    let (sc, m) = k_common::scale_min_6bit(&header[4..16], j);
    (
        f16_at(header, 0) * f32::from(sc),
        f16_at(header, 2) * f32::from(m),
    )
}

pub(crate) fn dequantize(src: &[u8], out: &mut [f32]) {
    for (b, y) in src
        .chunks_exact(BLOCK_BYTES)
        .zip(out.chunks_exact_mut(QK_K))
    {
        let qs = &b[16..144];
        for (j, ys) in y.chunks_exact_mut(SUB).enumerate() {
            let (d, m) = sub_block_scale_min(b, j);
            let bytes = &qs[32 * (j / 2)..32 * (j / 2) + 32];
            let shift = 4 * (j % 2);
            for (o, &q) in ys.iter_mut().zip(bytes) {
                *o = d * f32::from((q >> shift) & 0x0f) - m;
            }
        }
    }
}

/// ggml's reference fit: per sub-block, weights `rms + |x|` and an asymmetric grid
/// search; then scales and minimums quantized to 6 bits against their maxima.
/// Writes the 16-byte header and leaves final levels in `levels`.
pub(crate) fn fit(
    x: &[f32],
    nmax: i32,
    params: MinSearch,
    header: &mut [u8],
    levels: &mut [u8; QK_K],
) {
    let mut scales = [0.0f32; SUBS];
    let mut mins = [0.0f32; SUBS];
    let (mut max_scale, mut max_min) = (0.0f32, 0.0f32);
    for j in 0..SUBS {
        let xs = &x[j * SUB..(j + 1) * SUB];
        let av_x = (k_common::sum_squares(xs) / 32.0).sqrt();
        let weights: [f32; SUB] = std::array::from_fn(|i| av_x + xs[i].abs());
        let ls = &mut levels[j * SUB..(j + 1) * SUB];
        (scales[j], mins[j]) = search::asymmetric(nmax, xs, &weights, ls, params);
        if scales[j] > max_scale {
            max_scale = scales[j];
        }
        if mins[j] > max_min {
            max_min = mins[j];
        }
    }
    let inv_scale = if max_scale > 0.0 {
        63.0 / max_scale
    } else {
        0.0
    };
    let inv_min = if max_min > 0.0 { 63.0 / max_min } else { 0.0 };
    // ggml narrows nearest_int to a byte before capping at 63; keep that wrap.
    let ls = scales.map(|s| (nearest_int(inv_scale * s) as u8).min(63));
    let lm = mins.map(|m| (nearest_int(inv_min * m) as u8).min(63));
    header[0..2].copy_from_slice(&f16_bytes(max_scale / 63.0));
    header[2..4].copy_from_slice(&f16_bytes(max_min / 63.0));
    k_common::pack_scale_min_6bit(&ls, &lm, &mut header[4..16]);
    requantize(x, header, nmax, levels);
}

/// ggml's importance-matrix fit: weights `qw·√(σ² + x²)`, then the 6-bit scales and
/// minimums fitted with the sub-blocks' total weights. `cap` mirrors Q5_K capping the
/// 6-bit values at 63 (Q4_K does not).
pub(crate) fn fit_weighted(
    x: &[f32],
    qw: &[f32],
    nmax: i32,
    cap: bool,
    header: &mut [u8],
    levels: &mut [u8; QK_K],
) {
    const SEARCH: MinSearch = MinSearch {
        rmin: -0.9,
        rdelta: 0.05,
        nstep: 36,
        use_mad: false,
    };
    let sigma2 = 2.0 * k_common::sum_squares(x) / QK_K as f32;
    let mut scales = [0.0f32; SUBS];
    let mut mins = [0.0f32; SUBS];
    let mut sub_weight = [0.0f32; SUBS];
    for j in 0..SUBS {
        let range = j * SUB..(j + 1) * SUB;
        let mut weights = [0.0f32; SUB];
        k_common::importance_weights(&x[range.clone()], &qw[range.clone()], sigma2, &mut weights);
        sub_weight[j] = k_common::sum(&weights);
        let ls = &mut levels[range.clone()];
        (scales[j], mins[j]) = search::asymmetric(nmax, &x[range], &weights, ls, SEARCH);
    }
    let mut ls = [0u8; SUBS];
    let mut lm = [0u8; SUBS];
    let d_block = search::unsigned_weighted(63, &scales, &mut ls, &sub_weight);
    let m_block = search::unsigned_weighted(63, &mins, &mut lm, &sub_weight);
    if cap {
        ls = ls.map(|l| l.min(63));
        lm = lm.map(|l| l.min(63));
    }
    k_common::pack_scale_min_6bit(&ls, &lm, &mut header[4..16]);
    header[0..2].copy_from_slice(&f16_bytes(d_block));
    header[2..4].copy_from_slice(&f16_bytes(m_block));
    requantize(x, header, nmax, levels);
}

/// With the stored scales fixed, re-picks each value's level in `[0, nmax]`;
/// sub-blocks with a zero scale keep the levels of the search.
fn requantize(x: &[f32], header: &[u8], nmax: i32, levels: &mut [u8; QK_K]) {
    for j in 0..SUBS {
        let (d, dm) = sub_block_scale_min(header, j);
        if d == 0.0 {
            continue;
        }
        for i in j * SUB..(j + 1) * SUB {
            levels[i] = nearest_int((x[i] + dm) / d).clamp(0, nmax) as u8;
        }
    }
}

fn pack(levels: &[u8; QK_K], qs: &mut [u8]) {
    for (chunk, out) in levels.chunks_exact(64).zip(qs.chunks_exact_mut(32)) {
        for (l, q) in out.iter_mut().enumerate() {
            *q = chunk[l] | (chunk[l + 32] << 4);
        }
    }
}

pub(crate) fn quantize(src: &[f32], dst: &mut [u8]) {
    const SEARCH: MinSearch = MinSearch {
        rmin: -1.0,
        rdelta: 0.1,
        nstep: 20,
        use_mad: false,
    };
    for (x, b) in src
        .chunks_exact(QK_K)
        .zip(dst.chunks_exact_mut(BLOCK_BYTES))
    {
        let mut levels = [0u8; QK_K];
        let (header, qs) = b.split_at_mut(HEADER_BYTES);
        fit(x, 15, SEARCH, header, &mut levels);
        pack(&levels, qs);
    }
}

pub(crate) fn quantize_weighted(src: &[f32], qw: &[f32], dst: &mut [u8]) {
    let blocks = src.chunks_exact(QK_K).zip(qw.chunks_exact(QK_K));
    for ((x, qw), b) in blocks.zip(dst.chunks_exact_mut(BLOCK_BYTES)) {
        let mut levels = [0u8; QK_K];
        let (header, qs) = b.split_at_mut(HEADER_BYTES);
        fit_weighted(x, qw, 15, false, header, &mut levels);
        pack(&levels, qs);
    }
}
