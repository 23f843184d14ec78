//! Whole models against PyTorch + transformers (scripts/fixtures/train_torch.py): tiny
//! random llama, qwen2 and gemma3, two sequences of 32 tokens. Logits, the loss and
//! every parameter gradient must match, then the losses of 10 AdamW steps (warm-up,
//! cosine, clipping, decoupled weight decay). A single batch must overfit.

use std::path::PathBuf;

use mote_file::GgufFile;
use mote_model::{LoadOptions, Model};
use mote_train::loss::logits;
use mote_train::{
    adamw_step, clip_grad_norm, head_loss, loss_and_grad, AdamConfig, AdamState, Grads, LossSpec,
    Network, Params, IGNORE,
};

const T: usize = 32;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn tensor(f: &GgufFile, name: &str) -> Vec<f32> {
    let info = f
        .tensor(name)
        .unwrap_or_else(|| panic!("fixture lacks {name}"));
    let bytes = f.tensor_bytes(info);
    bytes
        .as_slice()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn next_token_labels(tokens: &[u32]) -> Vec<u32> {
    (0..tokens.len())
        .map(|i| {
            if i % T == T - 1 {
                IGNORE
            } else {
                tokens[i + 1]
            }
        })
        .collect()
}

fn ce_spec(labels: &[u32]) -> LossSpec<'_> {
    LossSpec {
        labels,
        teacher: None,
        alpha: 1.0,
        temperature: 1.0,
        softcap: None,
        chunk: 0,
    }
}

fn setup(arch: &str) -> (Model, Params, Network, GgufFile, Vec<u32>) {
    let model = Model::load(&fixture(&format!("{arch}.gguf")), &LoadOptions::default())
        .expect("fixture model loads");
    let params = Params::from_model(&model).expect("params");
    let net = Network::new(&model, T).expect("network");
    let expected = GgufFile::open(fixture(&format!("{arch}.expected.gguf"))).expect("expected");
    let tokens: Vec<u32> = tensor(&expected, "tokens")
        .iter()
        .map(|&v| v as u32)
        .collect();
    (model, params, net, expected, tokens)
}

fn matches_pytorch(arch: &str) {
    let (model, mut p, net, exp, tokens) = setup(arch);
    let labels = next_token_labels(&tokens);

    let tape = net.forward(&p, &tokens).unwrap();
    let z = logits(&p, &tape.hidden, model.config().final_logit_softcap);
    let dz = max_abs_diff(&z, &tensor(&exp, "logits"));
    let loss_want = tensor(&exp, "loss")[0];
    let (v, _) = head_loss(&p, &tape.hidden, &mut ce_spec(&labels), None).unwrap();
    eprintln!(
        "{arch}: logits max |Δ| {dz:.2e}, loss {:.6} vs {loss_want:.6}",
        v.loss
    );
    assert!(dz <= 1e-4, "{arch}: logits differ by {dz}");
    assert!((v.loss as f32 - loss_want).abs() <= 1e-5);

    let all = vec![true; p.tensors.len()];
    let mut g = Grads::new(&p, &all);
    loss_and_grad(&net, &p, &tokens, &mut ce_spec(&labels), &mut g).unwrap();
    let mut worst = (0f32, String::new());
    for (i, t) in p.tensors.iter().enumerate() {
        let want = tensor(&exp, &format!("grad.{}", t.name));
        let d = max_abs_diff(&g.g[i], &want);
        let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
        assert!(
            d <= 1e-4 * (1.0 + scale),
            "{arch} {}: gradient differs by {d} (max |g| {scale})",
            t.name
        );
        if d > worst.0 {
            worst = (d, t.name.clone());
        }
    }
    eprintln!(
        "{arch}: {} gradients, worst max |Δ| {:.2e} ({})",
        p.tensors.len(),
        worst.0,
        worst.1
    );

    let cfg = AdamConfig {
        lr: 1e-2,
        weight_decay: 0.1,
        clip: 1.0,
        warmup: 3,
        total_steps: 10,
        min_lr_ratio: 0.1,
        ..AdamConfig::default()
    };
    let mut st = AdamState::new(&g);
    let want = tensor(&exp, "adamw_losses");
    let mut got = Vec::new();
    for step in 0..10 {
        g.zero();
        let v = loss_and_grad(&net, &p, &tokens, &mut ce_spec(&labels), &mut g).unwrap();
        clip_grad_norm(&mut g, cfg.clip);
        adamw_step(&mut p, &g, &mut st, &cfg, cfg.lr_at(step));
        got.push(v.loss as f32);
    }
    let dl = max_abs_diff(&got, &want);
    eprintln!("{arch}: AdamW losses {got:?}\n  pytorch {want:?} (max |Δ| {dl:.2e})");
    assert!(dl <= 1e-3, "{arch}: AdamW losses differ by {dl}");
}

#[test]
fn llama_matches_pytorch() {
    matches_pytorch("llama");
}

#[test]
fn qwen2_matches_pytorch() {
    matches_pytorch("qwen2");
}

#[test]
fn gemma3_matches_pytorch() {
    matches_pytorch("gemma3");
}

#[test]
fn a_single_batch_overfits() {
    let (_, mut p, net, _, tokens) = setup("llama");
    let labels = next_token_labels(&tokens);
    let all = vec![true; p.tensors.len()];
    let mut g = Grads::new(&p, &all);
    let cfg = AdamConfig {
        lr: 1e-2,
        ..AdamConfig::default()
    };
    let mut st = AdamState::new(&g);
    let mut last = f64::INFINITY;
    for step in 0..300 {
        g.zero();
        last = loss_and_grad(&net, &p, &tokens, &mut ce_spec(&labels), &mut g)
            .unwrap()
            .loss;
        if last < 0.1 {
            eprintln!("loss {last:.4} after {step} steps");
            break;
        }
        clip_grad_norm(&mut g, cfg.clip);
        adamw_step(&mut p, &g, &mut st, &cfg, cfg.lr);
    }
    assert!(last < 0.1, "loss still {last} after 300 steps");
}
