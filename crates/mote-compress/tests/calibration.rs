//! imatrix, GPTQ and pruning on the tiny model: outputs parse, load and run in mote,
//! and carry what was asked for (sparsity, block count, importance use).

use std::path::{Path, PathBuf};

use mote_compress::cli::{self, ImatrixArgs, PruneArgs, QuantizeArgs};
use mote_compress::imatrix::Imatrix;
use mote_file::GgufFile;
use mote_model::{LoadOptions, Model};
use mote_tensor::quant::dequantize_row;

fn models_dir() -> PathBuf {
    std::env::var_os("MOTE_MODELS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models"))
}

/// The tiny model and a calibration text, or `None` (skip) when absent.
fn inputs() -> Option<(PathBuf, PathBuf)> {
    let (m, t) = (
        models_dir().join("tiny.gguf"),
        models_dir().join("texts/moby-dick.txt"),
    );
    if m.exists() && t.exists() {
        return Some((m, t));
    }
    assert!(
        std::env::var_os("MOTE_REQUIRE_MODELS").is_none(),
        "tiny.gguf or texts missing: run scripts/fetch-models.sh all"
    );
    eprintln!("skipping: {} not found", m.display());
    None
}

fn scratch(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("mote-calib-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn runs(path: &Path) -> Model {
    let model = Model::load(path, &LoadOptions::default()).unwrap();
    let mut cache = model.new_cache(16);
    let logits = model.forward(&[1, 2, 3, 4], &mut cache, false).unwrap();
    assert!(logits.iter().all(|v| v.is_finite()));
    model
}

fn zero_fraction(file: &GgufFile, name: &str) -> f64 {
    let info = file.tensor(name).unwrap();
    let mut w = vec![0f32; info.elements() as usize];
    dequantize_row(info.dtype, file.tensor_bytes(info).as_slice(), &mut w).unwrap();
    w.iter().filter(|v| **v == 0.0).count() as f64 / w.len() as f64
}

fn prune_args(input: &Path, output: &Path) -> PruneArgs {
    PruneArgs {
        input: input.into(),
        output: output.into(),
        method: "magnitude".into(),
        amount: None,
        scope: "layer".into(),
        nm: None,
        structured: None,
        calib_file: None,
        ctx_size: 64,
        chunks: 2,
        seed: 1,
        json: false,
        threads: 1,
    }
}

#[test]
fn imatrix_round_trips_and_feeds_quantize() {
    let Some((model, text)) = inputs() else {
        return;
    };
    let dir = scratch("imatrix");
    let out = dir.join("imatrix.gguf");
    let args = ImatrixArgs {
        model: model.clone(),
        file: text.clone(),
        output: out.clone(),
        ctx_size: 64,
        chunks: Some(3),
        process_output: false,
        threads: 1,
    };
    let m = cli::imatrix(&args).unwrap();
    // 2 blocks x 7 matrices; all rows of all windows seen.
    assert_eq!(m.entries.len(), 14);
    assert!(m.entries.values().all(|e| e.count == 3 * 64));
    assert!(m.entries["blk.1.ffn_down.weight"].sum2.len() == 64);
    m.write(&out).unwrap();
    let back = Imatrix::read(&out).unwrap();
    assert_eq!(back.chunk_count, 3);
    assert_eq!(back.chunk_size, 64);
    for (name, e) in &m.entries {
        let b = &back.entries[name];
        assert_eq!(b.count, e.count);
        for (x, y) in b.sum2.iter().zip(&e.sum2) {
            assert!((x - y).abs() <= 1e-6 * y.abs().max(1.0), "{name}");
        }
    }

    let q = QuantizeArgs {
        input: model,
        output: dir.join("q8.gguf"),
        ty: "Q8_0".into(),
        tensor_type: Vec::new(),
        allow_requantize: false,
        pure: true,
        dry_run: false,
        show_tensors: false,
        imatrix: Some(out),
        method: "plain".into(),
        calib_file: None,
        calib_ctx: 64,
        calib_chunks: None,
        gptq_damp: 0.01,
        gptq_damp_diag: 0.0,
        gptq_refits: 1,
        gptq_act_order: false,
        gptq_hessians: None,
        json: false,
        threads: 1,
    };
    let opts = cli::quantize_options(&q).unwrap();
    assert_eq!(opts.importance.as_ref().map(|i| i.len()), Some(14));
    cli::run_quantize(&q).unwrap();
    runs(&q.output);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn gptq_quantize_runs() {
    let Some((model, text)) = inputs() else {
        return;
    };
    let dir = scratch("gptq");
    let q = QuantizeArgs {
        input: model,
        output: dir.join("gptq.gguf"),
        ty: "Q8_0".into(),
        tensor_type: Vec::new(),
        allow_requantize: false,
        pure: true,
        dry_run: false,
        show_tensors: false,
        imatrix: None,
        method: "gptq".into(),
        calib_file: Some(text.clone()),
        calib_ctx: 64,
        calib_chunks: Some(2),
        gptq_damp: 0.01,
        gptq_damp_diag: 1.0,
        gptq_refits: 1,
        gptq_act_order: false,
        gptq_hessians: Some(dir.join("hessians.gguf")),
        json: false,
        threads: 1,
    };
    cli::run_quantize(&q).unwrap();
    runs(&q.output);
    assert!(dir.join("hessians.gguf").exists());
    // Again from the saved Hessians (no calibration text needed), to Q4_0 with re-fits.
    let q = QuantizeArgs {
        output: dir.join("gptq-q4_0.gguf"),
        ty: "Q4_0".into(),
        calib_file: None,
        gptq_refits: 2,
        gptq_act_order: true,
        ..q
    };
    cli::run_quantize(&q).unwrap();
    runs(&q.output);
    // The cache was made with --calib-ctx 64: another window size is refused.
    let other = QuantizeArgs {
        calib_file: Some(text),
        calib_ctx: 32,
        ..q.clone()
    };
    match cli::quantize_options(&other) {
        Err(mote_compress::CompressError::HessianCacheMismatch { setting, .. }) => {
            assert!(setting.contains("--calib-ctx"), "{setting}")
        }
        Err(e) => panic!("wrong error: {e}"),
        Ok(_) => panic!("a cache with another --calib-ctx was reused"),
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn pruning_hits_requested_sparsity() {
    let Some((model, text)) = inputs() else {
        return;
    };
    let dir = scratch("prune");

    let mut a = prune_args(&model, &dir.join("mag.gguf"));
    a.amount = Some(0.5);
    let r = cli::prune(&a).unwrap();
    assert_eq!(r.tensors.len(), 14);
    let f = GgufFile::open(&a.output).unwrap();
    for t in &r.tensors {
        assert!(
            (t.sparsity - 0.5).abs() < 0.01,
            "{}: {}",
            t.name,
            t.sparsity
        );
        // F16 keeps zeros exact.
        assert!(zero_fraction(&f, &t.name) >= 0.5 - 0.01);
    }
    runs(&a.output);

    let mut a = prune_args(&model, &dir.join("rand.gguf"));
    (a.amount, a.method) = (Some(0.3), "random".into());
    let r = cli::prune(&a).unwrap();
    let mean = r.tensors.iter().map(|t| t.sparsity).sum::<f64>() / r.tensors.len() as f64;
    assert!((mean - 0.3).abs() < 0.05, "{mean}");

    let mut a = prune_args(&model, &dir.join("global.gguf"));
    (a.amount, a.scope) = (Some(0.4), "global".into());
    let r = cli::prune(&a).unwrap();
    let zeros: f64 = r
        .tensors
        .iter()
        .map(|t| t.sparsity * t.elements as f64)
        .sum();
    let total: f64 = r.tensors.iter().map(|t| t.elements as f64).sum();
    assert!((zeros / total - 0.4).abs() < 0.05, "{}", zeros / total);
    runs(&a.output);

    let mut a = prune_args(&model, &dir.join("nm.gguf"));
    a.nm = Some("2:4".into());
    cli::prune(&a).unwrap();
    let f = GgufFile::open(&a.output).unwrap();
    let info = f.tensor("blk.0.ffn_up.weight").unwrap();
    let mut w = vec![0f32; info.elements() as usize];
    dequantize_row(info.dtype, f.tensor_bytes(info).as_slice(), &mut w).unwrap();
    assert!(w
        .chunks(4)
        .all(|g| g.iter().filter(|v| **v != 0.0).count() <= 2));
    runs(&a.output);

    let mut a = prune_args(&model, &dir.join("drop.gguf"));
    (a.structured, a.calib_file) = (Some("layers:1".into()), Some(text));
    let r = cli::prune(&a).unwrap();
    assert_eq!((r.blocks_before, r.blocks_after), (2, 1));
    assert!(r.params_after < r.params_before);
    let m = runs(&a.output);
    assert_eq!(m.config().n_layer, 1);
    let f = GgufFile::open(&a.output).unwrap();
    assert!(f.tensor("blk.1.attn_q.weight").is_none());
    assert!(f.tensor("blk.0.attn_q.weight").is_some());
    assert!(std::fs::metadata(&a.output).unwrap().len() < std::fs::metadata(&model).unwrap().len());

    let mut a = prune_args(&model, &dir.join("bad.gguf"));
    a.amount = Some(0.5);
    a.nm = Some("2:4".into());
    assert!(cli::prune(&a).is_err());
    std::fs::remove_dir_all(&dir).unwrap();
}
