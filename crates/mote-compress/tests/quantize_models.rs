//! Quantizes the real models and checks the results: they parse, carry the planned
//! types and file type, load and run in mote, and score the perplexity llama.cpp
//! measured on the same files (tests/fixtures/ppl_llama.json, from
//! scripts/fixtures/compress_fixtures.py).

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use mote_compress::perplexity::{evaluate, tokenize_text, KlMode, PerplexityOptions};
use mote_compress::quantize::{parse_override, quantize_file, Preset, QuantizeOptions};
use mote_compress::CompressError;
use mote_file::GgufFile;
use mote_model::{LoadOptions, Model};
use mote_tensor::DType;
use mote_tokenizer::Tokenizer;

fn models_dir() -> PathBuf {
    std::env::var_os("MOTE_MODELS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models"))
}

fn model(name: &str) -> Option<PathBuf> {
    let p = models_dir().join(name);
    if p.exists() {
        Some(p)
    } else {
        assert!(
            std::env::var_os("MOTE_REQUIRE_MODELS").is_none(),
            "{name} missing: run scripts/fetch-models.sh all"
        );
        eprintln!("skipping: {} not found", p.display());
        None
    }
}

fn scratch(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("mote-compress-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn quantize(input: &Path, output: &Path, opts: &QuantizeOptions) -> Result<(), CompressError> {
    let cancel = AtomicBool::new(false);
    quantize_file(input, output, opts, &cancel, &mut |_, _, _| {}).map(|_| ())
}

fn no_temp_files(dir: &Path) {
    let left: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains(".tmp-"))
        .collect();
    assert!(left.is_empty(), "temporary files left: {left:?}");
}

fn runs(path: &Path) {
    let m = Model::load(path, &LoadOptions::default()).unwrap();
    let mut cache = m.new_cache(8);
    let logits = m.forward(&[1, 2, 3], &mut cache, false).unwrap();
    assert_eq!(logits.len(), m.config().vocab_size);
    assert!(logits.iter().all(|x| x.is_finite()));
}

#[test]
fn tiny_model_quantizes_to_every_preset_and_runs() {
    let Some(tiny) = model("tiny.gguf") else {
        return;
    };
    let dir = scratch("tiny");
    for name in ["Q8_0", "Q4_0", "Q5_1", "Q4_K_M", "Q2_K", "BF16"] {
        let preset = Preset::parse(name).unwrap();
        let out = dir.join(format!("tiny-{name}.gguf"));
        let mut opts = QuantizeOptions::new(preset);
        opts.allow_requantize = true;
        quantize(&tiny, &out, &opts).unwrap();
        let f = GgufFile::open(&out).unwrap();
        assert_eq!(
            f.get_u32("general.file_type").unwrap(),
            Some(preset.file_type())
        );
        // Every 2-D weight got the base type or one of its fallbacks; vectors stayed.
        let src = GgufFile::open(&tiny).unwrap();
        for t in f.tensors() {
            let orig = src.tensor(&t.name).unwrap();
            if t.dims.len() == 1 {
                assert_eq!(t.dtype, orig.dtype, "{}", t.name);
            } else {
                assert!(
                    t.dtype == preset.base_type()
                        || !t.dtype.is_quantized()
                        || t.dims[0] % preset.base_type().block_len() as u64 != 0
                        || matches!(t.dtype, DType::Q6_K | DType::Q8_0),
                    "{} {}",
                    t.name,
                    t.dtype
                );
            }
        }
        runs(&out);
    }
    no_temp_files(&dir);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn overrides_requantize_refusal_and_cancel() {
    let Some(smol) = model("SmolLM2-135M-Instruct.Q4_1.gguf") else {
        return;
    };
    let dir = scratch("refuse");
    let out = dir.join("out.gguf");
    let err = quantize(&smol, &out, &QuantizeOptions::new(Preset::Q8_0)).unwrap_err();
    assert!(matches!(err, CompressError::Requantize { .. }), "{err}");
    assert!(!out.exists());

    let mut opts = QuantizeOptions::new(Preset::Q8_0);
    opts.allow_requantize = true;
    let cancel = AtomicBool::new(true);
    let err = quantize_file(&smol, &out, &opts, &cancel, &mut |_, _, _| {}).unwrap_err();
    assert!(matches!(err, CompressError::Interrupted));
    assert!(!out.exists());
    no_temp_files(&dir);

    // Dry run with an override: attn_v to Q8_0, the rest Q4_0 (output rule: Q8_0
    // fallback of Q6_K on 576-wide rows).
    opts = QuantizeOptions::new(Preset::Q4_0);
    opts.allow_requantize = true;
    opts.dry_run = true;
    opts.overrides = vec![parse_override("attn_v=q8_0").unwrap()];
    let s = quantize_file(&smol, &out, &opts, &cancel_off(), &mut |_, _, _| {}).unwrap();
    for t in &s.tensors {
        if t.name.contains("attn_v") {
            assert_eq!(t.to, "Q8_0");
        } else if t.name.contains("ffn_up") {
            assert_eq!(t.to, "Q4_0");
        }
    }
    assert!(!out.exists());
    std::fs::remove_dir_all(&dir).unwrap();
}

fn cancel_off() -> AtomicBool {
    AtomicBool::new(false)
}

/// mote's perplexity on SmolLM2 files mote quantized matches llama.cpp's on the same
/// files within 1%.
#[test]
fn smollm2_quantized_perplexity_matches_llama_cpp() {
    let Some(smol) = model("SmolLM2-135M-Instruct.Q4_1.gguf") else {
        return;
    };
    let fixture: serde_json::Value =
        serde_json::from_str(include_str!("fixtures/ppl_llama.json")).unwrap();
    let text_path = models_dir()
        .join("texts")
        .join(fixture["text"].as_str().unwrap());
    let Ok(raw) = std::fs::read(&text_path) else {
        eprintln!("skipping: {} not found", text_path.display());
        return;
    };
    let bytes = fixture["bytes"].as_u64().unwrap() as usize;
    let text = String::from_utf8_lossy(&raw[..bytes.min(raw.len())]).into_owned();
    let popts = PerplexityOptions {
        ctx: fixture["ctx"].as_u64().unwrap() as usize,
        chunks: Some(fixture["chunks"].as_u64().unwrap() as usize),
    };

    let dir = scratch("ppl");
    let f16 = dir.join("f16.gguf");
    let mut opts = QuantizeOptions::new(Preset::F16);
    opts.allow_requantize = true;
    quantize(&smol, &f16, &opts).unwrap();
    for name in ["F16", "Q8_0", "Q4_K_M"] {
        let path = if name == "F16" {
            f16.clone()
        } else {
            let p = dir.join(format!("{name}.gguf"));
            quantize(
                &f16,
                &p,
                &QuantizeOptions::new(Preset::parse(name).unwrap()),
            )
            .unwrap();
            p
        };
        let m = Model::load(&path, &LoadOptions::default()).unwrap();
        let tok = Tokenizer::from_gguf(m.gguf()).unwrap();
        let tokens = tokenize_text(&tok, &text);
        let r = evaluate(&m, &tok, &tokens, &popts, KlMode::None, &mut |_, _| {}).unwrap();
        let want = fixture["ppl"][name]["ppl"].as_f64().unwrap();
        assert_eq!(
            r.scored_tokens as u64,
            fixture["ppl"][name]["scored"].as_u64().unwrap()
        );
        let rel = (r.ppl - want).abs() / want;
        eprintln!(
            "{name}: mote {:.4} llama.cpp {want:.4} ({:.3}%)",
            r.ppl,
            rel * 100.0
        );
        assert!(rel < 0.01, "{name}: mote {} vs llama.cpp {want}", r.ppl);
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
