//! Ids must equal llama.cpp's (fixtures from scripts/fixtures/tokenizer_fixtures.py) on the
//! three real vocabularies: SmolLM2 (byte-level BPE, `smollm`), Gemma 3 (SentencePiece, 262k)
//! and tiny.gguf (Llama 2 SentencePiece, 32k).

mod common;

use common::{hex, ids, model, read_json};
use mote_file::GgufFile;
use mote_tokenizer::Tokenizer;

fn check(model_file: &str, fixture: &str) {
    let Some(path) = model(model_file) else {
        return;
    };
    let file = GgufFile::open(&path).expect("model opens");
    let t0 = std::time::Instant::now();
    let tok = Tokenizer::from_gguf(&file).expect("tokenizer builds");
    eprintln!("{model_file}: from_gguf took {:?}", t0.elapsed());
    let fx = read_json(fixture);

    assert_eq!(tok.vocab_size() as u64, fx["vocab_size"].as_u64().unwrap());
    assert_eq!(
        tok.bos_id().map(i64::from).unwrap_or(-1),
        fx["bos"].as_i64().unwrap()
    );
    assert_eq!(
        tok.eos_id().map(i64::from).unwrap_or(-1),
        fx["eos"].as_i64().unwrap()
    );
    assert_eq!(tok.eog_ids(), ids(&fx["eog"]).as_slice(), "EOG set");

    let mut failures = Vec::new();
    for case in fx["cases"].as_array().unwrap() {
        let text = case["text"].as_str().unwrap();
        for (key, expected) in case["ids"].as_object().unwrap() {
            let add = key.starts_with('a');
            let special = key.ends_with('s');
            let got = tok.encode(text, add, special);
            let want = ids(expected);
            if got != want {
                failures.push(format!(
                    "{text:?} add_special={add} parse_special={special}\n  want {want:?}\n  got  {got:?}"
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{model_file}: {} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );

    for (id, piece) in fx["pieces"].as_object().unwrap() {
        let id: u32 = id.parse().unwrap();
        assert_eq!(
            tok.token_bytes(id),
            hex(piece.as_str().unwrap()),
            "piece of {id}"
        );
    }

    // Round trip: without parse_special the text comes back, bar SentencePiece's prefix
    // space (and a literal `▁`, which SentencePiece cannot tell from an escaped space).
    for case in fx["cases"].as_array().unwrap() {
        let text = case["text"].as_str().unwrap();
        let spm = tok.pre_tokenizer().is_none();
        if (tok.adds_space_prefix() && text.is_empty()) || (spm && text.contains('\u{2581}')) {
            continue;
        }
        let decoded = tok.decode(&tok.encode(text, false, false), false);
        let expected = if tok.adds_space_prefix() {
            format!(" {text}")
        } else {
            text.to_string()
        };
        assert_eq!(decoded, expected, "round trip of {text:?}");
    }
}

#[test]
fn smollm2_matches_llama_cpp() {
    check("SmolLM2-135M-Instruct.Q4_1.gguf", "llama_smollm2.json");
}

#[test]
fn gemma3_matches_llama_cpp() {
    check("gemma-3-270m-Q4_K_M.gguf", "llama_gemma3.json");
}

#[test]
fn tiny_matches_llama_cpp() {
    check("tiny.gguf", "llama_tiny.json");
}
