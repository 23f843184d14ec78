//! Causal grouped-query attention over whole training sequences (every sequence starts
//! at position 0), with an optional sliding window, and its backward pass. The
//! probabilities are kept for the backward pass (`B·H·T·T` values per layer).

use std::sync::Mutex;

use crate::real::Real;

/// Shapes of one layer's attention.
#[derive(Clone, Copy, Debug)]
pub struct AttnShape {
    pub n_seq: usize,
    pub seq_len: usize,
    pub n_head: usize,
    pub n_head_kv: usize,
    pub head_dim_k: usize,
    pub head_dim_v: usize,
    pub scale: f32,
    /// `Some(w)`: position `p` sees keys `p-w+1..=p`.
    pub window: Option<usize>,
}

impl AttnShape {
    fn visible(&self, i: usize) -> std::ops::Range<usize> {
        let lo = match self.window {
            Some(w) => (i + 1).saturating_sub(w),
            None => 0,
        };
        lo..i + 1
    }
    fn group(&self) -> usize {
        self.n_head / self.n_head_kv
    }
    /// Values of the saved probabilities.
    pub fn probs_len(&self) -> usize {
        self.n_seq * self.n_head * self.seq_len * self.seq_len
    }
}

/// Runs `f(seq, kv_head)` for every pair on the pool, collecting what each returns.
fn per_kv_head<T: Send>(s: &AttnShape, f: &(dyn Fn(usize, usize) -> T + Sync)) -> Vec<T> {
    let tasks = s.n_seq * s.n_head_kv;
    let slots: Vec<Mutex<Option<T>>> = (0..tasks).map(|_| Mutex::new(None)).collect();
    let pool = mote_tensor::parallel::global();
    pool.run(tasks, &|t| {
        let r = f(t / s.n_head_kv, t % s.n_head_kv);
        *slots[t].lock().unwrap_or_else(|e| e.into_inner()) = Some(r);
    });
    slots
        .into_iter()
        .filter_map(|m| m.into_inner().unwrap_or_else(|e| e.into_inner()))
        .collect()
}

/// `out = softmax(scale · q·kᵀ + mask) · v` per head; `probs` receives the softmax
/// (`[seq][head][i][j]`).
pub fn attention_fwd<R: Real>(
    s: &AttnShape,
    q: &[R],
    k: &[R],
    v: &[R],
    out: &mut [R],
    probs: &mut [R],
) {
    let (t_len, dk, dv, g) = (s.seq_len, s.head_dim_k, s.head_dim_v, s.group());
    let (qw, kw, vw, ow) = (
        s.n_head * dk,
        s.n_head_kv * dk,
        s.n_head_kv * dv,
        s.n_head * dv,
    );
    let scale = R::from_f64(s.scale as f64);
    // Per (seq, kv head): the probabilities and outputs of its query heads.
    let results = per_kv_head(s, &|b, kh| {
        let mut p_all = vec![R::ZERO; g * t_len * t_len];
        let mut o_all = vec![R::ZERO; g * t_len * dv];
        for hg in 0..g {
            let h = kh * g + hg;
            for i in 0..t_len {
                let qi = &q[(b * t_len + i) * qw + h * dk..][..dk];
                let p = &mut p_all[(hg * t_len + i) * t_len..][..t_len];
                let vis = s.visible(i);
                let mut mx = R::NEG_INFINITY;
                for j in vis.clone() {
                    let kj = &k[(b * t_len + j) * kw + kh * dk..][..dk];
                    p[j] = crate::gemm::dot(qi, kj) * scale;
                    mx = mx.max(p[j]);
                }
                let mut sum = R::ZERO;
                for j in vis.clone() {
                    p[j] = (p[j] - mx).exp();
                    sum += p[j];
                }
                let o = &mut o_all[(hg * t_len + i) * dv..][..dv];
                for j in vis {
                    p[j] = p[j] / sum;
                    let vj = &v[(b * t_len + j) * vw + kh * dv..][..dv];
                    for (ov, &vv) in o.iter_mut().zip(vj) {
                        *ov += p[j] * vv;
                    }
                }
            }
        }
        (p_all, o_all)
    });
    for (t, (p_all, o_all)) in results.into_iter().enumerate() {
        let (b, kh) = (t / s.n_head_kv, t % s.n_head_kv);
        for hg in 0..g {
            let h = kh * g + hg;
            let dst = (b * s.n_head + h) * t_len * t_len;
            probs[dst..dst + t_len * t_len]
                .copy_from_slice(&p_all[hg * t_len * t_len..][..t_len * t_len]);
            for i in 0..t_len {
                out[(b * t_len + i) * ow + h * dv..][..dv]
                    .copy_from_slice(&o_all[(hg * t_len + i) * dv..][..dv]);
            }
        }
    }
}

/// Gradients of `q`, `k` and `v` from the gradient of the output (overwritten).
#[allow(clippy::too_many_arguments)]
pub fn attention_bwd<R: Real>(
    s: &AttnShape,
    q: &[R],
    k: &[R],
    v: &[R],
    probs: &[R],
    dout: &[R],
    dq: &mut [R],
    dk: &mut [R],
    dv: &mut [R],
) {
    let (t_len, hk, hv, g) = (s.seq_len, s.head_dim_k, s.head_dim_v, s.group());
    let (qw, kw, vw, ow) = (
        s.n_head * hk,
        s.n_head_kv * hk,
        s.n_head_kv * hv,
        s.n_head * hv,
    );
    let scale = R::from_f64(s.scale as f64);
    let results = per_kv_head(s, &|b, kh| {
        let mut dq_l = vec![R::ZERO; g * t_len * hk];
        let mut dk_l = vec![R::ZERO; t_len * hk];
        let mut dv_l = vec![R::ZERO; t_len * hv];
        let mut ds = vec![R::ZERO; t_len];
        for hg in 0..g {
            let h = kh * g + hg;
            let p_h = &probs[(b * s.n_head + h) * t_len * t_len..][..t_len * t_len];
            for i in 0..t_len {
                let p = &p_h[i * t_len..][..t_len];
                let doi = &dout[(b * t_len + i) * ow + h * hv..][..hv];
                let vis = s.visible(i);
                // dP_ij = dO_i · v_j; dS = P ⊙ (dP − Σ_j P_ij dP_ij).
                let mut inner = R::ZERO;
                for j in vis.clone() {
                    let vj = &v[(b * t_len + j) * vw + kh * hv..][..hv];
                    ds[j] = crate::gemm::dot(doi, vj);
                    inner += p[j] * ds[j];
                    let dvj = &mut dv_l[j * hv..][..hv];
                    for (o, &d) in dvj.iter_mut().zip(doi) {
                        *o += p[j] * d;
                    }
                }
                let qi = &q[(b * t_len + i) * qw + h * hk..][..hk];
                let dqi = &mut dq_l[(hg * t_len + i) * hk..][..hk];
                for j in vis {
                    let dsj = p[j] * (ds[j] - inner) * scale;
                    let kj = &k[(b * t_len + j) * kw + kh * hk..][..hk];
                    for (o, &kv) in dqi.iter_mut().zip(kj) {
                        *o += dsj * kv;
                    }
                    let dkj = &mut dk_l[j * hk..][..hk];
                    for (o, &qv) in dkj.iter_mut().zip(qi) {
                        *o += dsj * qv;
                    }
                }
            }
        }
        (dq_l, dk_l, dv_l)
    });
    for (t, (dq_l, dk_l, dv_l)) in results.into_iter().enumerate() {
        let (b, kh) = (t / s.n_head_kv, t % s.n_head_kv);
        for i in 0..t_len {
            let row = b * t_len + i;
            for hg in 0..g {
                let h = kh * g + hg;
                dq[row * qw + h * hk..][..hk].copy_from_slice(&dq_l[(hg * t_len + i) * hk..][..hk]);
            }
            dk[row * kw + kh * hk..][..hk].copy_from_slice(&dk_l[i * hk..][..hk]);
            dv[row * vw + kh * hv..][..hv].copy_from_slice(&dv_l[i * hv..][..hv]);
        }
    }
}
