//! GGUF tensor names → Hugging Face names, and the changes the data needs on the way
//! back (undoing the Q/K row permutation of llama, Gemma's `1 + w` norms). The inverse
//! of [`crate::hf`]'s import mapping.

use mote_file::TensorInfo;

use super::model::ExportModel;
use crate::error::{ConvertError, Result};

/// One tensor as Hugging Face stores it.
#[derive(Clone, Debug, PartialEq)]
pub struct HfTensor {
    pub name: String,
    /// Row-major shape.
    pub shape: Vec<u64>,
    /// Undo the adjacent-pair RoPE row permutation, with this many heads.
    pub unpermute_heads: Option<usize>,
    /// Gemma's norms: GGUF stores `1 + w`, Hugging Face `w`.
    pub sub_one: bool,
}

/// The Hugging Face tensor for GGUF tensor `info`.
pub fn hf_tensor(model: &ExportModel, info: &TensorInfo) -> Result<HfTensor> {
    let gemma = model.spec.name == "gemma3";
    let permutes = model.spec.rope == mote_model::spec::RopeStyle::Adjacent;
    let unknown = || {
        ConvertError::Invalid(format!(
            "tensor {:?} has no Hugging Face {} name; it cannot be exported",
            info.name, model.spec.name
        ))
    };
    let (name, heads) = match info.name.as_str() {
        "token_embd.weight" => ("model.embed_tokens.weight".to_string(), None),
        "output_norm.weight" => ("model.norm.weight".into(), None),
        "output.weight" => ("lm_head.weight".into(), None),
        "rope_freqs.weight" => {
            return Err(ConvertError::Invalid(
                "rope_freqs.weight (Llama 3 RoPE scaling) cannot be exported yet".into(),
            ))
        }
        other => {
            let rest = other.strip_prefix("blk.").ok_or_else(unknown)?;
            let (layer, part) = rest.split_once('.').ok_or_else(unknown)?;
            let (hf, heads) = match part {
                "attn_norm.weight" => ("input_layernorm.weight", None),
                "ffn_norm.weight" if gemma => ("pre_feedforward_layernorm.weight", None),
                "ffn_norm.weight" => ("post_attention_layernorm.weight", None),
                "post_attention_norm.weight" => ("post_attention_layernorm.weight", None),
                "post_ffw_norm.weight" => ("post_feedforward_layernorm.weight", None),
                "attn_q_norm.weight" => ("self_attn.q_norm.weight", None),
                "attn_k_norm.weight" => ("self_attn.k_norm.weight", None),
                "attn_q.weight" => ("self_attn.q_proj.weight", Some(model.cfg.n_head)),
                "attn_k.weight" => ("self_attn.k_proj.weight", Some(model.cfg.n_head_kv)),
                "attn_v.weight" => ("self_attn.v_proj.weight", None),
                "attn_output.weight" => ("self_attn.o_proj.weight", None),
                "attn_q.bias" => ("self_attn.q_proj.bias", Some(model.cfg.n_head)),
                "attn_k.bias" => ("self_attn.k_proj.bias", Some(model.cfg.n_head_kv)),
                "attn_v.bias" => ("self_attn.v_proj.bias", None),
                "attn_output.bias" => ("self_attn.o_proj.bias", None),
                "ffn_gate.weight" => ("mlp.gate_proj.weight", None),
                "ffn_up.weight" => ("mlp.up_proj.weight", None),
                "ffn_down.weight" => ("mlp.down_proj.weight", None),
                _ => return Err(unknown()),
            };
            (format!("model.layers.{layer}.{hf}"), heads)
        }
    };
    Ok(HfTensor {
        sub_one: gemma && info.name.ends_with("norm.weight"),
        shape: info.dims.iter().rev().copied().collect(),
        unpermute_heads: heads.filter(|_| permutes),
        name,
    })
}

/// Hugging Face values of a tensor from its GGUF values.
pub fn to_hf_values(t: &HfTensor, mut values: Vec<f32>) -> Vec<f32> {
    if t.sub_one {
        values.iter_mut().for_each(|v| *v -= 1.0);
    }
    if let Some(heads) = t.unpermute_heads {
        let row = match t.shape.as_slice() {
            [_] => 1,
            s => s[1..].iter().product::<u64>() as usize,
        };
        values = unpermute_rows(&values, heads, row);
    }
    values
}

/// Inverse of [`crate::hf`]'s `permute_rows`: within each head, row `j * head_dim / 2 + i`
/// of the result is row `2i + j` of the input (adjacent-pair → rotate-half RoPE order).
pub fn unpermute_rows<T: Copy>(src: &[T], heads: usize, row: usize) -> Vec<T> {
    let rows = src.len().checked_div(row).unwrap_or(0);
    let head_dim = rows / heads.max(1);
    let half = head_dim / 2;
    let mut out = Vec::with_capacity(src.len());
    for h in 0..heads {
        for j in 0..2 {
            for i in 0..half {
                let r = h * head_dim + 2 * i + j;
                out.extend_from_slice(&src[r * row..(r + 1) * row]);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unpermute_inverts_the_import_permutation() {
        let rows: Vec<u8> = (0..24).collect();
        for (heads, row) in [(2, 1), (1, 2), (3, 2), (2, 3)] {
            let permuted = crate::hf::permute_rows(&rows, heads, row);
            assert_eq!(unpermute_rows(&permuted, heads, row), rows, "{heads} {row}");
        }
    }
}
