//! Hugging Face tensor names and shapes → GGUF names, dims and the changes the data
//! needs on the way (Q/K row permutation, norms and biases to F32).

use mote_tensor::DType;

use super::config::{Arch, HfConfig};
use super::HfError;

/// How to turn one checkpoint tensor into its GGUF tensor.
#[derive(Clone, Debug, PartialEq)]
pub struct Mapped {
    pub gguf: String,
    /// Expected Hugging Face (row-major) shape.
    pub shape: Vec<u64>,
    /// Permute rows for adjacent-pair RoPE, with this many heads.
    pub permute_heads: Option<usize>,
    /// Gemma's RMS norms multiply by `1 + w`; GGUF stores `1 + w`.
    pub add_one: bool,
}

/// `None` for tensors the conversion drops (precomputed RoPE tables, a tied `lm_head`).
pub fn map_name(name: &str, cfg: &HfConfig, tied: bool) -> Result<Option<Mapped>, HfError> {
    let e = cfg.n_embd as u64;
    let hd = cfg.head_dim as u64;
    let q = cfg.n_head as u64 * hd;
    let kv = cfg.n_head_kv as u64 * hd;
    let ff = cfg.n_ff as u64;
    let vocab = cfg.vocab_size as u64;
    let gemma = cfg.arch == Arch::Gemma3;
    let plain = |gguf: String, shape: Vec<u64>| {
        Ok(Some(Mapped {
            add_one: gemma && gguf.ends_with("norm.weight"),
            gguf,
            shape,
            permute_heads: None,
        }))
    };
    match name {
        "model.embed_tokens.weight" => return plain("token_embd.weight".into(), vec![vocab, e]),
        "model.norm.weight" => return plain("output_norm.weight".into(), vec![e]),
        "lm_head.weight" if tied => return Ok(None),
        "lm_head.weight" => return plain("output.weight".into(), vec![vocab, e]),
        _ => {}
    }
    let unknown = || HfError::UnknownTensor(name.to_string());
    let rest = name.strip_prefix("model.layers.").ok_or_else(unknown)?;
    let (layer, part) = rest.split_once('.').ok_or_else(unknown)?;
    let il: usize = layer.parse().map_err(|_| unknown())?;
    if il >= cfg.n_layer || layer != il.to_string() {
        return Err(HfError::BadField {
            file: "config.json",
            field: "num_hidden_layers".into(),
            problem: format!("= {}, but the checkpoint has {name:?}", cfg.n_layer),
        });
    }
    let permute = cfg.arch.permutes_qk();
    let (suffix, shape, heads): (&str, Vec<u64>, Option<usize>) = match part {
        "self_attn.rotary_emb.inv_freq" => return Ok(None),
        "input_layernorm.weight" => ("attn_norm.weight", vec![e], None),
        "post_attention_layernorm.weight" if gemma => ("post_attention_norm.weight", vec![e], None),
        "post_attention_layernorm.weight" => ("ffn_norm.weight", vec![e], None),
        "pre_feedforward_layernorm.weight" if gemma => ("ffn_norm.weight", vec![e], None),
        "post_feedforward_layernorm.weight" if gemma => ("post_ffw_norm.weight", vec![e], None),
        "self_attn.q_norm.weight" if gemma => ("attn_q_norm.weight", vec![hd], None),
        "self_attn.k_norm.weight" if gemma => ("attn_k_norm.weight", vec![hd], None),
        "self_attn.q_proj.weight" => ("attn_q.weight", vec![q, e], Some(cfg.n_head)),
        "self_attn.k_proj.weight" => ("attn_k.weight", vec![kv, e], Some(cfg.n_head_kv)),
        "self_attn.v_proj.weight" => ("attn_v.weight", vec![kv, e], None),
        "self_attn.o_proj.weight" => ("attn_output.weight", vec![e, q], None),
        "self_attn.q_proj.bias" => ("attn_q.bias", vec![q], Some(cfg.n_head)),
        "self_attn.k_proj.bias" => ("attn_k.bias", vec![kv], Some(cfg.n_head_kv)),
        "self_attn.v_proj.bias" => ("attn_v.bias", vec![kv], None),
        "self_attn.o_proj.bias" => ("attn_output.bias", vec![e], None),
        "mlp.gate_proj.weight" => ("ffn_gate.weight", vec![ff, e], None),
        "mlp.up_proj.weight" => ("ffn_up.weight", vec![ff, e], None),
        "mlp.down_proj.weight" => ("ffn_down.weight", vec![e, ff], None),
        _ => return Err(unknown()),
    };
    Ok(Some(Mapped {
        gguf: format!("blk.{il}.{suffix}"),
        shape,
        permute_heads: heads.filter(|_| permute),
        add_one: gemma && suffix.ends_with("norm.weight"),
    }))
}

/// The first GGUF tensor this config needs that `has` does not know (biases other than
/// Qwen2's are optional). Stops at the first gap, so a hostile `num_hidden_layers` costs
/// nothing.
pub fn first_missing(cfg: &HfConfig, tied: bool, has: impl Fn(&str) -> bool) -> Option<String> {
    let mut top = vec!["token_embd.weight".to_string(), "output_norm.weight".into()];
    if !tied {
        top.push("output.weight".into());
    }
    if let Some(n) = top.into_iter().find(|n| !has(n)) {
        return Some(n);
    }
    (0..cfg.n_layer).find_map(|il| layer_names(cfg, il).into_iter().find(|n| !has(n)))
}

/// The tensors of layer `il`.
fn layer_names(cfg: &HfConfig, il: usize) -> Vec<String> {
    let mut weights = vec![
        "attn_norm",
        "ffn_norm",
        "attn_q",
        "attn_k",
        "attn_v",
        "attn_output",
        "ffn_gate",
        "ffn_up",
        "ffn_down",
    ];
    if cfg.arch == Arch::Gemma3 {
        weights.extend([
            "attn_q_norm",
            "attn_k_norm",
            "post_attention_norm",
            "post_ffw_norm",
        ]);
    }
    let mut names: Vec<String> = weights
        .iter()
        .map(|s| format!("blk.{il}.{s}.weight"))
        .collect();
    if cfg.arch == Arch::Qwen2 {
        names.extend(["attn_q", "attn_k", "attn_v"].map(|s| format!("blk.{il}.{s}.bias")));
    }
    names
}

/// The element type a Hugging Face tensor is read as, if supported.
pub fn float_type(dtype: mote_file::StDType) -> Option<DType> {
    use mote_file::StDType as S;
    match dtype {
        S::F32 => Some(DType::F32),
        S::F16 => Some(DType::F16),
        S::BF16 => Some(DType::BF16),
        _ => None,
    }
}

/// Reorders the rows of a `[heads * head_dim, ...]` tensor from rotate-half to
/// adjacent-pair RoPE: within each head, row `2i + j` of the result is row
/// `j * head_dim / 2 + i` of the input (j ∈ {0, 1}). `row_bytes` is one row's size.
pub fn permute_rows(src: &[u8], heads: usize, row_bytes: usize) -> Vec<u8> {
    let rows = src.len().checked_div(row_bytes).unwrap_or(0);
    let head_dim = rows / heads.max(1);
    let half = head_dim / 2;
    let mut out = Vec::with_capacity(src.len());
    for h in 0..heads {
        for i in 0..half {
            for j in 0..2 {
                let r = h * head_dim + j * half + i;
                out.extend_from_slice(&src[r * row_bytes..(r + 1) * row_bytes]);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permutation_matches_the_reference_reshape() {
        // reshape(heads, 2, hd/2, ...).swapaxes(1, 2): head 0 rows 0..4 → 0, 2, 1, 3.
        let rows: Vec<u8> = (0..8).collect();
        assert_eq!(permute_rows(&rows, 2, 1), vec![0, 2, 1, 3, 4, 6, 5, 7]);
        let two_bytes: Vec<u8> = (0..8).collect();
        assert_eq!(permute_rows(&two_bytes, 1, 2), vec![0, 1, 4, 5, 2, 3, 6, 7]);
    }
}
