//! `tokenizer.json` (Hugging Face `tokenizers`) from a GGUF vocabulary. Byte-level BPE
//! keeps its merges and gets the pre-tokenizer of its `tokenizer.ggml.pre` family;
//! SentencePiece becomes a byte-fallback BPE whose merges come from the piece scores
//! (a merge ranks as the score of the piece it makes, as SentencePiece merges), the form
//! Hugging Face uses for Llama and Gemma tokenizers.

use std::collections::HashMap;

use mote_tokenizer::{PreTokenizer, Tokenizer};
use serde_json::{json, Value};

use super::hf_files::tokenizer_config;
use super::model::ExportModel;
use super::spm_model::spm_model;
use super::staging::StagedDir;
use crate::error::{ConvertError, Result};

const CONTROL: i64 = 3;
const USER_DEFINED: i64 = 4;
const UNKNOWN: i64 = 2;
const UNUSED: i64 = 5;

/// The split patterns of the Llama-3 and Qwen2 families (digits in groups of up to three,
/// or one by one), as their Hugging Face tokenizers write them.
const LLAMA3_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const QWEN2_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

fn invalid(m: String) -> ConvertError {
    ConvertError::Invalid(m)
}

fn byte_level(use_regex: bool) -> Value {
    json!({ "type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": use_regex })
}

fn split_then_bytes(pattern: &str) -> Value {
    json!({ "type": "Sequence", "pretokenizers": [
        { "type": "Split", "pattern": { "Regex": pattern }, "behavior": "Isolated", "invert": false },
        byte_level(false),
    ]})
}

/// Hugging Face's pre-tokenizer for a family, and its normalizer.
fn bpe_pre(pre: PreTokenizer) -> Result<(Value, Value)> {
    Ok(match pre {
        PreTokenizer::Gpt2 => (byte_level(true), Value::Null),
        PreTokenizer::StarCoder => (
            json!({ "type": "Sequence", "pretokenizers": [
                { "type": "Digits", "individual_digits": true },
                byte_level(true),
            ]}),
            Value::Null,
        ),
        PreTokenizer::Llama3 => (split_then_bytes(LLAMA3_SPLIT), Value::Null),
        PreTokenizer::Qwen2 => (split_then_bytes(QWEN2_SPLIT), json!({ "type": "NFC" })),
        PreTokenizer::Default => {
            return Err(invalid(
                "the \"default\" BPE pre-tokenizer has no tokenizer.json form; \
                 the tokenizer cannot be exported"
                    .into(),
            ))
        }
    })
}

/// SentencePiece merges: every split of a piece into two pieces, ranked by the score of
/// the piece it makes (higher first), ties in id order.
fn spm_merges(tokens: &[String], scores: &[f32], types: &[i64]) -> Vec<String> {
    let normal = |id: usize| types.get(id).copied().unwrap_or(1) == 1;
    let ids: HashMap<&str, usize> = tokens
        .iter()
        .enumerate()
        .filter(|&(i, _)| normal(i))
        .map(|(i, t)| (t.as_str(), i))
        .collect();
    let mut found: Vec<(f32, usize, usize, usize)> = Vec::new();
    for (id, piece) in tokens.iter().enumerate().filter(|&(i, _)| normal(i)) {
        let score = scores.get(id).copied().unwrap_or(0.0);
        for (at, _) in piece.char_indices().skip(1) {
            let (l, r) = piece.split_at(at);
            if let (Some(&li), Some(&ri)) = (ids.get(l), ids.get(r)) {
                found.push((score, id, li, ri));
            }
        }
    }
    found.sort_by(|a, b| {
        b.0.total_cmp(&a.0)
            .then(a.1.cmp(&b.1))
            .then(a.2.cmp(&b.2))
            .then(a.3.cmp(&b.3))
    });
    found
        .into_iter()
        .map(|(_, _, l, r)| format!("{} {}", tokens[l], tokens[r]))
        .collect()
}

fn strings(model: &ExportModel, key: &str) -> Result<Vec<String>> {
    model
        .file
        .get_array(key)
        .ok()
        .flatten()
        .and_then(|a| a.as_strings())
        .map(|s| s.to_vec())
        .ok_or_else(|| {
            invalid(format!(
                "{key} is missing; the tokenizer cannot be exported"
            ))
        })
}

/// Writes `tokenizer.json` and `tokenizer_config.json`, and for a SentencePiece
/// vocabulary also `tokenizer.model` (which mote's own import and slow tokenizers read).
pub fn write_tokenizer_files(model: &ExportModel, stage: &StagedDir) -> Result<()> {
    let (json, spm) = tokenizer_json(model)?;
    stage.write_json("tokenizer.json", &json)?;
    stage.write_json("tokenizer_config.json", &tokenizer_config(model))?;
    if let Some(bytes) = spm {
        stage.write("tokenizer.model", &bytes)?;
    }
    Ok(())
}

fn tokenizer_json(model: &ExportModel) -> Result<(Value, Option<Vec<u8>>)> {
    let tok = Tokenizer::from_gguf(model.file).map_err(|e| invalid(e.to_string()))?;
    let tokens = strings(model, "tokenizer.ggml.tokens")?;
    let types: Vec<i64> = model
        .file
        .get_array("tokenizer.ggml.token_type")
        .ok()
        .flatten()
        .and_then(|a| a.to_i64_vec())
        .unwrap_or_else(|| vec![1; tokens.len()]);
    let added: Vec<Value> = types
        .iter()
        .enumerate()
        .filter(|&(_, &t)| t == CONTROL || t == USER_DEFINED || t == UNKNOWN)
        .map(|(id, &t)| {
            json!({
                "id": id, "content": tokens[id], "single_word": false, "lstrip": false,
                "rstrip": false, "normalized": t == USER_DEFINED, "special": t != USER_DEFINED,
            })
        })
        .collect();
    // Unused slots (embedding rows past the tokenizer's vocabulary) are not tokens.
    let vocab: serde_json::Map<String, Value> = tokens
        .iter()
        .enumerate()
        .filter(|&(i, _)| types.get(i) != Some(&UNUSED))
        .map(|(i, t)| (t.clone(), json!(i)))
        .collect();
    let bos = tok.bos_id().filter(|_| tok.adds_bos());
    let post = match bos {
        Some(id) => {
            let text = &tokens[id as usize];
            json!({
                "type": "TemplateProcessing",
                "single": [
                    { "SpecialToken": { "id": text, "type_id": 0 } },
                    { "Sequence": { "id": "A", "type_id": 0 } },
                ],
                "pair": [
                    { "SpecialToken": { "id": text, "type_id": 0 } },
                    { "Sequence": { "id": "A", "type_id": 0 } },
                    { "SpecialToken": { "id": text, "type_id": 1 } },
                    { "Sequence": { "id": "B", "type_id": 1 } },
                ],
                "special_tokens": { text: { "id": text, "ids": [id], "tokens": [text] } },
            })
        }
        None => Value::Null,
    };
    let mut spm = None;
    let (model_json, normalizer, pre, decoder) = match tok.pre_tokenizer() {
        Some(family) => {
            let (pre, normalizer) = bpe_pre(family)?;
            let merges = strings(model, "tokenizer.ggml.merges")?;
            let m = json!({
                "type": "BPE", "dropout": null, "unk_token": null,
                "continuing_subword_prefix": null, "end_of_word_suffix": null,
                "fuse_unk": false, "byte_fallback": false,
                "ignore_merges": family == PreTokenizer::Llama3,
                "vocab": vocab, "merges": merges,
            });
            let decoder = json!({ "type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true });
            (m, normalizer, pre, decoder)
        }
        None => {
            let scores = model
                .file
                .get_array("tokenizer.ggml.scores")
                .ok()
                .flatten()
                .and_then(|a| a.to_f32_vec())
                .unwrap_or_default();
            let merges = spm_merges(&tokens, &scores, &types);
            spm = Some(spm_model(
                model,
                &tokens,
                &scores,
                &types,
                tok.adds_space_prefix(),
            ));
            let unk = tok.unknown_id().map(|id| json!(tokens[id as usize]));
            let m = json!({
                "type": "BPE", "dropout": null, "unk_token": unk,
                "continuing_subword_prefix": null, "end_of_word_suffix": null,
                "fuse_unk": true, "byte_fallback": true, "ignore_merges": false,
                "vocab": vocab, "merges": merges,
            });
            let space =
                json!({ "type": "Replace", "pattern": { "String": " " }, "content": "\u{2581}" });
            let mut decoders = vec![
                json!({ "type": "Replace", "pattern": { "String": "\u{2581}" }, "content": " " }),
                json!({ "type": "ByteFallback" }),
                json!({ "type": "Fuse" }),
            ];
            let normalizer = if tok.adds_space_prefix() {
                decoders.push(json!({ "type": "Strip", "content": " ", "start": 1, "stop": 0 }));
                json!({ "type": "Sequence", "normalizers": [
                    { "type": "Prepend", "prepend": "\u{2581}" }, space,
                ]})
            } else {
                space
            };
            let decoder = json!({ "type": "Sequence", "decoders": decoders });
            (m, normalizer, Value::Null, decoder)
        }
    };
    let json = json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": normalizer,
        "pre_tokenizer": pre,
        "post_processor": post,
        "decoder": decoder,
        "model": model_json,
    });
    Ok((json, spm))
}
