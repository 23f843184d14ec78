//! `mote quantize HF_FOLDER`: tiny random Llama and Qwen2 checkpoints (made by
//! scripts/fixtures/hf_tiny.py with transformers, committed under tests/fixtures/hf)
//! are converted through the quantize pipeline, loaded by mote-model and compared with
//! transformers' own logits and token ids.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use mote_compress::quantize::{quantize_source, Preset, QuantizeOptions};
use mote_compress::CompressError;
use mote_convert::hf::{HfError, HfModel};
use mote_file::{GgufFile, MetaValue};
use mote_model::{LoadOptions, Model};
use mote_tokenizer::Tokenizer;
use serde_json::Value;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hf")
}

fn scratch(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("mote-hf-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn convert(dir: &Path, out: &Path, ty: &str) -> Result<(), CompressError> {
    let model = HfModel::open(dir)?;
    let mut opts = QuantizeOptions::new(Preset::parse(ty)?);
    opts.threads = 2;
    let cancel = AtomicBool::new(false);
    quantize_source(&model, out, &opts, &cancel, &mut |_, _, _| {}).map(|_| ())
}

struct Reference {
    vocab: usize,
    sequences: Vec<Vec<u32>>,
    /// Per sequence, `len * vocab` logits.
    logits: Vec<Vec<f32>>,
    tokenizer: Vec<(String, Vec<u32>, Vec<u32>)>,
}

fn reference(name: &str) -> Reference {
    let text = std::fs::read_to_string(fixtures().join(format!("{name}.ref.json"))).unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    let ids = |x: &Value| -> Vec<u32> {
        x.as_array()
            .unwrap()
            .iter()
            .map(|i| i.as_u64().unwrap() as u32)
            .collect()
    };
    let vocab = v["vocab_size"].as_u64().unwrap() as usize;
    let sequences: Vec<Vec<u32>> = v["sequences"].as_array().unwrap().iter().map(ids).collect();
    let raw = std::fs::read(fixtures().join(format!("{name}.logits.bin"))).unwrap();
    let all: Vec<f32> = raw
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    let mut logits = Vec::new();
    let mut at = 0;
    for s in &sequences {
        let n = s.len() * vocab;
        logits.push(all[at..at + n].to_vec());
        at += n;
    }
    assert_eq!(at, all.len(), "logits file does not match the sequences");
    let tokenizer = v["tokenizer"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["text"].as_str().unwrap().to_string(),
                ids(&t["ids"]),
                ids(&t["ids_with_special"]),
            )
        })
        .collect();
    Reference {
        vocab,
        sequences,
        logits,
        tokenizer,
    }
}

fn log_softmax(x: &[f32]) -> Vec<f64> {
    let max = x.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b)) as f64;
    let sum: f64 = x.iter().map(|&v| (v as f64 - max).exp()).sum();
    x.iter().map(|&v| v as f64 - max - sum.ln()).collect()
}

fn argmax(x: &[f32]) -> usize {
    x.iter()
        .enumerate()
        .fold((0, f32::NEG_INFINITY), |(bi, bv), (i, &v)| {
            if v > bv {
                (i, v)
            } else {
                (bi, bv)
            }
        })
        .0
}

/// Mean KL(transformers ‖ mote) over all positions, and the fraction of positions whose
/// top token agrees.
fn compare(model: &Model, r: &Reference) -> (f64, f64) {
    let (mut kl, mut same, mut n) = (0.0, 0usize, 0usize);
    for (seq, want) in r.sequences.iter().zip(&r.logits) {
        let mut cache = model.new_cache(seq.len());
        let got = model.forward(seq, &mut cache, true).unwrap();
        assert_eq!(got.len(), want.len());
        for (g, w) in got.chunks(r.vocab).zip(want.chunks(r.vocab)) {
            let (lg, lw) = (log_softmax(g), log_softmax(w));
            kl += lw
                .iter()
                .zip(&lg)
                .map(|(&a, &b)| a.exp() * (a - b))
                .sum::<f64>();
            same += usize::from(argmax(g) == argmax(w));
            n += 1;
        }
    }
    (kl / n as f64, same as f64 / n as f64)
}

fn check_model(name: &str, ty: &str, max_kl: f64, min_agree: f64) -> PathBuf {
    let dir = scratch(&format!("{name}-{ty}"));
    let out = dir.join(format!("{name}-{ty}.gguf"));
    convert(&fixtures().join(name), &out, ty).unwrap();
    let r = reference(name);
    let model = Model::load(&out, &LoadOptions::default()).unwrap();
    assert_eq!(model.config().vocab_size, r.vocab);
    let (kl, agree) = compare(&model, &r);
    eprintln!(
        "{name} {ty}: mean KL {kl:.3e}, top-1 agreement {:.1}%",
        agree * 100.0
    );
    assert!(kl <= max_kl, "{name} {ty}: mean KL {kl} > {max_kl}");
    assert!(
        agree >= min_agree,
        "{name} {ty}: agreement {agree} < {min_agree}"
    );
    out
}

fn check_tokenizer(gguf: &Path, name: &str) {
    let file = GgufFile::open(gguf).unwrap();
    let tok = Tokenizer::from_gguf(&file).unwrap();
    let r = reference(name);
    let mut bad = Vec::new();
    for (text, ids, ids_special) in &r.tokenizer {
        let got = tok.encode(text, false, true);
        if &got != ids {
            bad.push(format!("{text:?}: mote {got:?}, HF {ids:?}"));
        }
        let got = tok.encode(text, true, true);
        if &got != ids_special {
            bad.push(format!(
                "{text:?} (+special): mote {got:?}, HF {ids_special:?}"
            ));
        }
    }
    assert!(
        bad.is_empty(),
        "{name}: token ids differ:\n{}",
        bad.join("\n")
    );
    eprintln!(
        "{name}: {} strings × 2 encode exactly as the reference",
        r.tokenizer.len()
    );
}

fn meta<'f>(file: &'f GgufFile, key: &str) -> &'f MetaValue {
    file.get(key).unwrap_or_else(|| panic!("{key} missing"))
}

#[test]
fn llama_f32_f16_q8_0_match_transformers() {
    let f32 = check_model("llama-tiny", "F32", 1e-4, 1.0);
    check_tokenizer(&f32, "llama-tiny");
    let f16 = check_model("llama-tiny", "F16", 1e-4, 0.98);
    check_model("llama-tiny", "Q8_0", 1e-2, 0.85);

    let file = GgufFile::open(&f16).unwrap();
    assert_eq!(file.architecture().unwrap(), "llama");
    assert!(file.tensor("output.weight").is_some(), "untied lm_head");
    let tok = Tokenizer::from_gguf(&file).unwrap();
    assert_eq!(
        tok.pre_tokenizer().map(|p| format!("{p:?}")),
        Some("StarCoder".into())
    );
    assert!(tok.adds_bos(), "TemplateProcessing adds <|endoftext|>");
    assert_eq!(
        file.get_u32("tokenizer.ggml.bos_token_id").unwrap(),
        Some(0)
    );
    assert_eq!(
        file.get_u32("tokenizer.ggml.eos_token_id").unwrap(),
        Some(2)
    );
    let types = meta(&file, "tokenizer.ggml.token_type");
    let MetaValue::Array(types) = types else {
        panic!("token_type is not an array")
    };
    let types = types.to_i64_vec().unwrap();
    assert_eq!(&types[..3], &[3, 3, 3], "special tokens are CONTROL");
    assert_eq!(types.last(), Some(&4), "<custom> is USER_DEFINED");
    assert!(file.get_str("tokenizer.chat_template").unwrap().is_some());
    assert_eq!(file.get_u32("general.file_type").unwrap(), Some(1));
    // Norms stay F32.
    assert_eq!(
        file.tensor("blk.0.attn_norm.weight").unwrap().dtype,
        mote_tensor::DType::F32
    );
}

#[test]
fn qwen2_bf16_sharded_tied_matches_transformers() {
    let f32 = check_model("qwen2-tiny", "F32", 1e-4, 1.0);
    check_tokenizer(&f32, "qwen2-tiny");
    check_model("qwen2-tiny", "F16", 1e-4, 0.98);
    let q8 = check_model("qwen2-tiny", "Q8_0", 1e-2, 0.85);

    let file = GgufFile::open(&q8).unwrap();
    assert_eq!(file.architecture().unwrap(), "qwen2");
    assert!(file.tensor("output.weight").is_none(), "tied embeddings");
    assert!(file.tensor("blk.1.attn_k.bias").is_some());
    let tok = Tokenizer::from_gguf(&file).unwrap();
    assert_eq!(
        tok.pre_tokenizer().map(|p| format!("{p:?}")),
        Some("Qwen2".into())
    );
    assert!(!tok.adds_bos());
    let MetaValue::Array(names) = meta(&file, "tokenizer.ggml.tokens") else {
        panic!("tokens is not an array")
    };
    let names = names.as_strings().unwrap();
    assert_eq!(names.len(), 496, "padded to config vocab_size");
    assert_eq!(names[495], "[PAD495]");
    assert_eq!(
        file.get_u32("tokenizer.ggml.padding_token_id").unwrap(),
        Some(480)
    );
    assert_eq!(
        file.get_u32("tokenizer.ggml.eos_token_id").unwrap(),
        Some(482)
    );
}

/// A copy of a fixture folder whose `file` is replaced by `edit(original)`.
fn edited(name: &str, tag: &str, file: &str, edit: impl FnOnce(&mut Value)) -> PathBuf {
    let dir = scratch(tag).join(name);
    std::fs::create_dir_all(&dir).unwrap();
    for e in std::fs::read_dir(fixtures().join(name)).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), dir.join(e.file_name())).unwrap();
    }
    let p = dir.join(file);
    let mut v: Value = serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
    edit(&mut v);
    std::fs::write(&p, v.to_string()).unwrap();
    dir
}

#[test]
fn bad_folders_give_typed_errors() {
    let open = |d: &Path| HfModel::open(d).err().expect("should fail");

    let empty = scratch("empty");
    assert!(matches!(
        open(&empty),
        HfError::MissingFile(_, "config.json")
    ));

    let d = edited("llama-tiny", "arch", "config.json", |v| {
        v["architectures"] = serde_json::json!(["GPTNeoXForCausalLM"]);
    });
    assert!(matches!(open(&d), HfError::UnknownArchitecture(a) if a == "GPTNeoXForCausalLM"));

    let d = edited("llama-tiny", "field", "config.json", |v| {
        v.as_object_mut().unwrap().remove("hidden_size");
    });
    assert!(matches!(open(&d), HfError::MissingField { field, .. } if field == "hidden_size"));

    let d = edited("llama-tiny", "shape", "config.json", |v| {
        v["intermediate_size"] = serde_json::json!(96);
    });
    assert!(matches!(open(&d), HfError::BadShape { .. }));

    let d = edited("llama-tiny", "layers", "config.json", |v| {
        v["num_hidden_layers"] = serde_json::json!(3);
    });
    assert!(matches!(open(&d), HfError::MissingTensor(t) if t == "blk.2.attn_norm.weight"));

    // A hostile layer count fails at the first missing layer, without allocating for it.
    let d = edited("llama-tiny", "huge", "config.json", |v| {
        v["num_hidden_layers"] = serde_json::json!(4_000_000_000u64);
    });
    assert!(matches!(open(&d), HfError::MissingTensor(t) if t == "blk.2.attn_norm.weight"));

    let d = edited("llama-tiny", "act", "config.json", |v| {
        v["hidden_act"] = serde_json::json!("relu");
    });
    assert!(matches!(open(&d), HfError::Unsupported(_)));

    let d = edited("llama-tiny", "pre", "tokenizer.json", |v| {
        v["pre_tokenizer"] = serde_json::json!({"type": "Whitespace"});
    });
    let e = open(&d);
    assert!(
        matches!(&e, HfError::Tokenizer(m) if m.contains("pre_tokenizer")),
        "{e}"
    );

    let d = edited("llama-tiny", "model", "tokenizer.json", |v| {
        v["model"]["type"] = serde_json::json!("Unigram");
    });
    assert!(matches!(open(&d), HfError::Tokenizer(_)));

    let d = edited("llama-tiny", "json", "config.json", |_| {});
    std::fs::write(d.join("config.json"), "{ not json").unwrap();
    assert!(matches!(open(&d), HfError::Json { .. }));

    let d = edited("llama-tiny", "types", "config.json", |v| {
        v["num_attention_heads"] = serde_json::json!("four");
    });
    assert!(matches!(open(&d), HfError::BadField { .. }));
}

#[test]
fn llama_sentencepiece_f16_matches_transformers() {
    let f16 = check_model("llama-spm-tiny", "F16", 1e-4, 0.98);
    check_tokenizer(&f16, "llama-spm-tiny");
    // A k-quant preset on 64-wide rows: every matrix takes a fallback type.
    check_model("llama-spm-tiny", "Q4_K_M", 0.3, 0.5);

    let file = GgufFile::open(&f16).unwrap();
    assert_eq!(file.get_str("tokenizer.ggml.model").unwrap(), Some("llama"));
    assert!(file.get("tokenizer.ggml.scores").is_some());
    assert_eq!(
        file.get_u32("tokenizer.ggml.bos_token_id").unwrap(),
        Some(1)
    );
    assert_eq!(
        file.get_u32("tokenizer.ggml.eos_token_id").unwrap(),
        Some(2)
    );
    assert_eq!(
        file.get_u32("tokenizer.ggml.unknown_token_id").unwrap(),
        Some(0)
    );
    let tok = Tokenizer::from_gguf(&file).unwrap();
    assert!(tok.adds_bos());
    assert!(tok.adds_space_prefix());
}

#[test]
fn gemma3_bf16_matches_transformers() {
    let f32 = check_model("gemma3-tiny", "F32", 1e-4, 0.98);
    check_tokenizer(&f32, "gemma3-tiny");
    check_model("gemma3-tiny", "Q8_0", 1e-2, 0.85);

    let file = GgufFile::open(&f32).unwrap();
    assert_eq!(file.architecture().unwrap(), "gemma3");
    assert_eq!(
        file.get_u32("gemma3.attention.sliding_window").unwrap(),
        Some(16)
    );
    assert_eq!(
        file.get_f32("gemma3.rope.freq_base_swa").unwrap(),
        Some(10_000.0)
    );
    assert_eq!(
        file.get_f32("gemma3.final_logit_softcapping").unwrap(),
        Some(30.0)
    );
    assert_eq!(
        file.get_u32("gemma3.attention.key_length").unwrap(),
        Some(16)
    );
    assert_eq!(
        file.get_bool("tokenizer.ggml.add_space_prefix").unwrap(),
        Some(false)
    );
    assert!(file.tensor("output.weight").is_none(), "tied embeddings");
    assert!(file.tensor("blk.5.post_ffw_norm.weight").is_some());
}
