//! NEON kernels for aarch64, in two flavours chosen at run time: with the Armv8.2
//! dot-product extension (`sdot`: sixteen i8×i8 products into four i32 lanes in one
//! instruction) where the CPU has it, else baseline NEON's widening multiply
//! (`smull` + `sadalp`, the same sums in three instructions).
//!
//! As in the x86 file, each body is generic over `B`, the number of activation rows that
//! share one decoded weight block (1 or 4), and over `DOT`, which picks `sdot`. Bodies
//! are `#[inline(always)]` without target features of their own: they are only inlined
//! into the `#[target_feature]` entry points that [`neon_dot!`] generates.
//!
//! NEON multiplies signed bytes by signed bytes directly, so unlike x86 no sign trick or
//! unsigned offset is needed: weights are decoded to their signed values.
//!
//! `vdotq_s32` and the f16 vector conversions are not stable in Rust yet, so `sdot` and
//! `fcvtl` are written as inline assembly (stable) inside functions that enable the
//! features they need.

use std::arch::aarch64::*;
use std::arch::asm;

use super::aarch64_rows8::neon_rows8;
use super::{unpack_k4_scales, unpack_q3k_scales, BlockQ8, BlockQ8K, Dot, KernelPath, Kernels};

/// Builds a [`Dot`] from a kernel body: a `#[target_feature]` entry point generic over the
/// number of activation rows, and the safe one- and four-row wrappers that bound the
/// block count by both slices.
///
/// Only expand this after checking at run time that the CPU has `$features`: the
/// wrappers call the entry point on that promise.
macro_rules! neon_dot {
    ($features:literal, $body:ident :: <$dot:literal>, $A:ty, $block_bytes:expr) => {{
        #[target_feature(enable = $features)]
        unsafe fn entry<const B: usize>(w: *const u8, a: [*const $A; B], nb: usize) -> [f32; B] {
            $body::<B, $dot>(w, a, nb)
        }
        fn one(w: &[u8], a: &[$A]) -> f32 {
            let nb = a.len().min(w.len() / $block_bytes);
            // SAFETY: `entry` needs `$features`, which `kernels` checked before building
            // this table; `nb` blocks lie inside both slices.
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

/// The whole table for one feature set; `$rows8` says whether the legacy types get the
/// decoding kernels (they need `sdot`'s by-element form).
macro_rules! neon_table {
    ($features:literal, $dot:literal, $rows8:tt) => {
        Kernels {
            path: KernelPath::Neon,
            f32: neon_dot!($features, float_f32::<$dot>, f32, 4),
            f16: neon_dot!($features, float_f16::<$dot>, f32, 2),
            bf16: neon_dot!($features, float_bf16::<$dot>, f32, 2),
            q4_0: Dot {
                rows8: neon_rows8!($rows8, $features, Q4_0),
                ..neon_dot!($features, q4_0::<$dot>, BlockQ8, 18)
            },
            q4_1: Dot {
                rows8: neon_rows8!($rows8, $features, Q4_1),
                ..neon_dot!($features, q4_1::<$dot>, BlockQ8, 20)
            },
            q5_0: Dot {
                rows8: neon_rows8!($rows8, $features, Q5_0),
                ..neon_dot!($features, q5_0::<$dot>, BlockQ8, 22)
            },
            q5_1: Dot {
                rows8: neon_rows8!($rows8, $features, Q5_1),
                ..neon_dot!($features, q5_1::<$dot>, BlockQ8, 24)
            },
            q8_0: Dot {
                rows8: neon_rows8!($rows8, $features, Q8_0),
                ..neon_dot!($features, q8_0::<$dot>, BlockQ8, 34)
            },
            q2_k: neon_dot!($features, q2_k::<$dot>, BlockQ8K, 84),
            q3_k: neon_dot!($features, q3_k::<$dot>, BlockQ8K, 110),
            q4_k: neon_dot!($features, q4_k::<$dot>, BlockQ8K, 144),
            q5_k: neon_dot!($features, q5_k::<$dot>, BlockQ8K, 176),
            q6_k: neon_dot!($features, q6_k::<$dot>, BlockQ8K, 210),
            // Batches of k-quants take the four-row kernels.
            gemm_k: None,
        }
    };
}

pub(super) fn kernels() -> Option<Kernels> {
    if !std::arch::is_aarch64_feature_detected!("neon") {
        return None;
    }
    if std::arch::is_aarch64_feature_detected!("dotprod") {
        Some(neon_table!("neon,dotprod", true, true))
    } else {
        Some(neon_table!("neon", false, false))
    }
}

// ---- helpers -------------------------------------------------------------------------
//
// Safety for every helper and body below: the caller runs with NEON enabled (and the
// dot-product extension when `DOT`), and every pointer is valid for the bytes read, as
// the `neon_dot!` wrappers guarantee. Byte loads (`vld1q_u8`/`vld1q_s8`) are used for
// weights so that no pointer needs more than byte alignment.

#[inline(always)]
unsafe fn f16_load(p: *const u8) -> f32 {
    half::f16::from_le_bytes([*p, *p.add(1)]).to_f32()
}

#[inline(always)]
unsafe fn zero() -> int32x4_t {
    vdupq_n_s32(0)
}

/// `acc` plus, in some arrangement over its four lanes, the sixteen products `a[i]·b[i]`;
/// callers only ever use the sum of all four lanes.
#[inline(always)]
unsafe fn dot16<const DOT: bool>(acc: int32x4_t, a: int8x16_t, b: int8x16_t) -> int32x4_t {
    if DOT {
        let mut acc = acc;
        // SAFETY: `sdot` exists when `DOT`, which is only instantiated inside entry points
        // with the `dotprod` feature; it touches only the three registers named.
        unsafe {
            asm!(
                "sdot {acc:v}.4s, {a:v}.16b, {b:v}.16b",
                acc = inout(vreg) acc,
                a = in(vreg) a,
                b = in(vreg) b,
                options(pure, nomem, nostack, preserves_flags),
            );
        }
        acc
    } else {
        // |i8 · i8| ≤ 128², which fits i16; the pairwise add widens to i32.
        let lo = vmull_s8(vget_low_s8(a), vget_low_s8(b));
        let hi = vmull_high_s8(a, b);
        vpadalq_s16(vpadalq_s16(acc, lo), hi)
    }
}

/// The dot product of 32 weights with 32 activations, as lanes to be summed.
#[inline(always)]
unsafe fn dot32<const DOT: bool>(q: [int8x16_t; 2], y: *const i8) -> int32x4_t {
    let acc = dot16::<DOT>(zero(), q[0], vld1q_s8(y));
    dot16::<DOT>(acc, q[1], vld1q_s8(y.add(16)))
}

/// 16 bytes of packed nibbles → (low nibbles, high nibbles).
#[inline(always)]
unsafe fn nibbles(p: *const u8) -> (uint8x16_t, uint8x16_t) {
    let v = vld1q_u8(p);
    (vandq_u8(v, vdupq_n_u8(15)), vshrq_n_u8::<4>(v))
}

/// The 32 bits of a little-endian `u32` at `p` → 32 bytes, `0xff` where the bit is set.
#[inline(always)]
unsafe fn bits_to_bytes(p: *const u8) -> [uint8x16_t; 2] {
    let qh = u32::from_le_bytes([*p, *p.add(1), *p.add(2), *p.add(3)]);
    let bytes = vreinterpretq_u8_u32(vdupq_n_u32(qh));
    // Byte j takes byte j / 8 of qh, then tests bit j % 8 of it.
    let spread_lo = vcombine_u8(vcreate_u8(0), vcreate_u8(0x0101_0101_0101_0101));
    let spread_hi = vcombine_u8(
        vcreate_u8(0x0202_0202_0202_0202),
        vcreate_u8(0x0303_0303_0303_0303),
    );
    let select = vreinterpretq_u8_u64(vdupq_n_u64(0x8040_2010_0804_0201));
    [
        vtstq_u8(vqtbl1q_u8(bytes, spread_lo), select),
        vtstq_u8(vqtbl1q_u8(bytes, spread_hi), select),
    ]
}

/// `Σ_i a[i] · b[i]` over sixteen i16 lanes given as two halves.
#[inline(always)]
unsafe fn dot_i16x16(a: [int16x8_t; 2], b: [int16x8_t; 2]) -> i32 {
    let mut s = vmull_s16(vget_low_s16(a[0]), vget_low_s16(b[0]));
    s = vmlal_high_s16(s, a[0], b[0]);
    s = vmlal_s16(s, vget_low_s16(a[1]), vget_low_s16(b[1]));
    s = vmlal_high_s16(s, a[1], b[1]);
    vaddvq_s32(s)
}

#[inline(always)]
unsafe fn load_bsums(y: &BlockQ8K) -> [int16x8_t; 2] {
    let p = y.bsums.as_ptr();
    [vld1q_s16(p), vld1q_s16(p.add(8))]
}

/// Sixteen bytes widened to two vectors of eight i16.
#[inline(always)]
unsafe fn widen_u8(v: uint8x16_t) -> [int16x8_t; 2] {
    [
        vreinterpretq_s16_u16(vmovl_u8(vget_low_u8(v))),
        vreinterpretq_s16_u16(vmovl_high_u8(v)),
    ]
}

// ---- legacy 32-value blocks ------------------------------------------------------------
//
// The per-type parts are selected by a const `KIND` rather than passed as closures, so
// that everything is inlined into the entry point (see the x86 file).

pub(super) use super::legacy_kind::{
    block_bytes as legacy_block_bytes, has_min as legacy_has_offset, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0,
};

/// One weight block → (its 32 weights as signed bytes, scale `d`, offset `m` or 0).
#[inline(always)]
pub(super) unsafe fn legacy_decode<const KIND: u8>(p: *const u8) -> ([int8x16_t; 2], f32, f32) {
    let s8 = vreinterpretq_s8_u8;
    match KIND {
        Q4_0 => {
            let (lo, hi) = nibbles(p.add(2));
            let eight = vdupq_n_s8(8);
            let q = [vsubq_s8(s8(lo), eight), vsubq_s8(s8(hi), eight)];
            (q, f16_load(p), 0.0)
        }
        Q4_1 => {
            let (lo, hi) = nibbles(p.add(4));
            ([s8(lo), s8(hi)], f16_load(p), f16_load(p.add(2)))
        }
        Q5_0 => {
            // (nibble | high << 4) - 16 == nibble | 0xf0 when the high bit is clear, as i8.
            let (lo, hi) = nibbles(p.add(6));
            let [h0, h1] = bits_to_bytes(p.add(2));
            let top = vdupq_n_u8(0xf0);
            let q = [
                s8(vorrq_u8(lo, vbicq_u8(top, h0))),
                s8(vorrq_u8(hi, vbicq_u8(top, h1))),
            ];
            (q, f16_load(p), 0.0)
        }
        Q5_1 => {
            let (lo, hi) = nibbles(p.add(8));
            let [h0, h1] = bits_to_bytes(p.add(4));
            let bit = vdupq_n_u8(0x10);
            let q = [
                s8(vorrq_u8(lo, vandq_u8(h0, bit))),
                s8(vorrq_u8(hi, vandq_u8(h1, bit))),
            ];
            (q, f16_load(p), f16_load(p.add(2)))
        }
        _ => {
            let q = [
                vld1q_s8(p.add(2) as *const i8),
                vld1q_s8(p.add(18) as *const i8),
            ];
            (q, f16_load(p), 0.0)
        }
    }
}

/// Block `i` of the weights times block `i` of each activation row, into accumulator
/// `lane` of each row.
#[inline(always)]
unsafe fn legacy_step<const B: usize, const DOT: bool, const KIND: u8>(
    w: *const u8,
    a: &[*const BlockQ8; B],
    i: usize,
    acc: &mut [[float32x4_t; 2]; B],
    offsets: &mut [[f32; 2]; B],
    lane: usize,
) {
    let (q, d, m) = legacy_decode::<KIND>(w.add(i * legacy_block_bytes(KIND)));
    // Decoded once, used for all B activation rows.
    for b in 0..B {
        let y = &*a[b].add(i);
        let s = dot32::<DOT>(q, y.qs.as_ptr());
        acc[b][lane] = vfmaq_n_f32(acc[b][lane], vcvtq_f32_s32(s), d * y.d);
        if legacy_has_offset(KIND) {
            offsets[b][lane] += m * y.s;
        }
    }
}

#[inline(always)]
unsafe fn legacy<const B: usize, const DOT: bool, const KIND: u8>(
    w: *const u8,
    a: [*const BlockQ8; B],
    nb: usize,
) -> [f32; B] {
    // Two accumulators per row, alternating blocks, so that consecutive blocks' FMAs do
    // not wait on each other when B = 1.
    let mut acc = [[vdupq_n_f32(0.0); 2]; B];
    let mut offsets = [[0f32; 2]; B];
    let mut i = 0;
    while i + 2 <= nb {
        legacy_step::<B, DOT, KIND>(w, &a, i, &mut acc, &mut offsets, 0);
        legacy_step::<B, DOT, KIND>(w, &a, i + 1, &mut acc, &mut offsets, 1);
        i += 2;
    }
    if i < nb {
        legacy_step::<B, DOT, KIND>(w, &a, i, &mut acc, &mut offsets, 0);
    }
    let mut out = [0f32; B];
    for b in 0..B {
        out[b] = vaddvq_f32(vaddq_f32(acc[b][0], acc[b][1])) + offsets[b][0] + offsets[b][1];
    }
    out
}

#[inline(always)]
unsafe fn q4_0<const B: usize, const DOT: bool>(
    w: *const u8,
    a: [*const BlockQ8; B],
    nb: usize,
) -> [f32; B] {
    legacy::<B, DOT, Q4_0>(w, a, nb)
}

#[inline(always)]
unsafe fn q4_1<const B: usize, const DOT: bool>(
    w: *const u8,
    a: [*const BlockQ8; B],
    nb: usize,
) -> [f32; B] {
    legacy::<B, DOT, Q4_1>(w, a, nb)
}

#[inline(always)]
unsafe fn q5_0<const B: usize, const DOT: bool>(
    w: *const u8,
    a: [*const BlockQ8; B],
    nb: usize,
) -> [f32; B] {
    legacy::<B, DOT, Q5_0>(w, a, nb)
}

#[inline(always)]
unsafe fn q5_1<const B: usize, const DOT: bool>(
    w: *const u8,
    a: [*const BlockQ8; B],
    nb: usize,
) -> [f32; B] {
    legacy::<B, DOT, Q5_1>(w, a, nb)
}

#[inline(always)]
unsafe fn q8_0<const B: usize, const DOT: bool>(
    w: *const u8,
    a: [*const BlockQ8; B],
    nb: usize,
) -> [f32; B] {
    legacy::<B, DOT, Q8_0>(w, a, nb)
}

// ---- k-quants ----------------------------------------------------------------------------
//
// Every k-quant body decodes a block's 256 weights into sixteen vectors of sixteen signed
// bytes (group order: weight j is lane j % 16 of vector j / 16), then for each activation
// row multiplies vector v with activations 16v.. and weights the sum by the scale of the
// group the vector belongs to.

/// `Σ_v scale(v) · (q[v] · y[16v..16v + 16])`, where vector `v` uses `scales[v / PER]`
/// (`PER` = 1 for 16-value groups, 2 for 32-value groups).
#[inline(always)]
unsafe fn k_sum<const DOT: bool, const PER: usize>(
    q: &[int8x16_t; 16],
    scales: &[i32],
    y: &BlockQ8K,
) -> i32 {
    let ys = y.qs.as_ptr();
    let mut sum = zero();
    for v in (0..16).step_by(PER) {
        let mut g = dot16::<DOT>(zero(), q[v], vld1q_s8(ys.add(16 * v)));
        if PER == 2 {
            g = dot16::<DOT>(g, q[v + 1], vld1q_s8(ys.add(16 * v + 16)));
        }
        sum = vmlaq_n_s32(sum, g, scales[v / PER]);
    }
    vaddvq_s32(sum)
}

const Q4_K: u8 = 0;
const Q5_K: u8 = 1;

/// One Q4_K/Q5_K block's 256 weights (unsigned, 0..32) as sixteen vectors.
#[inline(always)]
unsafe fn k4_decode<const KIND: u8>(p: *const u8) -> [int8x16_t; 16] {
    let mut q = [vdupq_n_s8(0); 16];
    let qs = if KIND == Q4_K { p.add(16) } else { p.add(48) };
    let qh = [vld1q_u8(p.add(16)), vld1q_u8(p.add(32))];
    let fifth = vdupq_n_u8(0x10);
    // 64-value chunk c: group 2c in the low nibbles of 32 bytes, group 2c + 1 in the high.
    for c in 0..4 {
        for half in 0..2 {
            let (lo, hi) = nibbles(qs.add(32 * c + 16 * half));
            let (lo, hi) = if KIND == Q4_K {
                (lo, hi)
            } else {
                // Group g's fifth bit is bit g of qh[l].
                let bit_lo = vdupq_n_u8(1 << (2 * c));
                let bit_hi = vdupq_n_u8(1 << (2 * c + 1));
                (
                    vorrq_u8(lo, vandq_u8(vtstq_u8(qh[half], bit_lo), fifth)),
                    vorrq_u8(hi, vandq_u8(vtstq_u8(qh[half], bit_hi), fifth)),
                )
            };
            q[4 * c + half] = vreinterpretq_s8_u8(lo);
            q[4 * c + 2 + half] = vreinterpretq_s8_u8(hi);
        }
    }
    q
}

/// Shared loop of Q4_K and Q5_K: eight groups of 32 unsigned weights with a 6-bit scale
/// and a 6-bit min each.
#[inline(always)]
unsafe fn k4<const B: usize, const DOT: bool, const KIND: u8>(
    w: *const u8,
    a: [*const BlockQ8K; B],
    nb: usize,
) -> [f32; B] {
    let block_bytes = if KIND == Q4_K { 144 } else { 176 };
    let mut out = [0f32; B];
    for i in 0..nb {
        let p = w.add(i * block_bytes);
        let (d, dmin) = (f16_load(p), f16_load(p.add(2)));
        let (sc, m) = unpack_k4_scales(std::slice::from_raw_parts(p.add(4), 12));
        let scales = sc.map(|s| s as i32);
        // Mins paired with `bsums` (sums of 16): each min twice.
        let m = vmovl_u8(vld1_u8(m.as_ptr()));
        let m = vreinterpretq_s16_u16(m);
        let mins = [vzip1q_s16(m, m), vzip2q_s16(m, m)];
        let q = k4_decode::<KIND>(p);
        for b in 0..B {
            let y = &*a[b].add(i);
            let s = k_sum::<DOT, 2>(&q, &scales, y);
            let min_sum = dot_i16x16(load_bsums(y), mins);
            out[b] += y.d * (d * s as f32 - dmin * min_sum as f32);
        }
    }
    out
}

#[inline(always)]
unsafe fn q4_k<const B: usize, const DOT: bool>(
    w: *const u8,
    a: [*const BlockQ8K; B],
    nb: usize,
) -> [f32; B] {
    k4::<B, DOT, Q4_K>(w, a, nb)
}

#[inline(always)]
unsafe fn q5_k<const B: usize, const DOT: bool>(
    w: *const u8,
    a: [*const BlockQ8K; B],
    nb: usize,
) -> [f32; B] {
    k4::<B, DOT, Q5_K>(w, a, nb)
}

/// Q6_K: weights decoded to their signed values (`q - 32`), sixteen 16-value groups each
/// with a signed 8-bit scale.
#[inline(always)]
unsafe fn q6_k<const B: usize, const DOT: bool>(
    w: *const u8,
    a: [*const BlockQ8K; B],
    nb: usize,
) -> [f32; B] {
    let mut out = [0f32; B];
    let low = vdupq_n_u8(15);
    let three = vdupq_n_u8(3);
    let offset = vdupq_n_s8(32);
    for i in 0..nb {
        let p = w.add(i * 210);
        let d = f16_load(p.add(208));
        let mut scales = [0i32; 16];
        for (s, j) in scales.iter_mut().zip(0..16) {
            *s = *p.add(192 + j) as i8 as i32;
        }
        let mut q = [vdupq_n_s8(0); 16];
        for half in 0..2 {
            let ql = p.add(64 * half);
            let qh = p.add(128 + 32 * half);
            for part in 0..2 {
                let l0 = vld1q_u8(ql.add(16 * part));
                let l1 = vld1q_u8(ql.add(32 + 16 * part));
                let h = vld1q_u8(qh.add(16 * part));
                // Value 32k + l: low nibble of ql[l + 32 (k % 2)] for k < 2, high nibble
                // for k ≥ 2; top two bits from bits 2k, 2k + 1 of qh[l].
                let lows = [
                    vandq_u8(l0, low),
                    vandq_u8(l1, low),
                    vshrq_n_u8::<4>(l0),
                    vshrq_n_u8::<4>(l1),
                ];
                let highs = [
                    vshlq_n_u8::<4>(vandq_u8(h, three)),
                    vshlq_n_u8::<2>(vandq_u8(h, vdupq_n_u8(0x0c))),
                    vandq_u8(h, vdupq_n_u8(0x30)),
                    vshrq_n_u8::<2>(vandq_u8(h, vdupq_n_u8(0xc0))),
                ];
                for k in 0..4 {
                    let v = vreinterpretq_s8_u8(vorrq_u8(lows[k], highs[k]));
                    q[8 * half + 2 * k + part] = vsubq_s8(v, offset);
                }
            }
        }
        for b in 0..B {
            let y = &*a[b].add(i);
            let s = k_sum::<DOT, 1>(&q, &scales, y);
            out[b] += d * y.d * s as f32;
        }
    }
    out
}

/// Q2_K: sixteen 16-value groups of 2-bit weights, each with a 4-bit scale (low nibble)
/// and a 4-bit min (high nibble), shared `d` and `dmin`.
#[inline(always)]
unsafe fn q2_k<const B: usize, const DOT: bool>(
    w: *const u8,
    a: [*const BlockQ8K; B],
    nb: usize,
) -> [f32; B] {
    let mut out = [0f32; B];
    let three = vdupq_n_u8(3);
    for i in 0..nb {
        let p = w.add(i * 84);
        let (d, dmin) = (f16_load(p.add(80)), f16_load(p.add(82)));
        let packed = vld1q_u8(p);
        let mins = widen_u8(vshrq_n_u8::<4>(packed));
        let mut scales = [0i32; 16];
        for (s, g) in scales.iter_mut().zip(0..16) {
            *s = (*p.add(g) & 15) as i32;
        }
        // Group 8h + 2j + e takes bits 2j, 2j + 1 of bytes 32h + 16e .. + 16.
        let mut q = [vdupq_n_s8(0); 16];
        for h in 0..2 {
            for e in 0..2 {
                let mut bytes = vld1q_u8(p.add(16 + 32 * h + 16 * e));
                for j in 0..4 {
                    q[8 * h + 2 * j + e] = vreinterpretq_s8_u8(vandq_u8(bytes, three));
                    bytes = vshrq_n_u8::<2>(bytes);
                }
            }
        }
        for b in 0..B {
            let y = &*a[b].add(i);
            let s = k_sum::<DOT, 1>(&q, &scales, y);
            let min_sum = dot_i16x16(load_bsums(y), mins);
            out[b] += y.d * (d * s as f32 - dmin * min_sum as f32);
        }
    }
    out
}

/// Q3_K: sixteen 16-value groups of 3-bit weights (two low bits in `qs`, the third in
/// `hmask`, offset -4 when it is clear), each with a signed 6-bit scale.
#[inline(always)]
unsafe fn q3_k<const B: usize, const DOT: bool>(
    w: *const u8,
    a: [*const BlockQ8K; B],
    nb: usize,
) -> [f32; B] {
    let mut out = [0f32; B];
    let three = vdupq_n_u8(3);
    let four = vdupq_n_u8(4);
    for i in 0..nb {
        let p = w.add(i * 110);
        let d = f16_load(p.add(108));
        let scales = unpack_q3k_scales(std::slice::from_raw_parts(p.add(96), 12)).map(|s| s as i32);
        let hmask = [vld1q_u8(p), vld1q_u8(p.add(16))];
        // Group 8h + 2j + e: bits 2j, 2j + 1 of qs bytes 32h + 16e .., third bit from bit
        // 4h + j of hmask bytes 16e ...
        let mut q = [vdupq_n_s8(0); 16];
        for h in 0..2 {
            for e in 0..2 {
                let mut bytes = vld1q_u8(p.add(32 + 32 * h + 16 * e));
                for j in 0..4 {
                    let bit = vdupq_n_u8(1 << (4 * h + j));
                    let third = vandq_u8(vtstq_u8(hmask[e], bit), four);
                    let v = vreinterpretq_s8_u8(vorrq_u8(vandq_u8(bytes, three), third));
                    q[8 * h + 2 * j + e] = vsubq_s8(v, vdupq_n_s8(4));
                    bytes = vshrq_n_u8::<2>(bytes);
                }
            }
        }
        for b in 0..B {
            let y = &*a[b].add(i);
            let s = k_sum::<DOT, 1>(&q, &scales, y);
            out[b] += d * y.d * s as f32;
        }
    }
    out
}

// ---- float weights ------------------------------------------------------------------------

/// Four f16 values (the low half of `h`) widened to f32.
#[inline(always)]
unsafe fn f16x4_low(h: uint16x8_t) -> float32x4_t {
    let out: float32x4_t;
    // SAFETY: `fcvtl` is baseline Armv8 floating point, present with NEON; it reads and
    // writes only the registers named.
    unsafe {
        asm!(
            "fcvtl {out:v}.4s, {h:v}.4h",
            out = lateout(vreg) out,
            h = in(vreg) h,
            options(pure, nomem, nostack, preserves_flags),
        );
    }
    out
}

/// Four f16 values (the high half of `h`) widened to f32.
#[inline(always)]
unsafe fn f16x4_high(h: uint16x8_t) -> float32x4_t {
    let out: float32x4_t;
    // SAFETY: as in `f16x4_low`.
    unsafe {
        asm!(
            "fcvtl2 {out:v}.4s, {h:v}.8h",
            out = lateout(vreg) out,
            h = in(vreg) h,
            options(pure, nomem, nostack, preserves_flags),
        );
    }
    out
}

const F32: u8 = 0;
const F16: u8 = 1;

/// Eight weights starting at element `i`, widened to f32.
#[inline(always)]
unsafe fn widen8<const KIND: u8>(w: *const u8, i: usize) -> [float32x4_t; 2] {
    match KIND {
        F32 => [
            vreinterpretq_f32_u8(vld1q_u8(w.add(4 * i))),
            vreinterpretq_f32_u8(vld1q_u8(w.add(4 * i + 16))),
        ],
        F16 => {
            let h = vreinterpretq_u16_u8(vld1q_u8(w.add(2 * i)));
            [f16x4_low(h), f16x4_high(h)]
        }
        _ => {
            // bf16 is the top half of an f32.
            let h = vreinterpretq_u16_u8(vld1q_u8(w.add(2 * i)));
            [
                vreinterpretq_f32_u32(vshlq_n_u32::<16>(vmovl_u16(vget_low_u16(h)))),
                vreinterpretq_f32_u32(vshlq_n_u32::<16>(vmovl_high_u16(h))),
            ]
        }
    }
}

#[inline(always)]
unsafe fn widen1<const KIND: u8>(w: *const u8, i: usize) -> f32 {
    match KIND {
        F32 => f32::from_le_bytes([
            *w.add(4 * i),
            *w.add(4 * i + 1),
            *w.add(4 * i + 2),
            *w.add(4 * i + 3),
        ]),
        F16 => f16_load(w.add(2 * i)),
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
    // Four accumulators per row (16 values a step) keep four FMA chains in flight when
    // B = 1; with B = 4 that is sixteen of the 32 vector registers.
    let mut acc = [[vdupq_n_f32(0.0); 4]; B];
    let mut i = 0;
    while i + 16 <= n {
        let [w0, w1] = widen8::<KIND>(w, i);
        let [w2, w3] = widen8::<KIND>(w, i + 8);
        for b in 0..B {
            let x = a[b].add(i);
            acc[b][0] = vfmaq_f32(acc[b][0], w0, vld1q_f32(x));
            acc[b][1] = vfmaq_f32(acc[b][1], w1, vld1q_f32(x.add(4)));
            acc[b][2] = vfmaq_f32(acc[b][2], w2, vld1q_f32(x.add(8)));
            acc[b][3] = vfmaq_f32(acc[b][3], w3, vld1q_f32(x.add(12)));
        }
        i += 16;
    }
    let mut out = [0f32; B];
    for b in 0..B {
        let s = vaddq_f32(
            vaddq_f32(acc[b][0], acc[b][1]),
            vaddq_f32(acc[b][2], acc[b][3]),
        );
        out[b] = vaddvq_f32(s);
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
unsafe fn float_f32<const B: usize, const DOT: bool>(
    w: *const u8,
    a: [*const f32; B],
    n: usize,
) -> [f32; B] {
    float::<B, F32>(w, a, n)
}

#[inline(always)]
unsafe fn float_f16<const B: usize, const DOT: bool>(
    w: *const u8,
    a: [*const f32; B],
    n: usize,
) -> [f32; B] {
    float::<B, F16>(w, a, n)
}

#[inline(always)]
unsafe fn float_bf16<const B: usize, const DOT: bool>(
    w: *const u8,
    a: [*const f32; B],
    n: usize,
) -> [f32; B] {
    float::<B, 2>(w, a, n)
}
