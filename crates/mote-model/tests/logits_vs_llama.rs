//! Teacher-forced forward passes compared with llama.cpp's next-token distributions.
//!
//! The fixtures (scripts/fixtures/logits_fixtures.py) hold llama.cpp's token ids and,
//! per position, its top-32 log-probabilities. We measure KL(llama.cpp ‖ mote) over those
//! 32 tokens plus one "everything else" bucket, and how often both pick the same argmax.
//!
//! Two kinds of bound:
//! - Float-weight models (random tiny ones): both sides compute nearly the same f32
//!   arithmetic, so KL must be ~0.
//! - Quantized real models: activations are quantized to 8 bits before every weight
//!   product, so a last-bit difference anywhere flips roundings and the drift compounds;
//!   only a bit-exact forward agrees at near-ties. llama.cpp disagrees with *itself* as
//!   much when only its evaluation order, cache precision or attention kernel changes
//!   (SmolLM2 Q4_1, text 0: batch vs token-by-token KL 3.3e-3 / 97.9% argmax; F16 vs F32
//!   cache 4.2e-3 / 96.5%; flash attention off vs on 4.3e-3 / 95.1%). mote reproduces
//!   llama.cpp's roundings in norms, RoPE, attention and activations (`ggml_math`); with
//!   ggml's activation quantization and K-quant accumulation order in the kernels too,
//!   both real models match the fixture (made by an AVX-512 build of llama.cpp) bit for
//!   bit on mote's AVX-512 path (docs/correctness.md): there the bound is the issue's
//!   ≥ 99 % argmax agreement. The other paths (AVX2, NEON, scalar) sum in other orders, as
//!   llama.cpp's own builds for those CPUs do; there the argmax is checked strictly only
//!   where llama.cpp's top token leads the runner-up clearly.

mod common;
use common::model_path;
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

/// A lead (in nats) of llama.cpp's top token over its second that rounding noise does
/// not overturn.
const CLEAR_MARGIN: f32 = 0.5;

struct Score {
    mean_kl: f64,
    max_kl: f64,
    agreement: f64,
    /// Agreement at positions where llama.cpp's top token leads by `CLEAR_MARGIN`.
    clear_agreement: f64,
    clear_positions: usize,
    /// Largest |Δ log-prob| of llama.cpp's top token.
    max_top_diff: f64,
    positions: usize,
}

fn log_sum_exp(logits: &[f32]) -> f64 {
    let max = logits.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v)) as f64;
    let sum: f64 = logits.iter().map(|&v| (v as f64 - max).exp()).sum();
    max + sum.ln()
}

fn compare(model: &Model, fx: &Fixture) -> Score {
    assert_eq!(model.config().vocab_size, fx.vocab);
    let (mut kl_sum, mut max_kl, mut agree, mut total) = (0f64, 0f64, 0usize, 0usize);
    let (mut clear, mut clear_agree, mut max_top_diff) = (0usize, 0usize, 0f64);
    for text in &fx.texts {
        let mut cache = model.new_cache(text.ids.len());
        let logits = model.forward(&text.ids, &mut cache, true).unwrap();
        for (row, top) in logits.chunks_exact(fx.vocab).zip(&text.top) {
            let lse = log_sum_exp(row);
            let ours = |id: u32| row[id as usize] as f64 - lse;
            let (mut kl, mut ref_mass, mut our_mass) = (0f64, 0f64, 0f64);
            for &(id, lp) in top {
                let p = (lp as f64).exp();
                kl += p * (lp as f64 - ours(id));
                ref_mass += p;
                our_mass += ours(id).exp();
            }
            max_top_diff = max_top_diff.max((ours(top[0].0) - top[0].1 as f64).abs());
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
            let same = our_best == top[0].0 as usize;
            agree += usize::from(same);
            if top[0].1 - top[1].1 >= CLEAR_MARGIN {
                clear += 1;
                clear_agree += usize::from(same);
            }
            total += 1;
        }
    }
    Score {
        mean_kl: kl_sum / total as f64,
        max_kl,
        agreement: agree as f64 / total as f64,
        clear_agreement: clear_agree as f64 / clear.max(1) as f64,
        clear_positions: clear,
        max_top_diff,
        positions: total,
    }
}

/// What a model must reach.
struct Bounds {
    mean_kl: f64,
    /// Argmax agreement over all positions (`None`: not checked, e.g. random weights).
    agreement: Option<f64>,
    /// Argmax agreement where llama.cpp's top token leads clearly.
    clear_agreement: Option<f64>,
}

/// Float weights: the same arithmetic up to summation order.
const EXACT: Bounds = Bounds {
    mean_kl: 1e-4,
    agreement: Some(0.99),
    clear_agreement: Some(1.0),
};

/// Quantized weights: within llama.cpp's own run-to-run drift (see the module comment).
const QUANTIZED: Bounds = Bounds {
    mean_kl: 0.01,
    agreement: Some(0.93),
    clear_agreement: Some(0.99),
};

/// Quantized weights on the kernel path whose arithmetic is the fixture's (AVX-512):
/// the same bits as llama.cpp, so the argmax must agree almost everywhere.
const QUANTIZED_SAME_ARITHMETIC: Bounds = Bounds {
    mean_kl: 1e-4,
    agreement: Some(0.99),
    clear_agreement: Some(1.0),
};

/// The bounds for a quantized real model on the kernel path this run uses.
fn quantized_bounds() -> Bounds {
    use mote_tensor::kernels::{KernelPath, Kernels};
    let path = Kernels::active().path;
    println!("kernel path: {path:?}");
    if path == KernelPath::Avx512 {
        QUANTIZED_SAME_ARITHMETIC
    } else {
        QUANTIZED
    }
}

fn check(name: &str, model_file: PathBuf, bounds: Bounds) {
    let fx = read_fixture(name);
    let model = Model::load(&model_file, &LoadOptions::default()).unwrap();
    let t = std::time::Instant::now();
    let s = compare(&model, &fx);
    println!(
        "{name}: mean KL {:.2e} nats (max {:.2e}), argmax agreement {:.2}% ({:.2}% of {} clear positions), \
         max |Δ top-1 log-prob| {:.2e}, {} positions, {:.1}s",
        s.mean_kl,
        s.max_kl,
        100.0 * s.agreement,
        100.0 * s.clear_agreement,
        s.clear_positions,
        s.max_top_diff,
        s.positions,
        t.elapsed().as_secs_f64()
    );
    assert!(
        s.mean_kl <= bounds.mean_kl,
        "{name}: mean KL {} > {}",
        s.mean_kl,
        bounds.mean_kl
    );
    if let Some(min) = bounds.agreement {
        assert!(
            s.agreement >= min,
            "{name}: argmax agreement {} < {min}",
            s.agreement
        );
    }
    if let Some(min) = bounds.clear_agreement {
        assert!(
            s.clear_agreement >= min,
            "{name}: clear-margin argmax agreement {} < {min}",
            s.clear_agreement
        );
    }
}

#[test]
fn qwen2_tiny_matches_llama_cpp() {
    check(
        "qwen2-tiny",
        PathBuf::from(FIXTURES).join("qwen2-tiny.gguf"),
        EXACT,
    );
}

/// Gemma 3 layout with a 16-token sliding window, so the 144-token texts exercise the
/// window, the local/global layer pattern and both RoPE bases.
#[test]
fn gemma3_tiny_matches_llama_cpp() {
    check(
        "gemma3-tiny",
        PathBuf::from(FIXTURES).join("gemma3-tiny.gguf"),
        EXACT,
    );
}

/// Random weights: near-ties make the argmax meaningless, so only KL is checked.
#[test]
fn tiny_llama_matches_llama_cpp() {
    if let Some(p) = model_path("tiny.gguf") {
        let bounds = Bounds {
            agreement: None,
            clear_agreement: None,
            ..EXACT
        };
        check("tiny", p, bounds);
    }
}

#[test]
fn smollm2_matches_llama_cpp() {
    if let Some(p) = model_path("SmolLM2-135M-Instruct.Q4_1.gguf") {
        check("smollm2", p, quantized_bounds());
    }
}

#[test]
fn gemma3_matches_llama_cpp() {
    if let Some(p) = model_path("gemma-3-270m-Q4_K_M.gguf") {
        check("gemma3", p, quantized_bounds());
    }
}
