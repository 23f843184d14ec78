//! Q3_K: 256 values in 110 bytes (3.4375 bits per weight).
//!
//! Layout: `hmask[32]` (bit 2 of each level: value v uses bit v/32 of byte v%32),
//! `qs[64]` (low 2 bits of each level, packed as in [`k_common::pack_2bit`]),
//! `scales[12]` (sixteen 6-bit scales stored with +32 offset: the low nibble of
//! scale j is in byte j (j < 8, low half) or byte j−8 (high half); its top 2 bits are
//! bits 2·(j/4).. of byte 8 + j%4), `d: f16`.
//! Value v of group g = v/16: `d·(s_g − 32)·(q − 4·(1 − hbit))`, q the 2-bit level.

use super::float::{f16_at, f16_bytes};
use super::k_common::{self, QK_K};
use super::search::{self, nearest_int};

const BLOCK_BYTES: usize = 110;
const GROUP: usize = 16;
const GROUPS: usize = QK_K / GROUP;
const SCALES_AT: usize = 96;
const D_AT: usize = 108;

/// The 6-bit scale of group `j` (still offset by 32).
#[inline]
fn scale(packed: &[u8], j: usize) -> u8 {
    let low = if j < 8 {
        packed[j] & 0x0f
    } else {
        packed[j - 8] >> 4
    };
    low | (((packed[8 + j % 4] >> (2 * (j / 4))) & 3) << 4)
}

/// Stores offset scales `l ∈ [0, 64)`, the inverse of [`scale`].
fn pack_scales(ls: &[u8; GROUPS], packed: &mut [u8]) {
    packed[..12].fill(0);
    for (j, &l) in ls.iter().enumerate() {
        if j < 8 {
            packed[j] = l & 0x0f;
        } else {
            packed[j - 8] |= (l & 0x0f) << 4;
        }
        packed[8 + j % 4] |= (l >> 4) << (2 * (j / 4));
    }
}

pub(crate) fn dequantize(src: &[u8], out: &mut [f32]) {
    for (b, y) in src
        .chunks_exact(BLOCK_BYTES)
        .zip(out.chunks_exact_mut(QK_K))
    {
        let (hmask, qs, packed) = (&b[0..32], &b[32..96], &b[SCALES_AT..D_AT]);
        let d = f16_at(b, D_AT);
        for (g, ys) in y.chunks_exact_mut(GROUP).enumerate() {
            let dl = d * (i32::from(scale(packed, g)) - 32) as f32;
            for (i, o) in ys.iter_mut().enumerate() {
                let v = g * GROUP + i;
                let q = i32::from(k_common::level_2bit(qs, v));
                let high = (hmask[v % 32] >> (v / 32)) & 1;
                let offset = if high != 0 { 0 } else { 4 };
                *o = dl * (q - offset) as f32;
            }
        }
    }
}

/// Final pass shared by both quantizers: with the stored scales fixed, re-pick each
/// value's level in `[0, 8)`, then split bit 2 into `hmask` and pack the rest.
fn requantize_and_pack(x: &[f32], b: &mut [u8], levels: &mut [u8; QK_K]) {
    let d_all = f16_at(b, D_AT);
    for g in 0..GROUPS {
        let sc = i32::from(scale(&b[SCALES_AT..D_AT], g)) - 32;
        let d = d_all * sc as f32;
        if d == 0.0 {
            continue;
        }
        for i in g * GROUP..(g + 1) * GROUP {
            levels[i] = (nearest_int(x[i] / d).clamp(-4, 3) + 4) as u8;
        }
    }
    b[0..32].fill(0);
    for (v, l) in levels.iter_mut().enumerate() {
        if *l > 3 {
            b[v % 32] |= 1 << (v / 32);
            *l -= 4;
        }
    }
    k_common::pack_2bit(levels, &mut b[32..96]);
}

/// ggml's reference: per group, a x²-weighted symmetric fit refined level by level;
/// the scales are then quantized to 6 bits against the one of largest magnitude.
pub(crate) fn quantize(src: &[f32], dst: &mut [u8]) {
    for (x, b) in src
        .chunks_exact(QK_K)
        .zip(dst.chunks_exact_mut(BLOCK_BYTES))
    {
        let mut signed = [0i8; QK_K];
        let mut scales = [0.0f32; GROUPS];
        let (mut amax, mut max_scale) = (0.0f32, 0.0f32);
        for (g, scale) in scales.iter_mut().enumerate() {
            let range = g * GROUP..(g + 1) * GROUP;
            *scale = search::symmetric_refined(4, &x[range.clone()], &mut signed[range]);
            if scale.abs() > amax {
                amax = scale.abs();
                max_scale = *scale;
            }
        }
        if max_scale != 0.0 {
            let iscale = -32.0 / max_scale;
            // ggml stores nearest_int into an int8 before clamping; keep that wrap.
            let ls = scales
                .map(|s| (i32::from(nearest_int(iscale * s) as i8).clamp(-32, 31) + 32) as u8);
            pack_scales(&ls, &mut b[SCALES_AT..D_AT]);
            b[D_AT..D_AT + 2].copy_from_slice(&f16_bytes(1.0 / iscale));
        } else {
            b[SCALES_AT..D_AT].fill(0);
            b[D_AT..D_AT + 2].copy_from_slice(&f16_bytes(0.0));
        }
        let mut levels = signed.map(|l| l as u8);
        requantize_and_pack(x, b, &mut levels);
    }
}

/// ggml's importance-matrix variant: groups fitted with weights `qw·√(σ² + x²)`, and
/// the 6-bit scales fitted with the groups' total weights.
pub(crate) fn quantize_weighted(src: &[f32], qw: &[f32], dst: &mut [u8]) {
    let blocks = src.chunks_exact(QK_K).zip(qw.chunks_exact(QK_K));
    for ((x, qw), b) in blocks.zip(dst.chunks_exact_mut(BLOCK_BYTES)) {
        let sigma2 = 2.0 * k_common::sum_squares(x) / QK_K as f32;
        let mut signed = [0i8; QK_K];
        let mut scales = [0.0f32; GROUPS];
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
            scales[g] = search::symmetric(4, &x[range.clone()], &mut signed[range], Some(&weights));
        }
        let mut ls = [0i8; GROUPS];
        let d_block = search::symmetric(32, &scales, &mut ls, Some(&group_weight));
        pack_scales(&ls.map(|l| l as u8), &mut b[SCALES_AT..D_AT]);
        b[D_AT..D_AT + 2].copy_from_slice(&f16_bytes(d_block));
        let mut levels = signed.map(|l| l as u8);
        requantize_and_pack(x, b, &mut levels);
    }
}
