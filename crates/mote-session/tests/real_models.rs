//! Sessions on the real model files fetched by scripts/fetch-models.sh.

use std::ops::ControlFlow;
use std::path::PathBuf;

use mote_file::GgufFile;
use mote_model::LoadOptions;
use mote_session::{
    ChatMessage, ChatTemplate, FinishReason, GenerateOptions, Sampler, SamplerConfig,
};
use mote_tokenizer::Tokenizer;

fn model(name: &str) -> Option<PathBuf> {
    let dir = std::env::var_os("MOTE_MODELS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models"));
    let p = dir.join(name);
    if p.exists() {
        Some(p)
    } else {
        assert!(
            std::env::var_os("MOTE_REQUIRE_MODELS").is_none(),
            "{name} missing: run scripts/fetch-models.sh all"
        );
        eprintln!("skipping: {} not found", p.display());
        None
    }
}

fn template_of(name: &str) -> Option<ChatTemplate> {
    let path = model(name)?;
    let file = GgufFile::open(&path).unwrap();
    let tok = Tokenizer::from_gguf(&file).unwrap();
    Some(ChatTemplate::detect(&file, &tok).unwrap())
}

#[test]
fn smollm2_template_from_the_file() {
    let Some(t) = template_of("SmolLM2-135M-Instruct.Q4_1.gguf") else {
        return;
    };
    assert!(t.describe().contains("jinja"));
    let msgs = [
        ChatMessage::new("user", "Hi"),
        ChatMessage::new("assistant", "Hello!"),
    ];
    // The template adds its default system prompt when the first message is not one.
    assert_eq!(
        t.render(&msgs, false).unwrap(),
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n\
         <|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello!<|im_end|>\n"
    );
    let msgs = [
        ChatMessage::new("system", "Be brief."),
        ChatMessage::new("user", "Hi"),
    ];
    assert_eq!(
        t.render(&msgs, true).unwrap(),
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    );
}

#[test]
fn files_without_a_template_get_a_builtin_format() {
    if let Some(t) = template_of("gemma-3-270m-Q4_K_M.gguf") {
        assert_eq!(t.describe(), "built-in gemma format");
    }
    if let Some(t) = template_of("tiny.gguf") {
        assert_eq!(t.describe(), "built-in llama2 format");
    }
}

fn greedy(session_ctx: usize) -> Sampler {
    Sampler::new(SamplerConfig::greedy(), session_ctx).unwrap()
}

#[test]
fn smollm2_knows_the_capital_of_france() {
    let Some(path) = model("SmolLM2-135M-Instruct.Q4_1.gguf") else {
        return;
    };
    let mut session = mote_session::load(&path, &LoadOptions::default(), 256)
        .unwrap()
        .session;
    let ids = session.tokenize_prompt("The capital of France is");
    let opts = GenerateOptions {
        max_tokens: Some(8),
        ..Default::default()
    };
    let mut streamed = String::new();
    let c = session
        .generate(&ids, &mut greedy(256), &opts, &mut |t| {
            streamed.push_str(t);
            ControlFlow::Continue(())
        })
        .unwrap();
    assert!(c.text.contains("Paris"), "{:?}", c.text);
    assert_eq!(streamed, c.text);
    assert_eq!(c.finish_reason, FinishReason::Length);
}

#[test]
fn reused_prefix_gives_the_same_tokens_as_a_fresh_run() {
    let Some(path) = model("SmolLM2-135M-Instruct.Q4_1.gguf") else {
        return;
    };
    let opts = GenerateOptions {
        max_tokens: Some(6),
        ..Default::default()
    };
    let none = &mut |_: &str| ControlFlow::Continue(());

    let mut fresh = mote_session::load(&path, &LoadOptions::default(), 256)
        .unwrap()
        .session;
    let prompt = fresh.tokenize_prompt("My favourite fruit is the banana because");
    let expected = fresh
        .generate(&prompt, &mut greedy(256), &opts, none)
        .unwrap();

    let mut reused = mote_session::load(&path, &LoadOptions::default(), 256)
        .unwrap()
        .session;
    let other = reused.tokenize_prompt("My favourite fruit is the apple");
    reused
        .generate(&other, &mut greedy(256), &opts, none)
        .unwrap();
    let got = reused
        .generate(&prompt, &mut greedy(256), &opts, none)
        .unwrap();
    assert!(got.stats.reused_tokens > 0, "{:?}", got.stats);
    assert_eq!(got.tokens, expected.tokens);
}

#[test]
fn gemma_prompt_gets_exactly_one_bos() {
    let Some(path) = model("gemma-3-270m-Q4_K_M.gguf") else {
        return;
    };
    let file = GgufFile::open(&path).unwrap();
    let tok = Tokenizer::from_gguf(&file).unwrap();
    let bos = tok.bos_id().unwrap();
    // The tokenizer adds BOS and also parses the one the text starts with…
    assert_eq!(&tok.encode("<bos>hi", true, true)[..2], &[bos, bos]);
    // …and the session keeps just one.
    let session = mote_session::load(&path, &LoadOptions::default(), 64)
        .unwrap()
        .session;
    let ids = session.tokenize_prompt("<bos>hi");
    assert_eq!(ids[0], bos);
    assert_ne!(ids[1], bos);
    let t = ChatTemplate::detect(&file, &tok).unwrap();
    let prompt = t.render(&[ChatMessage::new("user", "hi")], true).unwrap();
    assert_eq!(
        prompt,
        "<start_of_turn>user\nhi<end_of_turn>\n<start_of_turn>model\n"
    );
}
