//! AVX2 + FMA + F16C kernels, and the kernel bodies the AVX-512 table reuses.
//!
//! Each body is generic over `B`, the number of activation rows multiplied with one
//! weight row (1 for generation, 4 for batches: each weight block is decoded into
//! registers once and used `B` times), and over `VNNI`, which swaps the two-instruction
//! u8×i8 multiply-add (`vpmaddubsw` + `vpmaddwd`) for AVX-512 VNNI's `vpdpbusd`. Bodies
//! are `#[inline(always)]` and have no target features of their own: they are only ever
//! inlined into the `#[target_feature]` entry points that [`simd_dot!`] generates.
//!
//! Signed×signed byte products use the usual sign trick: `|x| · (y · sign x)`, which is
//! exact as long as `y != -128` (activations are quantized to `-127..=127`).

use std::arch::x86_64::*;

use super::x86_gemm_k::simd_gemm_k;
use super::x86_rows8::simd_rows8;
use super::{
    unpack_k4_scales, unpack_q3k_scales, BlockQ8, BlockQ8K, Dot, KernelPath, Kernels, Unpacked,
};

/// Builds a [`Dot`] from a kernel body: a `#[target_feature]` entry point generic over the
/// number of activation rows, and the safe one- and four-row wrappers that bound the
/// block count by both slices.
///
/// Only expand this after checking at run time that the CPU has `$features`: the
/// wrappers call the entry point on that promise.
macro_rules! simd_dot {
    ($features:literal, $body:ident :: <$vnni:literal>, $A:ty, $block_bytes:expr) => {{
        #[target_feature(enable = $features)]
        unsafe fn entry<const B: usize>(w: *const u8, a: [*const $A; B], nb: usize) -> [f32; B] {
            $body::<B, $vnni>(w, a, nb)
        }
        fn one(w: &[u8], a: &[$A]) -> f32 {
            let nb = a.len().min(w.len() / $block_bytes);
            // SAFETY: `entry` needs `$features`, which the table builder checked before
            // expanding this macro; `nb` blocks lie inside both slices.
            unsafe { entry::<1>(w.as_ptr(), [a.as_ptr()], nb)[0] }
        }
        fn four(w: &[u8], a: [&[$A]; 4]) -> [f32; 4] {
            let shortest = a.iter().map(|s| s.len()).min().unwrap_or(0);
            let nb = shortest.min(w.len() / $block_bytes);
            // SAFETY: as in `one`; `nb` blocks lie inside the weights and all four rows.
            unsafe { entry::<4>(w.as_ptr(), a.map(|s| s.as_ptr()), nb) }
        }
        fn two(w: &[u8], a: [&[$A]; 2]) -> [f32; 2] {
            let shortest = a[0].len().min(a[1].len());
            let nb = shortest.min(w.len() / $block_bytes);
            // SAFETY: as in `one`; `nb` blocks lie inside the weights and both rows.
            unsafe { entry::<2>(w.as_ptr(), a.map(|s| s.as_ptr()), nb) }
        }
        Dot {
            one,
            two,
            four,
            gemm: None,
            rows8: None,
        }
    }};
}
pub(super) use simd_dot;

/// Builds a [`super::Gemm`] for [`Unpacked`] tiles: a `#[target_feature]` entry point
/// around [`gemm_q8`] taking `$nb` activation rows per pass, and the safe wrapper that
/// checks the tile's buffers and bounds the block count.
///
/// Only expand this after checking at run time that the CPU has `$features`.
macro_rules! simd_gemm {
    ($features:literal, $vnni:literal, $nb:literal) => {{
        #[target_feature(enable = $features)]
        unsafe fn entry(
            u: *const u8,
            d: *const f32,
            m: *const f32,
            offset: u8,
            has_min: bool,
            a: [*const BlockQ8; 4],
            nb: usize,
        ) -> [[f32; 4]; 4] {
            if has_min {
                gemm_q8::<$vnni, $nb, true>(u, d, m, offset, a, nb)
            } else {
                gemm_q8::<$vnni, $nb, false>(u, d, m, offset, a, nb)
            }
        }
        fn gemm(t: &Unpacked, g: usize, a: [&[BlockQ8]; 4]) -> [[f32; 4]; 4] {
            let nb = a.iter().map(|r| r.len()).min().unwrap_or(0).min(t.blocks);
            let first = g.saturating_mul(t.blocks);
            let end = first.saturating_add(nb);
            if g >= t.groups
                || t.u.len() < end.saturating_mul(128)
                || t.d.len() < end.saturating_mul(4)
                || t.m.len() < end.saturating_mul(4)
            {
                return super::scalar::gemm_q8(t, g, a);
            }
            // SAFETY: `entry` needs `$features`, which the table builder checked before
            // expanding this macro; blocks `first..end` of the tile and `0..nb` of every
            // activation row are in bounds (checked above).
            unsafe {
                entry(
                    t.u.as_ptr().add(first * 128),
                    t.d.as_ptr().add(first * 4),
                    t.m.as_ptr().add(first * 4),
                    t.offset,
                    t.has_min,
                    a.map(|s| s.as_ptr()),
                    nb,
                )
            }
        }
        gemm
    }};
}
pub(super) use simd_gemm;

pub(super) fn kernels() -> Option<Kernels> {
    if !(is_x86_feature_detected!("avx2")
        && is_x86_feature_detected!("fma")
        && is_x86_feature_detected!("f16c"))
    {
        return None;
    }
    Some(Kernels {
        path: KernelPath::Avx2,
        f32: simd_dot!("avx2,fma,f16c", float_f32::<false>, f32, 4),
        f16: simd_dot!("avx2,fma,f16c", float_f16::<false>, f32, 2),
        bf16: simd_dot!("avx2,fma,f16c", float_bf16::<false>, f32, 2),
        // Q8_0's unsigned bytes reach 255, which `vpmaddubsw` could saturate: no gemm.
        q4_0: Dot {
            gemm: Some(simd_gemm!("avx2,fma,f16c", false, 2)),
            rows8: Some(simd_rows8!("avx2,fma,f16c", legacy_rows8[false, {Q4_0}], BlockQ8, 18)),
            ..simd_dot!("avx2,fma,f16c", q4_0::<false>, BlockQ8, 18)
        },
        q4_1: Dot {
            gemm: Some(simd_gemm!("avx2,fma,f16c", false, 2)),
            rows8: Some(simd_rows8!("avx2,fma,f16c", legacy_rows8[false, {Q4_1}], BlockQ8, 20)),
            ..simd_dot!("avx2,fma,f16c", q4_1::<false>, BlockQ8, 20)
        },
        q5_0: Dot {
            gemm: Some(simd_gemm!("avx2,fma,f16c", false, 2)),
            rows8: Some(simd_rows8!("avx2,fma,f16c", legacy_rows8[false, {Q5_0}], BlockQ8, 22)),
            ..simd_dot!("avx2,fma,f16c", q5_0::<false>, BlockQ8, 22)
        },
        q5_1: Dot {
            gemm: Some(simd_gemm!("avx2,fma,f16c", false, 2)),
            rows8: Some(simd_rows8!("avx2,fma,f16c", legacy_rows8[false, {Q5_1}], BlockQ8, 24)),
            ..simd_dot!("avx2,fma,f16c", q5_1::<false>, BlockQ8, 24)
        },
        q8_0: Dot {
            rows8: Some(simd_rows8!("avx2,fma,f16c", legacy_rows8[false, {Q8_0}], BlockQ8, 34)),
            ..simd_dot!("avx2,fma,f16c", q8_0::<false>, BlockQ8, 34)
        },
        q2_k: simd_dot!("avx2,fma,f16c", q2_k::<false>, BlockQ8K, 84),
        q3_k: simd_dot!("avx2,fma,f16c", q3_k::<false>, BlockQ8K, 110),
        q4_k: Dot {
            rows8: Some(simd_rows8!("avx2,fma,f16c", k4_rows8[false, false], BlockQ8K, 144)),
            ..simd_dot!("avx2,fma,f16c", q4_k::<false>, BlockQ8K, 144)
        },
        q5_k: Dot {
            rows8: Some(simd_rows8!("avx2,fma,f16c", k4_rows8[false, true], BlockQ8K, 176)),
            ..simd_dot!("avx2,fma,f16c", q5_k::<false>, BlockQ8K, 176)
        },
        // Q6_K's decoding is no faster eight rows at a time (its bit planes cost more
        // to assemble than the one-row kernel's shuffles): no rows8.
        q6_k: simd_dot!("avx2,fma,f16c", q6_k::<false>, BlockQ8K, 210),
        gemm_k: Some(simd_gemm_k!("avx2,fma,f16c", false)),
    })
}

// ---- helpers -------------------------------------------------------------------------
//
// Safety for every helper and body below: the caller runs with AVX2, FMA and F16C
// enabled (plus AVX-512 VL/VNNI when `VNNI`), and every pointer is valid for the bytes
// read, as the `simd_dot!` wrappers guarantee.

#[inline(always)]
unsafe fn f16_load(p: *const u8) -> f32 {
    let bits = u16::from_le_bytes([*p, *p.add(1)]);
    _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(bits as i32)))
}

#[inline(always)]
unsafe fn hsum(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)))
}

#[inline(always)]
unsafe fn hsums<const B: usize>(acc: [__m256; B]) -> [f32; B] {
    let mut out = [0f32; B];
    for (o, v) in out.iter_mut().zip(acc) {
        *o = hsum(v);
    }
    out
}

#[inline(always)]
pub(super) unsafe fn load(p: *const u8) -> __m256i {
    _mm256_loadu_si256(p as *const __m256i)
}

/// 16 bytes of packed nibbles → 32 bytes: the low nibbles, then the high nibbles.
#[inline(always)]
unsafe fn nibbles(p: *const u8) -> __m256i {
    let x = _mm_loadu_si128(p as *const __m128i);
    let both = _mm256_set_m128i(_mm_srli_epi16::<4>(x), x);
    _mm256_and_si256(both, _mm256_set1_epi8(15))
}

/// The 32 bits of `qh` → 32 bytes, `0xff` where the bit is set.
#[inline(always)]
unsafe fn bits_to_bytes(p: *const u8) -> __m256i {
    let qh = u32::from_le_bytes([*p, *p.add(1), *p.add(2), *p.add(3)]);
    // Byte j takes byte j / 8 of qh, then keeps only bit j % 8 of it.
    let spread = _mm256_shuffle_epi8(
        _mm256_set1_epi32(qh as i32),
        _mm256_set_epi64x(
            0x0303_0303_0303_0303,
            0x0202_0202_0202_0202,
            0x0101_0101_0101_0101,
            0,
        ),
    );
    let select = _mm256_set1_epi64x(0x8040_2010_0804_0201u64 as i64);
    _mm256_cmpeq_epi8(_mm256_and_si256(spread, select), select)
}

/// Eight i32 lanes, each the sum of four `u[i] * s[i]` (u unsigned, s signed bytes).
#[inline(always)]
unsafe fn dot_us<const VNNI: bool>(u: __m256i, s: __m256i) -> __m256i {
    if VNNI {
        _mm256_dpbusd_epi32(_mm256_setzero_si256(), u, s)
    } else {
        // u ≤ 255 would saturate the i16 pair sums, but every caller keeps u ≤ 128
        // with |s| ≤ 127, so 2 · 128 · 127 fits.
        _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1))
    }
}

/// `acc` plus [`dot_us`] with each i32 lane's pair sums multiplied by the matching i16
/// lanes of `scale16` (one scale per 16-bit pair, repeated).
///
/// Needs `u ≤ 63` (every k-quant weight is), so that the i16 pair sums of `maddubs`
/// (`2 · 63 · 127`) never saturate; with VNNI the scaling and the accumulation are one
/// `vpdpwssd`, instead of `vpdpbusd` + `vpmulld` + `vpaddd`.
#[inline(always)]
pub(super) unsafe fn dot_us_scaled_acc<const VNNI: bool>(
    acc: __m256i,
    u: __m256i,
    s: __m256i,
    scale16: __m256i,
) -> __m256i {
    let pairs = _mm256_maddubs_epi16(u, s);
    if VNNI {
        _mm256_dpwssd_epi32(acc, pairs, scale16)
    } else {
        _mm256_add_epi32(acc, _mm256_madd_epi16(pairs, scale16))
    }
}

// ---- legacy 32-value blocks ------------------------------------------------------------
//
// The per-type parts are selected by a const `KIND` rather than passed as closures:
// closures get no `#[inline(always)]`, and one left out of line would turn every
// intrinsic inside it into a call.

pub(super) use super::legacy_kind::{
    block_bytes as legacy_block_bytes, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0,
};

/// Whether the decoded weights are signed (else unsigned with an offset `m`).
pub(super) const fn legacy_signed(kind: u8) -> bool {
    !super::legacy_kind::has_min(kind)
}

/// One weight block → (32 weights as bytes, scale `d`, offset `m` or 0).
#[inline(always)]
unsafe fn legacy_decode<const KIND: u8>(p: *const u8) -> (__m256i, f32, f32) {
    match KIND {
        Q4_0 => {
            let q = _mm256_sub_epi8(nibbles(p.add(2)), _mm256_set1_epi8(8));
            (q, f16_load(p), 0.0)
        }
        Q4_1 => (nibbles(p.add(4)), f16_load(p), f16_load(p.add(2))),
        Q5_0 => {
            // (nibble | high << 4) - 16 == nibble | 0xf0 when the high bit is clear, as i8.
            let high = bits_to_bytes(p.add(2));
            let q = _mm256_or_si256(
                nibbles(p.add(6)),
                _mm256_andnot_si256(high, _mm256_set1_epi8(0xf0u8 as i8)),
            );
            (q, f16_load(p), 0.0)
        }
        Q5_1 => {
            let high = bits_to_bytes(p.add(4));
            let q = _mm256_or_si256(
                nibbles(p.add(8)),
                _mm256_and_si256(high, _mm256_set1_epi8(0x10)),
            );
            (q, f16_load(p), f16_load(p.add(2)))
        }
        _ => (load(p.add(2)), f16_load(p), 0.0),
    }
}

/// Block `i` of the weights times block `i` of each activation row, into accumulator
/// `lane` of each row.
#[inline(always)]
unsafe fn legacy_step<const B: usize, const VNNI: bool, const KIND: u8>(
    w: *const u8,
    a: &[*const BlockQ8; B],
    i: usize,
    acc: &mut [[__m256; 2]; B],
    offsets: &mut [[f32; 2]; B],
    lane: usize,
) {
    let signed = legacy_signed(KIND);
    let (q, d, m) = legacy_decode::<KIND>(w.add(i * legacy_block_bytes(KIND)));
    // Decoded once, used for all B activation rows.
    let q_abs = if signed { _mm256_sign_epi8(q, q) } else { q };
    for b in 0..B {
        let y = &*a[b].add(i);
        let ys = load(y.qs.as_ptr() as *const u8);
        let ys = if signed { _mm256_sign_epi8(ys, q) } else { ys };
        let p = dot_us::<VNNI>(q_abs, ys);
        let scale = _mm256_set1_ps(d * y.d);
        acc[b][lane] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), scale, acc[b][lane]);
        if !signed {
            offsets[b][lane] += m * y.s;
        }
    }
}

#[inline(always)]
unsafe fn legacy<const B: usize, const VNNI: bool, const KIND: u8>(
    w: *const u8,
    a: [*const BlockQ8; B],
    nb: usize,
) -> [f32; B] {
    // Two accumulators per row, alternating blocks: with one, every block would wait
    // for the previous block's FMA (4-cycle latency), which bounds the B = 1 case.
    let mut acc = [[_mm256_setzero_ps(); 2]; B];
    let mut offsets = [[0f32; 2]; B];
    let mut i = 0;
    while i + 2 <= nb {
        legacy_step::<B, VNNI, KIND>(w, &a, i, &mut acc, &mut offsets, 0);
        legacy_step::<B, VNNI, KIND>(w, &a, i + 1, &mut acc, &mut offsets, 1);
        i += 2;
    }
    if i < nb {
        legacy_step::<B, VNNI, KIND>(w, &a, i, &mut acc, &mut offsets, 0);
    }
    let mut out = [0f32; B];
    for b in 0..B {
        out[b] = hsum(_mm256_add_ps(acc[b][0], acc[b][1])) + offsets[b][0] + offsets[b][1];
    }
    out
}

#[inline(always)]
pub(super) unsafe fn q4_0<const B: usize, const VNNI: bool>(
    w: *const u8,
    a: [*const BlockQ8; B],
    nb: usize,
) -> [f32; B] {
    legacy::<B, VNNI, Q4_0>(w, a, nb)
}

#[inline(always)]
pub(super) unsafe fn q4_1<const B: usize, const VNNI: bool>(
    w: *const u8,
    a: [*const BlockQ8; B],
    nb: usize,
) -> [f32; B] {
    legacy::<B, VNNI, Q4_1>(w, a, nb)
}

#[inline(always)]
pub(super) unsafe fn q5_0<const B: usize, const VNNI: bool>(
    w: *const u8,
    a: [*const BlockQ8; B],
    nb: usize,
) -> [f32; B] {
    legacy::<B, VNNI, Q5_0>(w, a, nb)
}

#[inline(always)]
pub(super) unsafe fn q5_1<const B: usize, const VNNI: bool>(
    w: *const u8,
    a: [*const BlockQ8; B],
    nb: usize,
) -> [f32; B] {
    legacy::<B, VNNI, Q5_1>(w, a, nb)
}

#[inline(always)]
pub(super) unsafe fn q8_0<const B: usize, const VNNI: bool>(
    w: *const u8,
    a: [*const BlockQ8; B],
    nb: usize,
) -> [f32; B] {
    legacy::<B, VNNI, Q8_0>(w, a, nb)
}

// ---- legacy blocks, unpacked: four weight rows × four activation rows ---------------------

/// Four rows of an [`Unpacked`] tile (blocks at `u`, scales at `d`, mins at `m`) times
/// four activation rows, `NB` activation rows per pass (16 accumulators for `NB = 4`
/// fit AVX-512's 32 registers; AVX2's 16 take `NB = 2`).
///
/// Per block and pair: one unsigned×signed byte dot (`vpdpbusd` starting from
/// `−offset · Σ y`, so the sum is exactly `Σ (u − offset) · y`), one conversion, one
/// multiply-add with `d_w · d_a` (those products made beforehand, four at a time). Without VNNI the dot is `vpmaddubsw` + `vpmaddwd`
/// and needs `u ≤ 127` (Q8_0 is left out there). `MIN` adds `m · s` per block (Q4_1,
/// Q5_1, whose offset is 0).
#[inline(always)]
pub(super) unsafe fn gemm_q8<const VNNI: bool, const NB: usize, const MIN: bool>(
    u: *const u8,
    d: *const f32,
    m: *const f32,
    offset: u8,
    a: [*const BlockQ8; 4],
    nb: usize,
) -> [[f32; 4]; 4] {
    let mut out = [[0f32; 4]; 4];
    let off = _mm256_set1_epi8(offset as i8);
    let ones16 = _mm256_set1_epi16(1);
    // The products d_w · d_a of up to CHUNK blocks, made four at a time (one vector
    // multiply per weight row and block) before the blocks are multiplied, so that the
    // multiply-adds read them with a broadcast load instead of shuffling them out of a
    // register (or multiplying) once per pair.
    // Left uninitialised: zeroing 2 KiB per call was ~4 % of a prefill (this runs once
    // per four weight rows and four activation rows). Each entry is written before it
    // is read, through raw pointers only.
    const CHUNK: usize = 32;
    let mut scales = std::mem::MaybeUninit::<[[[f32; 4]; 4]; CHUNK]>::uninit();
    let scales = scales.as_mut_ptr() as *mut [[f32; 4]; 4];
    let mut pass = 0;
    while pass < 4 {
        let mut acc = [[_mm256_setzero_ps(); NB]; 4];
        let mut mins = [_mm_setzero_ps(); NB];
        let mut k0 = 0;
        while k0 < nb {
            let k1 = (k0 + CHUNK).min(nb);
            for k in k0..k1 {
                let mut da = [0f32; 4];
                for b in 0..NB {
                    da[b] = (*a[pass + b].add(k)).d;
                }
                let da = _mm_loadu_ps(da.as_ptr());
                let sk = scales.add(k - k0) as *mut f32;
                for r in 0..4 {
                    let dr = _mm_broadcast_ss(&*d.add(4 * k + r));
                    _mm_storeu_ps(sk.add(4 * r), _mm_mul_ps(dr, da));
                }
            }
            for k in k0..k1 {
                // All sixteen written just above.
                let sk = scales.add(k - k0) as *const f32;
                let uk = u.add(128 * k);
                for b in 0..NB {
                    let y = &*a[pass + b].add(k);
                    let ys = load(y.qs.as_ptr() as *const u8);
                    // VNNI: −offset · (sums of four y) per lane, the start of every
                    // pair's dot. Else: +offset · (the same sums), subtracted after.
                    let corr = if MIN {
                        _mm256_setzero_si256()
                    } else if VNNI {
                        let c = _mm256_dpbusd_epi32(_mm256_setzero_si256(), off, ys);
                        _mm256_sub_epi32(_mm256_setzero_si256(), c)
                    } else {
                        _mm256_madd_epi16(_mm256_maddubs_epi16(off, ys), ones16)
                    };
                    for (r, acc_r) in acc.iter_mut().enumerate() {
                        let w = load(uk.add(32 * r));
                        let dot = if VNNI {
                            _mm256_dpbusd_epi32(corr, w, ys)
                        } else {
                            let p = _mm256_madd_epi16(_mm256_maddubs_epi16(w, ys), ones16);
                            if MIN {
                                p
                            } else {
                                _mm256_sub_epi32(p, corr)
                            }
                        };
                        let scale = _mm256_broadcast_ss(&*sk.add(4 * r + b));
                        acc_r[b] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot), scale, acc_r[b]);
                    }
                    if MIN {
                        let mk = _mm_loadu_ps(m.add(4 * k));
                        mins[b] = _mm_fmadd_ps(mk, _mm_broadcast_ss(&y.s), mins[b]);
                    }
                }
            }
            k0 = k1;
        }
        for b in 0..NB {
            let mut mb = [0f32; 4];
            _mm_storeu_ps(mb.as_mut_ptr(), mins[b]);
            for r in 0..4 {
                out[r][pass + b] = hsum(acc[r][b]) + mb[r];
            }
        }
        pass += NB;
    }
    out
}

// ---- k-quants ----------------------------------------------------------------------------

const Q4_K: u8 = 0;
const Q5_K: u8 = 1;

/// One Q4_K/Q5_K block's 256 weights as eight groups of 32 unsigned bytes.
#[inline(always)]
unsafe fn k4_decode<const KIND: u8>(p: *const u8) -> [__m256i; 8] {
    let low = _mm256_set1_epi8(15);
    let mut q = [_mm256_setzero_si256(); 8];
    if KIND == Q4_K {
        for c in 0..4 {
            let raw = load(p.add(16 + 32 * c));
            q[2 * c] = _mm256_and_si256(raw, low);
            q[2 * c + 1] = _mm256_and_si256(_mm256_srli_epi16::<4>(raw), low);
        }
    } else {
        let one = _mm256_set1_epi8(1);
        // Group g's fifth bit is bit g of each qh byte; shift it down to bit 0 (16-bit
        // shifts are fine: bits pulled in from the neighbour byte are masked off).
        let mut high = load(p.add(16));
        for c in 0..4 {
            let raw = load(p.add(48 + 32 * c));
            let h0 = _mm256_slli_epi16::<4>(_mm256_and_si256(high, one));
            let h1 = _mm256_slli_epi16::<4>(_mm256_and_si256(_mm256_srli_epi16::<1>(high), one));
            q[2 * c] = _mm256_or_si256(_mm256_and_si256(raw, low), h0);
            q[2 * c + 1] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16::<4>(raw), low), h1);
            high = _mm256_srli_epi16::<2>(high);
        }
    }
    q
}

/// Shared loop of Q4_K and Q5_K: eight groups of 32 unsigned weights with a 6-bit scale
/// and a 6-bit min each.
#[inline(always)]
unsafe fn k4<const B: usize, const VNNI: bool, const KIND: u8>(
    w: *const u8,
    a: [*const BlockQ8K; B],
    nb: usize,
) -> [f32; B] {
    let block_bytes = if KIND == Q4_K { 144 } else { 176 };
    let mut acc = [_mm256_setzero_ps(); B];
    let (mut lane_a, mut lane_m) = ([0f32; B], [0f32; B]);
    for i in 0..nb {
        let p = w.add(i * block_bytes);
        let (d, dmin) = (f16_load(p), f16_load(p.add(2)));
        let (sc, m) = unpack_k4_scales(std::slice::from_raw_parts(p.add(4), 12));
        let q = k4_decode::<KIND>(p);
        // Mins paired with `bsums` (sums of 16): each min twice.
        let mut mins = [0i16; 16];
        for (g, &mg) in m.iter().enumerate() {
            mins[2 * g] = mg as i16;
            mins[2 * g + 1] = mg as i16;
        }
        let mins = _mm256_loadu_si256(mins.as_ptr() as *const __m256i);
        for b in 0..B {
            let y = &*a[b].add(i);
            let bsums = _mm256_loadu_si256(y.bsums.as_ptr() as *const __m256i);
            let min_sum = _mm256_madd_epi16(bsums, mins);
            if KIND == Q4_K {
                // llama.cpp's order (its repacked Q4_K GEMM): the integer sums of each
                // 64-value pair of groups are scaled and added to two f32 accumulators,
                // one for the scaled dots and one for the mins, subtracted at the end.
                // Same bits as llama.cpp, so near-tied logits break the same way.
                let mut pairs = [_mm256_setzero_si256(); 4];
                for (sb, pair) in pairs.iter_mut().enumerate() {
                    for g in [2 * sb, 2 * sb + 1] {
                        let ys = load(y.qs.as_ptr().add(32 * g) as *const u8);
                        let s16 = _mm256_set1_epi16(sc[g] as i16);
                        *pair = dot_us_scaled_acc::<VNNI>(*pair, q[g], ys, s16);
                    }
                }
                let dots = hsum4_epi32(pairs);
                let h = _mm256_hadd_epi32(min_sum, min_sum);
                let min4 =
                    _mm_unpacklo_epi64(_mm256_castsi256_si128(h), _mm256_extracti128_si256::<1>(h));
                let (mut dv, mut mv) = ([0f32; 4], [0f32; 4]);
                _mm_storeu_ps(dv.as_mut_ptr(), _mm_cvtepi32_ps(dots));
                _mm_storeu_ps(mv.as_mut_ptr(), _mm_cvtepi32_ps(min4));
                let (dd, dm) = (d * y.d, dmin * y.d);
                for sb in 0..4 {
                    lane_a[b] = dv[sb].mul_add(dd, lane_a[b]);
                    lane_m[b] = mv[sb].mul_add(dm, lane_m[b]);
                }
            } else {
                let mut sum = _mm256_setzero_si256();
                for g in 0..8 {
                    let ys = load(y.qs.as_ptr().add(32 * g) as *const u8);
                    let s16 = _mm256_set1_epi16(sc[g] as i16);
                    sum = dot_us_scaled_acc::<VNNI>(sum, q[g], ys, s16);
                }
                acc[b] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sum), _mm256_set1_ps(d * y.d), acc[b]);
                acc[b] = _mm256_fmadd_ps(
                    _mm256_cvtepi32_ps(min_sum),
                    _mm256_set1_ps(-dmin * y.d),
                    acc[b],
                );
            }
        }
    }
    if KIND == Q4_K {
        let mut out = [0f32; B];
        for b in 0..B {
            out[b] = lane_a[b] - lane_m[b];
        }
        return out;
    }
    hsums(acc)
}

/// The lane sums of four vectors of eight i32s, as four i32s (exact).
#[inline(always)]
unsafe fn hsum4_epi32(v: [__m256i; 4]) -> __m128i {
    let h = _mm256_hadd_epi32(_mm256_hadd_epi32(v[0], v[1]), _mm256_hadd_epi32(v[2], v[3]));
    _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256::<1>(h))
}

/// The sum of eight i32 lanes (exact).
#[inline(always)]
unsafe fn hsum_epi32(v: __m256i) -> i32 {
    let x = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256::<1>(v));
    let x = _mm_add_epi32(x, _mm_shuffle_epi32::<0b01_00_11_10>(x));
    let x = _mm_add_epi32(x, _mm_shuffle_epi32::<0b10_11_00_01>(x));
    _mm_cvtsi128_si32(x)
}

#[inline(always)]
pub(super) unsafe fn q4_k<const B: usize, const VNNI: bool>(
    w: *const u8,
    a: [*const BlockQ8K; B],
    nb: usize,
) -> [f32; B] {
    k4::<B, VNNI, Q4_K>(w, a, nb)
}

#[inline(always)]
pub(super) unsafe fn q5_k<const B: usize, const VNNI: bool>(
    w: *const u8,
    a: [*const BlockQ8K; B],
    nb: usize,
) -> [f32; B] {
    k4::<B, VNNI, Q5_K>(w, a, nb)
}

/// The two low bits of each byte of `shifted`, moved up to bits 4 and 5.
#[inline(always)]
unsafe fn top2(three: __m256i, shifted: __m256i) -> __m256i {
    _mm256_slli_epi16::<4>(_mm256_and_si256(shifted, three))
}

#[inline(always)]
pub(super) unsafe fn q6_k<const B: usize, const VNNI: bool>(
    w: *const u8,
    a: [*const BlockQ8K; B],
    nb: usize,
) -> [f32; B] {
    let mut acc = [0f32; B];
    let low = _mm256_set1_epi8(15);
    let three = _mm256_set1_epi8(3);
    for i in 0..nb {
        let p = w.add(i * 210);
        let d = f16_load(p.add(208));
        let scales = std::slice::from_raw_parts(p.add(192) as *const i8, 16);
        let mut sums = [_mm256_setzero_si256(); B];
        for half in 0..2 {
            let ql0 = load(p.add(64 * half));
            let ql1 = load(p.add(64 * half + 32));
            let qh = load(p.add(128 + 32 * half));
            // Unsigned 6-bit values; the -32 offset is applied once per block below.
            let q = [
                _mm256_or_si256(_mm256_and_si256(ql0, low), top2(three, qh)),
                _mm256_or_si256(
                    _mm256_and_si256(ql1, low),
                    top2(three, _mm256_srli_epi16::<2>(qh)),
                ),
                _mm256_or_si256(
                    _mm256_and_si256(_mm256_srli_epi16::<4>(ql0), low),
                    top2(three, _mm256_srli_epi16::<4>(qh)),
                ),
                _mm256_or_si256(
                    _mm256_and_si256(_mm256_srli_epi16::<4>(ql1), low),
                    top2(three, _mm256_srli_epi16::<6>(qh)),
                ),
            ];
            // Group k of 32 has scale 2k for its first 16 values (low 128-bit lane) and
            // 2k + 1 for the rest.
            let mut s16 = [_mm256_setzero_si256(); 4];
            for k in 0..4 {
                let (lo, hi) = (scales[8 * half + 2 * k], scales[8 * half + 2 * k + 1]);
                s16[k] = _mm256_set_m128i(_mm_set1_epi16(hi as i16), _mm_set1_epi16(lo as i16));
            }
            for b in 0..B {
                let y = a[b].add(i);
                for k in 0..4 {
                    let ys = load((*y).qs.as_ptr().add(128 * half + 32 * k) as *const u8);
                    sums[b] = dot_us_scaled_acc::<VNNI>(sums[b], q[k], ys, s16[k]);
                }
            }
        }
        let scales16 = _mm256_cvtepi8_epi16(_mm_loadu_si128(p.add(192) as *const __m128i));
        for b in 0..B {
            let y = &*a[b].add(i);
            let bsums = _mm256_loadu_si256(y.bsums.as_ptr() as *const __m256i);
            let offset = _mm256_slli_epi32::<5>(_mm256_madd_epi16(bsums, scales16));
            let total = _mm256_sub_epi32(sums[b], offset);
            // llama.cpp's order: one f32 multiply-add per 256-value block.
            acc[b] = (hsum_epi32(total) as f32 * d).mul_add(y.d, acc[b]);
        }
    }
    acc
}

/// Per-lane scales for a 32-byte vector holding two 16-value groups: `lo` for the low
/// 128-bit lane, `hi` for the high one, as i16 lanes (see [`dot_us_scaled_acc`]).
#[inline(always)]
unsafe fn lane_scales(lo: i32, hi: i32) -> __m256i {
    _mm256_set_m128i(_mm_set1_epi16(hi as i16), _mm_set1_epi16(lo as i16))
}

/// Q2_K: sixteen 16-value groups of 2-bit weights, each with a 4-bit scale (low nibble)
/// and a 4-bit min (high nibble), shared `d` and `dmin`.
///
/// The 32 bytes of `qs` at `32h` hold, in bits `2j, 2j + 1`, groups `8h + 2j` (first 16
/// bytes) and `8h + 2j + 1` (last 16): one vector per `(h, j)`, whose activations are the
/// 32 at `128h + 32j`, with one scale per 128-bit lane.
#[inline(always)]
pub(super) unsafe fn q2_k<const B: usize, const VNNI: bool>(
    w: *const u8,
    a: [*const BlockQ8K; B],
    nb: usize,
) -> [f32; B] {
    let mut acc = [_mm256_setzero_ps(); B];
    let three = _mm256_set1_epi8(3);
    for i in 0..nb {
        let p = w.add(i * 84);
        let (d, dmin) = (f16_load(p.add(80)), f16_load(p.add(82)));
        let packed = _mm_loadu_si128(p as *const __m128i);
        let mins = _mm256_cvtepu8_epi16(_mm_and_si128(
            _mm_srli_epi16::<4>(packed),
            _mm_set1_epi8(15),
        ));
        let mut q = [_mm256_setzero_si256(); 8];
        let mut scales = [_mm256_setzero_si256(); 8];
        for h in 0..2 {
            // 16-bit shifts pull bits in from the neighbour byte; the mask drops them.
            let mut bytes = load(p.add(16 + 32 * h));
            for j in 0..4 {
                let v = 4 * h + j;
                q[v] = _mm256_and_si256(bytes, three);
                bytes = _mm256_srli_epi16::<2>(bytes);
                scales[v] =
                    lane_scales((*p.add(2 * v) & 15) as i32, (*p.add(2 * v + 1) & 15) as i32);
            }
        }
        for b in 0..B {
            let y = &*a[b].add(i);
            let mut sum = _mm256_setzero_si256();
            for (v, (qv, s16)) in q.iter().zip(scales).enumerate() {
                let ys = load(y.qs.as_ptr().add(32 * v) as *const u8);
                sum = dot_us_scaled_acc::<VNNI>(sum, *qv, ys, s16);
            }
            let bsums = _mm256_loadu_si256(y.bsums.as_ptr() as *const __m256i);
            let min_sum = _mm256_madd_epi16(bsums, mins);
            acc[b] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sum), _mm256_set1_ps(d * y.d), acc[b]);
            acc[b] = _mm256_fmadd_ps(
                _mm256_cvtepi32_ps(min_sum),
                _mm256_set1_ps(-dmin * y.d),
                acc[b],
            );
        }
    }
    hsums(acc)
}

/// Q3_K: sixteen 16-value groups of 3-bit weights (two low bits in `qs`, the third in
/// `hmask`, offset -4 when it is clear), each with a signed 6-bit scale.
///
/// Same vector layout as [`q2_k`]; `hmask` byte `l` serves lane `l` of every vector, bit
/// `4h + j` for vector `(h, j)`. Weights are taken unsigned (`q + 4`, 0..8) for the
/// u8×i8 multiply, and `4 · Σ scale · bsum` is subtracted per block.
#[inline(always)]
pub(super) unsafe fn q3_k<const B: usize, const VNNI: bool>(
    w: *const u8,
    a: [*const BlockQ8K; B],
    nb: usize,
) -> [f32; B] {
    let mut acc = [_mm256_setzero_ps(); B];
    let three = _mm256_set1_epi8(3);
    let four = _mm256_set1_epi8(4);
    for i in 0..nb {
        let p = w.add(i * 110);
        let d = f16_load(p.add(108));
        let sc = unpack_q3k_scales(std::slice::from_raw_parts(p.add(96), 12));
        let scales16 = _mm256_cvtepi8_epi16(_mm_loadu_si128(sc.as_ptr() as *const __m128i));
        let hmask = load(p);
        let mut q = [_mm256_setzero_si256(); 8];
        let mut scales = [_mm256_setzero_si256(); 8];
        for h in 0..2 {
            let mut bytes = load(p.add(32 + 32 * h));
            for j in 0..4 {
                let v = 4 * h + j;
                let bit = _mm256_set1_epi8((1u8 << (4 * h + j)) as i8);
                let set = _mm256_cmpeq_epi8(_mm256_and_si256(hmask, bit), bit);
                q[v] = _mm256_or_si256(_mm256_and_si256(bytes, three), _mm256_and_si256(set, four));
                bytes = _mm256_srli_epi16::<2>(bytes);
                scales[v] = lane_scales(sc[2 * v] as i32, sc[2 * v + 1] as i32);
            }
        }
        for b in 0..B {
            let y = &*a[b].add(i);
            let mut sum = _mm256_setzero_si256();
            for (v, (qv, s16)) in q.iter().zip(scales).enumerate() {
                let ys = load(y.qs.as_ptr().add(32 * v) as *const u8);
                sum = dot_us_scaled_acc::<VNNI>(sum, *qv, ys, s16);
            }
            let bsums = _mm256_loadu_si256(y.bsums.as_ptr() as *const __m256i);
            let offset = _mm256_slli_epi32::<2>(_mm256_madd_epi16(bsums, scales16));
            let total = _mm256_sub_epi32(sum, offset);
            acc[b] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(total), _mm256_set1_ps(d * y.d), acc[b]);
        }
    }
    hsums(acc)
}

// ---- float weights ------------------------------------------------------------------------

/// Eight weights starting at element `i`, widened to f32.
#[inline(always)]
unsafe fn widen8<const KIND: u8>(w: *const u8, i: usize) -> __m256 {
    match KIND {
        0 => _mm256_loadu_ps(w.add(4 * i) as *const f32),
        1 => _mm256_cvtph_ps(_mm_loadu_si128(w.add(2 * i) as *const __m128i)),
        _ => {
            let h = _mm256_cvtepu16_epi32(_mm_loadu_si128(w.add(2 * i) as *const __m128i));
            _mm256_castsi256_ps(_mm256_slli_epi32::<16>(h))
        }
    }
}

#[inline(always)]
unsafe fn widen1<const KIND: u8>(w: *const u8, i: usize) -> f32 {
    match KIND {
        0 => f32::from_le_bytes([
            *w.add(4 * i),
            *w.add(4 * i + 1),
            *w.add(4 * i + 2),
            *w.add(4 * i + 3),
        ]),
        1 => f16_load(w.add(2 * i)),
        _ => f32::from_bits((u16::from_le_bytes([*w.add(2 * i), *w.add(2 * i + 1)]) as u32) << 16),
    }
}

/// `KIND`: 0 = f32, 1 = f16, 2 = bf16 weights; `n` values.
#[inline(always)]
unsafe fn float<const B: usize, const KIND: u8>(
    w: *const u8,
    a: [*const f32; B],
    n: usize,
) -> [f32; B] {
    // Two accumulators per row keep two FMA chains in flight even when B = 1.
    let mut acc = [[_mm256_setzero_ps(); 2]; B];
    let mut i = 0;
    while i + 16 <= n {
        let w0 = widen8::<KIND>(w, i);
        let w1 = widen8::<KIND>(w, i + 8);
        for b in 0..B {
            acc[b][0] = _mm256_fmadd_ps(w0, _mm256_loadu_ps(a[b].add(i)), acc[b][0]);
            acc[b][1] = _mm256_fmadd_ps(w1, _mm256_loadu_ps(a[b].add(i + 8)), acc[b][1]);
        }
        i += 16;
    }
    let mut out = [0f32; B];
    for b in 0..B {
        out[b] = hsum(_mm256_add_ps(acc[b][0], acc[b][1]));
    }
    while i < n {
        let wi = widen1::<KIND>(w, i);
        for b in 0..B {
            out[b] += wi * *a[b].add(i);
        }
        i += 1;
    }
    out
}

#[inline(always)]
pub(super) unsafe fn float_f32<const B: usize, const VNNI: bool>(
    w: *const u8,
    a: [*const f32; B],
    n: usize,
) -> [f32; B] {
    float::<B, 0>(w, a, n)
}

#[inline(always)]
pub(super) unsafe fn float_f16<const B: usize, const VNNI: bool>(
    w: *const u8,
    a: [*const f32; B],
    n: usize,
) -> [f32; B] {
    float::<B, 1>(w, a, n)
}

#[inline(always)]
pub(super) unsafe fn float_bf16<const B: usize, const VNNI: bool>(
    w: *const u8,
    a: [*const f32; B],
    n: usize,
) -> [f32; B] {
    float::<B, 2>(w, a, n)
}
