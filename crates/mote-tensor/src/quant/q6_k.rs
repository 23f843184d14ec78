//! Q6_K: 256 values in 210 bytes (6.5625 bits per weight).
//!
//! Layout: `ql[128]` (low 4 bits), `qh[64]` (high 2 bits), `scales: i8[16]` (one per
//! 16-value group), `d: f16`. Each 128-value half h uses `ql[64h..64h+64]` and
//! `qh[32h..32h+32]`; for l < 32, values 128h + {l, 32+l, 64+l, 96+l} take their low
//! nibbles from {ql[l] low, ql[l+32] low, ql[l] high, ql[l+32] high} and their high
//! bits from bits {0-1, 2-3, 4-5, 6-7} of qh[l]. Value v: `d·scales[v/16]·(q − 32)`.

use super::float::{f16_at, f16_bytes};
use super::k_common::QK_K;
use super::search::{self, nearest_int, GROUP_MAX_EPS};

const BLOCK_BYTES: usize = 210;
const GROUP: usize = 16;
const GROUPS: usize = QK_K / GROUP;

pub(crate) fn dequantize(src: &[u8], out: &mut [f32]) {
    for (b, y) in src
        .chunks_exact(BLOCK_BYTES)
        .zip(out.chunks_exact_mut(QK_K))
    {
        let d = f16_at(b, 208);
        let scales = &b[192..208];
        for h in 0..2 {
            let (ql, qh) = (&b[64 * h..64 * h + 64], &b[128 + 32 * h..128 + 32 * h + 32]);
            let ys = &mut y[128 * h..128 * h + 128];
            for l in 0..32 {
                let lows = [ql[l] & 0x0f, ql[l + 32] & 0x0f, ql[l] >> 4, ql[l + 32] >> 4];
                for (k, low) in lows.into_iter().enumerate() {
                    let v = 32 * k + l;
                    let q = i32::from(low | (((qh[l] >> (2 * k)) & 3) << 4)) - 32;
                    let sc = f32::from(scales[8 * h + v / GROUP] as i8);
                    ys[v] = d * sc * q as f32;
                }
            }
        }
    }
}

fn pack(levels: &[u8; QK_K], b: &mut [u8]) {
    let (ql_all, rest) = b.split_at_mut(128);
    let qh_all = &mut rest[..64];
    for h in 0..2 {
        let chunk = &levels[128 * h..128 * h + 128];
        let ql = &mut ql_all[64 * h..64 * h + 64];
        let qh = &mut qh_all[32 * h..32 * h + 32];
        for l in 0..32 {
            let q = [chunk[l], chunk[l + 32], chunk[l + 64], chunk[l + 96]];
            ql[l] = (q[0] & 0x0f) | ((q[2] & 0x0f) << 4);
            ql[l + 32] = (q[1] & 0x0f) | ((q[3] & 0x0f) << 4);
            qh[l] = (q[0] >> 4) | ((q[1] >> 4) << 2) | ((q[2] >> 4) << 4) | ((q[3] >> 4) << 6);
        }
    }
}

/// Both quantizers: per group a symmetric 6-bit fit (weights x², or the importance
/// directly when given), scales quantized to i8 against the one of largest magnitude,
/// then levels re-picked with the stored scales.
fn quantize_impl(src: &[f32], qw: Option<&[f32]>, dst: &mut [u8]) {
    for (bi, (x, b)) in src
        .chunks_exact(QK_K)
        .zip(dst.chunks_exact_mut(BLOCK_BYTES))
        .enumerate()
    {
        let mut signed = [0i8; QK_K];
        let mut scales = [0.0f32; GROUPS];
        let (mut max_abs, mut max_scale) = (0.0f32, 0.0f32);
        for (g, scale) in scales.iter_mut().enumerate() {
            let range = g * GROUP..(g + 1) * GROUP;
            let w = qw.map(|q| &q[bi * QK_K + range.start..bi * QK_K + range.end]);
            *scale = search::symmetric(32, &x[range.clone()], &mut signed[range], w);
            if scale.abs() > max_abs {
                max_abs = scale.abs();
                max_scale = *scale;
            }
        }
        if max_abs < GROUP_MAX_EPS {
            b.fill(0);
            continue;
        }
        let iscale = -128.0 / max_scale;
        b[208..210].copy_from_slice(&f16_bytes(1.0 / iscale));
        for g in 0..GROUPS {
            b[192 + g] = nearest_int(iscale * scales[g]).min(127) as i8 as u8;
        }
        let d_all = f16_at(b, 208);
        let mut levels = signed.map(|l| l as u8);
        for g in 0..GROUPS {
            let d = d_all * f32::from(b[192 + g] as i8);
            if d == 0.0 {
                continue;
            }
            for i in g * GROUP..(g + 1) * GROUP {
                levels[i] = (nearest_int(x[i] / d).clamp(-32, 31) + 32) as u8;
            }
        }
        pack(&levels, b);
    }
}

pub(crate) fn quantize(src: &[f32], dst: &mut [u8]) {
    quantize_impl(src, None, dst);
}

pub(crate) fn quantize_weighted(src: &[f32], qw: &[f32], dst: &mut [u8]) {
    quantize_impl(src, Some(qw), dst);
}
