//! The gated feed-forward block: `down(act(gate(x)) * up(x))`.

use crate::spec::Activation;
use crate::weights::LayerWeights;
use crate::ModelError;

fn silu(x: f32) -> f32 {
    x / (1.0 + (-x).exp())
}

/// GELU, tanh approximation (what GeGLU models are trained with).
fn gelu_tanh(x: f32) -> f32 {
    const SQRT_2_OVER_PI: f32 = 0.797_884_6;
    0.5 * x * (1.0 + (SQRT_2_OVER_PI * x * (1.0 + 0.044_715 * x * x)).tanh())
}

/// Runs the block on `n` rows of `x`, writing `n * n_embd` values to `out`.
pub fn feed_forward(
    w: &LayerWeights,
    act: Activation,
    x: &[f32],
    n: usize,
    out: &mut [f32],
) -> Result<(), ModelError> {
    let n_ff = w.ffn_up.rows;
    let mut gate = vec![0f32; n * n_ff];
    let mut up = vec![0f32; n * n_ff];
    w.ffn_gate.matmul(x, n, &mut gate)?;
    w.ffn_up.matmul(x, n, &mut up)?;
    let f = match act {
        Activation::Silu => silu,
        Activation::GeluTanh => gelu_tanh,
    };
    for (g, u) in gate.iter_mut().zip(&up) {
        *g = f(*g) * u;
    }
    w.ffn_down.matmul(&gate, n, out)?;
    Ok(())
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
    }
}
