//! The gated feed-forward block: `down(act(gate(x)) * up(x))`.

use crate::spec::Activation;

fn silu(x: f32) -> f32 {
    x / (1.0 + (-x).exp())
}

/// GELU, tanh approximation (what GeGLU models are trained with), written as
/// `x · sigmoid(2u)`, which equals `0.5 · x · (1 + tanh(u))` but costs one `exp` instead
/// of a `tanh` (several times slower in libm).
fn gelu_tanh(x: f32) -> f32 {
    const SQRT_2_OVER_PI: f32 = 0.797_884_6;
    let u = SQRT_2_OVER_PI * x * (1.0 + 0.044_715 * x * x);
    x / (1.0 + (-2.0 * u).exp())
}

/// `gate[i] = act(gate[i]) * up[i]`, the gated activation.
pub fn gated_activation(act: Activation, gate: &mut [f32], up: &[f32]) {
    match act {
        Activation::Silu => gate.iter_mut().zip(up).for_each(|(g, u)| *g = silu(*g) * u),
        Activation::GeluTanh => gate
            .iter_mut()
            .zip(up)
            .for_each(|(g, u)| *g = gelu_tanh(*g) * u),
    }
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
}
