//! The JSON files of a Hugging Face folder, from GGUF metadata: `config.json` (the
//! inverse of [`crate::hf`]'s `HfConfig::metadata`), `generation_config.json` and
//! `tokenizer_config.json`.

use serde_json::{json, Map, Value};

use super::model::ExportModel;
use super::FloatType;
use crate::error::{ConvertError, Result};

/// An f32 as the JSON number with its shortest decimal form (1e-5, not 9.99999974e-6).
pub fn num(x: f32) -> Value {
    format!("{x}")
        .parse::<f64>()
        .ok()
        .and_then(serde_json::Number::from_f64)
        .map_or(Value::Null, Value::Number)
}

fn torch_dtype(dtype: FloatType) -> &'static str {
    match dtype {
        FloatType::F32 => "float32",
        FloatType::F16 => "float16",
        FloatType::Bf16 => "bfloat16",
    }
}

fn has(model: &ExportModel, suffix: &str) -> bool {
    model.file.tensor(&format!("blk.0.{suffix}")).is_some()
}

/// `rope_scaling` (transformers 4) for a linear position multiplier (`None` when there
/// is none).
fn rope_scaling(scale: f32) -> Value {
    if scale == 1.0 {
        Value::Null
    } else {
        json!({ "rope_type": "linear", "factor": num(1.0 / scale) })
    }
}

/// One entry of `rope_parameters` (transformers 5).
fn rope_parameters(base: f32, scale: f32) -> Value {
    let mut v = json!({ "rope_theta": num(base), "rope_type": "default" });
    if scale != 1.0 {
        v["rope_type"] = json!("linear");
        v["factor"] = num(1.0 / scale);
    }
    v
}

pub fn config_json(model: &ExportModel, dtype: FloatType) -> Result<Value> {
    let c = &model.cfg;
    let global = c
        .layers
        .iter()
        .find(|l| l.window.is_none())
        .unwrap_or(&c.layers[0]);
    let mut v = json!({
        "vocab_size": c.vocab_size,
        "hidden_size": c.n_embd,
        "intermediate_size": c.n_ff,
        "num_hidden_layers": c.n_layer,
        "num_attention_heads": c.n_head,
        "num_key_value_heads": c.n_head_kv,
        "head_dim": c.head_dim_k,
        "max_position_embeddings": c.n_ctx_train,
        "rms_norm_eps": num(c.rms_eps),
        "rope_theta": num(global.rope_base),
        "rope_scaling": rope_scaling(global.rope_scale),
        "rope_parameters": rope_parameters(global.rope_base, global.rope_scale),
        "tie_word_embeddings": model.tied,
        "torch_dtype": torch_dtype(dtype),
        "dtype": torch_dtype(dtype),
        "use_cache": true,
        "attention_dropout": 0.0,
    });
    let layer_types: Vec<&str> = c
        .layers
        .iter()
        .map(|l| match l.window {
            Some(_) => "sliding_attention",
            None => "full_attention",
        })
        .collect();
    v["layer_types"] = json!(layer_types);
    let obj = v
        .as_object_mut()
        .ok_or_else(|| ConvertError::Invalid("config".into()))?;
    let ids = [
        ("bos_token_id", model.token_id("bos_token_id")),
        ("eos_token_id", model.token_id("eos_token_id")),
        ("pad_token_id", model.token_id("padding_token_id")),
    ];
    for (k, id) in ids {
        if let Some(id) = id {
            obj.insert(k.into(), json!(id));
        }
    }
    let refuse = |what: &str| {
        Err(ConvertError::Invalid(format!(
            "{}: {what} has no Hugging Face {} equivalent",
            model.spec.name, model.spec.name
        )))
    };
    match model.spec.name {
        "llama" => {
            let bias = has(model, "attn_q.bias");
            if bias != has(model, "attn_output.bias") {
                return refuse("a bias on some attention projections but not all");
            }
            extend(
                obj,
                json!({
                    "architectures": ["LlamaForCausalLM"],
                    "model_type": "llama",
                    "hidden_act": "silu",
                    "attention_bias": bias,
                    "mlp_bias": false,
                    "pretraining_tp": 1,
                }),
            );
        }
        "qwen2" => {
            if has(model, "attn_output.bias") {
                return refuse("an attention output bias");
            }
            extend(
                obj,
                json!({
                    "architectures": ["Qwen2ForCausalLM"],
                    "model_type": "qwen2",
                    "hidden_act": "silu",
                    "use_sliding_window": false,
                    "max_window_layers": c.n_layer,
                }),
            );
        }
        "gemma3" => {
            let local = c.layers.iter().find(|l| l.window.is_some());
            let local_base = local.map_or(10_000.0, |l| l.rope_base);
            let query_pre_attn_scalar = if c.n_layer == 62 {
                c.n_embd / c.n_head
            } else {
                c.head_dim_k
            };
            extend(
                obj,
                json!({
                    "architectures": ["Gemma3ForCausalLM"],
                    "model_type": "gemma3_text",
                    "hidden_activation": "gelu_pytorch_tanh",
                    "query_pre_attn_scalar": query_pre_attn_scalar,
                    "sliding_window": local.and_then(|l| l.window),
                    "rope_local_base_freq": num(local_base),
                    "rope_parameters": {
                        "full_attention": rope_parameters(global.rope_base, global.rope_scale),
                        "sliding_attention": rope_parameters(local_base, 1.0),
                    },
                    "final_logit_softcapping": c.final_logit_softcap.map(num),
                    "attn_logit_softcapping": null,
                    "attention_bias": false,
                }),
            );
        }
        other => return refuse(&format!("architecture {other:?}")),
    }
    Ok(v)
}

fn extend(obj: &mut Map<String, Value>, more: Value) {
    if let Value::Object(m) = more {
        obj.extend(m);
    }
}

/// The ids that end generation: `eos_token_id`, then `eot_token_id` if different.
pub fn eos_ids(model: &ExportModel) -> Vec<u32> {
    let mut ids: Vec<u32> = Vec::new();
    for key in ["eos_token_id", "eot_token_id"] {
        if let Some(id) = model.token_id(key) {
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
    }
    ids
}

pub fn generation_config(model: &ExportModel) -> Value {
    let eos = eos_ids(model);
    let mut v = json!({ "_from_model_config": false });
    if let Some(bos) = model.token_id("bos_token_id") {
        v["bos_token_id"] = json!(bos);
    }
    match eos.as_slice() {
        [] => {}
        [one] => v["eos_token_id"] = json!(one),
        many => v["eos_token_id"] = json!(many),
    }
    if let Some(pad) = model.token_id("padding_token_id") {
        v["pad_token_id"] = json!(pad);
    }
    v
}

/// The text of a special token id.
fn token_text(model: &ExportModel, key: &str) -> Value {
    let Some(id) = model.token_id(key) else {
        return Value::Null;
    };
    match model.file.get_array("tokenizer.ggml.tokens") {
        Ok(Some(arr)) => arr
            .as_strings()
            .and_then(|t| t.get(id as usize))
            .map_or(Value::Null, |s| json!(s)),
        _ => Value::Null,
    }
}

pub fn tokenizer_config(model: &ExportModel) -> Value {
    let mut v = json!({
        "tokenizer_class": "PreTrainedTokenizerFast",
        "clean_up_tokenization_spaces": false,
        "model_max_length": model.cfg.n_ctx_train,
        "add_bos_token": model.meta_bool("tokenizer.ggml.add_bos_token").unwrap_or(false),
        "add_eos_token": model.meta_bool("tokenizer.ggml.add_eos_token").unwrap_or(false),
    });
    for (name, key) in [
        ("bos_token", "bos_token_id"),
        ("eos_token", "eos_token_id"),
        ("unk_token", "unknown_token_id"),
        ("pad_token", "padding_token_id"),
    ] {
        let text = token_text(model, key);
        if !text.is_null() {
            v[name] = text;
        }
    }
    if let Some(t) = model.meta_str("tokenizer.chat_template") {
        v["chat_template"] = json!(t);
    }
    v
}
