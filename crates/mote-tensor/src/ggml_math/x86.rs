//! The same functions with AVX-512 instructions: ggml's own operations, so the same bits
//! as the scalar forms, at the speed of the kernels they mirror.

use std::arch::x86_64::*;

use super::{v_expf, LANES};

/// [`super::reduce16`] on a vector: halves added pairwise, 8 + 4 + 2 + 1.
#[target_feature(enable = "avx512f")]
fn reduce(v: __m512) -> f32 {
    let lo = _mm512_castps512_ps256(v);
    let hi = _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(v)));
    let t = _mm256_add_ps(hi, lo);
    let u = _mm_add_ps(_mm256_extractf128_ps::<1>(t), _mm256_castps256_ps128(t));
    let w = _mm_add_ps(u, _mm_movehl_ps(u, u));
    _mm_cvtss_f32(_mm_add_ss(w, _mm_shuffle_ps::<1>(w, w)))
}

/// # Safety
/// AVX-512F must be available.
#[target_feature(enable = "avx512f")]
pub unsafe fn dot16(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = _mm512_setzero_ps();
    for (ca, cb) in a.chunks_exact(LANES).zip(b.chunks_exact(LANES)) {
        // SAFETY: both chunks hold 16 floats.
        let (va, vb) = unsafe { (_mm512_loadu_ps(ca.as_ptr()), _mm512_loadu_ps(cb.as_ptr())) };
        acc = _mm512_fmadd_ps(va, vb, acc);
    }
    reduce(acc)
}

/// `ggml_v_expf` (AVX-512 form).
#[target_feature(enable = "avx512f")]
fn expf(x: __m512) -> __m512 {
    let r = _mm512_set1_ps(12_582_912.0);
    let z = _mm512_fmadd_ps(x, _mm512_set1_ps(f32::from_bits(0x3fb8_aa3b)), r);
    let n = _mm512_sub_ps(z, r);
    let b = _mm512_fnmadd_ps(
        n,
        _mm512_set1_ps(f32::from_bits(0x35bf_be8e)),
        _mm512_fnmadd_ps(n, _mm512_set1_ps(f32::from_bits(0x3f31_7200)), x),
    );
    let d = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(_mm512_abs_ps(n), _mm512_set1_ps(192.0));
    let u = _mm512_mul_ps(b, b);
    let j = _mm512_fmadd_ps(
        _mm512_fmadd_ps(
            _mm512_fmadd_ps(
                _mm512_set1_ps(f32::from_bits(0x3c07_2010)),
                b,
                _mm512_set1_ps(f32::from_bits(0x3d2b_9f17)),
            ),
            u,
            _mm512_fmadd_ps(
                _mm512_set1_ps(f32::from_bits(0x3e2a_af33)),
                b,
                _mm512_set1_ps(f32::from_bits(0x3eff_fedb)),
            ),
        ),
        u,
        _mm512_fmadd_ps(
            _mm512_set1_ps(f32::from_bits(0x3f7f_fff6)),
            b,
            _mm512_set1_ps(1.0),
        ),
    );
    let res = _mm512_scalef_ps(j, n);
    if d == 0 {
        return res;
    }
    let zero = _mm512_setzero_ps();
    let alt = _mm512_mask_blend_ps(
        _mm512_cmp_ps_mask::<_CMP_LE_OQ>(n, zero),
        _mm512_set1_ps(f32::INFINITY),
        zero,
    );
    _mm512_mask_blend_ps(d, res, alt)
}

/// # Safety
/// AVX-512F must be available.
#[target_feature(enable = "avx512f")]
pub unsafe fn exp_sub(x: &mut [f32], sub: f32) {
    let s = _mm512_set1_ps(sub);
    let mut chunks = x.chunks_exact_mut(LANES);
    for c in &mut chunks {
        // SAFETY: the chunk holds 16 floats.
        unsafe {
            let v = _mm512_loadu_ps(c.as_ptr());
            _mm512_storeu_ps(c.as_mut_ptr(), expf(_mm512_sub_ps(v, s)));
        }
    }
    for v in chunks.into_remainder() {
        *v = v_expf(*v - sub);
    }
}

/// `g = silu(g) · u`, 16 at a time (`g.len()` a multiple of 16), as
/// `ggml_vec_swiglu_f32`.
///
/// # Safety
/// AVX-512F must be available.
#[target_feature(enable = "avx512f")]
pub unsafe fn swiglu(g: &mut [f32], u: &[f32]) {
    let one = _mm512_set1_ps(1.0);
    for (cg, cu) in g.chunks_exact_mut(LANES).zip(u.chunks_exact(LANES)) {
        // SAFETY: both chunks hold 16 floats.
        unsafe {
            let x = _mm512_loadu_ps(cg.as_ptr());
            let e = expf(_mm512_sub_ps(_mm512_setzero_ps(), x));
            let y = _mm512_mul_ps(
                _mm512_div_ps(x, _mm512_add_ps(one, e)),
                _mm512_loadu_ps(cu.as_ptr()),
            );
            _mm512_storeu_ps(cg.as_mut_ptr(), y);
        }
    }
}

/// [`super::dot16_tile`]: 16 accumulators, each one [`dot16`] chain.
///
/// # Safety
/// AVX-512F must be available; every row holds at least `len` floats (a multiple of 16).
#[target_feature(enable = "avx512f")]
pub unsafe fn dot16_tile(a: [*const f32; 4], b: [*const f32; 4], len: usize) -> [[f32; 4]; 4] {
    let mut acc = [[_mm512_setzero_ps(); 4]; 4];
    let mut k = 0;
    while k + LANES <= len {
        // SAFETY: `k + 16 <= len` floats lie in every row.
        let (va, vb) = unsafe {
            (
                a.map(|p| _mm512_loadu_ps(p.add(k))),
                b.map(|p| _mm512_loadu_ps(p.add(k))),
            )
        };
        for i in 0..4 {
            for j in 0..4 {
                acc[i][j] = _mm512_fmadd_ps(va[i], vb[j], acc[i][j]);
            }
        }
        k += LANES;
    }
    acc.map(|row| row.map(|v| reduce(v)))
}

/// Converts the first `n / 8 * 8` f16 values at `src` into `dst`; returns how many.
///
/// # Safety
/// F16C and AVX must be available; `src` holds `2n` bytes and `dst` `n` floats.
#[target_feature(enable = "avx,f16c")]
pub unsafe fn f16_to_f32(src: *const u8, dst: *mut f32, n: usize) -> usize {
    let mut i = 0;
    while i + 8 <= n {
        // SAFETY: values `i..i + 8` lie inside both buffers.
        unsafe {
            let h = _mm_loadu_si128(src.add(2 * i) as *const __m128i);
            _mm256_storeu_ps(dst.add(i), _mm256_cvtph_ps(h));
        }
        i += 8;
    }
    i
}
