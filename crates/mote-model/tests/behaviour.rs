//! Loading errors, input errors and cache behaviour, on the committed tiny qwen2 model
//! (and broken copies of it made in memory).

use std::path::PathBuf;
use std::sync::Arc;

use mote_file::gguf::{encode_to_vec, set_metadata};
use mote_file::{GgufFile, MetaValue, TensorSpec};
use mote_model::{KvPrecision, LoadOptions, Model, ModelError};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn qwen2() -> Model {
    Model::load(&fixture("qwen2-tiny.gguf"), &LoadOptions::default()).unwrap()
}

/// Re-encodes qwen2-tiny with edited metadata and without the tensors in `drop`.
fn broken(
    edit: impl Fn(&mut Vec<(String, MetaValue)>),
    drop: &[&str],
) -> Result<Model, ModelError> {
    let f = GgufFile::open(fixture("qwen2-tiny.gguf")).unwrap();
    let mut meta = f.metadata().to_vec();
    edit(&mut meta);
    let data: Vec<(TensorSpec, Vec<u8>)> = f
        .tensors()
        .iter()
        .filter(|t| !drop.contains(&t.name.as_str()))
        .map(|t| (TensorSpec::from(t), f.tensor_bytes(t).as_slice().to_vec()))
        .collect();
    let refs: Vec<(TensorSpec, &[u8])> = data
        .iter()
        .map(|(s, d)| (s.clone(), d.as_slice()))
        .collect();
    let bytes = encode_to_vec(&meta, &refs).unwrap();
    Model::from_gguf(
        Arc::new(GgufFile::from_bytes(bytes).unwrap()),
        &LoadOptions::default(),
    )
}

fn err_text(r: Result<Model, ModelError>) -> String {
    match r {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn config_is_read_from_metadata() {
    let m = qwen2();
    let c = m.config();
    assert_eq!(
        (c.arch.as_str(), c.vocab_size, c.n_ctx_train),
        ("qwen2", 1024, 1024)
    );
    assert_eq!(
        (c.n_embd, c.n_layer, c.n_head, c.n_head_kv, c.head_dim_k),
        (64, 2, 4, 2, 16)
    );
    assert_eq!(c.layers[0].rope_base, 1_000_000.0);
    assert!(c.layers.iter().all(|l| l.window.is_none()));

    let g = Model::load(&fixture("gemma3-tiny.gguf"), &LoadOptions::default()).unwrap();
    let windows: Vec<Option<usize>> = g.config().layers.iter().map(|l| l.window).collect();
    assert_eq!(
        windows,
        [Some(16), Some(16), Some(16), Some(16), Some(16), None]
    );
    assert_eq!(g.config().layers[0].rope_base, 10_000.0);
    assert_eq!(g.config().layers[5].rope_base, 1_000_000.0);
    assert!((g.config().attn_scale - 1.0 / 32f32.sqrt()).abs() < 1e-7);
}

#[test]
fn unknown_architecture_is_named() {
    let e = err_text(broken(
        |m| set_metadata(m, "general.architecture", MetaValue::String("gpt2".into())),
        &[],
    ));
    assert!(e.contains("gpt2") && e.contains("llama"), "{e}");
}

#[test]
fn missing_tensors_and_keys_are_named() {
    let e = err_text(broken(|_| {}, &["blk.1.ffn_up.weight"]));
    assert!(e.contains("blk.1.ffn_up.weight"), "{e}");
    // qwen2 requires its q/k/v biases.
    let e = err_text(broken(|_| {}, &["blk.0.attn_k.bias"]));
    assert!(e.contains("blk.0.attn_k.bias"), "{e}");
    let e = err_text(broken(|_| {}, &["token_embd.weight"]));
    assert!(e.contains("token_embd.weight"), "{e}");
    let e = err_text(broken(|m| m.retain(|(k, _)| k != "qwen2.block_count"), &[]));
    assert!(e.contains("qwen2.block_count"), "{e}");
}

#[test]
fn inconsistent_shapes_are_rejected() {
    // Claiming more heads than the projections hold.
    let e = err_text(broken(
        |m| set_metadata(m, "qwen2.attention.head_count", MetaValue::U32(8)),
        &[],
    ));
    assert!(e.contains("blk.0.attn_") && e.contains("has shape"), "{e}");
    let e = err_text(broken(
        |m| set_metadata(m, "qwen2.attention.head_count_kv", MetaValue::U32(3)),
        &[],
    ));
    assert!(e.contains("head_count_kv"), "{e}");
    let e = err_text(broken(
        |m| {
            set_metadata(
                m,
                "qwen2.rope.scaling.type",
                MetaValue::String("yarn".into()),
            )
        },
        &[],
    ));
    assert!(e.contains("yarn"), "{e}");
}

#[test]
fn bad_inputs_are_errors_and_leave_the_cache_alone() {
    let m = qwen2();
    let mut cache = m.new_cache(8);
    m.forward(&[5, 6, 7], &mut cache, false).unwrap();
    assert_eq!(cache.len(), 3);

    assert!(matches!(
        m.forward(&[], &mut cache, false),
        Err(ModelError::Invalid(_))
    ));
    assert!(matches!(
        m.forward(&[1, 1024], &mut cache, false),
        Err(ModelError::TokenOutOfRange {
            token: 1024,
            vocab_size: 1024
        })
    ));
    assert!(matches!(
        m.forward(&[1; 6], &mut cache, false),
        Err(ModelError::ContextFull {
            needed: 9,
            capacity: 8
        })
    ));
    assert_eq!(cache.len(), 3);

    // A cache from a different model is refused.
    let g = Model::load(&fixture("gemma3-tiny.gguf"), &LoadOptions::default()).unwrap();
    let mut other = g.new_cache(8);
    assert!(matches!(
        m.forward(&[1], &mut other, false),
        Err(ModelError::Invalid(_))
    ));
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn incremental_decoding_matches_one_batch() {
    for file in ["qwen2-tiny.gguf", "gemma3-tiny.gguf"] {
        let m = Model::load(&fixture(file), &LoadOptions::default()).unwrap();
        let v = m.config().vocab_size;
        // Longer than gemma3-tiny's 16-token window.
        let tokens: Vec<u32> = (0..40).map(|i| (i * 37 + 11) % 1000).collect();
        let mut cache = m.new_cache(64);
        let all = m.forward(&tokens, &mut cache, true).unwrap();
        assert_eq!(all.len(), tokens.len() * v);

        let mut cache = m.new_cache(64);
        let mut last = m.forward(&tokens[..10], &mut cache, false).unwrap();
        assert_eq!(last.len(), v);
        assert!(max_diff(&last, &all[9 * v..10 * v]) < 1e-3, "{file}");
        for (i, &t) in tokens.iter().enumerate().skip(10) {
            last = m.forward(&[t], &mut cache, false).unwrap();
            assert!(
                max_diff(&last, &all[i * v..(i + 1) * v]) < 1e-3,
                "{file} position {i}"
            );
        }

        // Rewinding and re-running a suffix gives the same logits again.
        cache.truncate(25);
        let again = m.forward(&tokens[25..], &mut cache, false).unwrap();
        assert!(max_diff(&again, &all[39 * v..]) < 1e-3, "{file}");
        assert_eq!(cache.len(), 40);
    }
}

#[test]
fn f16_cache_stays_close_to_f32() {
    let m = qwen2();
    let tokens: Vec<u32> = (0..20).map(|i| (i * 53 + 3) % 1000).collect();
    let mut c32 = m.new_cache_with(32, KvPrecision::F32);
    // F16 is the default, as in llama.cpp.
    let mut c16 = m.new_cache(32);
    assert_eq!(c16.precision(), KvPrecision::F16);
    let a = m.forward(&tokens, &mut c32, false).unwrap();
    let b = m.forward(&tokens, &mut c16, false).unwrap();
    let d = max_diff(&a, &b);
    assert!(d > 0.0 && d < 0.05, "{d}");
}

#[test]
fn batch_equals_separate_sequences() {
    use mote_model::BatchItem;
    for file in ["qwen2-tiny.gguf", "gemma3-tiny.gguf"] {
        let m = Model::load(&fixture(file), &LoadOptions::default()).unwrap();
        let v = m.config().vocab_size;
        let prompts: Vec<Vec<u32>> = (0..4u32)
            .map(|s| {
                (0..(5 + 7 * s))
                    .map(|i| (i * 31 + s * 101 + 3) % 1000)
                    .collect()
            })
            .collect();
        // One at a time.
        let mut alone = Vec::new();
        let mut caches: Vec<_> = prompts.iter().map(|_| m.new_cache(64)).collect();
        for (p, c) in prompts.iter().zip(&mut caches) {
            alone.push(m.forward(p, c, true).unwrap());
        }
        let next: Vec<u32> = (0..4).map(|s| 17 + s * 5).collect();
        let alone_next: Vec<Vec<f32>> = caches
            .iter_mut()
            .zip(&next)
            .map(|(c, &t)| m.forward(&[t], c, false).unwrap())
            .collect();

        // All prompts in one batch (mixed logits requests), then one decode step for all.
        let mut bc: Vec<_> = prompts.iter().map(|_| m.new_cache(64)).collect();
        let mut items: Vec<BatchItem> = prompts
            .iter()
            .zip(&mut bc)
            .enumerate()
            .map(|(i, (p, cache))| BatchItem {
                tokens: p,
                cache,
                all_logits: i % 2 == 0,
            })
            .collect();
        let batch = m.forward_batch(&mut items).unwrap();
        for (i, (b, a)) in batch.iter().zip(&alone).enumerate() {
            let want = if i % 2 == 0 {
                &a[..]
            } else {
                &a[a.len() - v..]
            };
            assert!(max_diff(b, want) < 1e-4, "{file} prompt {i}");
        }
        let mut items: Vec<BatchItem> = next
            .iter()
            .zip(&mut bc)
            .map(|(t, cache)| BatchItem {
                tokens: std::slice::from_ref(t),
                cache,
                all_logits: false,
            })
            .collect();
        let batch = m.forward_batch(&mut items).unwrap();
        for (i, (b, a)) in batch.iter().zip(&alone_next).enumerate() {
            assert!(max_diff(b, a) < 1e-4, "{file} decode {i}");
        }
        assert!(bc.iter().zip(&prompts).all(|(c, p)| c.len() == p.len() + 1));

        // A bad item fails the whole batch and leaves every cache alone.
        let mut items: Vec<BatchItem> = [[1u32].as_slice(), &[5000]]
            .into_iter()
            .zip(&mut bc)
            .map(|(tokens, cache)| BatchItem {
                tokens,
                cache,
                all_logits: false,
            })
            .collect();
        assert!(m.forward_batch(&mut items).is_err());
        assert!(bc.iter().zip(&prompts).all(|(c, p)| c.len() == p.len() + 1));
    }
}

#[test]
fn every_cache_precision_tracks_f32() {
    // gemma3-tiny's heads are 32 wide, so Q8_0 is really used.
    let m = Model::load(&fixture("gemma3-tiny.gguf"), &LoadOptions::default()).unwrap();
    let tokens: Vec<u32> = (0..30).map(|i| (i * 53 + 3) % 1000).collect();
    let reference = m
        .forward(&tokens, &mut m.new_cache_with(32, KvPrecision::F32), false)
        .unwrap();
    for (k, v, tol) in [
        (KvPrecision::F16, KvPrecision::F16, 0.05),
        (KvPrecision::Q8_0, KvPrecision::F16, 0.2),
        (KvPrecision::F16, KvPrecision::Q8_0, 0.2),
        (KvPrecision::F32, KvPrecision::F16, 0.05),
    ] {
        let mut c = m.new_cache_types(32, k, v);
        assert_eq!(c.precisions(), (k, v));
        let got = m.forward(&tokens, &mut c, false).unwrap();
        let d = max_diff(&got, &reference);
        assert!(d < tol, "{k}/{v}: {d}");
    }
}
