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
    #[cfg(target_arch = "x86_64")]
    if avx512() {
        // SAFETY: AVX-512F is available (checked by `avx512`).
        return unsafe { x86::dot16(a, b) };
    }
    dot16_scalar(a, b)
}

fn dot16_scalar(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; LANES];
    for (ca, cb) in a.chunks_exact(LANES).zip(b.chunks_exact(LANES)) {
        for l in 0..LANES {
            acc[l] += ca[l] * cb[l];
        }
    }
    reduce16(&acc)
}

/// `out[i][j] = dot16_f16(&a[i][..len], &b[j][..len])` for four rows of `a` and four of
/// `b` (`len` is cut to a multiple of 16 and to the shortest row). The same bits as
/// sixteen [`dot16_f16`] calls, but with sixteen independent chains in flight, so the
/// FMA latency that bounds one chain is hidden (several times faster in attention).
/// Pass a row twice to multiply fewer.
pub fn dot16_tile(a: [&[f32]; 4], b: [&[f32]; 4], len: usize) -> [[f32; 4]; 4] {
    let shortest = a.iter().chain(&b).map(|r| r.len()).min().unwrap_or(0);
    let len = len.min(shortest) / LANES * LANES;
    #[cfg(target_arch = "x86_64")]
    if avx512() {
        // SAFETY: AVX-512F is available (checked by `avx512`); every row holds at least
        // `len` values.
        return unsafe { x86::dot16_tile(a.map(<[f32]>::as_ptr), b.map(<[f32]>::as_ptr), len) };
    }
    std::array::from_fn(|i| std::array::from_fn(|j| dot16_scalar(&a[i][..len], &b[j][..len])))
}

/// Decodes little-endian f16 values from `bytes` into `out` (as many as both hold).
/// Exact; with F16C eight at a time.
pub fn f16_to_f32(bytes: &[u8], out: &mut [f32]) {
    let n = (bytes.len() / 2).min(out.len());
    #[cfg(target_arch = "x86_64")]
    let done = if f16c() {
        // SAFETY: F16C/AVX are available (checked by `f16c`); `n` values lie inside both
        // slices.
        unsafe { x86::f16_to_f32(bytes.as_ptr(), out.as_mut_ptr(), n) }
    } else {
        0
    };
    #[cfg(not(target_arch = "x86_64"))]
    let done = 0;
    for (o, b) in out[done..n]
        .iter_mut()
        .zip(bytes[2 * done..].chunks_exact(2))
    {
        *o = half::f16::from_le_bytes([b[0], b[1]]).to_f32();
    }
}

#[cfg(target_arch = "x86_64")]
fn f16c() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| is_x86_feature_detected!("f16c") && is_x86_feature_detected!("avx"))
}

/// `x[i] = v_expf(x[i] - sub)` for every element.
pub fn exp_sub(x: &mut [f32], sub: f32) {
    #[cfg(target_arch = "x86_64")]
    if avx512() {
        // SAFETY: AVX-512F is available (checked by `avx512`).
        unsafe { x86::exp_sub(x, sub) };
        return;
    }
    x.iter_mut().for_each(|v| *v = v_expf(*v - sub));
}

/// Whether the AVX-512 forms below may run: mote's kernels chose their AVX-512 path
/// (which also honours `MOTE_KERNELS`). The scalar forms compute the same bits.
#[cfg(target_arch = "x86_64")]
fn avx512() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| {
        use crate::kernels::{KernelPath, Kernels};
        Kernels::active().path == KernelPath::Avx512 && is_x86_feature_detected!("avx512f")
    })
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
    // `_mm512_scalef_ps(j, n)`: j·2ⁿ rounded once (also into the subnormal range); 2ⁿ
    // built from its bits (n is an integer), so that the loops calling this vectorize.
    let big = n.abs() > 192.0;
    let e = if big { 0 } else { n as i64 };
    let res = (j as f64 * f64::from_bits(((e + 1023) as u64) << 52)) as f32;
    let alt = if n <= 0.0 { 0.0 } else { f32::INFINITY };
    if big {
        alt
    } else {
        res
    }
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
        #[cfg(target_arch = "x86_64")]
        if avx512() {
            // SAFETY: AVX-512F is available (checked by `avx512`).
            unsafe { x86::swiglu(gb, ub) };
        } else {
            for (x, &y) in gb.iter_mut().zip(ub) {
                *x = *x / (1.0 + v_expf(0.0 - *x)) * y;
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
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
    use half::slice::HalfFloatSliceExt;
    let table = gelu_table();
    // The table index is the activation rounded to f16: converted a chunk at a time
    // (F16C, eight per instruction) instead of one value per call.
    let mut keys = [half::f16::ZERO; 1024];
    for (g, u) in gate.chunks_mut(keys.len()).zip(up.chunks(keys.len())) {
        let keys = &mut keys[..g.len()];
        keys.convert_from_f32_slice(g);
        for ((x, &y), k) in g.iter_mut().zip(u).zip(keys.iter()) {
            *x = if *x <= -10.0 {
                0.0
            } else if *x >= 10.0 {
                *x * y
            } else {
                table[k.to_bits() as usize].to_f32() * y
            };
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86;

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
    #[test]
    fn vector_forms_equal_scalar_forms() {
        let xs: Vec<f32> = (0..4099)
            .map(|i| {
                ((i as f32 * 0.618).sin() * 40.0) - 10.0 + if i % 97 == 0 { -150.0 } else { 0.0 }
            })
            .collect();
        let mut got = xs.clone();
        exp_sub(&mut got, 3.5);
        for (x, g) in xs.iter().zip(&got) {
            assert_eq!(g.to_bits(), v_expf(x - 3.5).to_bits(), "exp {x}");
        }
        let a: Vec<f32> = xs[..256]
            .iter()
            .map(|v| half::f16::from_f32(*v).to_f32())
            .collect();
        let b: Vec<f32> = xs[256..512]
            .iter()
            .map(|v| half::f16::from_f32(*v * 0.1).to_f32())
            .collect();
        let mut acc = [0f32; LANES];
        for (ca, cb) in a.chunks_exact(LANES).zip(b.chunks_exact(LANES)) {
            for l in 0..LANES {
                acc[l] += ca[l] * cb[l];
            }
        }
        assert_eq!(dot16_f16(&a, &b).to_bits(), reduce16(&acc).to_bits());
        // The tile equals sixteen single dots, with rows repeated and cut to a multiple of 16.
        // (f16-valued inputs, whose products are exact, as the function requires).
        let h: Vec<f32> = xs
            .iter()
            .map(|v| half::f16::from_f32(*v).to_f32())
            .collect();
        let rows: Vec<&[f32]> = (0..6).map(|i| &h[40 * i..40 * i + 200 + i]).collect();
        let tile = dot16_tile(
            [rows[0], rows[1], rows[2], rows[2]],
            [rows[3], rows[4], rows[5], rows[0]],
            200,
        );
        for (i, a) in [0, 1, 2, 2].into_iter().enumerate() {
            for (j, b) in [3, 4, 5, 0].into_iter().enumerate() {
                let want = dot16_scalar(&rows[a][..192], &rows[b][..192]);
                assert_eq!(tile[i][j].to_bits(), want.to_bits(), "tile {i} {j}");
            }
        }
        let up: Vec<f32> = xs.iter().map(|v| v * 0.01 + 1.0).collect();
        let mut g = xs[..4096].to_vec();
        swiglu(&mut g, &up[..4096], 2048);
        for ((x, u), y) in xs.iter().zip(&up).zip(&g) {
            assert_eq!(
                y.to_bits(),
                (x / (1.0 + v_expf(0.0 - x)) * u).to_bits(),
                "silu {x}"
            );
        }
    }

    #[test]
    fn f16_bytes_decode_exactly() {
        let vals: Vec<half::f16> = (0..37u16)
            .map(|i| half::f16::from_bits(i.wrapping_mul(1777)))
            .collect();
        let bytes: Vec<u8> = vals.iter().flat_map(|v| v.to_le_bytes()).collect();
        let mut out = vec![-1.0; 40];
        f16_to_f32(&bytes, &mut out);
        for (o, v) in out.iter().zip(&vals) {
            assert!(o.to_bits() == v.to_f32().to_bits() || (o.is_nan() && v.is_nan()));
        }
        assert_eq!(&out[37..], &[-1.0; 3]);
    }
}
