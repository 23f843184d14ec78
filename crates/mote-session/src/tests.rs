//! Session logic against a scripted fake model and a byte-level fake tokenizer.

use std::ops::ControlFlow;

use mote_model::ModelError;

use crate::*;

const BOS: u32 = 256;
const EOS: u32 = 257;
/// A control token that is not end-of-generation (shown as nothing).
const CTL: u32 = 258;
const VOCAB: usize = 259;

/// Ids 0..256 are single bytes; then `<s>`, `</s>`, `<ctl>`.
struct FakeTokenizer;

impl TokenCodec for FakeTokenizer {
    fn encode(&self, text: &str, add_special: bool, parse_special: bool) -> Vec<u32> {
        let mut ids = Vec::new();
        if add_special {
            ids.push(BOS);
        }
        let mut rest = text.as_bytes();
        while let Some(&b) = rest.first() {
            if parse_special && rest.starts_with(b"<s>") {
                ids.push(BOS);
                rest = &rest[3..];
            } else if parse_special && rest.starts_with(b"</s>") {
                ids.push(EOS);
                rest = &rest[4..];
            } else {
                ids.push(b as u32);
                rest = &rest[1..];
            }
        }
        ids
    }
    fn token_bytes(&self, id: u32) -> &[u8] {
        static BYTES: [u8; 256] = {
            let mut b = [0u8; 256];
            let mut i = 0;
            while i < 256 {
                b[i] = i as u8;
                i += 1;
            }
            b
        };
        match id {
            0..=255 => std::slice::from_ref(&BYTES[id as usize]),
            BOS => b"<s>",
            EOS => b"</s>",
            CTL => b"<ctl>",
            _ => b"",
        }
    }
    fn is_control(&self, id: u32) -> bool {
        id >= 256
    }
    fn is_eog(&self, id: u32) -> bool {
        id == EOS
    }
    fn bos_id(&self) -> Option<u32> {
        Some(BOS)
    }
    fn eos_id(&self) -> Option<u32> {
        Some(EOS)
    }
    fn vocab_size(&self) -> usize {
        VOCAB
    }
    fn token_id(&self, piece: &str) -> Option<u32> {
        match piece {
            "<s>" => Some(BOS),
            "</s>" => Some(EOS),
            _ => None,
        }
    }
}

/// Each forward call `k` since the last [`FakeModel::script`] returns logits peaked on
/// `script[k]` (EOS after the script runs out).
struct FakeModel {
    capacity: usize,
    fed: Vec<u32>,
    script: Vec<u32>,
    calls: usize,
    /// Total tokens processed by forward, to observe prefix reuse.
    processed: usize,
    nan: bool,
}

impl FakeModel {
    fn new(capacity: usize) -> FakeModel {
        FakeModel {
            capacity,
            fed: Vec::new(),
            script: Vec::new(),
            calls: 0,
            processed: 0,
            nan: false,
        }
    }
    fn script(&mut self, text: &[u8], then: &[u32]) {
        self.script = text
            .iter()
            .map(|&b| b as u32)
            .chain(then.iter().copied())
            .collect();
        self.calls = 0;
    }
}

impl LogitsSource for FakeModel {
    fn vocab_size(&self) -> usize {
        VOCAB
    }
    fn capacity(&self) -> usize {
        self.capacity
    }
    fn position(&self) -> usize {
        self.fed.len()
    }
    fn truncate(&mut self, n: usize) {
        self.fed.truncate(n);
    }
    fn forward(&mut self, tokens: &[u32]) -> Result<Vec<f32>, ModelError> {
        if self.fed.len() + tokens.len() > self.capacity {
            return Err(ModelError::ContextFull {
                needed: self.fed.len() + tokens.len(),
                capacity: self.capacity,
            });
        }
        self.fed.extend_from_slice(tokens);
        self.processed += tokens.len();
        let target = self.script.get(self.calls).copied().unwrap_or(EOS);
        self.calls += 1;
        let mut logits = vec![0.0; VOCAB];
        logits[target as usize] = 10.0;
        if self.nan {
            logits[3] = f32::NAN;
        }
        Ok(logits)
    }
}

fn session(capacity: usize) -> Session<FakeModel, FakeTokenizer> {
    Session::new(FakeModel::new(capacity), FakeTokenizer)
}

fn greedy() -> Sampler {
    Sampler::new(SamplerConfig::greedy(), 64).unwrap()
}

fn run(
    s: &mut Session<FakeModel, FakeTokenizer>,
    prompt: &str,
    opts: &GenerateOptions,
) -> (Result<Completion, SessionError>, Vec<String>) {
    let ids = s.tokenize_prompt(prompt);
    let mut pieces = Vec::new();
    let r = s.generate(&ids, &mut greedy(), opts, &mut |t| {
        pieces.push(t.to_string());
        ControlFlow::Continue(())
    });
    (r, pieces)
}

#[test]
fn stops_at_end_of_generation() {
    let mut s = session(64);
    s.model_mut().script(b"Hello", &[EOS, b'x' as u32]);
    let (r, pieces) = run(&mut s, "Hi", &GenerateOptions::default());
    let c = r.unwrap();
    assert_eq!(c.text, "Hello");
    assert_eq!(pieces.concat(), "Hello");
    assert_eq!(c.finish_reason, FinishReason::Stop);
    assert_eq!(c.stats.generated_tokens, 5);
    assert_eq!(c.stats.prompt_tokens, 3); // BOS H i
    assert_eq!(c.stats.decode_steps, 5);
    assert!(c.stats.time_to_first_token.is_some());
}

#[test]
fn respects_max_tokens() {
    let mut s = session(64);
    s.model_mut().script(b"abcdefgh", &[]);
    let opts = GenerateOptions {
        max_tokens: Some(3),
        ..Default::default()
    };
    let c = run(&mut s, "x", &opts).0.unwrap();
    assert_eq!(c.text, "abc");
    assert_eq!(c.finish_reason, FinishReason::Length);
    let opts = GenerateOptions {
        max_tokens: Some(0),
        ..Default::default()
    };
    let c = run(&mut s, "x", &opts).0.unwrap();
    assert_eq!(c.text, "");
    assert_eq!(c.finish_reason, FinishReason::Length);
}

#[test]
fn stop_string_ends_generation_without_showing_it() {
    let mut s = session(64);
    s.model_mut().script(b"one\nUser: two", &[]);
    let opts = GenerateOptions {
        stop: vec!["\nUser:".into()],
        ..Default::default()
    };
    let (r, pieces) = run(&mut s, "x", &opts);
    let c = r.unwrap();
    assert_eq!(c.text, "one");
    assert_eq!(pieces.concat(), "one");
    assert_eq!(c.finish_reason, FinishReason::Stop);
}

#[test]
fn streamed_pieces_are_whole_characters() {
    let mut s = session(64);
    s.model_mut().script("a€🦀".as_bytes(), &[EOS]);
    let (r, pieces) = run(&mut s, "x", &GenerateOptions::default());
    assert_eq!(r.unwrap().text, "a€🦀");
    assert_eq!(pieces, vec!["a", "€", "🦀"]);
}

#[test]
fn control_tokens_are_not_shown() {
    let mut s = session(64);
    s.model_mut().script(b"a", &[CTL, b'b' as u32, EOS]);
    let c = run(&mut s, "x", &GenerateOptions::default()).0.unwrap();
    assert_eq!(c.text, "ab");
    assert_eq!(c.tokens, vec![b'a' as u32, CTL, b'b' as u32]);
}

#[test]
fn full_context_ends_with_context_reason() {
    let mut s = session(8);
    s.model_mut().script(b"abcdefghijk", &[]);
    let c = run(&mut s, "xyzw", &GenerateOptions::default()).0.unwrap(); // 5 prompt tokens
    assert_eq!(c.finish_reason, FinishReason::Context);
    // Positions 5, 6, 7 take generated tokens; the fourth is sampled but has no room.
    assert_eq!(c.text, "abcd");
    assert_eq!(s.model().position(), 8);
}

#[test]
fn prompt_longer_than_context_is_a_clear_error() {
    let mut s = session(4);
    let err = run(&mut s, "too long", &GenerateOptions::default())
        .0
        .unwrap_err();
    assert!(matches!(
        err,
        SessionError::PromptTooLong {
            tokens: 9,
            n_ctx: 4
        }
    ));
    assert!(err.to_string().contains("--ctx-size"), "{err}");
    // Exactly full still produces one token.
    let mut s = session(4);
    s.model_mut().script(b"z", &[]);
    let c = run(&mut s, "abc", &GenerateOptions::default()).0.unwrap();
    assert_eq!(
        (c.text.as_str(), c.finish_reason),
        ("z", FinishReason::Context)
    );
}

#[test]
fn empty_prompt_is_an_error() {
    let mut s = session(8);
    let err = s
        .generate(&[], &mut greedy(), &GenerateOptions::default(), &mut |_| {
            ControlFlow::Continue(())
        })
        .unwrap_err();
    assert!(matches!(err, SessionError::EmptyPrompt));
}

#[test]
fn ignore_eos_keeps_going() {
    let mut s = session(64);
    s.model_mut().script(b"a", &[EOS, EOS]);
    let opts = GenerateOptions {
        ignore_eos: true,
        max_tokens: Some(3),
        ..Default::default()
    };
    let c = run(&mut s, "x", &opts).0.unwrap();
    assert_eq!(c.finish_reason, FinishReason::Length);
    assert_eq!(c.tokens.len(), 3);
    assert!(!c.tokens.contains(&EOS));
}

#[test]
fn callback_can_cancel() {
    let mut s = session(64);
    s.model_mut().script(b"abcdef", &[]);
    let ids = s.tokenize_prompt("x");
    let mut seen = 0;
    let c = s
        .generate(
            &ids,
            &mut greedy(),
            &GenerateOptions::default(),
            &mut |_| {
                seen += 1;
                if seen == 2 {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                }
            },
        )
        .unwrap();
    assert_eq!(c.finish_reason, FinishReason::Cancelled);
    assert_eq!(c.text, "ab");
}

#[test]
fn broken_logits_are_a_typed_error() {
    let mut s = session(64);
    s.model_mut().nan = true;
    let err = run(&mut s, "x", &GenerateOptions::default()).0.unwrap_err();
    assert!(matches!(
        err,
        SessionError::Sampling(SamplingError::InvalidLogit { .. })
    ));
}

#[test]
fn shared_prefix_is_not_recomputed() {
    let mut s = session(64);
    s.model_mut().script(b"ok", &[EOS]);
    run(&mut s, "hello", &GenerateOptions::default()).0.unwrap();
    // BOS + 5 prompt tokens, then "o" and "k" fed back; EOS ends it unfed.
    assert_eq!(s.model().processed, 6 + 2);
    let before = s.model().processed;
    s.model_mut().script(b"!", &[EOS]);
    run(&mut s, "hellook more", &GenerateOptions::default())
        .0
        .unwrap();
    // 8 tokens were cached (BOS hello o k): only " more" runs, then "!" is fed back.
    assert_eq!(s.model().processed - before, 13 - 8 + 1);
    // An identical prompt still runs its last token to get fresh logits.
    s.model_mut().script(b"", &[EOS]);
    let before = s.model().processed;
    run(&mut s, "hellook more", &GenerateOptions::default())
        .0
        .unwrap();
    assert_eq!(s.model().processed - before, 1);
    // A different prompt drops the cache from the first difference: BOS "hel" is kept.
    s.model_mut().script(b"", &[EOS]);
    let before = s.model().processed;
    let c = run(&mut s, "help", &GenerateOptions::default()).0.unwrap();
    assert_eq!(s.model().processed - before, 1);
    assert_eq!(c.stats.reused_tokens, 4);
}

#[test]
fn double_bos_is_removed() {
    let s = session(8);
    assert_eq!(s.tokenize_prompt("<s>a"), vec![BOS, b'a' as u32]);
}

#[test]
fn chat_turns_reuse_the_context() {
    let mut s = session(512);
    let t = ChatTemplate::builtin(BuiltinFormat::ChatMl, "<s>", "</s>");
    let mut chat = Chat::new(t, Some("sys".into()));
    let mut sampler = greedy();
    let opts = GenerateOptions::default();
    s.model_mut().script(b"Hi there", &[EOS]);
    let mut out = String::new();
    let c = chat
        .respond(&mut s, &mut sampler, &opts, "hello", &mut |t| {
            out.push_str(t);
            ControlFlow::Continue(())
        })
        .unwrap();
    assert_eq!(c.text, "Hi there");
    assert_eq!(out, "Hi there");
    assert_eq!(chat.messages().len(), 3);
    s.model_mut().script(b"Bye", &[EOS]);
    let c = chat
        .respond(&mut s, &mut sampler, &opts, "bye", &mut |_| {
            ControlFlow::Continue(())
        })
        .unwrap();
    assert_eq!(c.text, "Bye");
    assert!(c.stats.reused_tokens > 30, "{:?}", c.stats);
    let prompt = chat.template().render(chat.messages(), false).unwrap();
    assert!(
        prompt.ends_with("<|im_start|>assistant\nBye<|im_end|>\n"),
        "{prompt}"
    );
    chat.reset();
    assert_eq!(chat.messages().len(), 1);
}

#[test]
fn plain_chat_stops_at_next_user_line() {
    let mut s = session(512);
    let t = ChatTemplate::builtin(BuiltinFormat::Plain, "<s>", "</s>");
    let mut chat = Chat::new(t, None);
    s.model_mut().script(b" Fine.\nUser: and you?", &[]);
    let c = chat
        .respond(
            &mut s,
            &mut greedy(),
            &GenerateOptions::default(),
            "How are you?",
            &mut |_| ControlFlow::Continue(()),
        )
        .unwrap();
    assert_eq!(c.text, " Fine.");
    assert_eq!(chat.messages()[1].content, "Fine.");
}
