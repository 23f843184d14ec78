//! The trainable copy of a model: every tensor of `mote-model`'s loaded weights decoded
//! to f32, under its GGUF name, with an index saying which tensor plays which part.

use mote_model::{Model, ModelWeights};
use mote_tensor::Matrix;

use crate::TrainError;

/// One tensor: `rows × cols` values, row-major (GGUF dims `[cols, rows]`; vectors have
/// one row).
#[derive(Clone, Debug)]
pub struct Tensor {
    pub name: String,
    pub rows: usize,
    pub cols: usize,
    pub data: Vec<f32>,
}

/// Indices into [`Params::tensors`] of one block's tensors.
#[derive(Clone, Debug)]
pub struct LayerIdx {
    pub attn_norm: usize,
    pub wq: usize,
    pub wk: usize,
    pub wv: usize,
    pub bq: Option<usize>,
    pub bk: Option<usize>,
    pub bv: Option<usize>,
    pub wo: usize,
    pub bo: Option<usize>,
    pub q_norm: Option<usize>,
    pub k_norm: Option<usize>,
    pub post_attn_norm: Option<usize>,
    pub ffn_norm: usize,
    pub ffn_gate: usize,
    pub ffn_up: usize,
    pub ffn_down: usize,
    pub post_ffn_norm: Option<usize>,
}

#[derive(Clone, Debug)]
pub struct Params {
    pub tensors: Vec<Tensor>,
    pub token_embd: usize,
    /// The unembedding; equal to `token_embd` when the two are tied.
    pub output: usize,
    pub output_norm: usize,
    pub output_bias: Option<usize>,
    pub layers: Vec<LayerIdx>,
}

struct Builder {
    tensors: Vec<Tensor>,
}

impl Builder {
    fn matrix(&mut self, name: String, m: &Matrix) -> Result<usize, TrainError> {
        let mut data = vec![0f32; m.rows * m.cols];
        for (r, row) in data.chunks_exact_mut(m.cols.max(1)).enumerate() {
            m.dequantize_row(r, row)
                .map_err(|e| TrainError::Invalid(format!("tensor {name:?}: {e}")))?;
        }
        Ok(self.push(name, m.rows, m.cols, data))
    }
    fn vector(&mut self, name: String, v: &[f32]) -> usize {
        self.push(name, 1, v.len(), v.to_vec())
    }
    fn opt_vector(&mut self, name: String, v: Option<&Vec<f32>>) -> Option<usize> {
        v.map(|v| self.vector(name, v))
    }
    fn push(&mut self, name: String, rows: usize, cols: usize, data: Vec<f32>) -> usize {
        self.tensors.push(Tensor {
            name,
            rows,
            cols,
            data,
        });
        self.tensors.len() - 1
    }
}

impl Params {
    /// Decodes every tensor of `model` to f32 (quantized files are dequantized).
    pub fn from_model(model: &Model) -> Result<Params, TrainError> {
        let w: &ModelWeights = model.weights();
        let mut b = Builder {
            tensors: Vec::new(),
        };
        let token_embd = b.matrix("token_embd.weight".into(), &w.token_embd)?;
        let tied = model.gguf().tensor("output.weight").is_none();
        let output = if tied {
            token_embd
        } else {
            b.matrix("output.weight".into(), &w.output)?
        };
        let output_norm = b.vector("output_norm.weight".into(), &w.output_norm);
        let output_bias = b.opt_vector("output.bias".into(), w.output_bias.as_ref());
        let mut layers = Vec::with_capacity(w.layers.len());
        for (i, lw) in w.layers.iter().enumerate() {
            let n = |s: &str| format!("blk.{i}.{s}");
            layers.push(LayerIdx {
                attn_norm: b.vector(n("attn_norm.weight"), &lw.attn_norm),
                wq: b.matrix(n("attn_q.weight"), &lw.wq)?,
                wk: b.matrix(n("attn_k.weight"), &lw.wk)?,
                wv: b.matrix(n("attn_v.weight"), &lw.wv)?,
                bq: b.opt_vector(n("attn_q.bias"), lw.bq.as_ref()),
                bk: b.opt_vector(n("attn_k.bias"), lw.bk.as_ref()),
                bv: b.opt_vector(n("attn_v.bias"), lw.bv.as_ref()),
                wo: b.matrix(n("attn_output.weight"), &lw.wo)?,
                bo: b.opt_vector(n("attn_output.bias"), lw.bo.as_ref()),
                q_norm: b.opt_vector(n("attn_q_norm.weight"), lw.q_norm.as_ref()),
                k_norm: b.opt_vector(n("attn_k_norm.weight"), lw.k_norm.as_ref()),
                post_attn_norm: b
                    .opt_vector(n("post_attention_norm.weight"), lw.post_attn_norm.as_ref()),
                ffn_norm: b.vector(n("ffn_norm.weight"), &lw.ffn_norm),
                ffn_gate: b.matrix(n("ffn_gate.weight"), &lw.ffn_gate)?,
                ffn_up: b.matrix(n("ffn_up.weight"), &lw.ffn_up)?,
                ffn_down: b.matrix(n("ffn_down.weight"), &lw.ffn_down)?,
                post_ffn_norm: b.opt_vector(n("post_ffw_norm.weight"), lw.post_ffn_norm.as_ref()),
            });
        }
        Ok(Params {
            tensors: b.tensors,
            token_embd,
            output,
            output_norm,
            output_bias,
            layers,
        })
    }

    pub fn tied(&self) -> bool {
        self.output == self.token_embd
    }

    pub fn data(&self, i: usize) -> &[f32] {
        &self.tensors[i].data
    }

    /// Total number of values.
    pub fn count(&self) -> usize {
        self.tensors.iter().map(|t| t.data.len()).sum()
    }

    /// The index of the tensor called `name`.
    pub fn find(&self, name: &str) -> Option<usize> {
        self.tensors.iter().position(|t| t.name == name)
    }

    /// The block a tensor belongs to (`blk.N.`), `None` for the others.
    pub fn layer_of(name: &str) -> Option<usize> {
        name.strip_prefix("blk.")?.split('.').next()?.parse().ok()
    }
}
