//! AdamW (decoupled weight decay, as `torch.optim.AdamW`), global-norm gradient
//! clipping (as `clip_grad_norm_`) and a warm-up + cosine learning-rate schedule.

use crate::model::Grads;
use crate::params::Params;

#[derive(Clone, Debug)]
pub struct AdamConfig {
    pub lr: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    /// Applied to matrices only (norm weights and biases are not decayed).
    pub weight_decay: f32,
    /// Global gradient-norm limit; 0 for none.
    pub clip: f32,
    pub warmup: usize,
    pub total_steps: usize,
    /// Floor of the cosine schedule, as a fraction of `lr`.
    pub min_lr_ratio: f32,
}

impl Default for AdamConfig {
    fn default() -> Self {
        AdamConfig {
            lr: 1e-4,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
            clip: 1.0,
            warmup: 0,
            total_steps: 0,
            min_lr_ratio: 0.1,
        }
    }
}

impl AdamConfig {
    /// The learning rate of step `step` (0-based): linear warm-up over `warmup` steps,
    /// then a cosine from `lr` down to `lr · min_lr_ratio` at `total_steps` (constant
    /// when `total_steps` is 0).
    pub fn lr_at(&self, step: usize) -> f32 {
        if step < self.warmup {
            return self.lr * (step + 1) as f32 / self.warmup as f32;
        }
        if self.total_steps <= self.warmup {
            return self.lr;
        }
        let t = (step - self.warmup) as f64 / (self.total_steps - self.warmup) as f64;
        let cos = 0.5 * (1.0 + (std::f64::consts::PI * t.min(1.0)).cos());
        let min = self.min_lr_ratio as f64;
        (self.lr as f64 * (min + (1.0 - min) * cos)) as f32
    }
}

/// First and second moments of the trainable tensors, and the steps taken.
#[derive(Clone, Debug, PartialEq)]
pub struct AdamState {
    pub step: usize,
    pub m: Vec<Vec<f32>>,
    pub v: Vec<Vec<f32>>,
}

impl AdamState {
    pub fn new(grads: &Grads) -> AdamState {
        let zeros = || grads.g.iter().map(|g| vec![0f32; g.len()]).collect();
        AdamState {
            step: 0,
            m: zeros(),
            v: zeros(),
        }
    }
}

/// Scales the gradients so that their global L2 norm is at most `max`; returns the norm
/// before clipping.
pub fn clip_grad_norm(grads: &mut Grads, max: f32) -> f64 {
    let norm = grads
        .g
        .iter()
        .flatten()
        .map(|&v| (v as f64) * (v as f64))
        .sum::<f64>()
        .sqrt();
    if max > 0.0 && norm > max as f64 {
        let s = (max as f64 / (norm + 1e-6)) as f32;
        grads.g.iter_mut().flatten().for_each(|v| *v *= s);
    }
    norm
}

/// One AdamW update of every trainable tensor with learning rate `lr`.
pub fn adamw_step(p: &mut Params, grads: &Grads, st: &mut AdamState, cfg: &AdamConfig, lr: f32) {
    st.step += 1;
    let t = st.step as i32;
    let bc1 = 1.0 - (cfg.beta1 as f64).powi(t);
    let bc2 = 1.0 - (cfg.beta2 as f64).powi(t);
    let step_size = (lr as f64 / bc1) as f32;
    let bc2_sqrt = bc2.sqrt() as f32;
    for (i, g) in grads.g.iter().enumerate() {
        if g.is_empty() {
            continue;
        }
        let tensor = &mut p.tensors[i];
        let decay = if tensor.rows > 1 {
            cfg.weight_decay
        } else {
            0.0
        };
        let (m, v) = (&mut st.m[i], &mut st.v[i]);
        for j in 0..g.len() {
            let w = &mut tensor.data[j];
            *w *= 1.0 - lr * decay;
            m[j] = cfg.beta1 * m[j] + (1.0 - cfg.beta1) * g[j];
            v[j] = cfg.beta2 * v[j] + (1.0 - cfg.beta2) * g[j] * g[j];
            let denom = v[j].sqrt() / bc2_sqrt + cfg.eps;
            *w -= step_size * m[j] / denom;
        }
    }
}
