//! The fused LM-head loss (cross-entropy, tempered KL to a teacher, their mix, soft-cap,
//! output bias, several chunks of positions) against an f64 reference written here
//! directly from the definitions, and its gradients against central finite differences
//! of that reference.

use mote_train::loss::{head_loss, LossSpec, Teacher, IGNORE};
use mote_train::model::Grads;
use mote_train::{Params, Rng, Tensor, TrainError};

const V: usize = 37;
const D: usize = 6;
const N: usize = 11;

struct Fixed(Vec<f32>);
impl Teacher for Fixed {
    fn logits(&mut self, rows: std::ops::Range<usize>, out: &mut [f32]) -> Result<(), TrainError> {
        out.copy_from_slice(&self.0[rows.start * V..rows.end * V]);
        Ok(())
    }
}

struct Case {
    alpha: f64,
    tau: f64,
    cap: Option<f64>,
}

fn log_softmax(z: &[f64]) -> Vec<f64> {
    let mx = z.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let lse = mx + z.iter().map(|v| (v - mx).exp()).sum::<f64>().ln();
    z.iter().map(|v| v - lse).collect()
}

/// The loss in f64 from hidden states `h`, unembedding `w` and bias `b`.
fn reference(c: &Case, h: &[f64], w: &[f64], b: &[f64], labels: &[u32], teacher: &[f64]) -> f64 {
    let (mut ce, mut kl, mut nl) = (0.0, 0.0, 0usize);
    for i in 0..N {
        let mut z: Vec<f64> = (0..V)
            .map(|v| (0..D).map(|k| h[i * D + k] * w[v * D + k]).sum::<f64>() + b[v])
            .collect();
        if let Some(cap) = c.cap {
            z.iter_mut().for_each(|v| *v = cap * (*v / cap).tanh());
        }
        if labels[i] != IGNORE {
            ce -= log_softmax(&z)[labels[i] as usize];
            nl += 1;
        }
        let zs: Vec<f64> = z.iter().map(|v| v / c.tau).collect();
        let zt: Vec<f64> = teacher[i * V..(i + 1) * V]
            .iter()
            .map(|v| v / c.tau)
            .collect();
        let (ls, lt) = (log_softmax(&zs), log_softmax(&zt));
        kl += (0..V).map(|v| lt[v].exp() * (lt[v] - ls[v])).sum::<f64>();
    }
    c.alpha * ce / nl as f64 + (1.0 - c.alpha) * c.tau * c.tau * kl / N as f64
}

fn numeric(x: &[f64], f: &dyn Fn(&[f64]) -> f64) -> Vec<f64> {
    let h = 1e-6;
    let mut xp = x.to_vec();
    (0..x.len())
        .map(|i| {
            let o = xp[i];
            xp[i] = o + h;
            let up = f(&xp);
            xp[i] = o - h;
            let down = f(&xp);
            xp[i] = o;
            (up - down) / (2.0 * h)
        })
        .collect()
}

fn rel_err(a: &[f32], b: &[f64]) -> f64 {
    let num: f64 = a.iter().zip(b).map(|(x, y)| (*x as f64 - y).powi(2)).sum();
    let den: f64 = b.iter().map(|y| y * y).sum();
    (num / den).sqrt()
}

#[test]
fn fused_head_loss_matches_the_definition() {
    let mut rng = Rng::new(21);
    let mut r = |n: usize, s: f64| -> Vec<f64> { (0..n).map(|_| s * rng.normal()).collect() };
    let (h, w, b, teacher) = (r(N * D, 1.0), r(V * D, 1.0), r(V, 0.3), r(N * V, 2.0));
    let mut labels: Vec<u32> = (0..N).map(|i| ((i * 7 + 3) % V) as u32).collect();
    labels[4] = IGNORE;
    let f32s = |v: &[f64]| v.iter().map(|&x| x as f32).collect::<Vec<f32>>();
    let params = Params {
        tensors: vec![
            Tensor {
                name: "output.weight".into(),
                rows: V,
                cols: D,
                data: f32s(&w),
            },
            Tensor {
                name: "output.bias".into(),
                rows: 1,
                cols: V,
                data: f32s(&b),
            },
        ],
        token_embd: 0,
        output: 0,
        output_norm: 0,
        output_bias: Some(1),
        layers: Vec::new(),
    };
    for c in [
        Case {
            alpha: 1.0,
            tau: 1.0,
            cap: None,
        },
        Case {
            alpha: 0.0,
            tau: 2.0,
            cap: None,
        },
        Case {
            alpha: 0.3,
            tau: 1.5,
            cap: Some(4.0),
        },
    ] {
        let mut teach = Fixed(f32s(&teacher));
        let mut g = Grads::new(&params, &[true, true]);
        let mut spec = LossSpec {
            labels: &labels,
            teacher: (c.alpha < 1.0).then_some(&mut teach as &mut dyn Teacher),
            alpha: c.alpha as f32,
            temperature: c.tau as f32,
            softcap: c.cap.map(|v| v as f32),
            chunk: 4,
        };
        let (value, dh) = head_loss(&params, &f32s(&h), &mut spec, Some(&mut g)).unwrap();
        let want = reference(&c, &h, &w, &b, &labels, &teacher);
        assert!(
            (value.loss - want).abs() <= 1e-5 * (1.0 + want.abs()),
            "{} vs {want}",
            value.loss
        );
        let fd_h = numeric(&h, &|x| reference(&c, x, &w, &b, &labels, &teacher));
        let fd_w = numeric(&w, &|x| reference(&c, &h, x, &b, &labels, &teacher));
        let fd_b = numeric(&b, &|x| reference(&c, &h, &w, x, &labels, &teacher));
        let errs = [
            rel_err(&dh, &fd_h),
            rel_err(&g.g[0], &fd_w),
            rel_err(&g.g[1], &fd_b),
        ];
        eprintln!(
            "alpha {} tau {} cap {:?}: loss {:.6}, grad errors {errs:?}",
            c.alpha, c.tau, c.cap, value.loss
        );
        assert!(errs.iter().all(|&e| e <= 1e-3), "{errs:?}");
    }
}
