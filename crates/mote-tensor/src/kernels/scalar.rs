//! Reference dot products in plain Rust: the definition every SIMD kernel is tested
//! against, and the path on targets without one (wasm32). Integer sums per block, one
//! float multiply-add per block, exactly the arithmetic the SIMD kernels do in lanes.

use super::unpack_k::{k_scales, KROWS, KU_BYTES};
use super::{
    f16_at, unpack_k4_scales, unpack_q3k_scales, BlockQ8, BlockQ8K, Dot, KernelPath, Kernels,
    Unpacked, UnpackedK,
};
use crate::DType;

/// Builds a [`Dot`] whose two- and four-row forms just call the one-row form.
macro_rules! dot {
    ($one:path) => {
        Dot {
            one: $one,
            two: |w, a| [$one(w, a[0]), $one(w, a[1])],
            four: |w, a| [$one(w, a[0]), $one(w, a[1]), $one(w, a[2]), $one(w, a[3])],
            gemm: None,
            rows8: None,
        }
    };
}

pub const KERNELS: Kernels = Kernels {
    path: KernelPath::Scalar,
    f32: dot!(dot_f32),
    f16: dot!(dot_f16),
    bf16: dot!(dot_bf16),
    q4_0: dot!(dot_q4_0),
    q4_1: dot!(dot_q4_1),
    q5_0: dot!(dot_q5_0),
    q5_1: dot!(dot_q5_1),
    q8_0: dot!(dot_q8_0),
    q2_k: dot!(dot_q2_k),
    q3_k: dot!(dot_q3_k),
    q4_k: dot!(dot_q4_k),
    q5_k: dot!(dot_q5_k),
    q6_k: dot!(dot_q6_k),
    gemm_k: None,
};

/// The definition of the decoding kernels ([`Dot::rows8`]) for one weight row of a
/// legacy type: per block the exact integer dot, then `acc = fma(dot, d_w · d_a, acc)`
/// and, for Q4_1 and Q5_1, `macc = fma(m_w, s_a, macc)`; the result is `acc + macc`.
/// `None` for other types. (A test reference: no table uses it, since `mul_add` is a
/// library call where the CPU has no FMA.)
pub fn rows8_row(dtype: DType, w: &[u8], a: &[BlockQ8]) -> Option<f32> {
    let nb = a.len().min(w.len() / dtype.block_bytes().max(1));
    let mut t = Unpacked::default();
    if !t.fill(dtype, w, w.len(), 1, nb) {
        return None;
    }
    let (mut acc, mut macc) = (0f32, 0f32);
    for (k, y) in a[..nb].iter().enumerate() {
        // One row: block k sits in lane 0 of slot 4k (see `Unpacked`).
        let at = 4 * k;
        let dot: i32 = t.u[at * 32..at * 32 + 32]
            .iter()
            .zip(&y.qs)
            .map(|(&u, &q)| (u as i32 - t.offset as i32) * q as i32)
            .sum();
        acc = (dot as f32).mul_add(t.d[at] * y.d, acc);
        if t.has_min {
            macc = t.m[at].mul_add(y.s, macc);
        }
    }
    Some(if t.has_min { acc + macc } else { acc })
}

/// [`rows8_row`] for Q4_K and Q5_K: per super-block the exact integer sums of
/// [`q4_k_sums`] / [`q5_k_sums`], then `acc = fma(sum, d · d_a, acc)` and
/// `macc = fma(mins, dmin · d_a, macc)`; the result is `acc − macc`. `None` for other
/// types.
pub fn rows8_row_k(dtype: DType, w: &[u8], a: &[BlockQ8K]) -> Option<f32> {
    let bb = match dtype {
        DType::Q4_K => 144,
        DType::Q5_K => 176,
        _ => return None,
    };
    let (mut acc, mut macc) = (0f32, 0f32);
    for (b, y) in w.chunks_exact(bb).zip(a) {
        let (s, mins) = if bb == 144 {
            q4_k_sums(b, y)
        } else {
            q5_k_sums(b, y)
        };
        acc = (s as f32).mul_add(f16_at(b, 0) * y.d, acc);
        macc = (mins as f32).mul_add(f16_at(b, 2) * y.d, macc);
    }
    Some(acc - macc)
}

/// Sums `terms` with eight partial sums, so that the compiler can vectorise it and the
/// rounding error grows more slowly than with one running sum.
#[inline]
fn sum8(terms: impl Iterator<Item = f32>) -> f32 {
    let mut acc = [0f32; 8];
    for (i, t) in terms.enumerate() {
        acc[i % 8] += t;
    }
    acc.iter().sum()
}

pub fn dot_f32(w: &[u8], a: &[f32]) -> f32 {
    sum8(
        w.chunks_exact(4)
            .zip(a)
            .map(|(b, x)| f32::from_le_bytes([b[0], b[1], b[2], b[3]]) * x),
    )
}

pub fn dot_f16(w: &[u8], a: &[f32]) -> f32 {
    sum8(
        w.chunks_exact(2)
            .zip(a)
            .map(|(b, x)| half::f16::from_le_bytes([b[0], b[1]]).to_f32() * x),
    )
}

pub fn dot_bf16(w: &[u8], a: &[f32]) -> f32 {
    sum8(
        w.chunks_exact(2)
            .zip(a)
            .map(|(b, x)| f32::from_bits((u16::from_le_bytes([b[0], b[1]]) as u32) << 16) * x),
    )
}

/// Q4_0: `d: f16, qs: [u8; 16]`; value `j` is `(qs[j] & 15) - 8`, value `j + 16` is
/// `(qs[j] >> 4) - 8`.
pub fn dot_q4_0(w: &[u8], a: &[BlockQ8]) -> f32 {
    let mut sum = 0f32;
    for (b, y) in w.chunks_exact(18).zip(a) {
        let mut s = 0i32;
        for j in 0..16 {
            s += ((b[2 + j] & 15) as i32 - 8) * y.qs[j] as i32;
            s += ((b[2 + j] >> 4) as i32 - 8) * y.qs[j + 16] as i32;
        }
        sum += s as f32 * (f16_at(b, 0) * y.d);
    }
    sum
}

/// Q4_1: `d: f16, m: f16, qs: [u8; 16]`; value is `d * q + m` with q in 0..16.
pub fn dot_q4_1(w: &[u8], a: &[BlockQ8]) -> f32 {
    let mut sum = 0f32;
    for (b, y) in w.chunks_exact(20).zip(a) {
        let mut s = 0i32;
        for j in 0..16 {
            s += (b[4 + j] & 15) as i32 * y.qs[j] as i32;
            s += (b[4 + j] >> 4) as i32 * y.qs[j + 16] as i32;
        }
        sum += s as f32 * (f16_at(b, 0) * y.d) + f16_at(b, 2) * y.s;
    }
    sum
}

/// The fifth bit of Q5 value `j` (0..32), from the 32-bit `qh` field.
#[inline]
fn q5_high(qh: u32, j: usize) -> i32 {
    ((qh >> j) & 1) as i32 * 16
}

/// Q5_0: `d: f16, qh: u32, qs: [u8; 16]`; value `j` is `(qs[j] & 15 | bit j of qh << 4) - 16`
/// and value `j + 16` takes the high nibble and bit `j + 16`.
pub fn dot_q5_0(w: &[u8], a: &[BlockQ8]) -> f32 {
    let mut sum = 0f32;
    for (b, y) in w.chunks_exact(22).zip(a) {
        let qh = u32::from_le_bytes([b[2], b[3], b[4], b[5]]);
        let mut s = 0i32;
        for j in 0..16 {
            s += (((b[6 + j] & 15) as i32 | q5_high(qh, j)) - 16) * y.qs[j] as i32;
            s += (((b[6 + j] >> 4) as i32 | q5_high(qh, j + 16)) - 16) * y.qs[j + 16] as i32;
        }
        sum += s as f32 * (f16_at(b, 0) * y.d);
    }
    sum
}

/// Q5_1: `d: f16, m: f16, qh: u32, qs: [u8; 16]`; value is `d * q + m` with q in 0..32.
pub fn dot_q5_1(w: &[u8], a: &[BlockQ8]) -> f32 {
    let mut sum = 0f32;
    for (b, y) in w.chunks_exact(24).zip(a) {
        let qh = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
        let mut s = 0i32;
        for j in 0..16 {
            s += ((b[8 + j] & 15) as i32 | q5_high(qh, j)) * y.qs[j] as i32;
            s += ((b[8 + j] >> 4) as i32 | q5_high(qh, j + 16)) * y.qs[j + 16] as i32;
        }
        sum += s as f32 * (f16_at(b, 0) * y.d) + f16_at(b, 2) * y.s;
    }
    sum
}

/// The scalar twin of the x86 `gemm` kernels (not in the scalar table, whose legacy
/// products stay the per-row definitions above): row `4g + r` of an [`Unpacked`] tile
/// times `a[b]`, block by block as the dot kernels do, over the blocks that the tile and
/// all four activation rows hold. Out-of-range groups give zeros.
pub fn gemm_q8(t: &Unpacked, g: usize, a: [&[BlockQ8]; 4]) -> [[f32; 4]; 4] {
    let mut out = [[0f32; 4]; 4];
    if g >= t.groups {
        return out;
    }
    let nb = a.iter().map(|r| r.len()).min().unwrap_or(0).min(t.blocks);
    for (r, row) in out.iter_mut().enumerate() {
        for (b, o) in row.iter_mut().enumerate() {
            let mut sum = 0f32;
            for (k, y) in a[b][..nb].iter().enumerate() {
                let at = (g * t.blocks + k) * 4 + r;
                let u = &t.u[at * 32..at * 32 + 32];
                let s: i32 = u
                    .iter()
                    .zip(&y.qs)
                    .map(|(&u, &v)| (u as i32 - t.offset as i32) * v as i32)
                    .sum();
                sum += if t.has_min {
                    s as f32 * (t.d[at] * y.d) + t.m[at] * y.s
                } else {
                    s as f32 * (t.d[at] * y.d)
                };
            }
            *o = sum;
        }
    }
    out
}

/// The scalar twin of the x86 k-quant `gemm` kernels (not in the scalar table, whose
/// products stay the per-row definitions): row `8g + r` of an [`UnpackedK`] tile times
/// `a[b]`, in the float order of the SIMD one-row kernels, which it matches bit for bit.
/// Q4_K: per 64-value pair of groups, `lane_a += dots · (d · y.d)` and
/// `lane_m += mins · (dmin · y.d)` (fused multiply-adds), result `lane_a − lane_m`.
/// Q6_K: per super-block, `acc += (total · d) · y.d` (one fused multiply-add).
/// Out-of-range groups and other types give zeros.
pub fn gemm_k(t: &UnpackedK, g: usize, a: [&[BlockQ8K]; 4]) -> [[f32; KROWS]; 4] {
    let mut out = [[0f32; KROWS]; 4];
    let Some(dtype) = t.dtype.filter(|d| matches!(d, DType::Q4_K | DType::Q6_K)) else {
        return out;
    };
    if g >= t.groups {
        return out;
    }
    let nsc = k_scales(dtype);
    let nb = a.iter().map(|r| r.len()).min().unwrap_or(0).min(t.blocks);
    for (b, row) in out.iter_mut().enumerate() {
        for (r, o) in row.iter_mut().enumerate() {
            let (mut lane_a, mut lane_m) = (0f32, 0f32);
            for (k, y) in a[b][..nb].iter().enumerate() {
                let idx = g * t.blocks + k;
                let u = |v: usize| t.u[idx * KU_BYTES + (v / 4) * 32 + 4 * r + v % 4] as i32;
                let scale = |j: usize| t.s[(idx * nsc + j) * 16 + 2 * r] as i32;
                // Σ over pair vector j of m · bsums, as the kernels' `vpmaddwd`.
                let offset = |j: usize| {
                    let m = &t.m[(idx * 8 + j) * 16 + 2 * r..];
                    m[0] as i32 * y.bsums[2 * j] as i32 + m[1] as i32 * y.bsums[2 * j + 1] as i32
                };
                let group = |first: usize, len: usize| -> i32 {
                    (first..first + len).map(|v| u(v) * y.qs[v] as i32).sum()
                };
                let d = t.d[idx * KROWS + r];
                if dtype == DType::Q4_K {
                    let (dd, dm) = (d * y.d, t.dmin[idx * KROWS + r] * y.d);
                    for sb in 0..4 {
                        let pair = [2 * sb, 2 * sb + 1];
                        let dots: i32 = pair.iter().map(|&j| scale(j) * group(32 * j, 32)).sum();
                        let mins: i32 = pair.iter().map(|&j| offset(j)).sum();
                        lane_a = (dots as f32).mul_add(dd, lane_a);
                        lane_m = (mins as f32).mul_add(dm, lane_m);
                    }
                } else {
                    let dots: i32 = (0..16).map(|j| scale(j) * group(16 * j, 16)).sum();
                    let total = dots + (0..8).map(offset).sum::<i32>();
                    lane_a = (total as f32 * d).mul_add(y.d, lane_a);
                }
            }
            *o = lane_a - lane_m;
        }
    }
    out
}

/// Q8_0: `d: f16, qs: [i8; 32]`.
pub fn dot_q8_0(w: &[u8], a: &[BlockQ8]) -> f32 {
    let mut sum = 0f32;
    for (b, y) in w.chunks_exact(34).zip(a) {
        let s: i32 = b[2..34]
            .iter()
            .zip(&y.qs)
            .map(|(&q, &v)| q as i8 as i32 * v as i32)
            .sum();
        sum += s as f32 * (f16_at(b, 0) * y.d);
    }
    sum
}

/// Q2_K: `scales: [u8; 16], qs: [u8; 64], d: f16, dmin: f16`. Sixteen groups of 16 with a
/// 4-bit scale (low nibble) and 4-bit min (high nibble); 2-bit values, four per byte.
pub fn dot_q2_k(w: &[u8], a: &[BlockQ8K]) -> f32 {
    let mut sum = 0f32;
    for (b, y) in w.chunks_exact(84).zip(a) {
        let (scales, qs) = (&b[..16], &b[16..80]);
        let mut s = 0i32;
        let mut mins = 0i32;
        for (g, &sc) in scales.iter().enumerate() {
            mins += (sc >> 4) as i32 * y.bsums[g] as i32;
            // Group g: 128-value half g / 8, bit pair (g % 8) / 2, bytes 16 * (g % 2)...
            let (half, shift, off) = (g / 8, 2 * ((g % 8) / 2), 16 * (g % 2));
            let mut gs = 0i32;
            for l in 0..16 {
                let q = (qs[32 * half + off + l] >> shift) & 3;
                gs += q as i32 * y.qs[16 * g + l] as i32;
            }
            s += (sc & 15) as i32 * gs;
        }
        sum += y.d * (f16_at(b, 80) * s as f32 - f16_at(b, 82) * mins as f32);
    }
    sum
}

/// Q3_K: `hmask: [u8; 32], qs: [u8; 64], scales: [u8; 12], d: f16`. Values are 2 low bits
/// from `qs` minus 4 unless the matching `hmask` bit is set; sixteen 6-bit scales.
pub fn dot_q3_k(w: &[u8], a: &[BlockQ8K]) -> f32 {
    let mut sum = 0f32;
    for (b, y) in w.chunks_exact(110).zip(a) {
        let (hmask, qs) = (&b[..32], &b[32..96]);
        let scales = unpack_q3k_scales(&b[96..108]);
        let mut s = 0i32;
        for (g, &sc) in scales.iter().enumerate() {
            let (half, pair, off) = (g / 8, (g % 8) / 2, 16 * (g % 2));
            let hbit = 1u8 << (4 * half + pair);
            let mut gs = 0i32;
            for l in 0..16 {
                let q = ((qs[32 * half + off + l] >> (2 * pair)) & 3) as i32;
                let q = if hmask[off + l] & hbit != 0 { q } else { q - 4 };
                gs += q * y.qs[16 * g + l] as i32;
            }
            s += sc as i32 * gs;
        }
        sum += f16_at(b, 108) * y.d * s as f32;
    }
    sum
}

/// Q4_K: `d: f16, dmin: f16, scales: [u8; 12], qs: [u8; 128]`. Eight groups of 32 with
/// 6-bit scale and min; 64-value chunk c holds group 2c in the low nibbles and 2c + 1 in
/// the high nibbles of the same 32 bytes.
pub fn dot_q4_k(w: &[u8], a: &[BlockQ8K]) -> f32 {
    let mut sum = 0f32;
    for (b, y) in w.chunks_exact(144).zip(a) {
        let (s, mins) = q4_k_sums(b, y);
        sum += y.d * (f16_at(b, 0) * s as f32 - f16_at(b, 2) * mins as f32);
    }
    sum
}

/// One Q4_K super-block `b` (144 bytes) with `y`: the exact integer sums of
/// [`k4_sums`].
pub fn q4_k_sums(b: &[u8], y: &BlockQ8K) -> (i32, i32) {
    let (sc, m) = unpack_k4_scales(&b[4..16]);
    let qs = &b[16..144];
    k4_sums(&sc, &m, y, |g, l| {
        let byte = qs[32 * (g / 2) + l];
        if g % 2 == 0 {
            byte & 15
        } else {
            byte >> 4
        }
    })
}

/// Q5_K: Q4_K plus `qh: [u8; 32]` before `qs`; group g's fifth bit is bit g of `qh[l]`.
pub fn dot_q5_k(w: &[u8], a: &[BlockQ8K]) -> f32 {
    let mut sum = 0f32;
    for (b, y) in w.chunks_exact(176).zip(a) {
        let (s, mins) = q5_k_sums(b, y);
        sum += y.d * (f16_at(b, 0) * s as f32 - f16_at(b, 2) * mins as f32);
    }
    sum
}

/// One Q5_K super-block `b` (176 bytes) with `y`: the exact integer sums of
/// [`k4_sums`].
pub fn q5_k_sums(b: &[u8], y: &BlockQ8K) -> (i32, i32) {
    let (sc, m) = unpack_k4_scales(&b[4..16]);
    let (qh, qs) = (&b[16..48], &b[48..176]);
    k4_sums(&sc, &m, y, |g, l| {
        let byte = qs[32 * (g / 2) + l];
        let low = if g % 2 == 0 { byte & 15 } else { byte >> 4 };
        low | (((qh[l] >> g) & 1) << 4)
    })
}

/// `(Σ_g sc[g] · Σ_l q(g, l) · y[32g + l], Σ_g m[g] · Σ y over group g)` for the eight
/// groups of 32 of Q4_K/Q5_K.
#[inline]
fn k4_sums(sc: &[u8; 8], m: &[u8; 8], y: &BlockQ8K, q: impl Fn(usize, usize) -> u8) -> (i32, i32) {
    let mut s = 0i32;
    let mut mins = 0i32;
    for g in 0..8 {
        let gs: i32 = (0..32)
            .map(|l| q(g, l) as i32 * y.qs[32 * g + l] as i32)
            .sum();
        s += sc[g] as i32 * gs;
        mins += m[g] as i32 * (y.bsums[2 * g] as i32 + y.bsums[2 * g + 1] as i32);
    }
    (s, mins)
}

/// Q6_K: `ql: [u8; 128], qh: [u8; 64], scales: [i8; 16], d: f16`. Each 128-value half
/// uses 64 bytes of `ql` and 32 of `qh`: value `32k + l` (k in 0..4, l in 0..32) has low
/// nibble from `ql[l + 32 (k % 2)]` (high nibble when k >= 2), top two bits from bits
/// `2k, 2k + 1` of `qh[l]`, and is offset by -32; scale `8·half + 2k + l / 16`.
pub fn dot_q6_k(w: &[u8], a: &[BlockQ8K]) -> f32 {
    let mut sum = 0f32;
    for (b, y) in w.chunks_exact(210).zip(a) {
        sum += f16_at(b, 208) * y.d * q6_k_sum(b, y) as f32;
    }
    sum
}

/// One Q6_K super-block `b` (210 bytes) with `y`: `Σ_g scale[g] · Σ (q − 32) · y` over
/// the sixteen groups of 16, exactly.
fn q6_k_sum(b: &[u8], y: &BlockQ8K) -> i32 {
    let mut s = 0i32;
    for half in 0..2 {
        let ql = &b[64 * half..64 * half + 64];
        let qh = &b[128 + 32 * half..128 + 32 * half + 32];
        let scales = &b[192 + 8 * half..192 + 8 * half + 8];
        for k in 0..4 {
            for part in 0..2 {
                let mut gs = 0i32;
                for l in 16 * part..16 * part + 16 {
                    let low = ql[l + 32 * (k % 2)] >> (4 * (k / 2)) & 15;
                    let high = (qh[l] >> (2 * k)) & 3;
                    let q = (low | high << 4) as i32 - 32;
                    gs += q * y.qs[128 * half + 32 * k + l] as i32;
                }
                s += scales[2 * k + part] as i8 as i32 * gs;
            }
        }
    }
    s
}
