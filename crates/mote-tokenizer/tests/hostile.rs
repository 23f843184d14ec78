//! Malformed tokenizer metadata gives errors, never panics; odd-but-legal input encodes.

use mote_file::gguf::encode_to_vec;
use mote_file::{GgufFile, MetaArray, MetaValue};
use mote_tokenizer::{Tokenizer, TokenizerError};

fn file(meta: Vec<(&str, MetaValue)>) -> GgufFile {
    let meta: Vec<(String, MetaValue)> =
        meta.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
    GgufFile::from_bytes(encode_to_vec(&meta, &[]).expect("encodes")).expect("parses")
}

fn strings(v: &[&str]) -> MetaValue {
    MetaValue::Array(MetaArray::String(v.iter().map(|s| s.to_string()).collect()))
}

fn s(v: &str) -> MetaValue {
    MetaValue::String(v.to_string())
}

fn err(meta: Vec<(&str, MetaValue)>) -> String {
    match Tokenizer::from_gguf(&file(meta)) {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn rejects_bad_metadata() {
    assert!(err(vec![]).contains("tokenizer.ggml.model"));
    assert!(err(vec![("tokenizer.ggml.model", s("bert"))]).contains("unsupported tokenizer model"));
    assert!(err(vec![("tokenizer.ggml.model", s("llama"))]).contains("tokens missing"));
    assert!(err(vec![
        ("tokenizer.ggml.model", s("gpt2")),
        ("tokenizer.ggml.pre", s("mystery")),
        ("tokenizer.ggml.tokens", strings(&["a"])),
        ("tokenizer.ggml.merges", strings(&[])),
    ])
    .contains("unsupported pre-tokenizer 'mystery'"));
    assert!(err(vec![
        ("tokenizer.ggml.model", s("gpt2")),
        ("tokenizer.ggml.tokens", strings(&["a"])),
    ])
    .contains("merges"));
    assert!(err(vec![
        ("tokenizer.ggml.model", s("llama")),
        ("tokenizer.ggml.tokens", strings(&["a", "b"])),
        (
            "tokenizer.ggml.scores",
            MetaValue::Array(MetaArray::F32(vec![0.0]))
        ),
    ])
    .contains("1 scores for 2 tokens"));
    assert!(err(vec![
        ("tokenizer.ggml.model", s("llama")),
        ("tokenizer.ggml.tokens", strings(&["a", "b"])),
        ("tokenizer.ggml.token_type", strings(&["x", "y"])),
    ])
    .contains("not integers"));
    assert!(err(vec![
        ("tokenizer.ggml.model", s("llama")),
        ("tokenizer.ggml.tokens", strings(&[])),
    ])
    .contains("empty"));
    let wrong_type = Tokenizer::from_gguf(&file(vec![
        ("tokenizer.ggml.model", s("llama")),
        ("tokenizer.ggml.tokens", strings(&["a"])),
        ("tokenizer.ggml.bos_token_id", s("one")),
    ]));
    assert!(matches!(wrong_type, Err(TokenizerError::Gguf(_))));
}

#[test]
fn tolerates_odd_vocabularies() {
    // Out-of-range special ids are ignored; no byte tokens; empty and duplicate texts;
    // a NaN score; merges that name no tokens; a missing pre-tokenizer means "default".
    let spm = Tokenizer::from_gguf(&file(vec![
        ("tokenizer.ggml.model", s("llama")),
        (
            "tokenizer.ggml.tokens",
            strings(&["<unk>", "", "a", "a", "▁a"]),
        ),
        (
            "tokenizer.ggml.scores",
            MetaValue::Array(MetaArray::F32(vec![0.0, f32::NAN, -1.0, -2.0, -0.5])),
        ),
        (
            "tokenizer.ggml.token_type",
            MetaValue::Array(MetaArray::I32(vec![2, 1, 1, 1, 99])),
        ),
        ("tokenizer.ggml.bos_token_id", MetaValue::U32(1_000_000)),
        ("tokenizer.ggml.eos_token_id", MetaValue::U32(7)),
    ]))
    .expect("builds");
    assert_eq!(spm.bos_id(), Some(1), "default BOS kept");
    assert_eq!(
        spm.eos_id(),
        Some(2),
        "key 7 is out of range: default EOS kept"
    );
    let ids = spm.encode("a ß 😀 a", true, true);
    assert!(ids.iter().all(|&i| (i as usize) < spm.vocab_size()));
    let _ = spm.decode(&ids, false);
    let _ = spm.decode(&[u32::MAX, 3, 4], true);
    assert_eq!(spm.token_bytes(u32::MAX), b"");

    let bpe = Tokenizer::from_gguf(&file(vec![
        ("tokenizer.ggml.model", s("gpt2")),
        (
            "tokenizer.ggml.tokens",
            strings(&["a", "b", "ab", "<|im_end|>"]),
        ),
        (
            "tokenizer.ggml.merges",
            strings(&["a b", "x y", "nospace", "", "a b"]),
        ),
    ]))
    .expect("builds");
    assert_eq!(bpe.encode("abab", false, false), [2, 2]);
    assert_eq!(
        bpe.encode("zz 😀", false, false),
        Vec::<u32>::new(),
        "unknown bytes dropped"
    );
    assert!(bpe.is_eog(3));
    assert_eq!(bpe.encode("a<|im_end|>", false, true), [0, 3]);
}
