//! Context shift: keys re-rotated in the cache equal the keys a fresh run computes at the
//! new positions, for llama (SmolLM2), qwen2 (Qwen2.5-Coder) and gemma3 (Gemma 3 270M,
//! sliding-window and global layers with different RoPE bases), in every cache precision.
//!
//! Layer 0's keys depend only on the token and its position, so after dropping positions
//! `keep..keep + n` from a run of `T`, they must match a run of `T` without those tokens.

mod common;
use common::model_path;
use mote_model::{KvPrecision, LoadOptions, Model};

/// Largest |Δ| between layer-0 keys of the shifted cache and of a fresh run, and the
/// largest key magnitude (for the rounding bound).
fn shift_error(model: &Model, precision: KvPrecision) -> (f32, f32) {
    let vocab = model.config().vocab_size as u32;
    let tokens: Vec<u32> = (0..96u32).map(|i| (i * 7919 + 13) % vocab).collect();
    let (keep, n) = (5, 37);
    let mut shifted = model.new_cache_with(256, precision);
    model.forward(&tokens, &mut shifted, false).unwrap();
    model.shift_cache(&mut shifted, keep, n).unwrap();
    // And grow past the shift, to see that new tokens go to the new positions.
    let more = [tokens[3], tokens[4]];
    model.forward(&more, &mut shifted, false).unwrap();

    let kept: Vec<u32> = tokens[..keep]
        .iter()
        .chain(&tokens[keep + n..])
        .chain(&more)
        .copied()
        .collect();
    let mut fresh = model.new_cache_with(256, precision);
    model.forward(&kept, &mut fresh, false).unwrap();
    assert_eq!(shifted.len(), fresh.len());
    let (mut err, mut scale) = (0f32, 0f32);
    for pos in 0..fresh.len() {
        let a = shifted.key_row(0, pos).unwrap();
        let b = fresh.key_row(0, pos).unwrap();
        for (x, y) in a.iter().zip(&b) {
            err = err.max((x - y).abs());
            scale = scale.max(y.abs());
        }
    }
    (err, scale)
}

fn check(file: &str) {
    let Some(path) = model_path(file) else { return };
    let model = Model::load(&path, &LoadOptions::default()).unwrap();
    for precision in KvPrecision::ALL {
        let (err, scale) = shift_error(&model, precision);
        // f32: only the rotation's own arithmetic. f16 and q8_0 round three times: the
        // stored key (its error carried by the rotation, at most √2 times larger), the
        // re-rotated key, and the fresh key: ≤ (√2 + 2)/2 half-steps, where a step is
        // 2^-10 relative for f16 and 1/127 of the block's largest value for q8_0.
        let bound = match precision {
            KvPrecision::F32 => 1e-4,
            KvPrecision::F16 => scale * 2f32.powi(-10),
            KvPrecision::Q8_0 => 2.0 * scale / 127.0,
        };
        eprintln!(
            "{file} {precision}: max |Δ| {err:.2e} (bound {bound:.2e}, keys up to {scale:.1})"
        );
        assert!(err <= bound, "{file} {precision}: {err} > {bound}");
    }
}

#[test]
fn llama_shifted_keys_match_fresh_keys() {
    check("SmolLM2-135M-Instruct.Q4_1.gguf");
}

#[test]
fn qwen2_shifted_keys_match_fresh_keys() {
    check("qwen2.5-coder-0.5b-instruct-q4_k_m.gguf");
}

#[test]
fn gemma3_shifted_keys_match_fresh_keys() {
    check("gemma-3-270m-Q4_K_M.gguf");
}

#[test]
fn bad_ranges_are_refused() {
    let Some(path) = model_path("SmolLM2-135M-Instruct.Q4_1.gguf") else {
        return;
    };
    let model = Model::load(&path, &LoadOptions::default()).unwrap();
    let mut cache = model.new_cache(64);
    model.forward(&[1, 2, 3, 4], &mut cache, false).unwrap();
    assert!(model.shift_cache(&mut cache, 2, 3).is_err());
    assert_eq!(cache.len(), 4);
    model.shift_cache(&mut cache, 1, 0).unwrap();
    model.shift_cache(&mut cache, 1, 3).unwrap();
    assert_eq!(cache.len(), 1);
}
