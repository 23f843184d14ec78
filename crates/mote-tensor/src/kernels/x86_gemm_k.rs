//! Q4_K and Q6_K batch kernels on [`UnpackedK`] tiles: eight weight rows (one per i32
//! lane) times four activation rows, for the AVX2 and AVX-512 tables.
//!
//! Each activation's four bytes are broadcast to all lanes and multiplied with four
//! values of each of the eight rows (`vpmaddubsw`, then scaled per lane by the row's
//! scale with `vpmaddwd`/`vpdpwssd`), so a vector accumulates the integer dots of eight
//! rows. The integer sums are exact; the float steps are, lane by lane, those of the
//! one-row kernels `k4` and `q6_k` in `x86_avx2.rs` (same products, same fused
//! multiply-adds, same order), so every output has the same bits as [`super::Dot::one`].
//!
//! Measured on Zen 4 (Gemma 3 270M, 512-token prefill, one thread): the Q4_K attention
//! output and Q4_K/Q6_K FFN down products take about half the time of the four-row
//! kernels. Tried and slower here: `vpdpbusd` per four values with one `vpmulld` per
//! scale group instead of `vpmaddubsw` + `vpdpwssd` (about 40 % slower), and passing
//! 64 activation rows per row group to keep the group in L1 (no change).

use std::arch::x86_64::*;

use super::unpack_k::{k_scales, KROWS, KU_BYTES};
use super::x86_avx2::{dot_us_scaled_acc, load};
use super::{BlockQ8K, UnpackedK};
use crate::DType;

/// Builds a [`super::GemmK`]: `#[target_feature]` entry points around [`gemm_q4_k`] and
/// [`gemm_q6_k`], and the safe wrapper that checks the tile ([`tile_at`]).
///
/// Only expand this after checking at run time that the CPU has `$features`.
macro_rules! simd_gemm_k {
    ($features:literal, $vnni:literal) => {{
        use super::x86_gemm_k::{gemm_q4_k, gemm_q6_k, tile_at, TilePtrs};
        #[target_feature(enable = $features)]
        unsafe fn entry(
            t: TilePtrs,
            q6: bool,
            a: [*const super::BlockQ8K; 4],
            nb: usize,
        ) -> [[f32; super::KROWS]; 4] {
            if q6 {
                gemm_q6_k::<$vnni>(t, a, nb)
            } else {
                gemm_q4_k::<$vnni>(t, a, nb)
            }
        }
        fn gemm(
            t: &super::UnpackedK,
            g: usize,
            a: [&[super::BlockQ8K]; 4],
        ) -> [[f32; super::KROWS]; 4] {
            let Some((ptrs, q6, nb)) = tile_at(t, g, a) else {
                return super::scalar::gemm_k(t, g, a);
            };
            // SAFETY: `entry` needs `$features`, which the table builder checked before
            // expanding this macro; `tile_at` checked that super-blocks `0..nb` of group
            // `g` lie inside the tile's buffers and every activation row holds `nb`.
            unsafe { entry(ptrs, q6, a.map(|s| s.as_ptr()), nb) }
        }
        gemm
    }};
}
pub(super) use simd_gemm_k;

/// Where row group `g` of a tile starts in each buffer.
#[derive(Clone, Copy)]
pub(super) struct TilePtrs {
    u: *const u8,
    s: *const i16,
    m: *const i16,
    d: *const f32,
    dmin: *const f32,
}

/// Row group `g` of `t`, whether it is Q6_K, and the super-blocks to multiply (bounded by
/// the tile and every activation row), if the group and all its buffers are in bounds
/// and the type is Q4_K or Q6_K.
pub(super) fn tile_at(
    t: &UnpackedK,
    g: usize,
    a: [&[BlockQ8K]; 4],
) -> Option<(TilePtrs, bool, usize)> {
    let q6 = match t.dtype? {
        DType::Q4_K => false,
        DType::Q6_K => true,
        _ => return None,
    };
    let nsc = k_scales(t.dtype?);
    let nb = a.iter().map(|r| r.len()).min().unwrap_or(0).min(t.blocks);
    let first = g.checked_mul(t.blocks)?;
    let end = first.checked_add(nb)?;
    let fits = |len: usize, per: usize| end.checked_mul(per).is_some_and(|n| n <= len);
    let ok = g < t.groups
        && fits(t.u.len(), KU_BYTES)
        && fits(t.s.len(), nsc * 16)
        && fits(t.m.len(), 8 * 16)
        && fits(t.d.len(), KROWS)
        && fits(t.dmin.len(), KROWS);
    if !ok {
        return None;
    }
    // `wrapping_add` keeps this safe code; the offsets are in bounds (checked above).
    let ptrs = TilePtrs {
        u: t.u.as_ptr().wrapping_add(first * KU_BYTES),
        s: t.s.as_ptr().wrapping_add(first * nsc * 16),
        m: t.m.as_ptr().wrapping_add(first * 128),
        d: t.d.as_ptr().wrapping_add(first * KROWS),
        dmin: t.dmin.as_ptr().wrapping_add(first * KROWS),
    };
    Some((ptrs, q6, nb))
}

// Safety for every function below: the caller runs with AVX2, FMA and F16C enabled (plus
// AVX-512 VL/VNNI when `VNNI`), `t` points at `nb` super-blocks of one row group and each
// `a[b]` at `nb` activation blocks, as `tile_at` and the `simd_gemm_k!` wrapper ensure.

/// Four bytes at `p` in every i32 lane.
#[inline(always)]
unsafe fn broadcast4<T>(p: *const T) -> __m256i {
    _mm256_set1_epi32(std::ptr::read_unaligned(p as *const i32))
}

/// `acc` plus the i16 pair products of `a` and `b` summed per i32 lane (exact).
#[inline(always)]
unsafe fn madd_acc<const VNNI: bool>(acc: __m256i, a: __m256i, b: __m256i) -> __m256i {
    if VNNI {
        _mm256_dpwssd_epi32(acc, a, b)
    } else {
        _mm256_add_epi32(acc, _mm256_madd_epi16(a, b))
    }
}

#[inline(always)]
unsafe fn load16(p: *const i16) -> __m256i {
    _mm256_loadu_si256(p as *const __m256i)
}

#[inline(always)]
unsafe fn store<const B: usize>(v: [__m256; B]) -> [[f32; KROWS]; B] {
    let mut out = [[0f32; KROWS]; B];
    for (o, v) in out.iter_mut().zip(v) {
        _mm256_storeu_ps(o.as_mut_ptr(), v);
    }
    out
}

/// Q4_K, in `k4`'s order: per super-block and 64-value pair of groups, the pair's
/// scaled integer dot and its mins (`Σ m · bsums`) are converted and added with one
/// fused multiply-add each, `dots · (d · y.d)` to `lane_a` and `mins · (dmin · y.d)` to
/// `lane_m`; the result is `lane_a − lane_m`.
#[inline(always)]
pub(super) unsafe fn gemm_q4_k<const VNNI: bool>(
    t: TilePtrs,
    a: [*const BlockQ8K; 4],
    nb: usize,
) -> [[f32; KROWS]; 4] {
    let mut lane_a = [_mm256_setzero_ps(); 4];
    let mut lane_m = [_mm256_setzero_ps(); 4];
    for k in 0..nb {
        let u = t.u.add(k * KU_BYTES);
        let (s, m) = (t.s.add(k * 128), t.m.add(k * 128));
        let d = _mm256_loadu_ps(t.d.add(k * KROWS));
        let dmin = _mm256_loadu_ps(t.dmin.add(k * KROWS));
        let y = [a[0].add(k), a[1].add(k), a[2].add(k), a[3].add(k)];
        for sb in 0..4 {
            // One chain per group and activation row (eight in flight).
            let mut chains = [[_mm256_setzero_si256(); 4]; 2];
            let (s0, s1) = (load16(s.add(32 * sb)), load16(s.add(32 * sb + 16)));
            for c in 0..8 {
                let w0 = load(u.add(32 * (16 * sb + c)));
                let w1 = load(u.add(32 * (16 * sb + 8 + c)));
                for b in 0..4 {
                    let q = (*y[b]).qs.as_ptr().add(64 * sb + 4 * c);
                    chains[0][b] = dot_us_scaled_acc::<VNNI>(chains[0][b], w0, broadcast4(q), s0);
                    chains[1][b] =
                        dot_us_scaled_acc::<VNNI>(chains[1][b], w1, broadcast4(q.add(32)), s1);
                }
            }
            let mut dots = [_mm256_setzero_si256(); 4];
            for b in 0..4 {
                dots[b] = _mm256_add_epi32(chains[0][b], chains[1][b]);
            }
            let (m0, m1) = (load16(m.add(32 * sb)), load16(m.add(32 * sb + 16)));
            for b in 0..4 {
                let bs = (*y[b]).bsums.as_ptr();
                let mins = madd_acc::<VNNI>(_mm256_setzero_si256(), broadcast4(bs.add(4 * sb)), m0);
                let mins = madd_acc::<VNNI>(mins, broadcast4(bs.add(4 * sb + 2)), m1);
                let yd = _mm256_set1_ps((*y[b]).d);
                let (dd, dm) = (_mm256_mul_ps(d, yd), _mm256_mul_ps(dmin, yd));
                lane_a[b] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dots[b]), dd, lane_a[b]);
                lane_m[b] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(mins), dm, lane_m[b]);
            }
        }
    }
    let mut out = [_mm256_setzero_ps(); 4];
    for b in 0..4 {
        out[b] = _mm256_sub_ps(lane_a[b], lane_m[b]);
    }
    store(out)
}

/// Q6_K, in `q6_k`'s order: per super-block, the integer total (scaled dots of the
/// unsigned values, less `32 · Σ scale · bsums`) is converted, multiplied by `d`, and
/// added with one fused multiply-add by `y.d`.
#[inline(always)]
pub(super) unsafe fn gemm_q6_k<const VNNI: bool>(
    t: TilePtrs,
    a: [*const BlockQ8K; 4],
    nb: usize,
) -> [[f32; KROWS]; 4] {
    let mut acc = [_mm256_setzero_ps(); 4];
    for k in 0..nb {
        let u = t.u.add(k * KU_BYTES);
        let (s, m) = (t.s.add(k * 256), t.m.add(k * 128));
        let y = [a[0].add(k), a[1].add(k), a[2].add(k), a[3].add(k)];
        // Two chains per activation row (even and odd scale groups), eight in flight.
        let mut chains = [[_mm256_setzero_si256(); 4]; 2];
        for j in (0..16).step_by(2) {
            let (s0, s1) = (load16(s.add(16 * j)), load16(s.add(16 * j + 16)));
            for c in 0..4 {
                let w0 = load(u.add(32 * (4 * j + c)));
                let w1 = load(u.add(32 * (4 * j + 4 + c)));
                for b in 0..4 {
                    let q = (*y[b]).qs.as_ptr().add(16 * j + 4 * c);
                    chains[0][b] = dot_us_scaled_acc::<VNNI>(chains[0][b], w0, broadcast4(q), s0);
                    chains[1][b] =
                        dot_us_scaled_acc::<VNNI>(chains[1][b], w1, broadcast4(q.add(16)), s1);
                }
            }
        }
        let mut sums = [_mm256_setzero_si256(); 4];
        for b in 0..4 {
            sums[b] = _mm256_add_epi32(chains[0][b], chains[1][b]);
        }
        let d = _mm256_loadu_ps(t.d.add(k * KROWS));
        for b in 0..4 {
            let bs = (*y[b]).bsums.as_ptr();
            for j in 0..8 {
                sums[b] =
                    madd_acc::<VNNI>(sums[b], broadcast4(bs.add(2 * j)), load16(m.add(16 * j)));
            }
            let scaled = _mm256_mul_ps(_mm256_cvtepi32_ps(sums[b]), d);
            acc[b] = _mm256_fmadd_ps(scaled, _mm256_set1_ps((*y[b]).d), acc[b]);
        }
    }
    store(acc)
}
