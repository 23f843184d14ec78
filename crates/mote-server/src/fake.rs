//! A tiny deterministic engine for tests: bytes are tokens, and the "model" always answers
//! `Hi, fake!` followed by end-of-generation (after a prompt that does not end in one of
//! the reply's characters; then it continues the reply from there).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::engine::{Backend, ChatMessage, EngineError, Frontend};

pub const REPLY: &str = "Hi, fake!";
const BOS: u32 = 256;
const EOS: u32 = 257;
const VOCAB: usize = 258;

pub struct FakeFrontend;

impl Frontend for FakeFrontend {
    fn model_id(&self) -> &str {
        "fake"
    }
    fn n_ctx_train(&self) -> usize {
        4096
    }
    fn tokenize(&self, text: &str) -> Vec<u32> {
        std::iter::once(BOS)
            .chain(text.bytes().map(u32::from))
            .collect()
    }
    fn render_chat(&self, messages: &[ChatMessage]) -> Result<String, EngineError> {
        let mut s = String::new();
        for m in messages {
            s.push_str(&format!("{}: {}\n", m.role, m.content));
        }
        s.push_str("assistant:");
        Ok(s)
    }
    fn token_bytes(&self, id: u32) -> Vec<u8> {
        u8::try_from(id).map(|b| vec![b]).unwrap_or_default()
    }
    fn is_eog(&self, id: u32) -> bool {
        id == EOS
    }
}

/// Per-slot cache lengths, a delay per forward call (to hold slots busy in tests) and a
/// count of every token forwarded (to see prompt-prefix reuse).
pub struct FakeBackend {
    lens: Vec<usize>,
    last: Vec<u32>,
    pub delay: Duration,
    pub forwarded: Arc<AtomicUsize>,
}

impl FakeBackend {
    pub fn new(n_slots: usize, delay: Duration) -> Self {
        FakeBackend {
            lens: vec![0; n_slots],
            last: vec![BOS; n_slots],
            delay,
            forwarded: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Logits that pick the reply's next character after `last`, else its first one.
    fn logits_after(last: u32) -> Vec<f32> {
        let reply = REPLY.as_bytes();
        let next = match reply.iter().position(|&b| u32::from(b) == last) {
            Some(i) if i + 1 < reply.len() => u32::from(reply[i + 1]),
            Some(_) => EOS,
            None => u32::from(reply[0]),
        };
        let mut logits = vec![0.0; VOCAB];
        logits[next as usize] = 100.0;
        logits
    }
}

impl Backend for FakeBackend {
    fn vocab_size(&self) -> usize {
        VOCAB
    }
    fn cache_len(&self, slot: usize) -> usize {
        self.lens.get(slot).copied().unwrap_or(0)
    }
    fn truncate(&mut self, slot: usize, n: usize) {
        if let Some(l) = self.lens.get_mut(slot) {
            *l = (*l).min(n);
        }
    }
    fn shift(&mut self, slot: usize, start: usize, n: usize) -> Result<(), EngineError> {
        match self.lens.get_mut(slot) {
            Some(l) if start + n <= *l => {
                *l -= n;
                Ok(())
            }
            _ => Err(EngineError::Model(format!("bad shift of slot {slot}"))),
        }
    }
    fn forward(&mut self, slot: usize, tokens: &[u32]) -> Result<Vec<f32>, EngineError> {
        if !self.delay.is_zero() {
            std::thread::sleep(self.delay);
        }
        let (Some(len), Some(last)) = (self.lens.get_mut(slot), self.last.get_mut(slot)) else {
            return Err(EngineError::Model(format!("no slot {slot}")));
        };
        let Some(&t) = tokens.last() else {
            return Err(EngineError::Model("no tokens".into()));
        };
        *len += tokens.len();
        *last = t;
        self.forwarded.fetch_add(tokens.len(), Ordering::Relaxed);
        Ok(Self::logits_after(t))
    }
}
