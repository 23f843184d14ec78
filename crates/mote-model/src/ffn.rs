//! The gated feed-forward block: `down(act(gate(x)) * up(x))`.

use crate::spec::Activation;
use mote_tensor::ggml_math;

#[cfg(test)]
fn silu(x: f32) -> f32 {
    x / (1.0 + (-x).exp())
}

/// GELU, tanh approximation (what GeGLU models are trained with), written as
/// `x · sigmoid(2u)`, which equals `0.5 · x · (1 + tanh(u))` but costs one `exp` instead
/// of a `tanh` (several times slower in libm).
#[cfg(test)]
fn gelu_tanh(x: f32) -> f32 {
    const SQRT_2_OVER_PI: f32 = 0.797_884_6;
    let u = SQRT_2_OVER_PI * x * (1.0 + 0.044_715 * x * x);
    x / (1.0 + (-2.0 * u).exp())
}

/// `gate[i] = act(gate[i]) * up[i]`, the gated activation, over rows of `cols` values.
///
/// Computed as llama.cpp's CPU backend does (see [`mote_tensor::ggml_math`]): SiLU with ggml's
/// vectorized `expf`, GELU through ggml's f16 lookup table (f16-precise, like every
/// GELU llama.cpp computes on a CPU).
pub fn gated_activation(act: Activation, gate: &mut [f32], up: &[f32], cols: usize) {
    // Elementwise: long prompts split the rows over the pool, with the same results.
    let pool = mote_tensor::parallel::global();
    mote_tensor::parallel::for_rows(&pool, gate, cols, &|first, g| {
        let u = &up[first * cols..][..g.len()];
        match act {
            Activation::Silu => ggml_math::swiglu(g, u, cols),
            Activation::GeluTanh => ggml_math::geglu(g, u),
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn activations() {
        assert!((silu(0.0)).abs() < 1e-7);
        assert!((silu(2.0) - 2.0 / (1.0 + (-2f32).exp())).abs() < 1e-6);
        assert!((gelu_tanh(0.0)).abs() < 1e-7);
        assert!((gelu_tanh(1.0) - 0.841_192).abs() < 1e-5);
        assert!((gelu_tanh(-10.0)).abs() < 1e-5);
        assert_eq!(gelu_tanh(-1000.0), 0.0);
        for x in [-3.0f32, -0.5, 0.25, 2.0, 7.0] {
            let u = 0.797_884_6 * (x + 0.044_715 * x * x * x);
            assert!((gelu_tanh(x) - 0.5 * x * (1.0 + u.tanh())).abs() < 1e-6);
        }
    }

    #[test]
    fn gated_activation_follows_the_definitions() {
        let xs: Vec<f32> = (0..100).map(|i| i as f32 * 0.23 - 11.0).collect();
        let up: Vec<f32> = (0..100).map(|i| 1.0 + (i % 3) as f32).collect();
        for (act, f, tol) in [
            (Activation::Silu, silu as fn(f32) -> f32, 1e-6),
            (Activation::GeluTanh, gelu_tanh, 1e-3),
        ] {
            let mut g = xs.clone();
            gated_activation(act, &mut g, &up, 50);
            for ((x, u), y) in xs.iter().zip(&up).zip(&g) {
                let want = f(*x) * u;
                assert!(
                    (y - want).abs() <= tol * (1.0 + want.abs()),
                    "{act:?} {x}: {y} vs {want}"
                );
            }
        }
    }
}
