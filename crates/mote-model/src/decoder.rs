//! The generic pre-norm decoder: embeddings, `n_layer` blocks, final norm, unembedding.

use crate::attention::{attend, AttnParams};
use crate::cache::{KvCache, KvPrecision};
use crate::config::ModelConfig;
use crate::ffn::feed_forward;
use crate::norm::rms_norm_rows;
use crate::rope::Rope;
use crate::spec::ArchSpec;
use crate::weights::{LayerWeights, ModelWeights};
use crate::ModelError;

/// Everything the forward pass reads; borrowed from the `Model`.
pub struct Decoder<'a> {
    pub spec: &'a ArchSpec,
    pub cfg: &'a ModelConfig,
    pub w: &'a ModelWeights,
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

impl Decoder<'_> {
    /// Checks the inputs, then runs the blocks; on any error the cache is left as it was.
    pub fn forward(
        &self,
        tokens: &[u32],
        cache: &mut KvCache,
        all_logits: bool,
    ) -> Result<Vec<f32>, ModelError> {
        let cfg = self.cfg;
        if tokens.is_empty() {
            return Err(ModelError::Invalid("forward called with no tokens".into()));
        }
        if let Some(&bad) = tokens.iter().find(|&&t| t as usize >= cfg.vocab_size) {
            return Err(ModelError::TokenOutOfRange {
                token: bad,
                vocab_size: cfg.vocab_size,
            });
        }
        let needed = cache.len() + tokens.len();
        if needed > cache.capacity() {
            return Err(ModelError::ContextFull {
                needed,
                capacity: cache.capacity(),
            });
        }
        if cache.layers.len() != cfg.n_layer
            || cache.k_width != cfg.n_head_kv * cfg.head_dim_k
            || cache.v_width != cfg.n_head_kv * cfg.head_dim_v
        {
            return Err(ModelError::Invalid(
                "the cache was made by a different model".into(),
            ));
        }
        let result = self.run(tokens, cache, all_logits);
        match &result {
            Ok(_) => cache.commit(tokens.len()),
            Err(_) => cache.shrink_layers(),
        }
        result
    }

    fn run(
        &self,
        tokens: &[u32],
        cache: &mut KvCache,
        all_logits: bool,
    ) -> Result<Vec<f32>, ModelError> {
        let cfg = self.cfg;
        let n = tokens.len();
        let d = cfg.n_embd;

        let mut x = vec![0f32; n * d];
        let embed_scale = (d as f32).sqrt();
        for (row, &tok) in x.chunks_exact_mut(d).zip(tokens) {
            self.w.token_embd.dequantize_row(tok as usize, row)?;
            if self.spec.scale_embeddings {
                row.iter_mut().for_each(|v| *v *= embed_scale);
            }
        }

        let mut h = vec![0f32; n * d];
        let mut delta = vec![0f32; n * d];
        let start = cache.len();
        for (il, lw) in self.w.layers.iter().enumerate() {
            h.copy_from_slice(&x);
            rms_norm_rows(&mut h, &lw.attn_norm, cfg.rms_eps);
            self.attention_block(il, lw, &h, start, n, cache, &mut delta)?;
            if let Some(norm) = &lw.post_attn_norm {
                rms_norm_rows(&mut delta, norm, cfg.rms_eps);
            }
            add_into(&mut x, &delta);

            h.copy_from_slice(&x);
            rms_norm_rows(&mut h, &lw.ffn_norm, cfg.rms_eps);
            feed_forward(lw, self.spec.activation, &h, n, &mut delta)?;
            if let Some(norm) = &lw.post_ffn_norm {
                rms_norm_rows(&mut delta, norm, cfg.rms_eps);
            }
            add_into(&mut x, &delta);
        }

        // Only the rows whose logits were asked for go through the (large) unembedding.
        let rows = if all_logits {
            &mut x[..]
        } else {
            &mut x[(n - 1) * d..]
        };
        let n_out = rows.len() / d;
        rms_norm_rows(rows, &self.w.output_norm, cfg.rms_eps);
        let mut logits = vec![0f32; n_out * cfg.vocab_size];
        self.w.output.matmul(rows, n_out, &mut logits)?;
        add_bias(&mut logits, self.w.output_bias.as_ref());
        if let Some(cap) = cfg.final_logit_softcap {
            logits.iter_mut().for_each(|v| *v = cap * (*v / cap).tanh());
        }
        Ok(logits)
    }

    /// Self-attention of layer `il` for `n` new tokens at positions `start..`; appends
    /// their keys and values to the cache and writes the projected output to `out`.
    #[allow(clippy::too_many_arguments)]
    fn attention_block(
        &self,
        il: usize,
        lw: &LayerWeights,
        h: &[f32],
        start: usize,
        n: usize,
        cache: &mut KvCache,
        out: &mut [f32],
    ) -> Result<(), ModelError> {
        let cfg = self.cfg;
        let lc = &cfg.layers[il];
        let (dk, dv) = (cfg.head_dim_k, cfg.head_dim_v);
        let q_width = cfg.n_head * dk;
        let k_width = cfg.n_head_kv * dk;
        let v_width = cfg.n_head_kv * dv;

        let mut q = vec![0f32; n * q_width];
        let mut k = vec![0f32; n * k_width];
        let mut v = vec![0f32; n * v_width];
        lw.wq.matmul(h, n, &mut q)?;
        lw.wk.matmul(h, n, &mut k)?;
        lw.wv.matmul(h, n, &mut v)?;
        add_bias(&mut q, lw.bq.as_ref());
        add_bias(&mut k, lw.bk.as_ref());
        add_bias(&mut v, lw.bv.as_ref());
        if let Some(norm) = &lw.q_norm {
            rms_norm_rows(&mut q, norm, cfg.rms_eps);
        }
        if let Some(norm) = &lw.k_norm {
            rms_norm_rows(&mut k, norm, cfg.rms_eps);
        }

        let rope = Rope::new(
            self.spec.rope,
            cfg.n_rot,
            lc.rope_base,
            lc.rope_scale,
            self.w.rope_freq_factors.as_deref(),
        );
        let table = rope.table(start..start + n);
        for t in 0..n {
            rope.apply(&table, t, &mut q[t * q_width..(t + 1) * q_width], dk);
            rope.apply(&table, t, &mut k[t * k_width..(t + 1) * k_width], dk);
        }

        let f16 = cache.precision == KvPrecision::F16;
        if f16 {
            for x in k.iter_mut().chain(v.iter_mut()) {
                *x = half::f16::from_f32(*x).to_f32();
            }
        }
        let layer = &mut cache.layers[il];
        layer.k.extend_from_slice(&k);
        layer.v.extend_from_slice(&v);

        let params = AttnParams {
            n_head: cfg.n_head,
            n_head_kv: cfg.n_head_kv,
            head_dim_k: dk,
            head_dim_v: dv,
            scale: cfg.attn_scale,
            window: lc.window,
            f16_inputs: f16,
        };
        let mut attn = vec![0f32; n * cfg.n_head * dv];
        attend(&params, &q, &layer.k, &layer.v, start, n, &mut attn);

        lw.wo.matmul(&attn, n, out)?;
        add_bias(out, lw.bo.as_ref());
        Ok(())
    }
}
