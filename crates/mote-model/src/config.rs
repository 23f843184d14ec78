//! Hyper-parameters, read from `<arch>.*` metadata keys and checked for consistency.

use mote_file::GgufFile;

use crate::spec::{ArchSpec, AttnScale};
use crate::ModelError;

/// Per-layer attention settings (they differ between local and global layers).
#[derive(Clone, Debug, PartialEq)]
pub struct LayerConfig {
    /// `Some(w)`: a query at position `p` sees keys at `p-w+1..=p` only.
    pub window: Option<usize>,
    pub rope_base: f32,
    /// Positions are multiplied by this before rotation (linear RoPE scaling).
    pub rope_scale: f32,
}

/// Hyper-parameters read from the file.
#[derive(Clone, Debug)]
pub struct ModelConfig {
    pub arch: String,
    pub vocab_size: usize,
    /// Context length the model was trained with (`<arch>.context_length`).
    pub n_ctx_train: usize,
    pub n_embd: usize,
    pub n_layer: usize,
    pub n_ff: usize,
    pub n_head: usize,
    pub n_head_kv: usize,
    /// Key (and query) length per head.
    pub head_dim_k: usize,
    /// Value length per head.
    pub head_dim_v: usize,
    /// Leading dimensions of each query/key head that RoPE rotates.
    pub n_rot: usize,
    pub rms_eps: f32,
    /// Multiplier of the attention logits.
    pub attn_scale: f32,
    /// Gemma-style `cap * tanh(logit / cap)` on the output logits.
    pub final_logit_softcap: Option<f32>,
    pub layers: Vec<LayerConfig>,
}

/// Metadata reader that prefixes keys with the architecture name.
struct Keys<'a> {
    file: &'a GgufFile,
    arch: &'a str,
}

impl Keys<'_> {
    fn key(&self, k: &str) -> String {
        format!("{}.{k}", self.arch)
    }
    fn req(&self, k: &str) -> Result<usize, ModelError> {
        Ok(self.file.require_u32(&self.key(k))? as usize)
    }
    fn opt(&self, k: &str) -> Result<Option<usize>, ModelError> {
        Ok(self.file.get_u32(&self.key(k))?.map(|v| v as usize))
    }
    fn opt_f32(&self, k: &str) -> Result<Option<f32>, ModelError> {
        Ok(self.file.get_f32(&self.key(k))?)
    }
    fn opt_str(&self, k: &str) -> Result<Option<&str>, ModelError> {
        Ok(self.file.get_str(&self.key(k))?)
    }
}

fn invalid(msg: String) -> ModelError {
    ModelError::Invalid(msg)
}

impl ModelConfig {
    /// Reads the hyper-parameters of `spec`'s architecture; `vocab_size` comes from the
    /// token embedding table, which the caller has already found.
    pub fn from_gguf(
        file: &GgufFile,
        spec: &ArchSpec,
        vocab_size: usize,
    ) -> Result<ModelConfig, ModelError> {
        let k = Keys {
            file,
            arch: spec.name,
        };
        let n_embd = k.req("embedding_length")?;
        let n_layer = k.req("block_count")?;
        let n_ff = k.req("feed_forward_length")?;
        let n_head = k.req("attention.head_count")?;
        let n_head_kv = k.opt("attention.head_count_kv")?.unwrap_or(n_head);
        let n_ctx_train = k.req("context_length")?;
        let rms_eps = file.require_f32(&k.key("attention.layer_norm_rms_epsilon"))?;
        if n_embd == 0 || n_layer == 0 || n_ff == 0 || n_head == 0 || n_head_kv == 0 {
            return Err(invalid(format!(
                "{}: embedding_length, block_count, feed_forward_length and head counts must be non-zero",
                spec.name
            )));
        }
        if n_head % n_head_kv != 0 {
            return Err(invalid(format!(
                "{}: head_count {n_head} is not a multiple of head_count_kv {n_head_kv}",
                spec.name
            )));
        }
        let head_dim_k = k.opt("attention.key_length")?.unwrap_or(n_embd / n_head);
        let head_dim_v = k.opt("attention.value_length")?.unwrap_or(n_embd / n_head);
        let n_rot = k.opt("rope.dimension_count")?.unwrap_or(head_dim_k);
        if head_dim_k == 0 || head_dim_v == 0 || n_rot > head_dim_k || n_rot % 2 != 0 {
            return Err(invalid(format!(
                "{}: bad head sizes (key_length {head_dim_k}, value_length {head_dim_v}, rope.dimension_count {n_rot})",
                spec.name
            )));
        }

        // Widths derived from hostile metadata must not overflow (wasm32 has 32-bit usize).
        let widths = [
            n_head.checked_mul(head_dim_k),
            n_head.checked_mul(head_dim_v),
            n_head_kv.checked_mul(head_dim_k),
            n_head_kv.checked_mul(head_dim_v),
        ];
        if widths.iter().any(|w| w.is_none()) {
            return Err(invalid(format!(
                "{}: head counts times head sizes overflow",
                spec.name
            )));
        }

        let rope_base = k.opt_f32("rope.freq_base")?.unwrap_or(10_000.0);
        let rope_scale = rope_scale(&k)?;
        let attn_scale = match spec.attn_scale {
            AttnScale::Gemma3 if n_layer == 62 => 1.0 / ((n_embd / n_head) as f32).sqrt(),
            AttnScale::Gemma3 | AttnScale::InvSqrtHeadDim => 1.0 / (head_dim_k as f32).sqrt(),
        };
        let final_logit_softcap = k.opt_f32("final_logit_softcapping")?.filter(|&c| c != 0.0);

        let global = LayerConfig {
            window: None,
            rope_base,
            rope_scale,
        };
        let mut layers = vec![global.clone(); n_layer];
        if let Some(swa) = spec.sliding_window {
            // A window of 0 (or no key) means the file asks for global attention only.
            if let Some(window) = k.opt("attention.sliding_window")?.filter(|&w| w > 0) {
                let local = LayerConfig {
                    window: Some(window),
                    rope_base: k
                        .opt_f32("rope.freq_base_swa")?
                        .unwrap_or(swa.default_local_rope_base),
                    rope_scale: 1.0,
                };
                let is_local = local_layers(&k, n_layer, swa.default_period)?;
                for (layer, local_here) in layers.iter_mut().zip(is_local) {
                    if local_here {
                        *layer = local.clone();
                    }
                }
            }
        }

        Ok(ModelConfig {
            arch: spec.name.to_string(),
            vocab_size,
            n_ctx_train,
            n_embd,
            n_layer,
            n_ff,
            n_head,
            n_head_kv,
            head_dim_k,
            head_dim_v,
            n_rot,
            rms_eps,
            attn_scale,
            final_logit_softcap,
            layers,
        })
    }

    /// Query heads that share one key/value head.
    pub fn group_size(&self) -> usize {
        self.n_head / self.n_head_kv
    }
}

/// The position multiplier from `rope.scaling.*`; only linear scaling is supported.
fn rope_scale(k: &Keys) -> Result<f32, ModelError> {
    let kind = k.opt_str("rope.scaling.type")?.unwrap_or("linear");
    if !matches!(kind, "linear" | "none") {
        return Err(invalid(format!(
            "{}: rope scaling type {kind:?} is not supported (only linear)",
            k.arch
        )));
    }
    let factor = match k.opt_f32("rope.scaling.factor")? {
        Some(f) => f,
        None => k.opt_f32("rope.scale_linear")?.unwrap_or(0.0),
    };
    if kind == "none" || factor == 0.0 {
        return Ok(1.0);
    }
    if !(factor.is_finite() && factor > 0.0) {
        return Err(invalid(format!(
            "{}: bad rope scaling factor {factor}",
            k.arch
        )));
    }
    Ok(1.0 / factor)
}

/// Which layers use the sliding window: an explicit per-layer bool array, or a period
/// whose last layer is global (a period of 0 makes every layer local).
fn local_layers(k: &Keys, n_layer: usize, default_period: u32) -> Result<Vec<bool>, ModelError> {
    let key = k.key("attention.sliding_window_pattern");
    if let Some(mote_file::MetaValue::Array(arr)) = k.file.get(&key) {
        let flags: Vec<bool> = match arr {
            mote_file::MetaArray::Bool(v) => v.clone(),
            other => other
                .to_i64_vec()
                .ok_or_else(|| invalid(format!("{key}: expected an array of booleans")))?
                .into_iter()
                .map(|f| f != 0)
                .collect(),
        };
        if flags.len() < n_layer {
            return Err(invalid(format!(
                "{key}: {} entries for {n_layer} layers",
                flags.len()
            )));
        }
        return Ok(flags.into_iter().take(n_layer).collect());
    }
    let period = k.file.get_u32(&key)?.unwrap_or(default_period) as usize;
    Ok((0..n_layer)
        .map(|il| period == 0 || il % period < period - 1)
        .collect())
}
