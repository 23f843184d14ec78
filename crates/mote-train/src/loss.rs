//! The LM head fused with its loss: logits are made a chunk of positions at a time
//! (`chunk × vocab` values, never `positions × vocab`), turned into the loss and its
//! gradient in place, and multiplied back into the gradients of the hidden states and
//! of the unembedding before the next chunk. The loss is the mean cross-entropy with
//! the next tokens, the mean forward KL to a teacher at a temperature `τ` (scaled by
//! `τ²`, Hinton's convention), or `α·CE + (1−α)·τ²·KL`.

use std::ops::Range;

use crate::gemm::{matmul_nn, matmul_nt, matmul_tn_acc};
use crate::model::Grads;
use crate::ops::{softcap_bwd, softcap_fwd};
use crate::params::Params;
use crate::TrainError;

/// A label that takes no part in the cross-entropy.
pub const IGNORE: u32 = u32::MAX;

/// Logits of the teacher for rows of the batch.
pub trait Teacher {
    /// Fills `out` (`rows.len() × vocab`) with the teacher's logits at those rows.
    fn logits(&mut self, rows: Range<usize>, out: &mut [f32]) -> Result<(), TrainError>;
}

/// What the loss is made of.
pub struct LossSpec<'a> {
    /// The next token at each position ([`IGNORE`] for none).
    pub labels: &'a [u32],
    pub teacher: Option<&'a mut dyn Teacher>,
    /// Weight of the cross-entropy when there is a teacher (`--alpha`).
    pub alpha: f32,
    pub temperature: f32,
    pub softcap: Option<f32>,
    /// Positions per chunk of logits; 0 picks [`chunk_rows`].
    pub chunk: usize,
}

/// The loss and its parts, means over the positions.
#[derive(Clone, Copy, Debug, Default)]
pub struct LossValue {
    pub loss: f64,
    /// Cross-entropy with the labels (nats per token).
    pub ce: f64,
    /// KL(teacher ‖ student) of the distributions at the spec's temperature (not
    /// multiplied by `τ²`).
    pub kl: f64,
    pub labelled: usize,
    pub positions: usize,
}

/// Rows of logits per chunk: about 8M values, at least 16 rows.
pub fn chunk_rows(vocab: usize) -> usize {
    ((8 << 20) / vocab.max(1)).max(16)
}

/// `log Σ exp(z)` and `softmax(z)` into `p`.
fn log_softmax_into(z: &[f32], scale: f32, p: &mut [f32]) -> f64 {
    let mx = z.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v * scale));
    let mut sum = 0f64;
    for (o, &v) in p.iter_mut().zip(z) {
        let e = (v * scale - mx).exp();
        *o = e;
        sum += e as f64;
    }
    let inv = (1.0 / sum) as f32;
    p.iter_mut().for_each(|v| *v *= inv);
    mx as f64 + sum.ln()
}

/// The loss over `hidden` (`n × n_embd`, final-normed); with `grads`, also the gradient
/// of `hidden` (returned) and of the unembedding and its bias (accumulated).
pub fn head_loss(
    p: &Params,
    hidden: &[f32],
    spec: &mut LossSpec,
    mut grads: Option<&mut Grads>,
) -> Result<(LossValue, Vec<f32>), TrainError> {
    let w = &p.tensors[p.output];
    let (vocab, d) = (w.rows, w.cols);
    let n = hidden.len() / d;
    if spec.labels.len() != n {
        return Err(TrainError::Invalid(format!(
            "{} labels for {n} positions",
            spec.labels.len()
        )));
    }
    let labelled = spec.labels.iter().filter(|&&l| l != IGNORE).count();
    let (w_ce, w_kl) = match spec.teacher {
        Some(_) => (spec.alpha as f64, 1.0 - spec.alpha as f64),
        None => (1.0, 0.0),
    };
    let tau = spec.temperature;
    let bias = p.output_bias.map(|i| p.data(i));
    let mut value = LossValue {
        labelled,
        positions: n,
        ..Default::default()
    };
    let mut dh = vec![0f32; if grads.is_some() { n * d } else { 0 }];
    let rows = if spec.chunk > 0 {
        spec.chunk
    } else {
        chunk_rows(vocab)
    };
    let mut z = Vec::new();
    let mut ps = Vec::new();
    let mut pt = Vec::new();
    let mut tz = Vec::new();
    for r0 in (0..n).step_by(rows) {
        let r1 = (r0 + rows).min(n);
        let m = r1 - r0;
        let h = &hidden[r0 * d..r1 * d];
        z.resize(m * vocab, 0.0);
        matmul_nt(h, &w.data, (m, vocab, d), &mut z, false);
        if let Some(b) = bias {
            z.chunks_exact_mut(vocab)
                .for_each(|row| row.iter_mut().zip(b).for_each(|(v, bv)| *v += bv));
        }
        if let Some(cap) = spec.softcap {
            softcap_fwd(&mut z, cap);
        }
        if w_kl > 0.0 {
            tz.resize(m * vocab, 0.0);
            if let Some(t) = spec.teacher.as_deref_mut() {
                t.logits(r0..r1, &mut tz)?;
            }
        }
        ps.resize(vocab, 0.0);
        pt.resize(vocab, 0.0);
        // Gradient of the (mean) loss with respect to the logits, row by row, in `z`.
        for (i, zr) in z.chunks_exact_mut(vocab).enumerate() {
            let label = spec.labels[r0 + i];
            let mut dz_scale_ce = 0f32;
            if label != IGNORE {
                let l = label as usize;
                if l >= vocab {
                    return Err(TrainError::Invalid(format!(
                        "label {label} is outside the vocabulary of {vocab} tokens"
                    )));
                }
                let lse = log_softmax_into(zr, 1.0, &mut ps);
                value.ce += lse - zr[l] as f64;
                dz_scale_ce = (w_ce / labelled.max(1) as f64) as f32;
            }
            let mut grad_row = vec![0f32; 0];
            if w_kl > 0.0 {
                let lse_s = log_softmax_into(zr, 1.0 / tau, &mut ps);
                let lse_t = log_softmax_into(&tz[i * vocab..(i + 1) * vocab], 1.0 / tau, &mut pt);
                let mut kl = 0f64;
                for ((&a, &b), (&ta, _)) in zr.iter().zip(&tz[i * vocab..]).zip(pt.iter().zip(&ps))
                {
                    if ta > 0.0 {
                        let log_t = (b / tau) as f64 - lse_t;
                        let log_s = (a / tau) as f64 - lse_s;
                        kl += ta as f64 * (log_t - log_s);
                    }
                }
                value.kl += kl;
                // d(τ²·KL)/dz = τ·(p_s − p_t).
                let s = (w_kl * tau as f64 / n as f64) as f32;
                grad_row = ps.iter().zip(&pt).map(|(a, b)| s * (a - b)).collect();
            }
            if grads.is_some() {
                if dz_scale_ce != 0.0 {
                    // `ps` may hold the tempered softmax now; recompute the plain one.
                    log_softmax_into(zr, 1.0, &mut ps);
                }
                let cap = spec.softcap;
                let y = if cap.is_some() {
                    zr.to_vec()
                } else {
                    Vec::new()
                };
                for (j, v) in zr.iter_mut().enumerate() {
                    let mut gz = grad_row.get(j).copied().unwrap_or(0.0);
                    if dz_scale_ce != 0.0 {
                        gz += dz_scale_ce * ps[j];
                    }
                    *v = gz;
                }
                if dz_scale_ce != 0.0 {
                    zr[label as usize] -= dz_scale_ce;
                }
                if let Some(cap) = cap {
                    softcap_bwd(&y, zr, cap);
                }
            }
        }
        if let Some(g) = grads.as_deref_mut() {
            matmul_nn(&z, &w.data, (m, d, vocab), &mut dh[r0 * d..r1 * d], false);
            if let Some(gw) = g.g.get_mut(p.output).filter(|v| !v.is_empty()) {
                matmul_tn_acc(&z, h, (vocab, d, m), gw);
            }
            if let Some(gb) = p
                .output_bias
                .and_then(|i| g.g.get_mut(i))
                .filter(|v| !v.is_empty())
            {
                for row in z.chunks_exact(vocab) {
                    gb.iter_mut().zip(row).for_each(|(a, b)| *a += b);
                }
            }
        }
    }
    value.ce /= labelled.max(1) as f64;
    value.kl /= n.max(1) as f64;
    value.loss = w_ce * value.ce + w_kl * (tau as f64 * tau as f64) * value.kl;
    Ok((value, dh))
}

/// Full logits of every position (`n × vocab`): for tests and small models only.
pub fn logits(p: &Params, hidden: &[f32], softcap: Option<f32>) -> Vec<f32> {
    let w = &p.tensors[p.output];
    let n = hidden.len() / w.cols;
    let mut z = vec![0f32; n * w.rows];
    matmul_nt(hidden, &w.data, (n, w.rows, w.cols), &mut z, false);
    if let Some(b) = p.output_bias.map(|i| p.data(i)) {
        z.chunks_exact_mut(w.rows)
            .for_each(|row| row.iter_mut().zip(b).for_each(|(v, bv)| *v += bv));
    }
    if let Some(cap) = softcap {
        softcap_fwd(&mut z, cap);
    }
    z
}
