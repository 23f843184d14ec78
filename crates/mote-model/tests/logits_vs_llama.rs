//! Teacher-forced forward passes compared with llama.cpp's next-token distributions.
//!
//! The fixtures (scripts/fixtures/logits_fixtures.py) hold llama.cpp's token ids and,
//! per position, its top-32 log-probabilities. We measure KL(llama.cpp ‖ mote) over those
//! 32 tokens plus one "everything else" bucket, and how often both pick the same argmax.

use std::path::PathBuf;

use mote_model::{LoadOptions, Model};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");

struct Text {
    ids: Vec<u32>,
    /// Per position, `top_k` (id, log-prob) pairs, best first.
    top: Vec<Vec<(u32, f32)>>,
}

struct Fixture {
    vocab: usize,
    texts: Vec<Text>,
}

fn read_fixture(name: &str) -> Fixture {
    let bytes = std::fs::read(format!("{FIXTURES}/logits-{name}.bin")).unwrap();
    assert_eq!(&bytes[..8], b"MOTELOGT");
    let mut pos = 8;
    let u32_at = |pos: &mut usize| {
        let v = u32::from_le_bytes(bytes[*pos..*pos + 4].try_into().unwrap());
        *pos += 4;
        v
    };
    assert_eq!(u32_at(&mut pos), 1, "fixture version");
    let n_texts = u32_at(&mut pos) as usize;
    let top_k = u32_at(&mut pos) as usize;
    let vocab = u32_at(&mut pos) as usize;
    let mut texts = Vec::new();
    for _ in 0..n_texts {
        let n = u32_at(&mut pos) as usize;
        let ids: Vec<u32> = (0..n).map(|_| u32_at(&mut pos)).collect();
        let top = (0..n)
            .map(|_| {
                (0..top_k)
                    .map(|_| {
                        let id = u32_at(&mut pos);
                        let lp = f32::from_bits(u32_at(&mut pos));
                        (id, lp)
                    })
                    .collect()
            })
            .collect();
        texts.push(Text { ids, top });
    }
    assert_eq!(pos, bytes.len());
    Fixture { vocab, texts }
}

fn model_path(file: &str) -> Option<PathBuf> {
    let dir = std::env::var_os("MOTE_MODELS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models"));
    let p = dir.join(file);
    if p.exists() {
        return Some(p);
    }
    assert!(
        std::env::var_os("MOTE_REQUIRE_MODELS").is_none(),
        "{file} missing: run scripts/fetch-models.sh all"
    );
    eprintln!("skipping: {} not found", p.display());
    None
}

struct Score {
    mean_kl: f64,
    max_kl: f64,
    agreement: f64,
    positions: usize,
}

fn log_softmax(logits: &[f32]) -> Vec<f64> {
    let max = logits.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v)) as f64;
    let sum: f64 = logits.iter().map(|&v| (v as f64 - max).exp()).sum();
    let lse = max + sum.ln();
    logits.iter().map(|&v| v as f64 - lse).collect()
}

fn compare(model: &Model, fx: &Fixture) -> Score {
    assert_eq!(model.config().vocab_size, fx.vocab);
    let (mut kl_sum, mut max_kl, mut agree, mut total) = (0f64, 0f64, 0usize, 0usize);
    for text in &fx.texts {
        let mut cache = model.new_cache(text.ids.len());
        let logits = model.forward(&text.ids, &mut cache, true).unwrap();
        for (row, top) in logits.chunks_exact(fx.vocab).zip(&text.top) {
            let ours = log_softmax(row);
            let (mut kl, mut ref_mass, mut our_mass) = (0f64, 0f64, 0f64);
            for &(id, lp) in top {
                let p = (lp as f64).exp();
                kl += p * (lp as f64 - ours[id as usize]);
                ref_mass += p;
                our_mass += ours[id as usize].exp();
            }
            let ref_tail = (1.0 - ref_mass).max(1e-12);
            let our_tail = (1.0 - our_mass).max(1e-12);
            kl += ref_tail * (ref_tail / our_tail).ln();
            kl_sum += kl;
            max_kl = max_kl.max(kl);
            let our_best = row
                .iter()
                .enumerate()
                .fold(
                    (0, f32::NEG_INFINITY),
                    |b, (i, &v)| if v > b.1 { (i, v) } else { b },
                )
                .0;
            agree += usize::from(our_best == top[0].0 as usize);
            total += 1;
        }
    }
    Score {
        mean_kl: kl_sum / total as f64,
        max_kl,
        agreement: agree as f64 / total as f64,
        positions: total,
    }
}

fn check(name: &str, model_file: PathBuf, check_argmax: bool) {
    let fx = read_fixture(name);
    let model = Model::load(&model_file, &LoadOptions::default()).unwrap();
    let t = std::time::Instant::now();
    let s = compare(&model, &fx);
    println!(
        "{name}: mean KL {:.2e} nats, max KL {:.2e}, argmax agreement {:.2}% over {} positions ({:.1}s)",
        s.mean_kl,
        s.max_kl,
        100.0 * s.agreement,
        s.positions,
        t.elapsed().as_secs_f64()
    );
    assert!(s.mean_kl <= 0.01, "{name}: mean KL {} > 0.01", s.mean_kl);
    if check_argmax {
        assert!(
            s.agreement >= 0.99,
            "{name}: argmax agreement {}",
            s.agreement
        );
    }
}

#[test]
fn qwen2_tiny_matches_llama_cpp() {
    check(
        "qwen2-tiny",
        PathBuf::from(FIXTURES).join("qwen2-tiny.gguf"),
        true,
    );
}

/// Random weights: near-ties make the argmax meaningless, so only KL is checked.
#[test]
fn tiny_llama_matches_llama_cpp() {
    if let Some(p) = model_path("tiny.gguf") {
        check("tiny", p, false);
    }
}

#[test]
fn smollm2_matches_llama_cpp() {
    if let Some(p) = model_path("SmolLM2-135M-Instruct.Q4_1.gguf") {
        check("smollm2", p, true);
    }
}

#[test]
fn gemma3_matches_llama_cpp() {
    if let Some(p) = model_path("gemma-3-270m-Q4_K_M.gguf") {
        check("gemma3", p, true);
    }
}
