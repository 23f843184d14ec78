//! The generic decoder of `mote-model` (same spec, same config, same RoPE angles) in
//! f32 with every activation the backward pass needs kept on a tape, and that backward
//! pass. Weight products are the GEMMs of [`crate::gemm`].

use mote_model::spec::ArchSpec;
use mote_model::{Model, ModelConfig, RopeTable};

use crate::attention::{attention_bwd, attention_fwd, AttnShape};
use crate::gemm::{matmul_nn, matmul_nt, matmul_tn_acc};
use crate::ops::{gated_bwd, gated_fwd, rms_norm_bwd, rms_norm_fwd, rope_rotate};
use crate::params::{LayerIdx, Params};
use crate::TrainError;

/// The architecture and the per-layer RoPE angles of positions `0..seq_len`.
pub struct Network {
    pub spec: &'static ArchSpec,
    pub cfg: ModelConfig,
    pub seq_len: usize,
    ropes: Vec<RopeTable>,
}

/// What one forward pass keeps of one block.
#[derive(Default)]
struct LayerTape {
    x_in: Vec<f32>,
    r1: Vec<f32>,
    h1: Vec<f32>,
    q_raw: Vec<f32>,
    rq: Vec<f32>,
    k_raw: Vec<f32>,
    rk: Vec<f32>,
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    probs: Vec<f32>,
    attn: Vec<f32>,
    ao_raw: Vec<f32>,
    ra: Vec<f32>,
    x_mid: Vec<f32>,
    r2: Vec<f32>,
    h2: Vec<f32>,
    gate: Vec<f32>,
    up: Vec<f32>,
    act: Vec<f32>,
    fo_raw: Vec<f32>,
    rf: Vec<f32>,
}

/// Activations of a forward pass over `n_seq` sequences of `seq_len` tokens.
pub struct Tape {
    pub tokens: Vec<u32>,
    pub n_seq: usize,
    layers: Vec<LayerTape>,
    x_final: Vec<f32>,
    r_final: Vec<f32>,
    /// The final-normed hidden states, input of the LM head (`n × n_embd`).
    pub hidden: Vec<f32>,
}

impl Tape {
    /// Bytes of activations held.
    pub fn bytes(&self) -> usize {
        let l: usize = self
            .layers
            .iter()
            .map(|t| {
                [
                    &t.x_in, &t.r1, &t.h1, &t.q_raw, &t.rq, &t.k_raw, &t.rk, &t.q, &t.k, &t.v,
                    &t.probs, &t.attn, &t.ao_raw, &t.ra, &t.x_mid, &t.r2, &t.h2, &t.gate, &t.up,
                    &t.act, &t.fo_raw, &t.rf,
                ]
                .iter()
                .map(|v| v.len())
                .sum::<usize>()
            })
            .sum();
        4 * (l + self.x_final.len() + self.r_final.len() + self.hidden.len())
    }
}

/// Per-tensor gradients; an empty vector marks a frozen tensor.
pub struct Grads {
    pub g: Vec<Vec<f32>>,
}

impl Grads {
    /// Zero gradients for the tensors `trainable` selects.
    pub fn new(p: &Params, trainable: &[bool]) -> Grads {
        Grads {
            g: p.tensors
                .iter()
                .zip(trainable)
                .map(|(t, &on)| {
                    if on {
                        vec![0.0; t.data.len()]
                    } else {
                        Vec::new()
                    }
                })
                .collect(),
        }
    }
    pub fn zero(&mut self) {
        self.g.iter_mut().for_each(|g| g.fill(0.0));
    }
    fn get(&mut self, i: usize) -> Option<&mut [f32]> {
        let g = &mut self.g[i];
        (!g.is_empty()).then_some(&mut g[..])
    }
    fn opt(&mut self, i: Option<usize>) -> Option<&mut [f32]> {
        i.and_then(|i| self.get(i))
    }
    pub fn on(&self, i: usize) -> bool {
        !self.g[i].is_empty()
    }
}

fn add_bias(x: &mut [f32], b: Option<&[f32]>) {
    if let Some(b) = b {
        for row in x.chunks_exact_mut(b.len()) {
            row.iter_mut().zip(b).for_each(|(v, bv)| *v += bv);
        }
    }
}

fn bias_grad(dy: &[f32], db: Option<&mut [f32]>) {
    if let Some(db) = db {
        let w = db.len();
        for row in dy.chunks_exact(w) {
            db.iter_mut().zip(row).for_each(|(g, v)| *g += v);
        }
    }
}

/// `y = x·Wᵀ` for the tensor `w` (rows = outputs).
fn linear(p: &Params, w: usize, x: &[f32], n: usize) -> Vec<f32> {
    let t = &p.tensors[w];
    let mut y = vec![0f32; n * t.rows];
    matmul_nt(x, &t.data, (n, t.rows, t.cols), &mut y, false);
    y
}

/// Backward of [`linear`]: `dx (+)= dy·W`, `dW += dyᵀ·x` when `w` trains.
fn linear_bwd(p: &Params, g: &mut Grads, w: usize, x: &[f32], dy: &[f32], n: usize) -> Vec<f32> {
    let t = &p.tensors[w];
    let mut dx = vec![0f32; n * t.cols];
    matmul_nn(dy, &t.data, (n, t.cols, t.rows), &mut dx, false);
    if let Some(dw) = g.get(w) {
        matmul_tn_acc(dy, x, (t.rows, t.cols, n), dw);
    }
    dx
}

fn norm_fwd(p: &Params, w: usize, x: &[f32], eps: f32) -> (Vec<f32>, Vec<f32>) {
    let mut y = vec![0f32; x.len()];
    let r = rms_norm_fwd(x, p.data(w), eps, &mut y);
    (y, r)
}

impl Network {
    pub fn new(model: &Model, seq_len: usize) -> Result<Network, TrainError> {
        let cfg = model.config().clone();
        if seq_len == 0 {
            return Err(TrainError::Invalid(
                "the window (-c) must be at least 1 token".into(),
            ));
        }
        let mut ropes = Vec::with_capacity(cfg.n_layer);
        for il in 0..cfg.n_layer {
            let rope = model
                .layer_rope(il)
                .ok_or_else(|| TrainError::Invalid(format!("layer {il} has no RoPE setting")))?;
            ropes.push(rope.table(0..seq_len));
        }
        Ok(Network {
            spec: model.spec(),
            cfg,
            seq_len,
            ropes,
        })
    }

    fn attn_shape(&self, il: usize, n_seq: usize) -> AttnShape {
        let c = &self.cfg;
        AttnShape {
            n_seq,
            seq_len: self.seq_len,
            n_head: c.n_head,
            n_head_kv: c.n_head_kv,
            head_dim_k: c.head_dim_k,
            head_dim_v: c.head_dim_v,
            scale: c.attn_scale,
            window: c.layers[il].window,
        }
    }

    fn rope_rows(&self, il: usize, x: &mut [f32], width: usize, inverse: bool) {
        let t = &self.ropes[il];
        let style = self.spec.rope;
        let dk = self.cfg.head_dim_k;
        for (r, row) in x.chunks_exact_mut(width).enumerate() {
            rope_rotate(style, row, dk, t.angles(r % self.seq_len), inverse);
        }
    }

    fn embed_scale(&self) -> f32 {
        if self.spec.scale_embeddings {
            (self.cfg.n_embd as f32).sqrt()
        } else {
            1.0
        }
    }

    /// Runs `tokens` (`n_seq` sequences of `seq_len`, back to back) and keeps what the
    /// backward pass needs.
    pub fn forward(&self, p: &Params, tokens: &[u32]) -> Result<Tape, TrainError> {
        let c = &self.cfg;
        let (d, n) = (c.n_embd, tokens.len());
        if n == 0 || n % self.seq_len != 0 {
            return Err(TrainError::Invalid(format!(
                "{n} tokens do not make whole sequences of {}",
                self.seq_len
            )));
        }
        let n_seq = n / self.seq_len;
        let emb = p.data(p.token_embd);
        let scale = self.embed_scale();
        let mut x = vec![0f32; n * d];
        for (row, &tok) in x.chunks_exact_mut(d).zip(tokens) {
            let t = tok as usize;
            if t >= c.vocab_size {
                return Err(TrainError::Invalid(format!(
                    "token id {tok} is outside the vocabulary of {} tokens",
                    c.vocab_size
                )));
            }
            row.iter_mut()
                .zip(&emb[t * d..(t + 1) * d])
                .for_each(|(o, &e)| *o = e * scale);
        }
        let mut layers = Vec::with_capacity(c.n_layer);
        for (il, li) in p.layers.iter().enumerate() {
            let (tape, x_out) = self.layer_fwd(p, il, li, x, n_seq);
            layers.push(tape);
            x = x_out;
        }
        let (hidden, r_final) = norm_fwd(p, p.output_norm, &x, c.rms_eps);
        Ok(Tape {
            tokens: tokens.to_vec(),
            n_seq,
            layers,
            x_final: x,
            r_final,
            hidden,
        })
    }

    fn layer_fwd(
        &self,
        p: &Params,
        il: usize,
        li: &LayerIdx,
        x_in: Vec<f32>,
        n_seq: usize,
    ) -> (LayerTape, Vec<f32>) {
        let c = &self.cfg;
        let n = x_in.len() / c.n_embd;
        let eps = c.rms_eps;
        let mut t = LayerTape::default();
        let (h1, r1) = norm_fwd(p, li.attn_norm, &x_in, eps);
        let mut q = linear(p, li.wq, &h1, n);
        let mut k = linear(p, li.wk, &h1, n);
        let mut v = linear(p, li.wv, &h1, n);
        add_bias(&mut q, li.bq.map(|i| p.data(i)));
        add_bias(&mut k, li.bk.map(|i| p.data(i)));
        add_bias(&mut v, li.bv.map(|i| p.data(i)));
        if let (Some(qn), Some(kn)) = (li.q_norm, li.k_norm) {
            let (qy, rq) = norm_fwd(p, qn, &q, eps);
            let (ky, rk) = norm_fwd(p, kn, &k, eps);
            t.q_raw = std::mem::replace(&mut q, qy);
            t.k_raw = std::mem::replace(&mut k, ky);
            (t.rq, t.rk) = (rq, rk);
        }
        let (qw, kw) = (c.n_head * c.head_dim_k, c.n_head_kv * c.head_dim_k);
        self.rope_rows(il, &mut q, qw, false);
        self.rope_rows(il, &mut k, kw, false);
        let shape = self.attn_shape(il, n_seq);
        let mut attn = vec![0f32; n * c.n_head * c.head_dim_v];
        let mut probs = vec![0f32; shape.probs_len()];
        attention_fwd(&shape, &q, &k, &v, &mut attn, &mut probs);
        let mut ao = linear(p, li.wo, &attn, n);
        add_bias(&mut ao, li.bo.map(|i| p.data(i)));
        if let Some(pn) = li.post_attn_norm {
            let (y, r) = norm_fwd(p, pn, &ao, eps);
            t.ao_raw = std::mem::replace(&mut ao, y);
            t.ra = r;
        }
        let mut x_mid = x_in.clone();
        x_mid.iter_mut().zip(&ao).for_each(|(a, b)| *a += b);
        let (h2, r2) = norm_fwd(p, li.ffn_norm, &x_mid, eps);
        let gate = linear(p, li.ffn_gate, &h2, n);
        let up = linear(p, li.ffn_up, &h2, n);
        let mut act = vec![0f32; gate.len()];
        gated_fwd(self.spec.activation, &gate, &up, &mut act);
        let mut fo = linear(p, li.ffn_down, &act, n);
        if let Some(pn) = li.post_ffn_norm {
            let (y, r) = norm_fwd(p, pn, &fo, eps);
            t.fo_raw = std::mem::replace(&mut fo, y);
            t.rf = r;
        }
        let mut x_out = x_mid.clone();
        x_out.iter_mut().zip(&fo).for_each(|(a, b)| *a += b);
        t.x_in = x_in;
        (t.r1, t.h1, t.q, t.k, t.v, t.probs, t.attn) = (r1, h1, q, k, v, probs, attn);
        (t.x_mid, t.r2, t.h2, t.gate, t.up, t.act) = (x_mid, r2, h2, gate, up, act);
        (t, x_out)
    }

    /// Back-propagates `d_hidden` (the gradient of the LM head's input) through the
    /// blocks into `g`; stops below the lowest block with a trainable tensor unless the
    /// embedding trains.
    pub fn backward(&self, p: &Params, tape: &Tape, d_hidden: &[f32], g: &mut Grads) {
        let c = &self.cfg;
        let d = c.n_embd;
        let mut dx = vec![0f32; d_hidden.len()];
        rms_norm_bwd(
            &tape.x_final,
            p.data(p.output_norm),
            &tape.r_final,
            d_hidden,
            &mut dx,
            g.get(p.output_norm),
            false,
        );
        let embd_trains = g.on(p.token_embd);
        let lowest = (0..p.layers.len())
            .find(|&il| layer_tensors(&p.layers[il]).any(|i| g.on(i)))
            .unwrap_or(p.layers.len());
        let stop = if embd_trains { 0 } else { lowest };
        for il in (stop..p.layers.len()).rev() {
            self.layer_bwd(p, il, &tape.layers[il], &mut dx, tape.n_seq, g);
        }
        if embd_trains {
            let scale = self.embed_scale();
            let ge = &mut g.g[p.token_embd];
            for (row, &tok) in dx.chunks_exact(d).zip(&tape.tokens) {
                let t = tok as usize;
                ge[t * d..(t + 1) * d]
                    .iter_mut()
                    .zip(row)
                    .for_each(|(o, &v)| *o += v * scale);
            }
        }
    }

    fn layer_bwd(
        &self,
        p: &Params,
        il: usize,
        t: &LayerTape,
        dx: &mut [f32],
        n_seq: usize,
        g: &mut Grads,
    ) {
        let c = &self.cfg;
        let li = &p.layers[il];
        let n = dx.len() / c.n_embd;
        let act = self.spec.activation;

        // Feed-forward branch: x_out = x_mid + post_norm(down(act(gate)·up)).
        let d_fo = post_norm_bwd(p, g, li.post_ffn_norm, &t.fo_raw, &t.rf, dx);
        let d_act = linear_bwd(p, g, li.ffn_down, &t.act, &d_fo, n);
        let mut d_gate = vec![0f32; d_act.len()];
        let mut d_up = vec![0f32; d_act.len()];
        gated_bwd(act, &t.gate, &t.up, &d_act, &mut d_gate, &mut d_up);
        let mut dh2 = linear_bwd(p, g, li.ffn_gate, &t.h2, &d_gate, n);
        let dh2_up = linear_bwd(p, g, li.ffn_up, &t.h2, &d_up, n);
        dh2.iter_mut().zip(&dh2_up).for_each(|(a, b)| *a += b);
        let dw = g.get(li.ffn_norm);
        rms_norm_bwd(&t.x_mid, p.data(li.ffn_norm), &t.r2, &dh2, dx, dw, true);

        // Attention branch: x_mid = x_in + post_norm(wo(attn(rope(q), rope(k), v))).
        let d_ao = post_norm_bwd(p, g, li.post_attn_norm, &t.ao_raw, &t.ra, dx);
        bias_grad(&d_ao, g.opt(li.bo));
        let d_attn = linear_bwd(p, g, li.wo, &t.attn, &d_ao, n);
        let (qw, kw, vw) = (
            c.n_head * c.head_dim_k,
            c.n_head_kv * c.head_dim_k,
            c.n_head_kv * c.head_dim_v,
        );
        let mut dq = vec![0f32; n * qw];
        let mut dk = vec![0f32; n * kw];
        let mut dv = vec![0f32; n * vw];
        let shape = self.attn_shape(il, n_seq);
        attention_bwd(
            &shape, &t.q, &t.k, &t.v, &t.probs, &d_attn, &mut dq, &mut dk, &mut dv,
        );
        self.rope_rows(il, &mut dq, qw, true);
        self.rope_rows(il, &mut dk, kw, true);
        if let (Some(qn), Some(kn)) = (li.q_norm, li.k_norm) {
            for (w, raw, r, dy) in [
                (qn, &t.q_raw, &t.rq, &mut dq),
                (kn, &t.k_raw, &t.rk, &mut dk),
            ] {
                let mut d_raw = vec![0f32; dy.len()];
                rms_norm_bwd(raw, p.data(w), r, dy, &mut d_raw, g.get(w), false);
                *dy = d_raw;
            }
        }
        bias_grad(&dq, g.opt(li.bq));
        bias_grad(&dk, g.opt(li.bk));
        bias_grad(&dv, g.opt(li.bv));
        let mut dh1 = linear_bwd(p, g, li.wq, &t.h1, &dq, n);
        for (w, dy) in [(li.wk, &dk), (li.wv, &dv)] {
            let part = linear_bwd(p, g, w, &t.h1, dy, n);
            dh1.iter_mut().zip(&part).for_each(|(a, b)| *a += b);
        }
        let dw = g.get(li.attn_norm);
        rms_norm_bwd(&t.x_in, p.data(li.attn_norm), &t.r1, &dh1, dx, dw, true);
    }
}

/// The gradient before an optional post-norm (`raw` its input, `r` its saved scales).
fn post_norm_bwd(
    p: &Params,
    g: &mut Grads,
    norm: Option<usize>,
    raw: &[f32],
    r: &[f32],
    dy: &[f32],
) -> Vec<f32> {
    match norm {
        Some(w) => {
            let mut d = vec![0f32; dy.len()];
            rms_norm_bwd(raw, p.data(w), r, dy, &mut d, g.get(w), false);
            d
        }
        None => dy.to_vec(),
    }
}

/// Every tensor index of a block.
pub fn layer_tensors(l: &LayerIdx) -> impl Iterator<Item = usize> {
    [
        Some(l.attn_norm),
        Some(l.wq),
        Some(l.wk),
        Some(l.wv),
        l.bq,
        l.bk,
        l.bv,
        Some(l.wo),
        l.bo,
        l.q_norm,
        l.k_norm,
        l.post_attn_norm,
        Some(l.ffn_norm),
        Some(l.ffn_gate),
        Some(l.ffn_up),
        Some(l.ffn_down),
        l.post_ffn_norm,
    ]
    .into_iter()
    .flatten()
}
