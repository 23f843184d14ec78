//! `LoadOptions::quantize`: float models quantized in memory at load time stay close to
//! the float model, and already-quantized files are left alone.

use std::path::{Path, PathBuf};

use mote_model::{LoadOptions, Model};
use mote_tensor::DType;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");

fn models_dir() -> PathBuf {
    std::env::var_os("MOTE_MODELS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models"))
}

/// A downloaded model, or `None` (test skipped) when it is missing and
/// `MOTE_REQUIRE_MODELS` is not set.
fn model(name: &str) -> Option<PathBuf> {
    let path = models_dir().join(name);
    if path.exists() {
        return Some(path);
    }
    assert!(
        std::env::var_os("MOTE_REQUIRE_MODELS").is_none(),
        "{} is missing",
        path.display()
    );
    eprintln!("skipping: {} not found", path.display());
    None
}

fn load(path: &Path, quantize: Option<DType>) -> Model {
    let opts = LoadOptions {
        quantize,
        ..LoadOptions::default()
    };
    Model::load(path, &opts).unwrap()
}

/// Teacher-forced logits of every position of `tokens`.
fn logits(model: &Model, tokens: &[u32]) -> Vec<f32> {
    let mut cache = model.new_cache(tokens.len());
    model.forward(tokens, &mut cache, true).unwrap()
}

fn log_softmax(row: &[f32]) -> Vec<f64> {
    let max = row.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b)) as f64;
    let lse = row
        .iter()
        .map(|&v| (v as f64 - max).exp())
        .sum::<f64>()
        .ln()
        + max;
    row.iter().map(|&v| v as f64 - lse).collect()
}

/// Mean over positions of KL(reference ‖ candidate), full distributions.
fn mean_kl(reference: &[f32], candidate: &[f32], vocab: usize) -> f64 {
    let rows = reference.len() / vocab;
    let mut total = 0.0;
    for r in 0..rows {
        let p = log_softmax(&reference[r * vocab..(r + 1) * vocab]);
        let q = log_softmax(&candidate[r * vocab..(r + 1) * vocab]);
        total += p
            .iter()
            .zip(&q)
            .map(|(a, b)| a.exp() * (a - b))
            .sum::<f64>();
    }
    total / rows as f64
}

/// `q4_bound`: the KL bound for the 4-bit types (Q8_0 always gets 5e-3).
fn check(path: &Path, tokens: &[u32], q4_bound: f64) {
    let float = load(path, None);
    assert!(float.load_quantization().is_none());
    let vocab = float.config().vocab_size;
    let reference = logits(&float, tokens);
    // Random-weight models amplify weight rounding more than trained ones, so the
    // bounds are loose; Q8_0 must also be well ahead of the 4-bit types.
    let mut kls = Vec::new();
    for (dtype, bound) in [
        (DType::Q8_0, 5e-3),
        (DType::Q4_0, q4_bound),
        (DType::Q4_K, q4_bound),
    ] {
        let q = load(path, Some(dtype));
        let report = q.load_quantization().unwrap();
        println!("{}: {}", path.display(), report.summary());
        assert!(report.already_quantized.is_empty());
        assert!(report.bytes_after <= report.bytes_before);
        let got = logits(&q, tokens);
        assert!(got.iter().all(|v| v.is_finite()));
        let kl = mean_kl(&reference, &got, vocab);
        println!("  {dtype}: mean KL vs float {kl:.2e}");
        assert!(kl <= bound, "{dtype}: mean KL {kl} > {bound}");
        kls.push(kl);
    }
    assert!(
        kls[0] * 4.0 <= kls[1].min(kls[2]),
        "Q8_0 not ahead: {kls:?}"
    );
}

#[test]
fn qwen2_tiny_quantized_at_load_is_close() {
    check(
        &Path::new(FIXTURES).join("qwen2-tiny.gguf"),
        &[1, 17, 300, 5, 999, 42, 7, 7, 512, 3],
        // Its random weights and large logits make 4-bit rounding show strongly.
        0.5,
    );
}

#[test]
fn gemma3_tiny_quantized_at_load_is_close() {
    check(
        &Path::new(FIXTURES).join("gemma3-tiny.gguf"),
        &[2, 17, 300, 5, 999, 42, 7, 7, 512, 3],
        5e-2,
    );
}

#[test]
fn tiny_llama_quantized_at_load_is_close() {
    let Some(path) = model("tiny.gguf") else {
        return;
    };
    // Its 16-wide rows do not fit 32-blocks: only ffn_down (64 wide) is converted.
    check(
        &path,
        &[1, 450, 4996, 17354, 1701, 432, 17204, 975, 278, 17366],
        5e-2,
    );
}

#[test]
fn already_quantized_files_are_left_alone() {
    let Some(path) = model("SmolLM2-135M-Instruct.Q4_1.gguf") else {
        return;
    };
    let m = load(&path, Some(DType::Q8_0));
    let r = m.load_quantization().unwrap();
    println!("{}", r.summary());
    assert!(r.converted.is_empty());
    assert!(!r.already_quantized.is_empty());
    assert_eq!(r.bytes_before, r.bytes_after);
}
