//! Every backward operation against central finite differences in f64 on random
//! inputs: the f64 instantiation to 1e-6, the f32 one (what training runs) to 1e-3,
//! both as relative errors of the whole gradient vector. The scalar checked is
//! `Σ c·out` for random `c`, so `c` is the output gradient.

use mote_model::spec::{Activation, RopeStyle};
use mote_train::attention::{attention_bwd, attention_fwd, AttnShape};
use mote_train::gemm::{matmul_nn, matmul_nt, matmul_tn_acc};
use mote_train::ops::{
    gated_bwd, gated_fwd, rms_norm_bwd, rms_norm_fwd, rope_rotate, softcap_bwd, softcap_fwd,
};
use mote_train::{Real, Rng};

/// An operation with inputs `ins`, its forward pass and its backward pass.
trait Op {
    fn fwd<R: Real>(&self, ins: &[Vec<R>]) -> Vec<R>;
    fn bwd<R: Real>(&self, ins: &[Vec<R>], dout: &[R]) -> Vec<Vec<R>>;
}

fn to<R: Real>(v: &[f64]) -> Vec<R> {
    v.iter().map(|&x| R::from_f64(x)).collect()
}

fn back<R: Real>(v: &[R]) -> Vec<f64> {
    v.iter().map(|x| x.to_f64()).collect()
}

/// `‖a − b‖ / ‖b‖`.
fn rel_err(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    let num: f64 = a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum();
    let den: f64 = b.iter().map(|y| y * y).sum();
    (num / den.max(1e-300)).sqrt()
}

fn analytic<R: Real, O: Op>(op: &O, ins: &[Vec<f64>], c: &[f64]) -> Vec<Vec<f64>> {
    let ins_r: Vec<Vec<R>> = ins.iter().map(|v| to(v)).collect();
    op.bwd(&ins_r, &to::<R>(c))
        .iter()
        .map(|g| back(g))
        .collect()
}

fn gradcheck<O: Op>(name: &str, op: &O, ins: Vec<Vec<f64>>, seed: u64) {
    let mut rng = Rng::new(seed);
    let n_out = op.fwd(&ins).len();
    let c: Vec<f64> = (0..n_out).map(|_| rng.normal()).collect();
    let g64 = analytic::<f64, O>(op, &ins, &c);
    let g32 = analytic::<f32, O>(op, &ins, &c);
    let h = 1e-6;
    for (a, input) in ins.iter().enumerate() {
        let mut xs = ins.clone();
        let fd: Vec<f64> = (0..input.len())
            .map(|i| {
                let orig = xs[a][i];
                xs[a][i] = orig + h;
                let up: f64 = op.fwd(&xs).iter().zip(&c).map(|(o, w)| o * w).sum();
                xs[a][i] = orig - h;
                let down: f64 = op.fwd(&xs).iter().zip(&c).map(|(o, w)| o * w).sum();
                xs[a][i] = orig;
                (up - down) / (2.0 * h)
            })
            .collect();
        let (e64, e32) = (rel_err(&g64[a], &fd), rel_err(&g32[a], &fd));
        eprintln!("{name} input {a}: f64 {e64:.2e}, f32 {e32:.2e}");
        assert!(
            e64 <= 1e-6,
            "{name} input {a}: f64 relative error {e64:.3e}"
        );
        assert!(
            e32 <= 1e-3,
            "{name} input {a}: f32 relative error {e32:.3e}"
        );
    }
}

fn randn(rng: &mut Rng, n: usize) -> Vec<f64> {
    (0..n).map(|_| rng.normal()).collect()
}

struct RmsNorm {
    eps: f32,
}
impl Op for RmsNorm {
    fn fwd<R: Real>(&self, ins: &[Vec<R>]) -> Vec<R> {
        let mut y = vec![R::ZERO; ins[0].len()];
        rms_norm_fwd(&ins[0], &ins[1], self.eps, &mut y);
        y
    }
    fn bwd<R: Real>(&self, ins: &[Vec<R>], dout: &[R]) -> Vec<Vec<R>> {
        let (x, w) = (&ins[0], &ins[1]);
        let mut y = vec![R::ZERO; x.len()];
        let r = rms_norm_fwd(x, w, self.eps, &mut y);
        let (mut dx, mut dw) = (vec![R::ZERO; x.len()], vec![R::ZERO; w.len()]);
        rms_norm_bwd(x, w, &r, dout, &mut dx, Some(&mut dw), false);
        vec![dx, dw]
    }
}

#[test]
fn rms_norm() {
    let mut rng = Rng::new(1);
    // Rows of 16 (hidden states) and the per-head q/k norm shape (rows of the head).
    let ins = vec![randn(&mut rng, 5 * 16), randn(&mut rng, 16)];
    gradcheck("rms_norm", &RmsNorm { eps: 1e-5 }, ins, 2);
}

struct Gated(Activation);
impl Op for Gated {
    fn fwd<R: Real>(&self, ins: &[Vec<R>]) -> Vec<R> {
        let mut y = vec![R::ZERO; ins[0].len()];
        gated_fwd(self.0, &ins[0], &ins[1], &mut y);
        y
    }
    fn bwd<R: Real>(&self, ins: &[Vec<R>], dout: &[R]) -> Vec<Vec<R>> {
        let n = ins[0].len();
        let (mut dg, mut du) = (vec![R::ZERO; n], vec![R::ZERO; n]);
        gated_bwd(self.0, &ins[0], &ins[1], dout, &mut dg, &mut du);
        vec![dg, du]
    }
}

#[test]
fn swiglu_and_geglu() {
    let mut rng = Rng::new(3);
    for act in [Activation::Silu, Activation::GeluTanh] {
        let ins = vec![
            randn(&mut rng, 40).iter().map(|v| 3.0 * v).collect(),
            randn(&mut rng, 40),
        ];
        gradcheck(&format!("{act:?}"), &Gated(act), ins, 4);
    }
}

struct Rope {
    style: RopeStyle,
    head_dim: usize,
    cos: Vec<f32>,
    sin: Vec<f32>,
}
impl Op for Rope {
    fn fwd<R: Real>(&self, ins: &[Vec<R>]) -> Vec<R> {
        let mut y = ins[0].clone();
        rope_rotate(
            self.style,
            &mut y,
            self.head_dim,
            (&self.cos, &self.sin),
            false,
        );
        y
    }
    fn bwd<R: Real>(&self, _ins: &[Vec<R>], dout: &[R]) -> Vec<Vec<R>> {
        let mut d = dout.to_vec();
        rope_rotate(
            self.style,
            &mut d,
            self.head_dim,
            (&self.cos, &self.sin),
            true,
        );
        vec![d]
    }
}

#[test]
fn rope() {
    let mut rng = Rng::new(5);
    // n_rot 6 of a head of 8: the last two dimensions pass through.
    let angles: Vec<f32> = (0..3).map(|i| 0.7 + i as f32).collect();
    for style in [RopeStyle::Adjacent, RopeStyle::Neox] {
        let op = Rope {
            style,
            head_dim: 8,
            cos: angles.iter().map(|a| a.cos()).collect(),
            sin: angles.iter().map(|a| a.sin()).collect(),
        };
        gradcheck(
            &format!("rope {style:?}"),
            &op,
            vec![randn(&mut rng, 16)],
            6,
        );
    }
}

struct Softcap(f32);
impl Op for Softcap {
    fn fwd<R: Real>(&self, ins: &[Vec<R>]) -> Vec<R> {
        let mut y = ins[0].clone();
        softcap_fwd(&mut y, self.0);
        y
    }
    fn bwd<R: Real>(&self, ins: &[Vec<R>], dout: &[R]) -> Vec<Vec<R>> {
        let y = self.fwd(ins);
        let mut d = dout.to_vec();
        softcap_bwd(&y, &mut d, self.0);
        vec![d]
    }
}

#[test]
fn softcap() {
    let mut rng = Rng::new(7);
    let x = randn(&mut rng, 30).iter().map(|v| 20.0 * v).collect();
    gradcheck("softcap", &Softcap(30.0), vec![x], 8);
}

/// `y = x·Wᵀ` through the three products of a linear layer.
struct Linear {
    n: usize,
    d_in: usize,
    d_out: usize,
}
impl Op for Linear {
    fn fwd<R: Real>(&self, ins: &[Vec<R>]) -> Vec<R> {
        let mut y = vec![R::ZERO; self.n * self.d_out];
        matmul_nt(
            &ins[0],
            &ins[1],
            (self.n, self.d_out, self.d_in),
            &mut y,
            false,
        );
        y
    }
    fn bwd<R: Real>(&self, ins: &[Vec<R>], dout: &[R]) -> Vec<Vec<R>> {
        let mut dx = vec![R::ZERO; self.n * self.d_in];
        matmul_nn(
            dout,
            &ins[1],
            (self.n, self.d_in, self.d_out),
            &mut dx,
            false,
        );
        let mut dw = vec![R::ZERO; self.d_out * self.d_in];
        matmul_tn_acc(dout, &ins[0], (self.d_out, self.d_in, self.n), &mut dw);
        vec![dx, dw]
    }
}

#[test]
fn linear() {
    let mut rng = Rng::new(9);
    let op = Linear {
        n: 7,
        d_in: 13,
        d_out: 9,
    };
    let ins = vec![randn(&mut rng, 7 * 13), randn(&mut rng, 9 * 13)];
    gradcheck("linear", &op, ins, 10);
}

struct Attn(AttnShape);
impl Op for Attn {
    fn fwd<R: Real>(&self, ins: &[Vec<R>]) -> Vec<R> {
        let s = &self.0;
        let n = s.n_seq * s.seq_len;
        let mut out = vec![R::ZERO; n * s.n_head * s.head_dim_v];
        let mut p = vec![R::ZERO; s.probs_len()];
        attention_fwd(s, &ins[0], &ins[1], &ins[2], &mut out, &mut p);
        out
    }
    fn bwd<R: Real>(&self, ins: &[Vec<R>], dout: &[R]) -> Vec<Vec<R>> {
        let s = &self.0;
        let n = s.n_seq * s.seq_len;
        let mut out = vec![R::ZERO; n * s.n_head * s.head_dim_v];
        let mut p = vec![R::ZERO; s.probs_len()];
        attention_fwd(s, &ins[0], &ins[1], &ins[2], &mut out, &mut p);
        let mut d: Vec<Vec<R>> = ins.iter().map(|v| vec![R::ZERO; v.len()]).collect();
        let [dq, dk, dv] = &mut d[..] else {
            unreachable!()
        };
        attention_bwd(s, &ins[0], &ins[1], &ins[2], &p, dout, dq, dk, dv);
        d
    }
}

#[test]
fn grouped_query_attention_causal_and_windowed() {
    let mut rng = Rng::new(11);
    for window in [None, Some(3)] {
        let s = AttnShape {
            n_seq: 2,
            seq_len: 6,
            n_head: 4,
            n_head_kv: 2,
            head_dim_k: 4,
            head_dim_v: 3,
            scale: 0.5,
            window,
        };
        let n = s.n_seq * s.seq_len;
        let ins = vec![
            randn(&mut rng, n * s.n_head * s.head_dim_k),
            randn(&mut rng, n * s.n_head_kv * s.head_dim_k),
            randn(&mut rng, n * s.n_head_kv * s.head_dim_v),
        ];
        gradcheck(&format!("attention window {window:?}"), &Attn(s), ins, 12);
    }
}
