//! Decoding products of the legacy block types (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0): eight
//! weight rows times up to four activation rows per call ([`super::Dot::rows8`]).
//!
//! The one-row kernels keep ggml's order of float operations, which costs a scale
//! product, a broadcast, a conversion and a multiply-add per block, weight row and
//! activation row, plus a horizontal sum per row; with a few activation rows (several
//! sequences decoding together) that float work, not the memory, bounds the speed. Here
//! the blocks of eight rows are transposed in registers so that one 32-bit lane holds
//! four consecutive weights of one row: four activations broadcast to every lane times
//! that vector is one `vpdpbusd` that advances all eight rows, each block's exact
//! integer dot product ends in its row's lane, and the float steps run once per block
//! for eight rows.
//!
//! Every row's result is defined by [`super::scalar::rows8_row`]: per block the exact
//! integer dot, `acc = fma(dot, d_w · d_a, acc)` and, for Q4_1/Q5_1, `macc = fma(m_w,
//! s_a, macc)`; the result is `acc + macc`. Those are the same float operations whatever
//! the number of activation rows and wherever the row sits in its group of eight, so a
//! sequence gets the same bits decoding alone or batched with others.

use std::arch::x86_64::*;

use super::x86_avx2::{legacy_block_bytes, legacy_signed, Q4_0, Q4_1, Q5_0, Q5_1};
use super::BlockQ8;

/// Builds a [`super::Rows8`] for one legacy type: a `#[target_feature]` entry point
/// generic over the number of activation rows, and the safe wrapper that checks the
/// weight rows and bounds the block count.
///
/// Only expand this after checking at run time that the CPU has `$features`.
macro_rules! simd_rows8 {
    ($features:literal, $kernel:ident [$($generics:tt)*], $A:ty, $block_bytes:expr) => {{
        #[target_feature(enable = $features)]
        unsafe fn entry<const B: usize>(
            p: [*const u8; 8],
            a: [*const $A; B],
            nb: usize,
        ) -> [[f32; 8]; B] {
            $crate::kernels::x86_rows8::$kernel::<B, $($generics)*>(p, a, nb)
        }
        rows8_wrapper!($A, $block_bytes);
        rows8
    }};
}
pub(super) use simd_rows8;

// Safety for the helpers below: the caller runs with AVX2, FMA and F16C enabled (plus
// AVX-512 VL/VNNI when `VNNI`), and every row pointer is valid for the blocks read.

/// The 16 bytes at `off` of eight rows, transposed: lane `r` of vector `j` is the 32-bit
/// word `j` of row `r`.
#[inline(always)]
unsafe fn transpose_8x4(p: &[*const u8; 8], off: usize) -> [__m256i; 4] {
    let mut a = [_mm256_setzero_si256(); 4];
    for (i, v) in a.iter_mut().enumerate() {
        // Rows i and i + 4 in the two 128-bit halves.
        let lo = _mm_loadu_si128(p[i].add(off) as *const __m128i);
        let hi = _mm_loadu_si128(p[i + 4].add(off) as *const __m128i);
        *v = _mm256_inserti128_si256::<1>(_mm256_castsi128_si256(lo), hi);
    }
    let b0 = _mm256_unpacklo_epi32(a[0], a[1]);
    let b1 = _mm256_unpackhi_epi32(a[0], a[1]);
    let b2 = _mm256_unpacklo_epi32(a[2], a[3]);
    let b3 = _mm256_unpackhi_epi32(a[2], a[3]);
    [
        _mm256_unpacklo_epi64(b0, b2),
        _mm256_unpackhi_epi64(b0, b2),
        _mm256_unpacklo_epi64(b1, b3),
        _mm256_unpackhi_epi64(b1, b3),
    ]
}

/// The 32-bit word at `off` of each of eight rows, lane `r` from row `r`.
#[inline(always)]
unsafe fn words(p: &[*const u8; 8], off: usize) -> __m256i {
    let mut w = [0i32; 8];
    for (v, r) in w.iter_mut().zip(p) {
        *v = (r.add(off) as *const i32).read_unaligned();
    }
    _mm256_setr_epi32(w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7])
}

/// Each row's f16 `d` (bytes 0..2) and `m` (bytes 2..4), widened to f32.
#[inline(always)]
unsafe fn scales(p: &[*const u8; 8]) -> (__m256, __m256) {
    scales_at(p, 0)
}

/// [`scales`] for the two f16 values at bytes `at..at + 4` of each row.
#[inline(always)]
unsafe fn scales_at(p: &[*const u8; 8], at: usize) -> (__m256, __m256) {
    let dm = words(p, at);
    // Per 128-bit half: the four `d`s into bytes 0..8, the four `m`s into bytes 8..16;
    // then the halves' `d` words together in the low 128 bits, the `m` words above.
    let split = _mm256_shuffle_epi8(
        dm,
        _mm256_setr_epi8(
            0, 1, 4, 5, 8, 9, 12, 13, 2, 3, 6, 7, 10, 11, 14, 15, 0, 1, 4, 5, 8, 9, 12, 13, 2, 3,
            6, 7, 10, 11, 14, 15,
        ),
    );
    let joined = _mm256_permute4x64_epi64::<0b11_01_10_00>(split);
    (
        _mm256_cvtph_ps(_mm256_castsi256_si128(joined)),
        _mm256_cvtph_ps(_mm256_extracti128_si256::<1>(joined)),
    )
}

/// Bits `shift..shift + 4` of every lane of `qh` moved to bit 4 of the lane's four bytes
/// (the fifth bits of four Q5 values).
#[inline(always)]
unsafe fn fifth_bits(qh: __m256i, shift: i32) -> __m256i {
    let four = _mm256_and_si256(
        _mm256_srl_epi32(qh, _mm_cvtsi32_si128(shift)),
        _mm256_set1_epi32(15),
    );
    // Bit i (of 0..4) times 2^(7i + 4) lands on bit 8i + 4; no two terms share a bit.
    let spread = _mm256_mullo_epi32(four, _mm256_set1_epi32(0x0204_0810));
    _mm256_and_si256(spread, _mm256_set1_epi32(0x1010_1010))
}

/// Transposed packed nibbles → vectors `j` (low nibbles of word `j`: values `4j..4j + 4`)
/// and `j + 4` (high nibbles: values `16 + 4j..`).
#[inline(always)]
unsafe fn nibbles(t: [__m256i; 4]) -> [__m256i; 8] {
    let low4 = _mm256_set1_epi8(15);
    let mut v = [_mm256_setzero_si256(); 8];
    for j in 0..4 {
        v[j] = _mm256_and_si256(t[j], low4);
        v[j + 4] = _mm256_and_si256(_mm256_srli_epi16::<4>(t[j]), low4);
    }
    v
}

/// One block of eight rows as eight vectors of bytes, vector `j` holding values
/// `4j..4j + 4` of every row (in its lane): unsigned for Q4_1/Q5_1, signed otherwise.
#[inline(always)]
unsafe fn block_values<const KIND: u8>(p: &[*const u8; 8]) -> [__m256i; 8] {
    let mut v = [_mm256_setzero_si256(); 8];
    match KIND {
        Q4_0 => {
            v = nibbles(transpose_8x4(p, 2));
            for x in v.iter_mut() {
                *x = _mm256_sub_epi8(*x, _mm256_set1_epi8(8));
            }
        }
        Q4_1 => v = nibbles(transpose_8x4(p, 4)),
        Q5_0 | Q5_1 => {
            let (qh_at, qs_at) = if KIND == Q5_0 { (2, 6) } else { (4, 8) };
            v = nibbles(transpose_8x4(p, qs_at));
            let qh = words(p, qh_at);
            for (j, x) in v.iter_mut().enumerate() {
                // Vector j < 4 holds values 4j..4j + 4, vector j ≥ 4 values 16 + 4(j - 4)..
                let first = if j < 4 { 4 * j } else { 16 + 4 * (j - 4) };
                *x = _mm256_or_si256(*x, fifth_bits(qh, first as i32));
                if KIND == Q5_0 {
                    *x = _mm256_sub_epi8(*x, _mm256_set1_epi8(16));
                }
            }
        }
        _ => {
            let lo = transpose_8x4(p, 2);
            let hi = transpose_8x4(p, 18);
            v[..4].copy_from_slice(&lo);
            v[4..].copy_from_slice(&hi);
        }
    }
    v
}

/// Where the eight rows after `p` start (rows assumed evenly spaced), for [`prefetch`].
#[inline(always)]
fn next_rows(p: &[*const u8; 8]) -> *const u8 {
    let stride = (p[7] as usize).wrapping_sub(p[6] as usize);
    p[7].wrapping_add(stride)
}

/// Fetches the `bytes` at `ahead` into the cache and returns where the next ones start.
/// The eight rows are read side by side, 20-176 bytes from each in turn, a pattern the
/// hardware prefetchers do not follow (from memory this ran at a fifth of the
/// bandwidth): each block fetches as many bytes of the next eight rows as it reads.
#[inline(always)]
unsafe fn prefetch(ahead: *const u8, bytes: usize) -> *const u8 {
    for line in 0..bytes.div_ceil(64) {
        _mm_prefetch::<_MM_HINT_T0>(ahead.wrapping_add(64 * line) as *const i8);
    }
    ahead.wrapping_add(bytes)
}

/// `acc` plus the unsigned×signed byte dot of `u` and `s`, four products per i32 lane.
/// Without VNNI the i16 pair sums need `u · |s| ≤ 16383`: `u ≤ 128` (magnitudes of
/// signed weights, or Q5_1's `u < 32`) with `|s| ≤ 127` keeps them below.
#[inline(always)]
unsafe fn dot_acc<const VNNI: bool>(acc: __m256i, u: __m256i, s: __m256i) -> __m256i {
    if VNNI {
        _mm256_dpbusd_epi32(acc, u, s)
    } else {
        let pairs = _mm256_maddubs_epi16(u, s);
        _mm256_add_epi32(acc, _mm256_madd_epi16(pairs, _mm256_set1_epi16(1)))
    }
}

/// Eight weight rows (block `k` of row `r` at `p[r] + k · block bytes`) times `B`
/// activation rows, `nb` blocks: `out[b][r]`.
#[inline(always)]
pub(super) unsafe fn legacy_rows8<const B: usize, const VNNI: bool, const KIND: u8>(
    p: [*const u8; 8],
    a: [*const BlockQ8; B],
    nb: usize,
) -> [[f32; 8]; B] {
    let bb = legacy_block_bytes(KIND);
    let signed = legacy_signed(KIND);
    let has_min = !signed;
    let mut acc = [_mm256_setzero_ps(); B];
    let mut macc = [_mm256_setzero_ps(); B];
    let mut pk = p;
    let mut ahead = next_rows(&p);
    for k in 0..nb {
        ahead = prefetch(ahead, 8 * bb);
        let w = block_values::<KIND>(&pk);
        let (d, m) = scales(&pk);
        // Signed weights: |w| as the unsigned operand, the sign moved to the activations.
        let mut u = w;
        if signed {
            for x in u.iter_mut() {
                *x = _mm256_sign_epi8(*x, *x);
            }
        }
        for b in 0..B {
            let y = &*a[b].add(k);
            let x = y.qs.as_ptr() as *const i32;
            // Two chains of four: integer sums, so the split changes nothing but latency.
            let mut sums = [_mm256_setzero_si256(); 2];
            for j in 0..8 {
                let xj = _mm256_set1_epi32(x.add(j).read_unaligned());
                let s = if signed {
                    _mm256_sign_epi8(xj, w[j])
                } else {
                    xj
                };
                sums[j % 2] = dot_acc::<VNNI>(sums[j % 2], u[j], s);
            }
            let dot = _mm256_cvtepi32_ps(_mm256_add_epi32(sums[0], sums[1]));
            let scale = _mm256_mul_ps(d, _mm256_set1_ps(y.d));
            acc[b] = _mm256_fmadd_ps(dot, scale, acc[b]);
            if has_min {
                macc[b] = _mm256_fmadd_ps(m, _mm256_set1_ps(y.s), macc[b]);
            }
        }
        for r in pk.iter_mut() {
            *r = r.wrapping_add(bb);
        }
    }
    let mut out = [[0f32; 8]; B];
    for b in 0..B {
        let total = if has_min {
            _mm256_add_ps(acc[b], macc[b])
        } else {
            acc[b]
        };
        _mm256_storeu_ps(out[b].as_mut_ptr(), total);
    }
    out
}

// ---- Q4_K and Q5_K -------------------------------------------------------------------

/// The eight 6-bit scales (or mins) of every row as two vectors, byte `i` of a lane being
/// the value of group `4h + i` for vector `h`: ggml's `get_scale_min_k4` on eight rows
/// at once. `first`/`second` are the words holding the low six bits (bytes 0..4 for the
/// scales, 4..8 for the mins), `high` the word with the upper groups' low four bits
/// (taken from its low nibbles for the scales, its high nibbles for the mins).
#[inline(always)]
unsafe fn k4_six_bits(first: __m256i, high: __m256i) -> [__m256i; 2] {
    let low6 = _mm256_set1_epi32(0x3f3f_3f3f);
    let low4 = _mm256_set1_epi32(0x0f0f_0f0f);
    let low2 = _mm256_set1_epi32(0x0303_0303);
    let top = _mm256_slli_epi32::<4>(_mm256_and_si256(_mm256_srli_epi32::<6>(first), low2));
    [
        _mm256_and_si256(first, low6),
        _mm256_or_si256(_mm256_and_si256(high, low4), top),
    ]
}

/// Byte `i` of every lane as an i32 lane.
#[inline(always)]
unsafe fn lane_byte(v: __m256i, i: usize) -> __m256i {
    _mm256_and_si256(
        _mm256_srl_epi32(v, _mm_cvtsi32_si128(8 * i as i32)),
        _mm256_set1_epi32(0xff),
    )
}

/// Q4_K (`FIVE = false`) or Q5_K: eight weight rows (super-block `k` of row `r` at
/// `p[r] + k · block bytes`) times `B` activation rows of Q8_K, `nb` super-blocks:
/// `out[b][r]`. Per super-block and row the two exact integer sums of
/// [`super::scalar::q4_k_sums`] / `q5_k_sums` (scaled values, and mins times group
/// sums), then `acc = fma(sum, d · d_a, acc)` and `macc = fma(mins, dmin · d_a, macc)`;
/// the result is `acc − macc`.
#[inline(always)]
pub(super) unsafe fn k4_rows8<const B: usize, const VNNI: bool, const FIVE: bool>(
    p: [*const u8; 8],
    a: [*const super::BlockQ8K; B],
    nb: usize,
) -> [[f32; 8]; B] {
    let bb: usize = if FIVE { 176 } else { 144 };
    let qs_at = if FIVE { 48 } else { 16 };
    let low4 = _mm256_set1_epi8(15);
    let mut acc = [_mm256_setzero_ps(); B];
    let mut macc = [_mm256_setzero_ps(); B];
    let mut pk = p;
    let mut ahead = next_rows(&p);
    for k in 0..nb {
        ahead = prefetch(ahead, 8 * bb);
        let (d, dmin) = scales(&pk);
        let (w0, w1, w2) = (words(&pk, 4), words(&pk, 8), words(&pk, 12));
        let sc = k4_six_bits(w0, w2);
        let mn = k4_six_bits(w1, _mm256_srli_epi32::<4>(w2));
        let mut qh = [_mm256_setzero_si256(); 8];
        if FIVE {
            qh[..4].copy_from_slice(&transpose_8x4(&pk, 16));
            qh[4..].copy_from_slice(&transpose_8x4(&pk, 32));
        }
        let mut isum = [_mm256_setzero_si256(); B];
        let mut imin = [_mm256_setzero_si256(); B];
        for pair in 0..4 {
            // Word i of the pair's 32 bytes: bytes l = 4i..4i + 4, whose low nibbles are
            // values 64·pair + l (group 2·pair) and high nibbles values 64·pair + 32 + l.
            let mut t = [_mm256_setzero_si256(); 8];
            t[..4].copy_from_slice(&transpose_8x4(&pk, qs_at + 32 * pair));
            t[4..].copy_from_slice(&transpose_8x4(&pk, qs_at + 32 * pair + 16));
            for half in 0..2 {
                let g = 2 * pair + half;
                let mut v = [_mm256_setzero_si256(); 8];
                for (x, &w) in v.iter_mut().zip(&t) {
                    let w = if half == 0 {
                        w
                    } else {
                        _mm256_srli_epi16::<4>(w)
                    };
                    *x = _mm256_and_si256(w, low4);
                }
                if FIVE {
                    // Group g's fifth bit is bit g of qh[l].
                    for (x, &h) in v.iter_mut().zip(&qh) {
                        let bit = _mm256_and_si256(
                            _mm256_srl_epi16(h, _mm_cvtsi32_si128(g as i32)),
                            _mm256_set1_epi8(1),
                        );
                        *x = _mm256_or_si256(*x, _mm256_slli_epi16::<4>(bit));
                    }
                }
                let scale = lane_byte(sc[g / 4], g % 4);
                let min = lane_byte(mn[g / 4], g % 4);
                for b in 0..B {
                    let y = &*a[b].add(k);
                    let x = (y.qs.as_ptr() as *const i32).add(8 * g);
                    let mut sums = [_mm256_setzero_si256(); 2];
                    for (i, &w) in v.iter().enumerate() {
                        let xi = _mm256_set1_epi32(x.add(i).read_unaligned());
                        sums[i % 2] = dot_acc::<VNNI>(sums[i % 2], w, xi);
                    }
                    let s = _mm256_add_epi32(sums[0], sums[1]);
                    isum[b] = _mm256_add_epi32(isum[b], _mm256_mullo_epi32(s, scale));
                    let group = y.bsums[2 * g] as i32 + y.bsums[2 * g + 1] as i32;
                    imin[b] = _mm256_add_epi32(
                        imin[b],
                        _mm256_mullo_epi32(min, _mm256_set1_epi32(group)),
                    );
                }
            }
        }
        for b in 0..B {
            let y = &*a[b].add(k);
            let da = _mm256_set1_ps(y.d);
            acc[b] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum[b]), _mm256_mul_ps(d, da), acc[b]);
            macc[b] = _mm256_fmadd_ps(
                _mm256_cvtepi32_ps(imin[b]),
                _mm256_mul_ps(dmin, da),
                macc[b],
            );
        }
        for r in pk.iter_mut() {
            *r = r.wrapping_add(bb);
        }
    }
    let mut out = [[0f32; 8]; B];
    for b in 0..B {
        _mm256_storeu_ps(out[b].as_mut_ptr(), _mm256_sub_ps(acc[b], macc[b]));
    }
    out
}
