//! What the server needs from a model, split in two halves:
//!
//! - [`Frontend`]: text work that any request handler may do concurrently (tokenize, render
//!   the chat template, turn token ids back into bytes). Shared behind an `Arc`.
//! - [`Backend`]: the weights and one KV cache per slot. Owned by the scheduler thread
//!   alone, so it needs no locking and may keep mutable scratch buffers.
//!
//! The HTTP layer and the scheduler only see these traits, which lets the tests run the
//! whole server on a small deterministic fake engine (see `fake.rs`).

use std::path::Path;

use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("chat template: {0}")]
    Template(String),
    #[error("model: {0}")]
    Model(String),
    /// A slot file that cannot be used (missing, corrupt, another model's, ...): the
    /// client's doing, and the slot is unchanged.
    #[error("{0}")]
    SlotFile(String),
    #[error("this engine cannot save or restore slots")]
    SlotsUnsupported,
}

/// One chat turn as the OpenAI API sends it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ChatMessage {
    pub role: String,
    pub content: String,
}

pub trait Frontend: Send + Sync + 'static {
    /// The id clients use in the `model` field.
    fn model_id(&self) -> &str;
    /// Context length the model was trained with (an upper bound for `--ctx-size`).
    fn n_ctx_train(&self) -> usize;
    /// Prompt text to ids: BOS as the vocabulary asks, control-token text recognised
    /// (the chat template writes `<|im_start|>` and friends as text).
    fn tokenize(&self, text: &str) -> Vec<u32>;
    /// The conversation rendered with the model's chat template, ending with the opening
    /// of the assistant's turn.
    fn render_chat(&self, messages: &[ChatMessage]) -> Result<String, EngineError>;
    /// The conversation rendered without the opening of a new assistant turn: where the
    /// next message would begin. `None` when the engine cannot say.
    fn render_chat_prefix(&self, messages: &[ChatMessage]) -> Option<String> {
        let _ = messages;
        None
    }
    /// Raw bytes of one token as shown in generated text (empty for control tokens);
    /// streaming concatenates them and emits complete UTF-8.
    fn token_bytes(&self, id: u32) -> Vec<u8>;
    /// End of generation (EOS, `<|im_end|>`, ...).
    fn is_eog(&self, id: u32) -> bool;
    /// Stop strings the chat format needs (formats without an end-of-turn token).
    fn chat_stops(&self) -> Vec<String> {
        Vec::new()
    }
    /// Whether the model has a chat format of its own (its file's template, or a built-in
    /// one its architecture or vocabulary calls for) rather than the plain transcript.
    fn has_chat_template(&self) -> bool {
        true
    }
    /// Ids of the tokens whose text contains one of `breakers` (DRY's sequence breakers).
    fn breaker_tokens(&self, breakers: &[String]) -> Vec<u32> {
        let _ = breakers;
        Vec::new()
    }
}

pub trait Backend: Send + 'static {
    fn vocab_size(&self) -> usize;
    /// Positions currently held in `slot`'s cache.
    fn cache_len(&self, slot: usize) -> usize;
    /// Forget positions `n..` of `slot`'s cache.
    fn truncate(&mut self, slot: usize, n: usize);
    /// Context shift: drops positions `start..start + n` of `slot`'s cache and moves the
    /// later ones down (keys re-rotated in place).
    fn shift(&mut self, slot: usize, start: usize, n: usize) -> Result<(), EngineError> {
        let _ = (slot, start, n);
        Err(EngineError::Model(
            "this engine cannot shift a context".into(),
        ))
    }
    /// Saves the first `tokens.len()` positions of `slot`'s cache (the keys and values of
    /// `tokens`) to `path`, written to a temporary name and renamed; returns the bytes
    /// written.
    fn save_slot(&self, slot: usize, tokens: &[u32], path: &Path) -> Result<u64, EngineError> {
        let _ = (slot, tokens, path);
        Err(EngineError::SlotsUnsupported)
    }
    /// Replaces `slot`'s cache with the one saved at `path`; returns its tokens and the
    /// file's size. A refused file leaves the slot as it was.
    fn restore_slot(&mut self, slot: usize, path: &Path) -> Result<(Vec<u32>, u64), EngineError> {
        let _ = (slot, path);
        Err(EngineError::SlotsUnsupported)
    }
    /// Runs `tokens` at the end of `slot`'s cache and returns the last token's logits.
    fn forward(&mut self, slot: usize, tokens: &[u32]) -> Result<Vec<f32>, EngineError>;
    /// Runs each entry's tokens at the end of its slot's cache and returns each entry's
    /// last-token logits, in entry order. A slot appears at most once. Engines that can
    /// run them as one pass (every weight product shared by all entries' tokens) do;
    /// this default runs the entries one at a time.
    fn forward_batch(&mut self, batch: &[(usize, &[u32])]) -> Vec<Result<Vec<f32>, EngineError>> {
        batch
            .iter()
            .map(|&(slot, tokens)| self.forward(slot, tokens))
            .collect()
    }
}
