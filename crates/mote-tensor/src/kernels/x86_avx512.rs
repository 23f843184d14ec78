//! AVX-512 kernels: the AVX2 bodies with `vpdpbusd` (AVX-512 VNNI on 256-bit vectors)
//! for the integer dot products, and 512-bit float dot products.
//!
//! Quantized blocks are 32 values, so 256-bit vectors already hold one block; the gain
//! from AVX-512 here is VNNI's single-instruction u8×i8 multiply-accumulate. Zen 4 runs
//! 512-bit operations as two 256-bit halves, so wider integer vectors would mostly add
//! shuffles.

use std::arch::x86_64::*;

use super::x86_avx2::{
    gemm_q8, q2_k, q3_k, q4_0, q4_1, q4_k, q5_0, q5_1, q5_k, q6_k, q8_0, simd_dot, simd_gemm,
};
use super::x86_avx2::{Q4_0, Q4_1, Q5_0, Q5_1, Q8_0};
use super::x86_gemm_k::simd_gemm_k;
use super::x86_rows8::simd_rows8;
use super::{BlockQ8, BlockQ8K, Dot, KernelPath, Kernels, Unpacked};

pub(super) fn kernels() -> Option<Kernels> {
    let has = [
        is_x86_feature_detected!("avx2"),
        is_x86_feature_detected!("fma"),
        is_x86_feature_detected!("f16c"),
        is_x86_feature_detected!("avx512f"),
        is_x86_feature_detected!("avx512bw"),
        is_x86_feature_detected!("avx512vl"),
        is_x86_feature_detected!("avx512vnni"),
    ];
    if has.contains(&false) {
        return None;
    }
    Some(Kernels {
        path: KernelPath::Avx512,
        f32: simd_dot!(
            "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni",
            float_f32::<false>,
            f32,
            4
        ),
        f16: simd_dot!(
            "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni",
            float_f16::<false>,
            f32,
            2
        ),
        bf16: simd_dot!(
            "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni",
            float_bf16::<false>,
            f32,
            2
        ),
        q4_0: Dot {
            gemm: Some(simd_gemm!(
                "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni",
                true,
                4
            )),
            rows8: Some(simd_rows8!(
                "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni",
                legacy_rows8[true, {Q4_0}],
                BlockQ8,
                18
            )),
            ..simd_dot!(
                "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni",
                q4_0::<true>,
                BlockQ8,
                18
            )
        },
        q4_1: Dot {
            gemm: Some(simd_gemm!(
                "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni",
                true,
                4
            )),
            rows8: Some(simd_rows8!(
                "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni",
                legacy_rows8[true, {Q4_1}],
                BlockQ8,
                20
            )),
            ..simd_dot!(
                "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni",
                q4_1::<true>,
                BlockQ8,
                20
            )
        },
        q5_0: Dot {
            gemm: Some(simd_gemm!(
                "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni",
                true,
                4
            )),
            rows8: Some(simd_rows8!(
                "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni",
                legacy_rows8[true, {Q5_0}],
                BlockQ8,
                22
            )),
            ..simd_dot!(
                "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni",
                q5_0::<true>,
                BlockQ8,
                22
            )
        },
        q5_1: Dot {
            gemm: Some(simd_gemm!(
                "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni",
                true,
                4
            )),
            rows8: Some(simd_rows8!(
                "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni",
                legacy_rows8[true, {Q5_1}],
                BlockQ8,
                24
            )),
            ..simd_dot!(
                "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni",
                q5_1::<true>,
                BlockQ8,
                24
            )
        },
        q8_0: Dot {
            gemm: Some(simd_gemm!(
                "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni",
                true,
                4
            )),
            rows8: Some(simd_rows8!(
                "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni",
                legacy_rows8[true, {Q8_0}],
                BlockQ8,
                34
            )),
            ..simd_dot!(
                "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni",
                q8_0::<true>,
                BlockQ8,
                34
            )
        },
        q2_k: simd_dot!(
            "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni",
            q2_k::<true>,
            BlockQ8K,
            84
        ),
        q3_k: simd_dot!(
            "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni",
            q3_k::<true>,
            BlockQ8K,
            110
        ),
        q4_k: Dot {
            rows8: Some(
                simd_rows8!("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni", k4_rows8[true, false], BlockQ8K, 144),
            ),
            ..simd_dot!(
                "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni",
                q4_k::<true>,
                BlockQ8K,
                144
            )
        },
        q5_k: Dot {
            rows8: Some(
                simd_rows8!("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni", k4_rows8[true, true], BlockQ8K, 176),
            ),
            ..simd_dot!(
                "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni",
                q5_k::<true>,
                BlockQ8K,
                176
            )
        },
        q6_k: simd_dot!(
            "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni",
            q6_k::<true>,
            BlockQ8K,
            210
        ),
        gemm_k: Some(simd_gemm_k!(
            "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni",
            true
        )),
    })
}

// Safety for the bodies below: run with AVX-512F/BW enabled; `w` holds `n` weights and
// each `a[b]` `n` floats, as the `simd_dot!` wrappers guarantee.

/// Sixteen weights starting at element `i`, widened to f32. `KIND`: 0 = f32, 1 = f16,
/// 2 = bf16.
#[inline(always)]
unsafe fn widen16<const KIND: u8>(w: *const u8, i: usize) -> __m512 {
    match KIND {
        0 => _mm512_loadu_ps(w.add(4 * i) as *const f32),
        1 => _mm512_cvtph_ps(_mm256_loadu_si256(w.add(2 * i) as *const __m256i)),
        _ => {
            let h = _mm512_cvtepu16_epi32(_mm256_loadu_si256(w.add(2 * i) as *const __m256i));
            _mm512_castsi512_ps(_mm512_slli_epi32::<16>(h))
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
        1 => half::f16::from_le_bytes([*w.add(2 * i), *w.add(2 * i + 1)]).to_f32(),
        _ => f32::from_bits((u16::from_le_bytes([*w.add(2 * i), *w.add(2 * i + 1)]) as u32) << 16),
    }
}

#[inline(always)]
unsafe fn float<const B: usize, const KIND: u8>(
    w: *const u8,
    a: [*const f32; B],
    n: usize,
) -> [f32; B] {
    let mut acc = [[_mm512_setzero_ps(); 2]; B];
    let mut i = 0;
    while i + 32 <= n {
        let w0 = widen16::<KIND>(w, i);
        let w1 = widen16::<KIND>(w, i + 16);
        for b in 0..B {
            acc[b][0] = _mm512_fmadd_ps(w0, _mm512_loadu_ps(a[b].add(i)), acc[b][0]);
            acc[b][1] = _mm512_fmadd_ps(w1, _mm512_loadu_ps(a[b].add(i + 16)), acc[b][1]);
        }
        i += 32;
    }
    let mut out = [0f32; B];
    for b in 0..B {
        out[b] = _mm512_reduce_add_ps(_mm512_add_ps(acc[b][0], acc[b][1]));
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
unsafe fn float_f32<const B: usize, const VNNI: bool>(
    w: *const u8,
    a: [*const f32; B],
    n: usize,
) -> [f32; B] {
    float::<B, 0>(w, a, n)
}

#[inline(always)]
unsafe fn float_f16<const B: usize, const VNNI: bool>(
    w: *const u8,
    a: [*const f32; B],
    n: usize,
) -> [f32; B] {
    float::<B, 1>(w, a, n)
}

#[inline(always)]
unsafe fn float_bf16<const B: usize, const VNNI: bool>(
    w: *const u8,
    a: [*const f32; B],
    n: usize,
) -> [f32; B] {
    float::<B, 2>(w, a, n)
}
