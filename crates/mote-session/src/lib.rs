//! Sessions: a model, a tokenizer and a KV cache turned into text generation.
//!
//! - [`sampling`]: llama.cpp-compatible sampling (penalties, top-k, top-p, min-p,
//!   temperature, seeded draws).
//! - [`generate`]: [`Session`] runs a prompt in one batched pass, then decodes token by
//!   token, streaming complete UTF-8 text and stopping on end-of-generation tokens, stop
//!   strings, a token limit or a full context ([`FinishReason`]). Prompts that share a
//!   prefix with what is already in the context only run their new suffix.
//! - [`dry`]: llama.cpp's DRY repetition penalty and the cycle detector that ends a
//!   generation stuck in a loop (finish reason `repetition`).
//! - [`shift`]: what to drop when the context is full (context shift at chat-turn
//!   boundaries, attention sinks); the cache is shifted in place, keys re-rotated.
//! - [`chat`]: prompt formats. The file's `tokenizer.chat_template` (Jinja) is used when
//!   present. Otherwise a built-in format is chosen ([`ChatTemplate::detect`]): Gemma
//!   turns for `gemma*` architectures (Gemma 3 270M ships without a template), ChatML when
//!   the vocabulary has `<|im_start|>`, Llama 2 `[INST]` for `[INST]` vocabularies and
//!   SentencePiece llama models, and a plain `User:`/`Assistant:` transcript otherwise.
//!
//! The session is generic over [`LogitsSource`] and [`TokenCodec`] so that its logic is
//! tested with small fakes; [`ModelRunner`] and `mote_tokenizer::Tokenizer` are the real
//! implementations.

pub mod chat;
pub mod dry;
pub mod generate;
pub mod persist;
pub mod sampling;
pub mod shift;
pub mod stream;

use std::path::Path;
use std::time::{Duration, Instant};

pub use chat::{BuiltinFormat, Chat, ChatError, ChatMessage, ChatTemplate};
pub use generate::{
    default_context_size, drop_doubled_bos, Completion, FinishReason, GenerateOptions,
    GenerationStats, LogitsSource, ModelRunner, Session, TokenCodec,
};
pub use persist::PersistError;
pub use sampling::{Sampler, SamplerConfig, SamplingError};
pub use shift::{ShiftMode, ShiftPolicy};

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error(transparent)]
    Model(#[from] mote_model::ModelError),
    #[error(transparent)]
    Tokenizer(#[from] mote_tokenizer::TokenizerError),
    #[error("sampling: {0}")]
    Sampling(#[from] SamplingError),
    #[error(transparent)]
    Chat(#[from] ChatError),
    #[error("the prompt is {tokens} tokens but the context holds only {n_ctx}; shorten the prompt or raise --ctx-size")]
    PromptTooLong { tokens: usize, n_ctx: usize },
    #[error("the prompt is empty (it produced no tokens)")]
    EmptyPrompt,
    #[error(transparent)]
    Persist(#[from] PersistError),
}

/// A real model ready to generate, with how long loading took.
pub struct Loaded {
    pub session: Session<ModelRunner, mote_tokenizer::Tokenizer>,
    pub load_time: Duration,
}

/// Load a model file and its tokenizer; `n_ctx = 0` picks [`default_context_size`].
pub fn load(
    path: &Path,
    opts: &mote_model::LoadOptions,
    n_ctx: usize,
) -> Result<Loaded, SessionError> {
    let start = Instant::now();
    let model = mote_model::Model::load(path, opts)?;
    let tokenizer = mote_tokenizer::Tokenizer::from_gguf(model.gguf())?;
    let n_ctx = match n_ctx {
        0 => default_context_size(model.config().n_ctx_train),
        n => n,
    };
    let runner = ModelRunner::new(model, n_ctx);
    Ok(Loaded {
        session: Session::new(runner, tokenizer),
        load_time: start.elapsed(),
    })
}

#[cfg(test)]
mod tests;
