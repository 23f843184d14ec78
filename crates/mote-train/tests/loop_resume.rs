//! The training loop on the tiny llama fixture: a run interrupted by a checkpoint and
//! resumed ends with exactly the bits of the uninterrupted run; distillation from a
//! teacher lowers the KL to it; the written GGUF loads in mote and gives the logits the
//! trained parameters give.

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;

use mote_model::{KvPrecision, LoadOptions, Model};
use mote_tensor::DType;
use mote_train::data::TokenData;
use mote_train::export::write_gguf;
use mote_train::trainer::{TrainOptions, Trainer};
use mote_train::{AdamConfig, Network, Params, Rng};

const C: usize = 16;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn tmp(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("mote-train-{}-{name}", std::process::id()))
}

fn model() -> Model {
    Model::load(&fixture("llama.gguf"), &LoadOptions::default()).expect("fixture")
}

/// A text with structure to learn: a repeating pattern with noise.
fn data(vocab: usize) -> TokenData {
    let mut rng = Rng::new(5);
    let toks = (0..2000)
        .map(|i| {
            if rng.below(10) == 0 {
                rng.below(vocab) as u32
            } else {
                ((i * 7) % 23) as u32
            }
        })
        .collect();
    TokenData::from_tokens(toks, C, "test").unwrap()
}

fn opts(steps: usize, ckpt: Option<PathBuf>) -> TrainOptions {
    TrainOptions {
        batch: 2,
        accumulate: 2,
        steps,
        adam: AdamConfig {
            lr: 3e-3,
            weight_decay: 0.01,
            warmup: 2,
            total_steps: steps,
            ..AdamConfig::default()
        },
        seed: 42,
        alpha: 0.0,
        temperature: 2.0,
        eval_every: 0,
        eval_windows: 4,
        checkpoint_out: ckpt,
        checkpoint_every: 0,
    }
}

fn trainer<'a>(m: &Model, teacher: Option<&'a Model>, o: TrainOptions) -> Trainer<'a> {
    let p = Params::from_model(m).unwrap();
    let net = Network::new(m, C).unwrap();
    let trainable = vec![true; p.tensors.len()];
    Trainer::new(net, p, trainable, teacher, o).unwrap()
}

#[test]
fn resume_is_bit_identical() {
    let m = model();
    let d = data(m.config().vocab_size);
    let stop = AtomicBool::new(false);
    let mut full = trainer(&m, None, opts(8, None));
    full.run(&d, None, &stop, &mut |_, _, _, _| {}).unwrap();

    let ck = tmp("resume.ckpt");
    let mut first = trainer(
        &m,
        None,
        TrainOptions {
            steps: 3,
            ..opts(8, Some(ck.clone()))
        },
    );
    first.opts.adam.total_steps = 8;
    first.run(&d, None, &stop, &mut |_, _, _, _| {}).unwrap();
    let mut second = trainer(&m, None, opts(8, None));
    second.resume(&ck).unwrap();
    assert_eq!(second.step, 3);
    second.run(&d, None, &stop, &mut |_, _, _, _| {}).unwrap();
    let _ = std::fs::remove_file(&ck);
    for (a, b) in full.params.tensors.iter().zip(&second.params.tensors) {
        let same = a
            .data
            .iter()
            .zip(&b.data)
            .all(|(x, y)| x.to_bits() == y.to_bits());
        assert!(same, "{} differs after resuming", a.name);
    }
    assert_eq!(full.adam, second.adam);
    assert_eq!(full.rng, second.rng);
}

#[test]
fn distillation_lowers_kl_and_the_output_loads() {
    let teacher = model();
    let d = data(teacher.config().vocab_size);
    let held = d.eval_windows(4);
    let stop = AtomicBool::new(false);
    // The student: the teacher with its parameters perturbed.
    let mut t = trainer(&teacher, Some(&teacher), opts(30, None));
    let mut rng = Rng::new(9);
    for x in t.params.tensors.iter_mut().flat_map(|t| t.data.iter_mut()) {
        *x += 0.05 * rng.normal() as f32;
    }
    let report = t.run(&d, Some(&held), &stop, &mut |_, _, _, _| {}).unwrap();
    let (before, after) = (report.evals[0], *report.evals.last().unwrap());
    eprintln!(
        "KL {:?} -> {:?}, ppl {} -> {}",
        before.kl, after.kl, before.ppl, after.ppl
    );
    assert!(after.kl.unwrap() < 0.5 * before.kl.unwrap());

    let out = tmp("distilled.gguf");
    write_gguf(teacher.gguf(), &t.params, &out, DType::F32).unwrap();
    let loaded = Model::load(&out, &LoadOptions::default()).unwrap();
    let toks = &held[0].inputs;
    let want = {
        let tape = t.net.forward(&t.params, toks).unwrap();
        mote_train::loss::logits(&t.params, &tape.hidden, None)
    };
    let got = loaded
        .forward(toks, &mut loaded.new_cache_with(C, KvPrecision::F32), true)
        .unwrap();
    let _ = std::fs::remove_file(&out);
    let diff = want
        .iter()
        .zip(&got)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    eprintln!("written model: logits max |Δ| {diff:.2e} against the trained parameters");
    assert!(diff < 1e-4, "{diff}");
}
