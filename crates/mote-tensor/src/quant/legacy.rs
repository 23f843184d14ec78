//! The original 32-value block types: Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q8_1.
//!
//! Block layouts (all little-endian; `d`, `m`, `s` are f16):
//!
//! | type | bytes | fields (in order)                        | value i                 |
//! |------|-------|------------------------------------------|-------------------------|
//! | Q4_0 | 18    | d, qs[16]                                | (q_i − 8)·d             |
//! | Q4_1 | 20    | d, m, qs[16]                             | q_i·d + m               |
//! | Q5_0 | 22    | d, qh: u32, qs[16]                       | (q_i − 16)·d            |
//! | Q5_1 | 24    | d, m, qh: u32, qs[16]                    | q_i·d + m               |
//! | Q8_0 | 34    | d, qs: i8[32]                            | q_i·d                   |
//! | Q8_1 | 36    | d, s = d·Σq, qs: i8[32]                  | q_i·d                   |
//!
//! Nibbles: byte `qs[j]` holds value j in its low nibble and value j+16 in its high
//! nibble (not j and j+1). For the 5-bit types, bit j of `qh` is bit 4 of value j.
//!
//! The plain quantizers are ggml's reference ones (round from the extreme value); the
//! weighted ones are ggml's importance-matrix variants, which use whole-row
//! statistics — so they take the full row, not a block at a time.

use super::float::{f16_at, f16_bytes};
use super::search::{self, MinSearch};

pub(crate) const QK: usize = 32;
const HALF: usize = QK / 2;

/// The scale/minimum search the weighted Q4_1/Q5_1 quantizers use.
const WEIGHTED_MIN_SEARCH: MinSearch = MinSearch {
    rmin: -0.9,
    rdelta: 0.05,
    nstep: 36,
    use_mad: false,
};

// ---------------------------------------------------------------- dequantization

pub(crate) fn dequantize_q4_0(src: &[u8], out: &mut [f32]) {
    for (b, y) in src.chunks_exact(18).zip(out.chunks_exact_mut(QK)) {
        let d = f16_at(b, 0);
        for (j, &q) in b[2..18].iter().enumerate() {
            y[j] = (i32::from(q & 0x0f) - 8) as f32 * d;
            y[j + HALF] = (i32::from(q >> 4) - 8) as f32 * d;
        }
    }
}

pub(crate) fn dequantize_q4_1(src: &[u8], out: &mut [f32]) {
    for (b, y) in src.chunks_exact(20).zip(out.chunks_exact_mut(QK)) {
        let (d, m) = (f16_at(b, 0), f16_at(b, 2));
        for (j, &q) in b[4..20].iter().enumerate() {
            y[j] = f32::from(q & 0x0f) * d + m;
            y[j + HALF] = f32::from(q >> 4) * d + m;
        }
    }
}

/// The 5-bit values of a Q5 block: low nibbles from `qs`, bit 4 from `qh`.
#[inline]
fn five_bit(qs: &[u8], qh: u32, j: usize) -> (u8, u8) {
    let lo = (qs[j] & 0x0f) | ((((qh >> j) & 1) as u8) << 4);
    let hi = (qs[j] >> 4) | ((((qh >> (j + HALF)) & 1) as u8) << 4);
    (lo, hi)
}

pub(crate) fn dequantize_q5_0(src: &[u8], out: &mut [f32]) {
    for (b, y) in src.chunks_exact(22).zip(out.chunks_exact_mut(QK)) {
        let d = f16_at(b, 0);
        let qh = u32::from_le_bytes([b[2], b[3], b[4], b[5]]);
        for j in 0..HALF {
            let (lo, hi) = five_bit(&b[6..22], qh, j);
            y[j] = (i32::from(lo) - 16) as f32 * d;
            y[j + HALF] = (i32::from(hi) - 16) as f32 * d;
        }
    }
}

pub(crate) fn dequantize_q5_1(src: &[u8], out: &mut [f32]) {
    for (b, y) in src.chunks_exact(24).zip(out.chunks_exact_mut(QK)) {
        let (d, m) = (f16_at(b, 0), f16_at(b, 2));
        let qh = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
        for j in 0..HALF {
            let (lo, hi) = five_bit(&b[8..24], qh, j);
            y[j] = f32::from(lo) * d + m;
            y[j + HALF] = f32::from(hi) * d + m;
        }
    }
}

fn dequantize_q8(src: &[u8], out: &mut [f32], block_bytes: usize, qs_at: usize) {
    for (b, y) in src.chunks_exact(block_bytes).zip(out.chunks_exact_mut(QK)) {
        let d = f16_at(b, 0);
        for (o, &q) in y.iter_mut().zip(&b[qs_at..]) {
            *o = f32::from(q as i8) * d;
        }
    }
}

pub(crate) fn dequantize_q8_0(src: &[u8], out: &mut [f32]) {
    dequantize_q8(src, out, 34, 2);
}

pub(crate) fn dequantize_q8_1(src: &[u8], out: &mut [f32]) {
    dequantize_q8(src, out, 36, 4);
}

// ---------------------------------------------------------------- packing helpers

/// Packs 32 levels in `[0, 16)` into the 16 nibble bytes.
#[inline]
fn pack_nibbles(levels: &[u8; QK], qs: &mut [u8]) {
    for j in 0..HALF {
        qs[j] = (levels[j] & 0x0f) | ((levels[j + HALF] & 0x0f) << 4);
    }
}

/// Packs 32 levels in `[0, 32)` into `qh` (4 bytes) and the 16 nibble bytes.
#[inline]
fn pack_five_bit(levels: &[u8; QK], qh: &mut [u8], qs: &mut [u8]) {
    let mut high = 0u32;
    for (j, &l) in levels.iter().enumerate() {
        high |= u32::from((l >> 4) & 1) << j;
    }
    qh.copy_from_slice(&high.to_le_bytes());
    pack_nibbles(levels, qs);
}

/// The entry with the largest magnitude (first one on ties), with its sign.
#[inline]
fn signed_absmax(x: &[f32]) -> f32 {
    let (mut amax, mut max) = (0.0f32, 0.0f32);
    for &v in x {
        if amax < v.abs() {
            amax = v.abs();
            max = v;
        }
    }
    max
}

#[inline]
fn min_max(x: &[f32]) -> (f32, f32) {
    let (mut min, mut max) = (f32::MAX, -f32::MAX);
    for &v in x {
        if v < min {
            min = v;
        }
        if v > max {
            max = v;
        }
    }
    (min, max)
}

#[inline]
fn inverse(d: f32) -> f32 {
    if d != 0.0 {
        1.0 / d
    } else {
        0.0
    }
}

// ---------------------------------------------------------------- reference quantizers

/// Symmetric 4/5-bit: `d = max/−2^(bits−1)` from the signed extreme, levels truncated
/// from `x/d + offset + ½` (the extreme maps to level 0).
fn symmetric_levels(x: &[f32], bias: f32, top: i8) -> (f32, [u8; QK]) {
    let d = signed_absmax(x) / -bias;
    let id = inverse(d);
    let mut levels = [0u8; QK];
    for (l, &v) in levels.iter_mut().zip(x) {
        // Truncation toward zero, then through i8, as ggml's `(int8_t)` cast does.
        *l = ((v * id + (bias + 0.5)) as i32 as i8).min(top) as u8;
    }
    (d, levels)
}

/// Asymmetric 4/5-bit: the block's range split into `2^bits − 1` steps from its min.
fn asymmetric_levels(x: &[f32], steps: f32, top: Option<u8>) -> (f32, f32, [u8; QK]) {
    let (min, max) = min_max(x);
    let d = (max - min) / steps;
    let id = inverse(d);
    let mut levels = [0u8; QK];
    for (l, &v) in levels.iter_mut().zip(x) {
        let q = ((v - min) * id + 0.5) as i32;
        // ggml clamps Q4_1 but not Q5_1 (whose top level cannot be exceeded anyway).
        *l = match top {
            Some(t) => (q as i8).min(t as i8) as u8,
            None => q as u8,
        };
    }
    (d, min, levels)
}

pub(crate) fn quantize_q4_0(src: &[f32], dst: &mut [u8]) {
    for (x, b) in src.chunks_exact(QK).zip(dst.chunks_exact_mut(18)) {
        let (d, levels) = symmetric_levels(x, 8.0, 15);
        b[0..2].copy_from_slice(&f16_bytes(d));
        pack_nibbles(&levels, &mut b[2..18]);
    }
}

pub(crate) fn quantize_q4_1(src: &[f32], dst: &mut [u8]) {
    for (x, b) in src.chunks_exact(QK).zip(dst.chunks_exact_mut(20)) {
        let (d, min, levels) = asymmetric_levels(x, 15.0, Some(15));
        b[0..2].copy_from_slice(&f16_bytes(d));
        b[2..4].copy_from_slice(&f16_bytes(min));
        pack_nibbles(&levels, &mut b[4..20]);
    }
}

pub(crate) fn quantize_q5_0(src: &[f32], dst: &mut [u8]) {
    for (x, b) in src.chunks_exact(QK).zip(dst.chunks_exact_mut(22)) {
        let (d, levels) = symmetric_levels(x, 16.0, 31);
        b[0..2].copy_from_slice(&f16_bytes(d));
        let (qh, qs) = b[2..22].split_at_mut(4);
        pack_five_bit(&levels, qh, qs);
    }
}

pub(crate) fn quantize_q5_1(src: &[f32], dst: &mut [u8]) {
    for (x, b) in src.chunks_exact(QK).zip(dst.chunks_exact_mut(24)) {
        let (d, min, levels) = asymmetric_levels(x, 31.0, None);
        b[0..2].copy_from_slice(&f16_bytes(d));
        b[2..4].copy_from_slice(&f16_bytes(min));
        let (qh, qs) = b[4..24].split_at_mut(4);
        pack_five_bit(&levels, qh, qs);
    }
}

/// Q8: `d = amax/127`, values rounded half away from zero. Returns `Σq` for Q8_1.
fn q8_block(x: &[f32], qs: &mut [u8]) -> (f32, i32) {
    let amax = x
        .iter()
        .fold(0.0f32, |a, v| if a > v.abs() { a } else { v.abs() });
    let d = amax / 127.0;
    let id = inverse(d);
    let mut sum = 0i32;
    for (q, &v) in qs.iter_mut().zip(x) {
        let l = (v * id).round() as i32 as i8;
        sum += i32::from(l);
        *q = l as u8;
    }
    (d, sum)
}

pub(crate) fn quantize_q8_0(src: &[f32], dst: &mut [u8]) {
    for (x, b) in src.chunks_exact(QK).zip(dst.chunks_exact_mut(34)) {
        let (d, _) = q8_block(x, &mut b[2..34]);
        b[0..2].copy_from_slice(&f16_bytes(d));
    }
}

pub(crate) fn quantize_q8_1(src: &[f32], dst: &mut [u8]) {
    for (x, b) in src.chunks_exact(QK).zip(dst.chunks_exact_mut(36)) {
        let (d, sum) = q8_block(x, &mut b[4..36]);
        b[0..2].copy_from_slice(&f16_bytes(d));
        b[2..4].copy_from_slice(&f16_bytes(sum as f32 * d));
    }
}

// ---------------------------------------------------------------- importance-weighted

/// Per-value weights for one block: importance scaled by how far the value stands out
/// from the row's mean square, `qw·√(σ² + x²)`.
#[inline]
fn block_weights(x: &[f32], qw: &[f32], sigma2: f32) -> [f32; QK] {
    let mut w = [0.0f32; QK];
    for ((w, &x), &q) in w.iter_mut().zip(x).zip(qw) {
        *w = q * (sigma2 + x * x).sqrt();
    }
    w
}

/// Mean square of the whole row: the weighted legacy quantizers' σ².
fn row_sigma2(src: &[f32]) -> f32 {
    let mut sum = 0.0f32;
    for &v in src {
        sum += v * v;
    }
    sum / src.len() as f32
}

/// Weighted symmetric 4/5-bit (Q4_0 with nmax 8, Q5_0 with nmax 16).
fn weighted_symmetric(
    src: &[f32],
    qw: &[f32],
    dst: &mut [u8],
    block_bytes: usize,
    nmax: i32,
    store: fn(&[u8; QK], &mut [u8]),
) {
    let sigma2 = row_sigma2(src);
    let blocks = src.chunks_exact(QK).zip(qw.chunks_exact(QK));
    for ((x, q), b) in blocks.zip(dst.chunks_exact_mut(block_bytes)) {
        let w = block_weights(x, q, sigma2);
        let mut signed = [0i8; QK];
        let d = search::symmetric(nmax, x, &mut signed, Some(&w));
        let levels = signed.map(|l| l as u8);
        b[0..2].copy_from_slice(&f16_bytes(d));
        store(&levels, &mut b[2..]);
    }
}

/// Weighted asymmetric 4/5-bit (Q4_1 with nmax 15, Q5_1 with nmax 31).
fn weighted_asymmetric(
    src: &[f32],
    qw: &[f32],
    dst: &mut [u8],
    block_bytes: usize,
    nmax: i32,
    store: fn(&[u8; QK], &mut [u8]),
) {
    let sigma2 = row_sigma2(src);
    let blocks = src.chunks_exact(QK).zip(qw.chunks_exact(QK));
    for ((x, q), b) in blocks.zip(dst.chunks_exact_mut(block_bytes)) {
        let w = block_weights(x, q, sigma2);
        let mut levels = [0u8; QK];
        let (d, min) = search::asymmetric(nmax, x, &w, &mut levels, WEIGHTED_MIN_SEARCH);
        b[0..2].copy_from_slice(&f16_bytes(d));
        b[2..4].copy_from_slice(&f16_bytes(-min));
        store(&levels, &mut b[4..]);
    }
}

fn store_nibbles(levels: &[u8; QK], rest: &mut [u8]) {
    pack_nibbles(levels, &mut rest[..HALF]);
}

fn store_five_bit(levels: &[u8; QK], rest: &mut [u8]) {
    let (qh, qs) = rest[..4 + HALF].split_at_mut(4);
    pack_five_bit(levels, qh, qs);
}

pub(crate) fn quantize_q4_0_weighted(src: &[f32], qw: &[f32], dst: &mut [u8]) {
    weighted_symmetric(src, qw, dst, 18, 8, store_nibbles);
}

pub(crate) fn quantize_q5_0_weighted(src: &[f32], qw: &[f32], dst: &mut [u8]) {
    weighted_symmetric(src, qw, dst, 22, 16, store_five_bit);
}

pub(crate) fn quantize_q4_1_weighted(src: &[f32], qw: &[f32], dst: &mut [u8]) {
    weighted_asymmetric(src, qw, dst, 20, 15, store_nibbles);
}

pub(crate) fn quantize_q5_1_weighted(src: &[f32], qw: &[f32], dst: &mut [u8]) {
    weighted_asymmetric(src, qw, dst, 24, 31, store_five_bit);
}
