//! onnxruntime-genai's `genai_config.json` for the exported decoder: the model type, the
//! Optimum input/output names (`%d` is the layer), and greedy search settings. Past and
//! present are separate buffers (the graph concatenates them), so
//! `past_present_share_buffer` is false.

use serde_json::{json, Value};

use super::MODEL_FILE;
use crate::export::hf_files::eos_ids;
use crate::export::model::ExportModel;

pub fn genai_config(model: &ExportModel) -> Value {
    let c = &model.cfg;
    let ty = match model.spec.name {
        "gemma3" => "gemma3_text",
        other => other,
    };
    let eos = eos_ids(model);
    let pad = model
        .token_id("padding_token_id")
        .or_else(|| eos.first().copied())
        .unwrap_or(0);
    let context = c.n_ctx_train.min(4096);
    json!({
        "model": {
            "bos_token_id": model.token_id("bos_token_id"),
            "context_length": context,
            "decoder": {
                "session_options": { "log_id": "onnxruntime-genai", "provider_options": [] },
                "filename": MODEL_FILE,
                "head_size": c.head_dim_k,
                "hidden_size": c.n_embd,
                "inputs": {
                    "input_ids": "input_ids",
                    "attention_mask": "attention_mask",
                    "position_ids": "position_ids",
                    "past_key_names": "past_key_values.%d.key",
                    "past_value_names": "past_key_values.%d.value",
                },
                "outputs": {
                    "logits": "logits",
                    "present_key_names": "present.%d.key",
                    "present_value_names": "present.%d.value",
                },
                "num_attention_heads": c.n_head,
                "num_hidden_layers": c.n_layer,
                "num_key_value_heads": c.n_head_kv,
            },
            "eos_token_id": if eos.len() == 1 { json!(eos[0]) } else { json!(eos) },
            "pad_token_id": pad,
            "type": ty,
            "vocab_size": c.vocab_size,
        },
        "search": {
            "diversity_penalty": 0.0,
            "do_sample": false,
            "early_stopping": true,
            "length_penalty": 1.0,
            "max_length": context,
            "min_length": 0,
            "no_repeat_ngram_size": 0,
            "num_beams": 1,
            "num_return_sequences": 1,
            "past_present_share_buffer": false,
            "repetition_penalty": 1.0,
            "temperature": 1.0,
            "top_k": 1,
            "top_p": 1.0,
        },
    })
}
