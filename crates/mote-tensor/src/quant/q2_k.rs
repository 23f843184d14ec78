//! Q2_K: 256 values in 84 bytes (2.625 bits per weight).
//!
//! Layout: `scales[16]` (one byte per 16-value group: low nibble = 4-bit scale,
//! high nibble = 4-bit minimum), `qs[64]` (2-bit levels, packed as in
//! [`k_common::pack_2bit`]), `d: f16` (super-scale of the scales), `dmin: f16`
//! (super-scale of the minimums). Value v of group g = v/16:
//! `d·(scales[g] & 15)·q − dmin·(scales[g] >> 4)`.

use super::float::{f16_at, f16_bytes};
use super::k_common::{self, QK_K};
use super::search::{self, nearest_int, MinSearch};

const BLOCK_BYTES: usize = 84;
const GROUP: usize = 16;
const GROUPS: usize = QK_K / GROUP;

pub(crate) fn dequantize(src: &[u8], out: &mut [f32]) {
    for (b, y) in src
        .chunks_exact(BLOCK_BYTES)
        .zip(out.chunks_exact_mut(QK_K))
    {
        let (scales, qs) = (&b[0..16], &b[16..80]);
        let (d, dmin) = (f16_at(b, 80), f16_at(b, 82));
        for (g, ys) in y.chunks_exact_mut(GROUP).enumerate() {
            let dl = d * f32::from(scales[g] & 0x0f);
            let ml = dmin * f32::from(scales[g] >> 4);
            for (i, o) in ys.iter_mut().enumerate() {
                *o = dl * f32::from(k_common::level_2bit(qs, g * GROUP + i)) - ml;
            }
        }
    }
}

/// Final pass shared by both quantizers: with the stored (f16-rounded) scales fixed,
/// re-pick each value's level, then pack. Groups with a zero scale keep the levels of
/// the search.
fn requantize_and_pack(x: &[f32], b: &mut [u8], levels: &mut [u8; QK_K]) {
    let (d_all, m_all) = (f16_at(b, 80), f16_at(b, 82));
    for (g, &sc) in b[..GROUPS].iter().enumerate() {
        let d = d_all * f32::from(sc & 0x0f);
        if d == 0.0 {
            continue;
        }
        let dm = m_all * f32::from(sc >> 4);
        for i in g * GROUP..(g + 1) * GROUP {
            levels[i] = nearest_int((x[i] + dm) / d).clamp(0, 3) as u8;
        }
    }
    k_common::pack_2bit(levels, &mut b[16..80]);
}

/// ggml's reference: per group, a mean-absolute-error fit of scale and minimum
/// weighted by |x|; then scales and minimums each quantized to 4 bits against their
/// maximum.
pub(crate) fn quantize(src: &[f32], dst: &mut [u8]) {
    const SEARCH: MinSearch = MinSearch {
        rmin: -0.5,
        rdelta: 0.1,
        nstep: 15,
        use_mad: true,
    };
    for (x, b) in src
        .chunks_exact(QK_K)
        .zip(dst.chunks_exact_mut(BLOCK_BYTES))
    {
        let mut levels = [0u8; QK_K];
        let mut scales = [0.0f32; GROUPS];
        let mut mins = [0.0f32; GROUPS];
        let (mut max_scale, mut max_min) = (0.0f32, 0.0f32);
        for g in 0..GROUPS {
            let xg = &x[g * GROUP..(g + 1) * GROUP];
            let weights: [f32; GROUP] = std::array::from_fn(|i| xg[i].abs());
            let lg = &mut levels[g * GROUP..(g + 1) * GROUP];
            (scales[g], mins[g]) = search::asymmetric(3, xg, &weights, lg, SEARCH);
            if scales[g] > max_scale {
                max_scale = scales[g];
            }
            if mins[g] > max_min {
                max_min = mins[g];
            }
        }
        if max_scale > 0.0 {
            let iscale = 15.0 / max_scale;
            for g in 0..GROUPS {
                b[g] = nearest_int(iscale * scales[g]) as u8;
            }
            b[80..82].copy_from_slice(&f16_bytes(max_scale / 15.0));
        } else {
            b[0..GROUPS].fill(0);
            b[80..82].copy_from_slice(&f16_bytes(0.0));
        }
        if max_min > 0.0 {
            let iscale = 15.0 / max_min;
            for g in 0..GROUPS {
                b[g] |= (nearest_int(iscale * mins[g]) << 4) as u8;
            }
            b[82..84].copy_from_slice(&f16_bytes(max_min / 15.0));
        } else {
            b[82..84].copy_from_slice(&f16_bytes(0.0));
        }
        requantize_and_pack(x, b, &mut levels);
    }
}

/// ggml's importance-matrix variant: squared error weighted by `qw·√(σ² + x²)`, and
/// the 4-bit scales/minimums themselves fitted with the groups' total weights.
pub(crate) fn quantize_weighted(src: &[f32], qw: &[f32], dst: &mut [u8]) {
    const SEARCH: MinSearch = MinSearch {
        rmin: -0.9,
        rdelta: 0.05,
        nstep: 36,
        use_mad: false,
    };
    let blocks = src.chunks_exact(QK_K).zip(qw.chunks_exact(QK_K));
    for ((x, qw), b) in blocks.zip(dst.chunks_exact_mut(BLOCK_BYTES)) {
        let sigma2 = k_common::sum_squares(x) / QK_K as f32;
        let mut levels = [0u8; QK_K];
        let mut scales = [0.0f32; GROUPS];
        let mut mins = [0.0f32; GROUPS];
        let mut group_weight = [0.0f32; GROUPS];
        for g in 0..GROUPS {
            let range = g * GROUP..(g + 1) * GROUP;
            let mut weights = [0.0f32; GROUP];
            k_common::importance_weights(
                &x[range.clone()],
                &qw[range.clone()],
                sigma2,
                &mut weights,
            );
            group_weight[g] = k_common::sum(&weights);
            let lg = &mut levels[range.clone()];
            (scales[g], mins[g]) = search::asymmetric(3, &x[range], &weights, lg, SEARCH);
        }
        let mut ls = [0u8; GROUPS];
        let mut lm = [0u8; GROUPS];
        let dm = search::unsigned_weighted(15, &scales, &mut ls, &group_weight);
        let mm = search::unsigned_weighted(15, &mins, &mut lm, &group_weight);
        b[80..82].copy_from_slice(&f16_bytes(dm));
        b[82..84].copy_from_slice(&f16_bytes(mm));
        for g in 0..GROUPS {
            b[g] = ls[g] | (lm[g] << 4);
        }
        requantize_and_pack(x, b, &mut levels);
    }
}
