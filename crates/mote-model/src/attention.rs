//! Causal multi-head attention over the cache, with grouped K/V heads and an optional
//! sliding window.
//!
//! Memory beyond the inputs is one row of scores (one query against the keys it sees);
//! nothing quadratic in the sequence length is ever materialised.

/// Shapes and settings shared by all queries of one layer.
pub struct AttnParams {
    pub n_head: usize,
    pub n_head_kv: usize,
    pub head_dim_k: usize,
    pub head_dim_v: usize,
    pub scale: f32,
    /// `Some(w)`: a query at position `p` sees keys at `p-w+1..=p`.
    pub window: Option<usize>,
    /// Round queries and attention weights to f16 before their products (llama.cpp's
    /// arithmetic with an F16 cache).
    pub f16_inputs: bool,
}

fn round_f16(x: f32) -> f32 {
    half::f16::from_f32(x).to_f32()
}

/// Computes attention for `n` queries at positions `start..start+n`.
///
/// `q`: `n * n_head * head_dim_k`; `k`/`v`: the layer cache, position-major, holding at
/// least `start + n` positions; `out`: `n * n_head * head_dim_v`.
pub fn attend(
    p: &AttnParams,
    q: &[f32],
    k: &[f32],
    v: &[f32],
    start: usize,
    n: usize,
    out: &mut [f32],
) {
    let (dk, dv) = (p.head_dim_k, p.head_dim_v);
    let k_width = p.n_head_kv * dk;
    let v_width = p.n_head_kv * dv;
    let group = p.n_head / p.n_head_kv;
    let mut scores = Vec::with_capacity(start + n);
    let mut q_round = vec![0f32; dk];

    for t in 0..n {
        let pos = start + t;
        let first = match p.window {
            Some(w) => (pos + 1).saturating_sub(w),
            None => 0,
        };
        for h in 0..p.n_head {
            let kv = h / group;
            let mut qh = &q[(t * p.n_head + h) * dk..][..dk];
            if p.f16_inputs {
                for (r, &v) in q_round.iter_mut().zip(qh) {
                    *r = round_f16(v);
                }
                qh = &q_round;
            }
            scores.clear();
            let mut max = f32::NEG_INFINITY;
            for j in first..=pos {
                let kj = &k[j * k_width + kv * dk..][..dk];
                let s = dot(qh, kj) * p.scale;
                max = max.max(s);
                scores.push(s);
            }
            let mut sum = 0f32;
            for s in scores.iter_mut() {
                *s = (*s - max).exp();
                sum += *s;
            }
            let inv = 1.0 / sum;
            for s in scores.iter_mut() {
                *s *= inv;
                if p.f16_inputs {
                    *s = round_f16(*s);
                }
            }
            let oh = &mut out[(t * p.n_head + h) * dv..][..dv];
            oh.fill(0.0);
            for (j, &w) in (first..=pos).zip(scores.iter()) {
                let vj = &v[j * v_width + kv * dv..][..dv];
                for (o, &x) in oh.iter_mut().zip(vj) {
                    *o += w * x;
                }
            }
        }
    }
}

/// Dot product with eight independent accumulators, so the compiler can vectorise it.
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (ac, ar) = a.split_at(a.len() / 8 * 8);
    let (bc, br) = b.split_at(ac.len());
    for (x, y) in ac.chunks_exact(8).zip(bc.chunks_exact(8)) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    let tail: f32 = ar.iter().zip(br).map(|(x, y)| x * y).sum();
    acc.iter().sum::<f32>() + tail
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(window: Option<usize>) -> AttnParams {
        AttnParams {
            n_head: 2,
            n_head_kv: 1,
            head_dim_k: 2,
            head_dim_v: 1,
            scale: 1.0,
            window,
            f16_inputs: false,
        }
    }

    #[test]
    fn first_token_copies_its_value_and_window_limits() {
        // Three positions, one K/V head shared by two query heads.
        let k = [1.0, 0.0, 0.0, 1.0, 1.0, 1.0];
        let v = [10.0, 20.0, 30.0];
        let q = [0.0, 0.0, 5.0, 5.0];
        let mut out = [0.0; 2];
        attend(&params(None), &q, &k, &v, 0, 1, &mut out);
        assert_eq!(out, [10.0, 10.0]);
        // At position 2 with a window of 1 only the last value is visible.
        attend(&params(Some(1)), &q, &k, &v, 2, 1, &mut out);
        assert_eq!(out, [30.0, 30.0]);
        // Uniform weights without a window: the mean.
        attend(&params(None), &q, &k, &v, 2, 1, &mut out);
        assert!((out[0] - 20.0).abs() < 1e-5);
        assert!(out[1] > 20.0);
    }

    #[test]
    fn dot_matches_naive() {
        let a: Vec<f32> = (0..19).map(|i| i as f32 * 0.5).collect();
        let b: Vec<f32> = (0..19).map(|i| 1.0 - i as f32 * 0.1).collect();
        let naive: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
        assert!((dot(&a, &b) - naive).abs() < 1e-4);
    }
}
