//! Float arithmetic in the exact order and rounding of llama.cpp's CPU backend (ggml,
//! x86-64 with AVX-512, the build `llama-cpp-python` makes), so that mote's forward pass
//! reproduces llama.cpp's logits bit for bit where it can.
//!
//! Why bother: the activations of quantized models are themselves quantized to 8 bits
//! before every weight product, and an 8-bit rounding amplifies a difference in the last
//! bit of an f32 into a full quantization step. Two forward passes that differ only in
//! summation order drift apart layer by layer until their next-token choices differ at
//! a few percent of near-tie positions (llama.cpp against itself: batched vs
//! token-by-token). Matching llama.cpp's roundings, not just its mathematics, is the only
//! way to agree with it at those positions. None of this costs accuracy: every function
//! here is as accurate as its textbook counterpart, within an ulp or two.
//!
//! The functions are safe scalar code written so that LLVM vectorizes them; a fused
//! multiply-add is emulated in f64 (`a·b` is exact in f64, and the sum rounds twice
//! only in the astronomically rare case of landing exactly between two f32 values).

use std::sync::OnceLock;

/// Lanes of an AVX-512 float vector: ggml's (and tinyBLAS's) accumulators.
pub const LANES: usize = 16;

/// `a·b + c` rounded once to f32, as the FMA instruction computes it.
#[inline(always)]
pub fn fma(a: f32, b: f32, c: f32) -> f32 {
    (a as f64 * b as f64 + c as f64) as f32
}

/// `_mm512_reduce_add_ps` as GCC implements it: halves added pairwise, 8 + 4 + 2 + 1.
#[inline(always)]
pub fn reduce16(v: &[f32; LANES]) -> f32 {
    let mut t = [0f32; 8];
    for i in 0..8 {
        t[i] = v[i + 8] + v[i];
    }
    let u = [t[4] + t[0], t[5] + t[1], t[6] + t[2], t[7] + t[3]];
    (u[2] + u[0]) + (u[3] + u[1])
}

/// The dot product of two f16-valued vectors (stored as f32) as tinyBLAS computes it
/// on AVX-512: 16 lane-wise FMA chains over consecutive 16-element chunks, then
/// [`reduce16`]. Products of f16 values are exact in f32, so the FMA is a plain add.
/// `a.len()` must be a multiple of 16.
#[inline]
pub fn dot16_f16(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; LANES];
    for (ca, cb) in a.chunks_exact(LANES).zip(b.chunks_exact(LANES)) {
        for l in 0..LANES {
            acc[l] += ca[l] * cb[l];
        }
    }
    reduce16(&acc)
}

/// ggml's vectorized `expf` for AVX-512 (`ggml_v_expf`, after ARM's optimized
/// routines): at most 1.5 ulp from the true value.
#[inline(always)]
pub fn v_expf(x: f32) -> f32 {
    const R: f32 = 12_582_912.0; // 0x1.8p23
    let z = fma(x, f32::from_bits(0x3fb8_aa3b), R); // log2(e)
    let n = z - R;
    let b = fma(
        -n,
        f32::from_bits(0x35bf_be8e),             // 0x1.7f7d1cp-20
        fma(-n, f32::from_bits(0x3f31_7200), x), // 0x1.62e4p-1
    );
    let u = b * b;
    let j = fma(
        fma(
            fma(
                f32::from_bits(0x3c07_2010), // 0x1.0e4020p-7
                b,
                f32::from_bits(0x3d2b_9f17), // 0x1.573e2ep-5
            ),
            u,
            fma(
                f32::from_bits(0x3e2a_af33), // 0x1.555e66p-3
                b,
                f32::from_bits(0x3eff_fedb), // 0x1.fffdb6p-2
            ),
        ),
        u,
        fma(f32::from_bits(0x3f7f_fff6), b, 1.0), // 0x1.ffffecp-1
    );
    if n.abs() > 192.0 {
        return if n <= 0.0 { 0.0 } else { f32::INFINITY };
    }
    // `_mm512_scalef_ps(j, n)`: j·2ⁿ rounded once (also into the subnormal range).
    (j as f64 * (n as f64).exp2()) as f32
}

/// `gate[i] = silu(gate[i]) · up[i]` over rows of `cols` values, as
/// `ggml_vec_swiglu_f32`: 16 at a time with [`v_expf`], the tail of each row with libm.
pub fn swiglu(gate: &mut [f32], up: &[f32], cols: usize) {
    if cols == 0 {
        return;
    }
    let body = cols - cols % LANES;
    for (g, u) in gate.chunks_exact_mut(cols).zip(up.chunks_exact(cols)) {
        let (gb, gt) = g.split_at_mut(body);
        let (ub, ut) = u.split_at(body);
        for (x, &y) in gb.iter_mut().zip(ub) {
            *x = *x / (1.0 + v_expf(0.0 - *x)) * y;
        }
        for (x, &y) in gt.iter_mut().zip(ut) {
            *x = *x / (1.0 + (-*x).exp()) * y;
        }
    }
}

/// ggml's GELU table: `gelu_tanh(x)` for every f16 `x`, rounded to f16 (ggml builds it
/// with `GGML_GELU_FP16` and looks activations up by their f16 value).
fn gelu_table() -> &'static [half::f16] {
    static TABLE: OnceLock<Vec<half::f16>> = OnceLock::new();
    TABLE.get_or_init(|| {
        #[allow(clippy::excessive_precision)]
        const SQRT_2_OVER_PI: f32 = 0.797_884_560_802_865_4;
        const COEF_A: f32 = 0.044_715;
        (0..=u16::MAX)
            .map(|bits| {
                let x = half::f16::from_bits(bits).to_f32();
                // 0.5f*x*(1.0f + tanhf(SQRT_2_OVER_PI*x*(1.0f + GELU_COEF_A*x*x))), with
                // the inner `1 + a·x·x` contracted to an FMA by the compiler.
                let inner = fma(COEF_A * x, x, 1.0);
                let t = (SQRT_2_OVER_PI * x * inner).tanh();
                half::f16::from_f32(0.5 * x * (1.0 + t))
            })
            .collect()
    })
}

/// `gate[i] = gelu(gate[i]) · up[i]` as `ggml_vec_geglu_f32` with the f16 table.
pub fn geglu(gate: &mut [f32], up: &[f32]) {
    let table = gelu_table();
    for (x, &y) in gate.iter_mut().zip(up) {
        *x = if *x <= -10.0 {
            0.0
        } else if *x >= 10.0 {
            *x * y
        } else {
            table[half::f16::from_f32(*x).to_bits() as usize].to_f32() * y
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v_expf_is_close_to_exp() {
        for i in -2000..=800 {
            let x = i as f32 * 0.11;
            let want = (x as f64).exp();
            let got = v_expf(x) as f64;
            if want > 1e-37 && want < 1e38 {
                assert!((got - want).abs() <= 3e-7 * want, "{x}: {got} vs {want}");
            }
        }
        assert_eq!(v_expf(f32::NEG_INFINITY), 0.0);
        assert_eq!(v_expf(0.0), 1.0);
    }

    #[test]
    fn reduce_and_dot() {
        let v: [f32; 16] = std::array::from_fn(|i| i as f32);
        assert_eq!(reduce16(&v), 120.0);
        let a: Vec<f32> = (0..64).map(|i| (i % 7) as f32 - 3.0).collect();
        let b: Vec<f32> = (0..64).map(|i| (i % 5) as f32 * 0.5).collect();
        let want: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
        assert_eq!(dot16_f16(&a, &b), want);
    }

    #[test]
    fn activations_match_their_definitions() {
        let xs: Vec<f32> = (0..40).map(|i| i as f32 * 0.37 - 7.0).collect();
        let mut g = xs.clone();
        swiglu(&mut g, &vec![1.0; xs.len()], 20);
        for (x, y) in xs.iter().zip(&g) {
            assert!((y - x / (1.0 + (-x).exp())).abs() < 1e-5);
        }
        let mut g = xs.clone();
        geglu(&mut g, &vec![1.0; xs.len()]);
        for (x, y) in xs.iter().zip(&g) {
            let u = 0.797_884_6 * (x + 0.044_715 * x * x * x);
            let want = 0.5 * x * (1.0 + u.tanh());
            assert!(
                (y - want).abs() < 2e-3 * (1.0 + want.abs()),
                "{x}: {y} vs {want}"
            );
        }
    }
}
