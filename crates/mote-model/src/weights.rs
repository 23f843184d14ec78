//! The model's tensors: matrices stay zero-copy views of the file, small vectors
//! (norm weights, biases) are decoded to f32 once at load time.

use std::sync::Mutex;

use mote_file::GgufFile;
use mote_tensor::{quant, DType, Matrix};

use crate::config::ModelConfig;
use crate::load_quant::{self, LoadQuantization};
use crate::spec::{ArchSpec, Presence};
use crate::ModelError;

/// Tensors of one transformer block.
pub struct LayerWeights {
    pub attn_norm: Vec<f32>,
    pub wq: Matrix,
    pub wk: Matrix,
    pub wv: Matrix,
    pub bq: Option<Vec<f32>>,
    pub bk: Option<Vec<f32>>,
    pub bv: Option<Vec<f32>>,
    pub wo: Matrix,
    pub bo: Option<Vec<f32>>,
    /// Per-head RMS norm weights of queries and keys (`head_dim_k` values each).
    pub q_norm: Option<Vec<f32>>,
    pub k_norm: Option<Vec<f32>>,
    pub post_attn_norm: Option<Vec<f32>>,
    pub ffn_norm: Vec<f32>,
    pub ffn_gate: Matrix,
    pub ffn_up: Matrix,
    pub ffn_down: Matrix,
    pub post_ffn_norm: Option<Vec<f32>>,
}

pub struct ModelWeights {
    pub token_embd: Matrix,
    pub output_norm: Vec<f32>,
    /// The unembedding; the token embedding itself when the file has no `output.weight`.
    pub output: Matrix,
    pub output_bias: Option<Vec<f32>>,
    /// Llama 3 style per-frequency divisors of the RoPE angles (`n_rot / 2` values).
    pub rope_freq_factors: Option<Vec<f32>>,
    pub layers: Vec<LayerWeights>,
}

/// Finds tensors by name and checks their shapes against the config.
struct Loader<'a> {
    file: &'a GgufFile,
    /// Load-time quantization, when asked for, and what it has done so far.
    quantize: Option<Mutex<LoadQuantization>>,
}

impl Loader<'_> {
    fn missing(name: &str) -> ModelError {
        ModelError::MissingTensor(name.to_string())
    }

    fn shape_error(name: &str, dims: &[u64], expected: &[usize]) -> ModelError {
        ModelError::Invalid(format!(
            "tensor {name:?} has shape {dims:?}, expected {expected:?}"
        ))
    }

    /// A matrix mapping `cols` inputs to `rows` outputs (GGUF dims `[cols, rows]`),
    /// quantized if the load options ask for it; `is_output` for the unembedding.
    fn opt_matrix_as(
        &self,
        name: &str,
        cols: usize,
        rows: usize,
        is_output: bool,
    ) -> Result<Option<Matrix>, ModelError> {
        let Some(m) = self.opt_file_matrix(name, cols, rows)? else {
            return Ok(None);
        };
        match &self.quantize {
            Some(report) => load_quant::requantize(name, m, is_output, report).map(Some),
            None => Ok(Some(m)),
        }
    }

    fn opt_matrix(
        &self,
        name: &str,
        cols: usize,
        rows: usize,
    ) -> Result<Option<Matrix>, ModelError> {
        self.opt_matrix_as(name, cols, rows, false)
    }

    /// The matrix as stored in the file: a view of its bytes.
    fn opt_file_matrix(
        &self,
        name: &str,
        cols: usize,
        rows: usize,
    ) -> Result<Option<Matrix>, ModelError> {
        let Some(info) = self.file.tensor(name) else {
            return Ok(None);
        };
        if info.dims.len() != 2 || info.dims[0] != cols as u64 || info.dims[1] != rows as u64 {
            return Err(Self::shape_error(name, &info.dims, &[cols, rows]));
        }
        let m = Matrix::new(info.dtype, rows, cols, self.file.tensor_bytes(info))
            .map_err(|e| ModelError::Invalid(format!("tensor {name:?}: {e}")))?;
        Ok(Some(m))
    }

    fn matrix(&self, name: &str, cols: usize, rows: usize) -> Result<Matrix, ModelError> {
        self.opt_matrix(name, cols, rows)?
            .ok_or_else(|| Self::missing(name))
    }

    fn opt_vector(&self, name: &str, len: usize) -> Result<Option<Vec<f32>>, ModelError> {
        let Some(info) = self.file.tensor(name) else {
            return Ok(None);
        };
        if info.dims.len() != 1 || info.dims[0] != len as u64 {
            return Err(Self::shape_error(name, &info.dims, &[len]));
        }
        let mut out = vec![0f32; len];
        quant::dequantize_row(
            info.dtype,
            self.file.tensor_bytes(info).as_slice(),
            &mut out,
        )
        .map_err(|e| ModelError::Invalid(format!("tensor {name:?}: {e}")))?;
        Ok(Some(out))
    }

    fn vector(&self, name: &str, len: usize) -> Result<Vec<f32>, ModelError> {
        self.opt_vector(name, len)?
            .ok_or_else(|| Self::missing(name))
    }

    /// A vector that the spec says is present (`true`) or absent (`false`).
    fn vector_if(
        &self,
        wanted: bool,
        name: &str,
        len: usize,
    ) -> Result<Option<Vec<f32>>, ModelError> {
        if wanted {
            self.vector(name, len).map(Some)
        } else {
            Ok(None)
        }
    }
}

/// Row and column counts of the token embedding, which fix the vocabulary size.
pub fn embedding_shape(file: &GgufFile) -> Result<(usize, usize), ModelError> {
    let name = "token_embd.weight";
    let info = file.tensor(name).ok_or_else(|| Loader::missing(name))?;
    if info.dims.len() != 2 {
        return Err(ModelError::Invalid(format!(
            "tensor {name:?} has shape {:?}, expected 2 dimensions",
            info.dims
        )));
    }
    let (rows, cols) = info.rows_cols();
    Ok((rows, cols))
}

impl ModelWeights {
    /// Reads the weights; with `quantize`, float matrices are re-encoded in memory (see
    /// [`load_quant`]) and the second value says what was done.
    pub fn load(
        file: &GgufFile,
        spec: &ArchSpec,
        cfg: &ModelConfig,
        quantize: Option<DType>,
    ) -> Result<(ModelWeights, Option<LoadQuantization>), ModelError> {
        let l = Loader {
            file,
            quantize: quantize.map(|t| Mutex::new(LoadQuantization::new(t))),
        };
        let n_embd = cfg.n_embd;
        let q_dim = cfg.n_head * cfg.head_dim_k;
        let k_dim = cfg.n_head_kv * cfg.head_dim_k;
        let v_dim = cfg.n_head_kv * cfg.head_dim_v;
        let o_in = cfg.n_head * cfg.head_dim_v;

        // A token embedding that doubles as the unembedding gets the output's type.
        let tied = file.tensor("output.weight").is_none();
        let token_embd = l
            .opt_matrix_as("token_embd.weight", n_embd, cfg.vocab_size, tied)?
            .ok_or_else(|| Loader::missing("token_embd.weight"))?;
        let output = match l.opt_matrix_as("output.weight", n_embd, cfg.vocab_size, true)? {
            Some(m) => m,
            None => token_embd.clone(),
        };

        let mut layers = Vec::with_capacity(cfg.n_layer);
        for i in 0..cfg.n_layer {
            let n = |suffix: &str| format!("blk.{i}.{suffix}");
            let bias = |suffix: &str, len: usize| -> Result<Option<Vec<f32>>, ModelError> {
                match spec.qkv_bias {
                    Presence::Required => l.vector(&n(suffix), len).map(Some),
                    Presence::Optional => l.opt_vector(&n(suffix), len),
                }
            };
            layers.push(LayerWeights {
                attn_norm: l.vector(&n("attn_norm.weight"), n_embd)?,
                wq: l.matrix(&n("attn_q.weight"), n_embd, q_dim)?,
                wk: l.matrix(&n("attn_k.weight"), n_embd, k_dim)?,
                wv: l.matrix(&n("attn_v.weight"), n_embd, v_dim)?,
                bq: bias("attn_q.bias", q_dim)?,
                bk: bias("attn_k.bias", k_dim)?,
                bv: bias("attn_v.bias", v_dim)?,
                wo: l.matrix(&n("attn_output.weight"), o_in, n_embd)?,
                bo: l.opt_vector(&n("attn_output.bias"), n_embd)?,
                q_norm: l.vector_if(spec.qk_norm, &n("attn_q_norm.weight"), cfg.head_dim_k)?,
                k_norm: l.vector_if(spec.qk_norm, &n("attn_k_norm.weight"), cfg.head_dim_k)?,
                post_attn_norm: l.vector_if(
                    spec.post_norms,
                    &n("post_attention_norm.weight"),
                    n_embd,
                )?,
                ffn_norm: l.vector(&n("ffn_norm.weight"), n_embd)?,
                ffn_gate: l.matrix(&n("ffn_gate.weight"), n_embd, cfg.n_ff)?,
                ffn_up: l.matrix(&n("ffn_up.weight"), n_embd, cfg.n_ff)?,
                ffn_down: l.matrix(&n("ffn_down.weight"), cfg.n_ff, n_embd)?,
                post_ffn_norm: l.vector_if(spec.post_norms, &n("post_ffw_norm.weight"), n_embd)?,
            });
        }

        let weights = ModelWeights {
            token_embd,
            output_norm: l.vector("output_norm.weight", n_embd)?,
            output,
            output_bias: l.opt_vector("output.bias", cfg.vocab_size)?,
            rope_freq_factors: l.opt_vector("rope_freqs.weight", cfg.n_rot / 2)?,
            layers,
        };
        let report = l
            .quantize
            .map(|r| r.into_inner().unwrap_or_else(|e| e.into_inner()));
        Ok((weights, report))
    }
}
