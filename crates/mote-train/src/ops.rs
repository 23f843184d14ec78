//! Element- and row-wise operations of the decoder with their backward passes: RMS
//! norm, the gated activations, rotary embedding and the logit soft-cap. Generic over
//! [`Real`] so the gradient checks run them in f64.

use mote_model::spec::{Activation, RopeStyle};

use crate::real::Real;

/// `y = x / sqrt(mean(x²) + eps) · w` over rows of `w.len()`; returns each row's
/// `1/sqrt(mean(x²) + eps)` for the backward pass.
pub fn rms_norm_fwd<R: Real>(x: &[R], w: &[R], eps: f32, y: &mut [R]) -> Vec<R> {
    let d = w.len();
    let mut rstd = Vec::with_capacity(x.len() / d);
    for (xr, yr) in x.chunks_exact(d).zip(y.chunks_exact_mut(d)) {
        let ss = xr.iter().fold(R::ZERO, |s, &v| s + v * v);
        let r = R::ONE / (ss / R::from_f64(d as f64) + R::from_f64(eps as f64)).sqrt();
        for ((o, &v), &wv) in yr.iter_mut().zip(xr).zip(w) {
            *o = v * r * wv;
        }
        rstd.push(r);
    }
    rstd
}

/// Backward of [`rms_norm_fwd`]: `dx` is overwritten (or added to with `accumulate`),
/// `dw` (when the weight trains) accumulates.
pub fn rms_norm_bwd<R: Real>(
    x: &[R],
    w: &[R],
    rstd: &[R],
    dy: &[R],
    dx: &mut [R],
    dw: Option<&mut [R]>,
    accumulate: bool,
) {
    let d = w.len();
    let inv_d = R::ONE / R::from_f64(d as f64);
    for (((xr, dyr), dxr), &r) in x
        .chunks_exact(d)
        .zip(dy.chunks_exact(d))
        .zip(dx.chunks_exact_mut(d))
        .zip(rstd)
    {
        let s = xr
            .iter()
            .zip(dyr)
            .zip(w)
            .fold(R::ZERO, |s, ((&xv, &g), &wv)| s + g * wv * xv);
        let c = r * r * r * s * inv_d;
        for (((o, &xv), &g), &wv) in dxr.iter_mut().zip(xr).zip(dyr).zip(w) {
            let v = r * g * wv - xv * c;
            if accumulate {
                *o += v;
            } else {
                *o = v;
            }
        }
    }
    if let Some(dw) = dw {
        for ((xr, dyr), &r) in x.chunks_exact(d).zip(dy.chunks_exact(d)).zip(rstd) {
            for ((o, &xv), &g) in dw.iter_mut().zip(xr).zip(dyr) {
                *o += g * xv * r;
            }
        }
    }
}

const SQRT_2_OVER_PI: f64 = 0.797_884_560_802_865_4;
const GELU_C: f64 = 0.044_715;

/// `act(g)` and `act'(g)`.
#[inline]
fn act_and_slope<R: Real>(act: Activation, g: R) -> (R, R) {
    match act {
        Activation::Silu => {
            let s = R::ONE / (R::ONE + (-g).exp());
            (g * s, s * (R::ONE + g * (R::ONE - s)))
        }
        Activation::GeluTanh => {
            let (c, k) = (R::from_f64(SQRT_2_OVER_PI), R::from_f64(GELU_C));
            let half = R::from_f64(0.5);
            let t = (c * (g + k * g * g * g)).tanh();
            let slope = half * (R::ONE + t)
                + half * g * (R::ONE - t * t) * c * (R::ONE + R::from_f64(3.0) * k * g * g);
            (half * g * (R::ONE + t), slope)
        }
    }
}

/// `out = act(gate) · up`.
pub fn gated_fwd<R: Real>(act: Activation, gate: &[R], up: &[R], out: &mut [R]) {
    for ((o, &g), &u) in out.iter_mut().zip(gate).zip(up) {
        *o = act_and_slope(act, g).0 * u;
    }
}

/// Backward of [`gated_fwd`]: the gradients of `gate` and `up`.
pub fn gated_bwd<R: Real>(
    act: Activation,
    gate: &[R],
    up: &[R],
    dout: &[R],
    dgate: &mut [R],
    dup: &mut [R],
) {
    for i in 0..dout.len() {
        let (a, slope) = act_and_slope(act, gate[i]);
        dup[i] = dout[i] * a;
        dgate[i] = dout[i] * up[i] * slope;
    }
}

/// Rotates each `head_dim`-long head of one token by the given angles (`cos`, `sin`
/// per pair); `inverse` rotates the other way, which is the backward pass.
pub fn rope_rotate<R: Real>(
    style: RopeStyle,
    row: &mut [R],
    head_dim: usize,
    (cos, sin): (&[f32], &[f32]),
    inverse: bool,
) {
    let n_rot = cos.len() * 2;
    for head in row.chunks_exact_mut(head_dim) {
        for (i, (&c, &s)) in cos.iter().zip(sin).enumerate() {
            let (c, s) = (R::from_f64(c as f64), R::from_f64(s as f64));
            let s = if inverse { -s } else { s };
            let (ia, ib) = match style {
                RopeStyle::Adjacent => (2 * i, 2 * i + 1),
                RopeStyle::Neox => (i, i + n_rot / 2),
            };
            let (a, b) = (head[ia], head[ib]);
            head[ia] = a * c - b * s;
            head[ib] = a * s + b * c;
        }
    }
}

/// `cap · tanh(z / cap)` in place.
pub fn softcap_fwd<R: Real>(z: &mut [R], cap: f32) {
    let cap = R::from_f64(cap as f64);
    for v in z {
        *v = cap * (*v / cap).tanh();
    }
}

/// Multiplies `dz` by the soft-cap's slope, given its outputs `y`.
pub fn softcap_bwd<R: Real>(y: &[R], dz: &mut [R], cap: f32) {
    let cap = R::from_f64(cap as f64);
    for (g, &v) in dz.iter_mut().zip(y) {
        let t = v / cap;
        *g *= R::ONE - t * t;
    }
}
