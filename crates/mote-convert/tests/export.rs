//! `mote export`: the Hugging Face folders that transformers checked (mote-compress's
//! tests/fixtures/hf, made by scripts/fixtures/hf_tiny.py) go through GGUF and back out
//! as safetensors with the same weights and settings, and `mote quantize` of the export
//! gives back the same GGUF; exports are byte-identical run to run; an interrupted export
//! leaves nothing behind.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use mote_compress::quantize::{quantize_source, Preset, QuantizeOptions};
use mote_convert::export::{export, ExportOptions, FloatType, Format};
use mote_convert::hf::HfModel;
use mote_convert::ConvertError;
use mote_file::{GgufFile, SafetensorsDir, SafetensorsFile};
use mote_tensor::quant::dequantize_row;
use serde_json::Value;

fn hf_fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../mote-compress/tests/fixtures/hf")
        .join(name)
}

fn model(name: &str) -> Option<PathBuf> {
    let dir = std::env::var_os("MOTE_MODELS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models"));
    let p = dir.join(name);
    if p.exists() {
        return Some(p);
    }
    assert!(
        std::env::var_os("MOTE_REQUIRE_MODELS").is_none(),
        "{name} missing: run scripts/fetch-models.sh all"
    );
    eprintln!("skipping: {} not found", p.display());
    None
}

fn scratch(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("mote-export-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn options(format: Format, dtype: Option<FloatType>) -> ExportOptions {
    ExportOptions {
        format,
        dtype,
        dequantize: false,
        ort_genai: false,
        accuracy_level: 4,
    }
}

fn run(input: &Path, out: &Path, opts: &ExportOptions) -> Result<(), ConvertError> {
    let cancel = AtomicBool::new(false);
    export(input, out, opts, &cancel, &mut |_, _, _| {}).map(|_| ())
}

/// A Hugging Face folder (or export) to an F32 GGUF, as `mote quantize DIR OUT --type F32`.
fn to_gguf(dir: &Path, out: &Path) {
    let model = HfModel::open(dir).unwrap();
    let mut opts = QuantizeOptions::new(Preset::parse("F32").unwrap());
    opts.threads = 1;
    let cancel = AtomicBool::new(false);
    quantize_source(&model, out, &opts, &cancel, &mut |_, _, _| {}).unwrap();
}

fn f32_values(dtype: mote_tensor::DType, bytes: &[u8], n: usize) -> Vec<f32> {
    let mut v = vec![0f32; n];
    dequantize_row(dtype, bytes, &mut v).unwrap();
    v
}

fn json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn safetensors_export_gives_back_the_checked_folders() {
    for name in ["llama-tiny", "llama-spm-tiny", "qwen2-tiny", "gemma3-tiny"] {
        let src = hf_fixture(name);
        let tmp = scratch(name);
        let gguf = tmp.join("model.gguf");
        to_gguf(&src, &gguf);
        let out = tmp.join("hf");
        run(&gguf, &out, &options(Format::Safetensors, None)).unwrap();

        // Every checkpoint tensor comes back under its name with its values.
        // The original may be sharded.
        let orig = SafetensorsDir::open(&src).unwrap();
        let back = SafetensorsFile::open(out.join("model.safetensors")).unwrap();
        let mut compared = 0;
        for t in orig.tensors() {
            if t.name.ends_with("rotary_emb.inv_freq") {
                continue;
            }
            let bt = back
                .tensor(&t.name)
                .unwrap_or_else(|| panic!("{name}: {} not exported", t.name));
            let bdata = back.tensor_bytes(bt);
            assert_eq!(bt.shape, t.shape, "{name}: {}", t.name);
            let (_, odata) = orig.tensor(&t.name).unwrap();
            let n = t.elements() as usize;
            let want = f32_values(t.dtype.to_ggml().unwrap(), odata.as_slice(), n);
            let got = f32_values(bt.dtype.to_ggml().unwrap(), bdata.as_slice(), n);
            assert_eq!(got, want, "{name}: {}", t.name);
            compared += 1;
        }
        assert!(compared > 8, "{name}: {compared} tensors");

        // The settings transformers reads agree with the original config.json.
        let (a, b) = (
            json(&src.join("config.json")),
            json(&out.join("config.json")),
        );
        for key in [
            "architectures",
            "model_type",
            "hidden_size",
            "intermediate_size",
            "num_hidden_layers",
            "num_attention_heads",
            "num_key_value_heads",
            "head_dim",
            "rms_norm_eps",
            "tie_word_embeddings",
            "vocab_size",
            "sliding_window",
            "layer_types",
            "query_pre_attn_scalar",
            "final_logit_softcapping",
            "rope_parameters",
        ] {
            if !a[key].is_null() {
                assert_eq!(a[key], b[key], "{name}: config.json {key}");
            }
        }

        // `mote quantize` of the export gives back the same GGUF tensors and vocabulary.
        let again = tmp.join("again.gguf");
        to_gguf(&out, &again);
        let (g1, g2) = (
            GgufFile::open(&gguf).unwrap(),
            GgufFile::open(&again).unwrap(),
        );
        assert_eq!(g1.tensors().len(), g2.tensors().len(), "{name}");
        for t in g1.tensors() {
            let u = g2.tensor(&t.name).unwrap();
            assert_eq!((&u.dims, u.dtype), (&t.dims, t.dtype), "{name}: {}", t.name);
            assert!(
                g1.tensor_bytes(t).as_slice() == g2.tensor_bytes(u).as_slice(),
                "{name}: {} differs after the round trip",
                t.name
            );
        }
        for key in [
            "tokenizer.ggml.tokens",
            "tokenizer.ggml.merges",
            "tokenizer.ggml.token_type",
            "tokenizer.ggml.bos_token_id",
            "tokenizer.ggml.eos_token_id",
            "tokenizer.chat_template",
        ] {
            assert_eq!(g1.get(key), g2.get(key), "{name}: {key}");
        }
        std::fs::remove_dir_all(&tmp).unwrap();
    }
}

#[test]
fn exports_are_byte_identical_and_interrupts_leave_nothing() {
    let Some(tiny) = model("tiny.gguf") else {
        return;
    };
    let tmp = scratch("repeat");
    for format in [Format::Onnx, Format::Safetensors] {
        let (a, b) = (tmp.join("a"), tmp.join("b"));
        run(&tiny, &a, &options(format, None)).unwrap();
        run(&tiny, &b, &options(format, None)).unwrap();
        let mut names: Vec<_> = std::fs::read_dir(&a)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        assert!(names.len() >= 5, "{format:?}: {names:?}");
        for n in &names {
            let (x, y) = (
                std::fs::read(a.join(n)).unwrap(),
                std::fs::read(b.join(n)).unwrap(),
            );
            assert!(x == y, "{format:?}: {n:?} differs between two exports");
        }
        // Exporting again over an earlier export replaces it.
        run(&tiny, &a, &options(format, None)).unwrap();
        std::fs::remove_dir_all(&a).unwrap();
        std::fs::remove_dir_all(&b).unwrap();
    }

    let out = tmp.join("cancelled");
    let cancel = AtomicBool::new(true);
    let err = export(
        &tiny,
        &out,
        &options(Format::Onnx, None),
        &cancel,
        &mut |_, _, _| {},
    )
    .unwrap_err();
    assert!(matches!(err, ConvertError::Interrupted), "{err}");
    let left: Vec<_> = std::fs::read_dir(&tmp).unwrap().collect();
    assert!(left.is_empty(), "left behind: {left:?}");
    std::fs::remove_dir_all(&tmp).unwrap();
}

#[test]
fn types_onnx_cannot_hold_are_refused_by_name() {
    let Some(smol) = model("SmolLM2-135M-Instruct.Q4_1.gguf") else {
        return;
    };
    let tmp = scratch("refuse");
    let err = run(&smol, &tmp.join("out"), &options(Format::Onnx, None)).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("Q4_1") && msg.contains("--dequantize"),
        "{msg}"
    );
    assert!(!tmp.join("out").exists());
    std::fs::remove_dir_all(&tmp).unwrap();
}
