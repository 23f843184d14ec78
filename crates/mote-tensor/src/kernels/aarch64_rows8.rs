//! Decoding products of the legacy block types on aarch64 with the dot-product
//! extension: eight weight rows times up to four activation rows per call
//! ([`super::Dot::rows8`]), the NEON form of `x86_rows8`.
//!
//! Each row's block is decoded to 32 signed bytes as the one-row kernels do, then four
//! rows are transposed so that one 32-bit lane holds four consecutive weights of one
//! row; `sdot` with a by-element operand multiplies that with four activations and
//! advances four rows at once, each block's exact integer dot ends in its row's lane, and
//! the float steps run once per block for four rows. Every row's result is defined by
//! [`super::scalar::rows8_row`], as on x86, so a sequence gets the same bits whether it
//! decodes alone or batched.

use std::arch::aarch64::*;
use std::arch::asm;

use super::aarch64_neon::{legacy_block_bytes, legacy_decode, legacy_has_offset};
use super::BlockQ8;

/// Builds a [`super::Rows8`] for one legacy type, or `None` when `$on` is false (no
/// dot-product extension). Only expand this after checking at run time that the CPU
/// has `$features`.
macro_rules! neon_rows8 {
    (false, $features:literal, $kind:ident) => {
        None
    };
    (true, $features:literal, $kind:ident) => {{
        #[target_feature(enable = $features)]
        unsafe fn entry<const B: usize>(
            p: [*const u8; 8],
            a: [*const BlockQ8; B],
            nb: usize,
        ) -> [[f32; 8]; B] {
            $crate::kernels::aarch64_rows8::legacy_rows8::<B, $kind>(p, a, nb)
        }
        rows8_wrapper!(BlockQ8, legacy_block_bytes($kind));
        Some(rows8 as $crate::kernels::Rows8<BlockQ8>)
    }};
}
pub(super) use neon_rows8;

// Safety for the helpers below: the caller runs with NEON and the dot-product extension
// enabled, and every row pointer is valid for the blocks read.

/// `acc` plus, per 32-bit lane, the dot of its four bytes of `w` with bytes
/// `4L..4L + 4` of `x` (`sdot` by element).
#[inline(always)]
unsafe fn sdot_lane<const L: i32>(acc: int32x4_t, w: int8x16_t, x: int8x16_t) -> int32x4_t {
    let mut acc = acc;
    // SAFETY: `sdot` exists where the dot-product extension does, which every caller's
    // entry point enables; it touches only the three registers named.
    unsafe {
        asm!(
            "sdot {acc:v}.4s, {w:v}.16b, {x:v}.4b[{l}]",
            acc = inout(vreg) acc,
            w = in(vreg) w,
            x = in(vreg) x,
            l = const L,
            options(pure, nomem, nostack, preserves_flags),
        );
    }
    acc
}

/// Four vectors of four 32-bit words → their transpose: lane `r` of result `j` is word
/// `j` of input `r`.
#[inline(always)]
unsafe fn transpose4(v: [int8x16_t; 4]) -> [int8x16_t; 4] {
    let w = [
        vreinterpretq_s32_s8(v[0]),
        vreinterpretq_s32_s8(v[1]),
        vreinterpretq_s32_s8(v[2]),
        vreinterpretq_s32_s8(v[3]),
    ];
    let t0 = vreinterpretq_s64_s32(vtrn1q_s32(w[0], w[1]));
    let t1 = vreinterpretq_s64_s32(vtrn2q_s32(w[0], w[1]));
    let t2 = vreinterpretq_s64_s32(vtrn1q_s32(w[2], w[3]));
    let t3 = vreinterpretq_s64_s32(vtrn2q_s32(w[2], w[3]));
    [
        vreinterpretq_s8_s64(vtrn1q_s64(t0, t2)),
        vreinterpretq_s8_s64(vtrn1q_s64(t1, t3)),
        vreinterpretq_s8_s64(vtrn2q_s64(t0, t2)),
        vreinterpretq_s8_s64(vtrn2q_s64(t1, t3)),
    ]
}

/// Eight weight rows (block `k` of row `r` at `p[r] + k · block bytes`) times `B`
/// activation rows, `nb` blocks: `out[b][r]`.
#[inline(always)]
pub(super) unsafe fn legacy_rows8<const B: usize, const KIND: u8>(
    p: [*const u8; 8],
    a: [*const BlockQ8; B],
    nb: usize,
) -> [[f32; 8]; B] {
    let bb = legacy_block_bytes(KIND);
    let has_min = legacy_has_offset(KIND);
    // Two halves of four rows each.
    let mut acc = [[vdupq_n_f32(0.0); 2]; B];
    let mut macc = [[vdupq_n_f32(0.0); 2]; B];
    for k in 0..nb {
        for half in 0..2 {
            let mut q = [[vdupq_n_s8(0); 2]; 4];
            let (mut d, mut m) = ([0f32; 4], [0f32; 4]);
            for r in 0..4 {
                let (qr, dr, mr) = legacy_decode::<KIND>(p[4 * half + r].add(k * bb));
                q[r] = qr;
                d[r] = dr;
                m[r] = mr;
            }
            // Vector j: values 4j..4j + 4 of the four rows (j < 4 from the first 16).
            let lo = transpose4([q[0][0], q[1][0], q[2][0], q[3][0]]);
            let hi = transpose4([q[0][1], q[1][1], q[2][1], q[3][1]]);
            let d = vld1q_f32(d.as_ptr());
            let m = vld1q_f32(m.as_ptr());
            for b in 0..B {
                let y = &*a[b].add(k);
                let x0 = vld1q_s8(y.qs.as_ptr());
                let x1 = vld1q_s8(y.qs.as_ptr().add(16));
                let mut s = [vdupq_n_s32(0); 2];
                s[0] = sdot_lane::<0>(s[0], lo[0], x0);
                s[1] = sdot_lane::<1>(s[1], lo[1], x0);
                s[0] = sdot_lane::<2>(s[0], lo[2], x0);
                s[1] = sdot_lane::<3>(s[1], lo[3], x0);
                s[0] = sdot_lane::<0>(s[0], hi[0], x1);
                s[1] = sdot_lane::<1>(s[1], hi[1], x1);
                s[0] = sdot_lane::<2>(s[0], hi[2], x1);
                s[1] = sdot_lane::<3>(s[1], hi[3], x1);
                let dot = vcvtq_f32_s32(vaddq_s32(s[0], s[1]));
                let scale = vmulq_n_f32(d, y.d);
                acc[b][half] = vfmaq_f32(acc[b][half], dot, scale);
                if has_min {
                    macc[b][half] = vfmaq_n_f32(macc[b][half], m, y.s);
                }
            }
        }
    }
    let mut out = [[0f32; 8]; B];
    for b in 0..B {
        for half in 0..2 {
            let total = if has_min {
                vaddq_f32(acc[b][half], macc[b][half])
            } else {
                acc[b][half]
            };
            vst1q_f32(out[b][4 * half..].as_mut_ptr(), total);
        }
    }
    out
}
