//! Q8_K: 256 values in 292 bytes — the intermediate type ggml quantizes activations
//! to for k-quant dot products; it never appears in model files.
//!
//! Layout: `d: f32`, `qs: i8[256]`, `bsums: i16[16]` (sum of each 16-value group's
//! `qs`, so dot products can apply the k-quants' minimums cheaply). Value i:
//! `d·qs[i]`.

use super::k_common::QK_K;
use super::search::nearest_int;

const BLOCK_BYTES: usize = 292;

pub(crate) fn dequantize(src: &[u8], out: &mut [f32]) {
    for (b, y) in src
        .chunks_exact(BLOCK_BYTES)
        .zip(out.chunks_exact_mut(QK_K))
    {
        let d = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        for (o, &q) in y.iter_mut().zip(&b[4..4 + QK_K]) {
            *o = d * f32::from(q as i8);
        }
    }
}

/// ggml's reference: scale `max/−127` from the signed extreme (−127 rather than −128
/// keeps every level symmetric, which ggml's IQ2 dot products rely on).
pub(crate) fn quantize(src: &[f32], dst: &mut [u8]) {
    for (x, b) in src
        .chunks_exact(QK_K)
        .zip(dst.chunks_exact_mut(BLOCK_BYTES))
    {
        let (mut amax, mut max) = (0.0f32, 0.0f32);
        for &v in x {
            if v.abs() > amax {
                amax = v.abs();
                max = v;
            }
        }
        if amax == 0.0 {
            // ggml leaves bsums untouched here; we zero the whole block instead, so
            // output never depends on what `dst` held before.
            b.fill(0);
            continue;
        }
        let iscale = -127.0 / max;
        let qs = &mut b[4..4 + QK_K];
        for (q, &v) in qs.iter_mut().zip(x) {
            *q = nearest_int(iscale * v).min(127) as i8 as u8;
        }
        let mut bsums = [0i16; QK_K / 16];
        for (s, group) in bsums.iter_mut().zip(qs.chunks_exact(16)) {
            *s = group.iter().map(|&q| i16::from(q as i8)).sum();
        }
        for (out, s) in b[4 + QK_K..].chunks_exact_mut(2).zip(bsums) {
            out.copy_from_slice(&s.to_le_bytes());
        }
        b[0..4].copy_from_slice(&(1.0 / iscale).to_le_bytes());
    }
}
