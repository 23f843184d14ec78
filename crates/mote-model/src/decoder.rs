//! The generic pre-norm decoder: embeddings, `n_layer` blocks, final norm, unembedding.
//!
//! A call takes a batch of sequences, each with its own cache. Their tokens are
//! concatenated into one activation matrix, so every weight matrix is read once per call
//! whatever the number of sequences; only attention runs per sequence.

use mote_tensor::matrix::{matmul_many, ActScratch, Product};

use crate::attention::{attend, AttnParams, SeqAttn};
use crate::config::ModelConfig;
use crate::ffn::gated_activation;
use crate::norm::rms_norm_rows;
use crate::observer::{notify_layer, MatmulObserver};
use crate::profile::{Phase, Profile};
use crate::rope::{Rope, RopeTable};
use crate::spec::{ArchSpec, AttnScale};
use crate::weights::ModelWeights;
use crate::{BatchItem, ModelError};

/// Everything the forward pass reads; borrowed from the `Model`.
pub struct Decoder<'a> {
    pub spec: &'a ArchSpec,
    pub cfg: &'a ModelConfig,
    pub w: &'a ModelWeights,
    /// The distinct RoPE settings, and which one each layer uses.
    pub ropes: &'a [Rope],
    pub layer_rope: &'a [usize],
    /// Sees the input of every weight product (calibration); `None` in normal runs.
    pub observer: Option<&'a dyn MatmulObserver>,
}

/// Buffers of one forward call, kept by the model between calls so that decoding does
/// not allocate them per token.
#[derive(Default)]
pub struct Workspace {
    x: Vec<f32>,
    h: Vec<f32>,
    delta: Vec<f32>,
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    attn: Vec<f32>,
    gate: Vec<f32>,
    up: Vec<f32>,
    head_in: Vec<f32>,
    acts: ActScratch,
    /// RoPE tables, `ropes.len()` per sequence.
    tables: Vec<RopeTable>,
    profile: Profile,
}

fn add_bias(x: &mut [f32], bias: Option<&Vec<f32>>) {
    if let Some(b) = bias {
        for row in x.chunks_exact_mut(b.len()) {
            for (v, bv) in row.iter_mut().zip(b) {
                *v += bv;
            }
        }
    }
}

fn add_into(x: &mut [f32], y: &[f32]) {
    for (a, b) in x.iter_mut().zip(y) {
        *a += b;
    }
}

/// `buf` resized to `len` values (contents unspecified); keeps its memory.
fn sized(buf: &mut Vec<f32>, len: usize) -> &mut [f32] {
    buf.resize(len, 0.0);
    &mut buf[..len]
}

impl Decoder<'_> {
    /// Checks the inputs, then runs the blocks; on any error every cache is left as it
    /// was.
    pub fn forward_batch(
        &self,
        items: &mut [BatchItem],
        ws: &mut Workspace,
    ) -> Result<Vec<Vec<f32>>, ModelError> {
        let cfg = self.cfg;
        for item in items.iter() {
            if item.tokens.is_empty() {
                return Err(ModelError::Invalid("forward called with no tokens".into()));
            }
            if let Some(&bad) = item.tokens.iter().find(|&&t| t as usize >= cfg.vocab_size) {
                return Err(ModelError::TokenOutOfRange {
                    token: bad,
                    vocab_size: cfg.vocab_size,
                });
            }
            let cache = &item.cache;
            let needed = cache.len() + item.tokens.len();
            if needed > cache.capacity() {
                return Err(ModelError::ContextFull {
                    needed,
                    capacity: cache.capacity(),
                });
            }
            if cache.layers.len() != cfg.n_layer
                || cache.n_head_kv != cfg.n_head_kv
                || cache.head_dim_k != cfg.head_dim_k
                || cache.head_dim_v != cfg.head_dim_v
            {
                return Err(ModelError::Invalid(
                    "the cache was made by a different model".into(),
                ));
            }
        }
        if items.is_empty() {
            return Ok(Vec::new());
        }
        ws.profile.start();
        let result = self.run(items, ws);
        for item in items.iter_mut() {
            match &result {
                Ok(_) => item.cache.commit(item.tokens.len()),
                Err(_) => item.cache.shrink_layers(),
            }
        }
        let tokens = items.iter().map(|i| i.tokens.len()).sum();
        ws.profile.report(tokens, items.len());
        result
    }

    fn run(
        &self,
        items: &mut [BatchItem],
        ws: &mut Workspace,
    ) -> Result<Vec<Vec<f32>>, ModelError> {
        let cfg = self.cfg;
        let d = cfg.n_embd;
        let n: usize = items.iter().map(|i| i.tokens.len()).sum();
        let (dk, dv) = (cfg.head_dim_k, cfg.head_dim_v);
        let (q_width, k_width, v_width) = (cfg.n_head * dk, cfg.n_head_kv * dk, cfg.n_head_kv * dv);
        let Workspace {
            x,
            h,
            delta,
            q,
            k,
            v,
            attn,
            gate,
            up,
            head_in,
            acts,
            tables,
            profile,
        } = ws;
        let prof = profile;

        let x = sized(x, n * d);
        let embed_scale = (d as f32).sqrt();
        let all_tokens = items.iter().flat_map(|i| i.tokens.iter());
        for (row, &tok) in x.chunks_exact_mut(d).zip(all_tokens) {
            self.w.token_embd.dequantize_row(tok as usize, row)?;
            if self.spec.scale_embeddings {
                row.iter_mut().for_each(|v| *v *= embed_scale);
            }
        }
        // RoPE angles of every sequence's positions, once per distinct setting.
        let n_ropes = self.ropes.len();
        tables.resize_with(n_ropes * items.len(), RopeTable::default);
        for (i, item) in items.iter().enumerate() {
            let start = item.cache.len();
            for (r, rope) in self.ropes.iter().enumerate() {
                rope.fill_table(
                    start..start + item.tokens.len(),
                    &mut tables[i * n_ropes + r],
                );
            }
        }
        prof.mark(Phase::Embed);

        let h = sized(h, n * d);
        let delta = sized(delta, n * d);
        let q = sized(q, n * q_width);
        let k = sized(k, n * k_width);
        let v = sized(v, n * v_width);
        let attn = sized(attn, n * cfg.n_head * dv);
        let gate = sized(gate, n * cfg.n_ff);
        let up = sized(up, n * cfg.n_ff);
        // Row r's sequence and token within it, for RoPE on the pool (the same for
        // every layer).
        let mut owner = Vec::with_capacity(n);
        for (i, item) in items.iter().enumerate() {
            owner.extend((0..item.tokens.len()).map(|t| (i, t)));
        }
        let pool = mote_tensor::parallel::global();
        for (il, lw) in self.w.layers.iter().enumerate() {
            let lc = &cfg.layers[il];
            h.copy_from_slice(x);
            rms_norm_rows(h, &lw.attn_norm, cfg.rms_eps);
            prof.mark(Phase::Norm);
            notify_layer(self.observer, il, &["attn_q", "attn_k", "attn_v"], h, n);

            matmul_many(
                &mut [
                    Product {
                        matrix: &lw.wq,
                        y: q,
                    },
                    Product {
                        matrix: &lw.wk,
                        y: k,
                    },
                    Product {
                        matrix: &lw.wv,
                        y: v,
                    },
                ],
                h,
                n,
                acts,
            )?;
            prof.mark(Phase::Qkv);

            add_bias(q, lw.bq.as_ref());
            add_bias(k, lw.bk.as_ref());
            add_bias(v, lw.bv.as_ref());
            if let Some(norm) = &lw.q_norm {
                rms_norm_rows(q, norm, cfg.rms_eps);
            }
            if let Some(norm) = &lw.k_norm {
                rms_norm_rows(k, norm, cfg.rms_eps);
            }
            let ri = self.layer_rope[il];
            let rope = &self.ropes[ri];
            for (x, width) in [(&mut *q, q_width), (&mut *k, k_width)] {
                mote_tensor::parallel::for_rows(&pool, x, width, &|first, rows| {
                    for (j, row) in rows.chunks_exact_mut(width).enumerate() {
                        let (i, t) = owner[first + j];
                        rope.apply(&tables[i * n_ropes + ri], t, row, dk);
                    }
                });
            }
            let mut row = 0;
            for item in items.iter_mut() {
                let len = item.tokens.len();
                item.cache.write(
                    il,
                    &k[row * k_width..(row + len) * k_width],
                    &v[row * v_width..(row + len) * v_width],
                    len,
                );
                row += len;
            }
            // Gemma 3 scales the queries (llama.cpp: `ggml_scale(Qcur)` before attention,
            // softmax scale 1); the others scale the scores in the softmax. The same in
            // exact arithmetic, not once queries are rounded to f16.
            let score_scale = if self.spec.attn_scale == AttnScale::Gemma3 {
                q.iter_mut().for_each(|v| *v *= cfg.attn_scale);
                1.0
            } else {
                cfg.attn_scale
            };
            prof.mark(Phase::RopeKv);

            let params = AttnParams {
                n_head: cfg.n_head,
                n_head_kv: cfg.n_head_kv,
                head_dim_k: dk,
                head_dim_v: dv,
                scale: score_scale,
                window: lc.window,
            };
            let mut seqs = Vec::with_capacity(items.len());
            let mut q_rest = &q[..];
            let mut out_rest = &mut attn[..];
            for item in items.iter() {
                let len = item.tokens.len();
                let (q_here, q_next) = q_rest.split_at(len * q_width);
                let (out_here, out_next) = out_rest.split_at_mut(len * cfg.n_head * dv);
                seqs.push(SeqAttn {
                    q: q_here,
                    cache: &*item.cache,
                    layer: il,
                    start: item.cache.len(),
                    n: len,
                    out: out_here,
                });
                (q_rest, out_rest) = (q_next, out_next);
            }
            attend(&params, &mut seqs);
            drop(seqs);
            prof.mark(Phase::Attention);

            notify_layer(self.observer, il, &["attn_output"], attn, n);
            lw.wo.matmul(attn, n, delta)?;
            add_bias(delta, lw.bo.as_ref());
            prof.mark(Phase::AttnOut);
            if let Some(norm) = &lw.post_attn_norm {
                rms_norm_rows(delta, norm, cfg.rms_eps);
            }
            add_into(x, delta);

            h.copy_from_slice(x);
            rms_norm_rows(h, &lw.ffn_norm, cfg.rms_eps);
            prof.mark(Phase::Norm);
            notify_layer(self.observer, il, &["ffn_gate", "ffn_up"], h, n);
            matmul_many(
                &mut [
                    Product {
                        matrix: &lw.ffn_gate,
                        y: gate,
                    },
                    Product {
                        matrix: &lw.ffn_up,
                        y: up,
                    },
                ],
                h,
                n,
                acts,
            )?;
            prof.mark(Phase::GateUp);
            gated_activation(self.spec.activation, gate, up, cfg.n_ff);
            prof.mark(Phase::Activation);
            notify_layer(self.observer, il, &["ffn_down"], gate, n);
            lw.ffn_down.matmul(gate, n, delta)?;
            prof.mark(Phase::Down);
            if let Some(norm) = &lw.post_ffn_norm {
                rms_norm_rows(delta, norm, cfg.rms_eps);
            }
            add_into(x, delta);
            prof.mark(Phase::Norm);
        }

        // Only the rows whose logits were asked for go through the (large) unembedding.
        head_in.clear();
        let mut row = 0;
        for item in items.iter() {
            let len = item.tokens.len();
            let first = if item.all_logits { row } else { row + len - 1 };
            head_in.extend_from_slice(&x[first * d..(row + len) * d]);
            row += len;
        }
        let n_out = head_in.len() / d;
        rms_norm_rows(head_in, &self.w.output_norm, cfg.rms_eps);
        let vocab = cfg.vocab_size;
        let mut logits = vec![0f32; n_out * vocab];
        if let Some(obs) = self.observer {
            obs.observe(&["output.weight"], head_in, n_out, d);
        }
        self.w.output.matmul(head_in, n_out, &mut logits)?;
        add_bias(&mut logits, self.w.output_bias.as_ref());
        if let Some(cap) = cfg.final_logit_softcap {
            logits.iter_mut().for_each(|v| *v = cap * (*v / cap).tanh());
        }
        prof.mark(Phase::Head);
        if items.len() == 1 {
            return Ok(vec![logits]);
        }
        let mut rows = logits.chunks_exact(vocab);
        Ok(items
            .iter()
            .map(|item| {
                let take = if item.all_logits {
                    item.tokens.len()
                } else {
                    1
                };
                rows.by_ref().take(take).flatten().copied().collect()
            })
            .collect())
    }
}
