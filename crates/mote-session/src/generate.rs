//! The generation loop: prefill the prompt in one batch, then sample, stream and feed back
//! one token at a time until a stop condition.

use std::ops::ControlFlow;
use std::time::{Duration, Instant};

use mote_model::{KvCache, Model, ModelError};
use mote_tokenizer::Tokenizer;

use crate::sampling::Sampler;
use crate::shift::{shift_positions, truncate_prompt, ShiftPolicy};
use crate::stream::TextStream;
use crate::SessionError;

/// Something that turns tokens into next-token logits while keeping its own context:
/// the real model with its KV cache, or a fake in tests.
pub trait LogitsSource {
    /// Length of each logits row.
    fn vocab_size(&self) -> usize;
    /// Most positions the context can hold.
    fn capacity(&self) -> usize;
    /// Positions already processed.
    fn position(&self) -> usize;
    /// Forget positions `n..`.
    fn truncate(&mut self, n: usize);
    /// Process `tokens` at positions `position()..`, returning the last token's logits.
    fn forward(&mut self, tokens: &[u32]) -> Result<Vec<f32>, ModelError>;
    /// Drop positions `start..start + n` and move the later ones down (context shift).
    fn discard(&mut self, start: usize, n: usize) -> Result<(), ModelError> {
        let _ = (start, n);
        Err(ModelError::Invalid(
            "this model cannot shift its context".into(),
        ))
    }
}

/// What the session needs from a tokenizer; implemented by [`Tokenizer`] and by test fakes.
pub trait TokenCodec {
    fn encode(&self, text: &str, add_special: bool, parse_special: bool) -> Vec<u32>;
    fn token_bytes(&self, id: u32) -> &[u8];
    /// Control tokens (`<|im_start|>`, `<s>`…) are not shown in generated text.
    fn is_control(&self, id: u32) -> bool;
    fn is_eog(&self, id: u32) -> bool;
    fn bos_id(&self) -> Option<u32>;
    fn eos_id(&self) -> Option<u32>;
    fn vocab_size(&self) -> usize;
    fn token_id(&self, piece: &str) -> Option<u32>;
    /// All end-of-generation ids.
    fn eog_ids(&self) -> Vec<u32> {
        (0..self.vocab_size() as u32)
            .filter(|&t| self.is_eog(t))
            .collect()
    }
    /// The token's text, lossily decoded (for template variables like `bos_token`).
    fn token_text(&self, id: u32) -> String {
        String::from_utf8_lossy(self.token_bytes(id)).into_owned()
    }
}

impl TokenCodec for Tokenizer {
    fn encode(&self, text: &str, add_special: bool, parse_special: bool) -> Vec<u32> {
        Tokenizer::encode(self, text, add_special, parse_special)
    }
    fn token_bytes(&self, id: u32) -> &[u8] {
        Tokenizer::token_bytes(self, id)
    }
    fn is_control(&self, id: u32) -> bool {
        Tokenizer::is_control(self, id)
    }
    fn eog_ids(&self) -> Vec<u32> {
        Tokenizer::eog_ids(self).to_vec()
    }
    fn is_eog(&self, id: u32) -> bool {
        Tokenizer::is_eog(self, id)
    }
    fn bos_id(&self) -> Option<u32> {
        Tokenizer::bos_id(self)
    }
    fn eos_id(&self) -> Option<u32> {
        Tokenizer::eos_id(self)
    }
    fn vocab_size(&self) -> usize {
        Tokenizer::vocab_size(self)
    }
    fn token_id(&self, piece: &str) -> Option<u32> {
        Tokenizer::token_id(self, piece)
    }
}

/// The real model together with the KV cache of one sequence.
pub struct ModelRunner {
    pub(crate) model: Model,
    pub(crate) cache: KvCache,
}

impl ModelRunner {
    pub fn new(model: Model, n_ctx: usize) -> ModelRunner {
        let cache = model.new_cache(n_ctx);
        ModelRunner { model, cache }
    }
    pub fn model(&self) -> &Model {
        &self.model
    }
}

impl LogitsSource for ModelRunner {
    fn vocab_size(&self) -> usize {
        self.model.config().vocab_size
    }
    fn capacity(&self) -> usize {
        self.cache.capacity()
    }
    fn position(&self) -> usize {
        self.cache.len()
    }
    fn truncate(&mut self, n: usize) {
        self.cache.truncate(n);
    }
    fn forward(&mut self, tokens: &[u32]) -> Result<Vec<f32>, ModelError> {
        self.model.forward(tokens, &mut self.cache, false)
    }
    fn discard(&mut self, start: usize, n: usize) -> Result<(), ModelError> {
        self.model.shift_cache(&mut self.cache, start, n)
    }
}

/// Default context size: the trained context, capped at 4096 to keep the cache small.
pub fn default_context_size(n_ctx_train: usize) -> usize {
    match n_ctx_train {
        0 => 4096,
        n => n.min(4096),
    }
}

/// Limits and stop conditions of one generation.
#[derive(Clone, Debug, Default)]
pub struct GenerateOptions {
    /// Most tokens to generate; `None` runs until end-of-generation or a full context.
    pub max_tokens: Option<usize>,
    /// Keep going past end-of-generation tokens (they are never sampled).
    pub ignore_eos: bool,
    /// Generation ends before any of these strings, which are not emitted.
    pub stop: Vec<String>,
    /// Time the caller spent loading, counted into time-to-first-token.
    pub load_time: Duration,
    /// Make room when the context is full (`--context-shift`, `--streaming`) instead of
    /// stopping; a prompt longer than the context is then truncated as llama-server does.
    /// Without `max_tokens`, generation then ends after one context's worth of tokens.
    pub shift: Option<ShiftPolicy>,
    /// Positions in the prompt where chat turns begin, so a shift drops whole turns.
    pub turn_starts: Vec<usize>,
}

/// Why generation ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FinishReason {
    /// An end-of-generation token or a stop string.
    Stop,
    /// The token limit was reached.
    Length,
    /// The context (KV cache) is full.
    Context,
    /// The text callback asked to stop.
    Cancelled,
    /// The last tokens were one short block repeated over and over (see
    /// [`crate::dry::CycleDetector`]): the generation was stuck in a loop.
    Repetition,
}

impl FinishReason {
    pub fn as_str(self) -> &'static str {
        match self {
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
            FinishReason::Context => "context",
            FinishReason::Cancelled => "cancelled",
            FinishReason::Repetition => "repetition",
        }
    }
}

impl std::fmt::Display for FinishReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Counts and timings of one generation.
#[derive(Clone, Debug, Default)]
pub struct GenerationStats {
    /// Tokens in the prompt.
    pub prompt_tokens: usize,
    /// Prompt tokens whose keys/values were already cached (prefix reuse).
    pub reused_tokens: usize,
    /// Time for the batched prompt pass.
    pub prefill_time: Duration,
    /// Tokens sampled (end-of-generation tokens excluded).
    pub generated_tokens: usize,
    /// Single-token forward passes and their total time.
    pub decode_steps: usize,
    pub decode_time: Duration,
    /// Load time (as passed in) + prefill + first sample.
    pub time_to_first_token: Option<Duration>,
    pub total_time: Duration,
    /// Tokens dropped from the context (prompt truncation and context shifts).
    pub n_discarded: usize,
    /// Context shifts during generation.
    pub shifts: usize,
}

impl GenerationStats {
    /// Prompt tokens actually processed.
    pub fn prefill_tokens(&self) -> usize {
        self.prompt_tokens - self.reused_tokens
    }
    pub fn prefill_tokens_per_s(&self) -> f64 {
        rate(self.prefill_tokens(), self.prefill_time)
    }
    pub fn decode_tokens_per_s(&self) -> f64 {
        rate(self.decode_steps, self.decode_time)
    }
}

fn rate(n: usize, t: Duration) -> f64 {
    let s = t.as_secs_f64();
    if s > 0.0 {
        n as f64 / s
    } else {
        0.0
    }
}

/// The result of one generation.
#[derive(Clone, Debug)]
pub struct Completion {
    /// Everything emitted through the callback.
    pub text: String,
    /// Generated token ids (end-of-generation excluded).
    pub tokens: Vec<u32>,
    pub finish_reason: FinishReason,
    pub stats: GenerationStats,
}

/// A model, a tokenizer and the context they share across calls.
pub struct Session<M, T> {
    pub(crate) model: M,
    tokenizer: T,
    /// The tokens whose keys/values are in the model's cache, in order.
    pub(crate) cached: Vec<u32>,
    /// End-of-generation tokens, found once, banned under `ignore_eos`.
    eog_ids: Option<Vec<u32>>,
}

impl<M: LogitsSource, T: TokenCodec> Session<M, T> {
    pub fn new(model: M, tokenizer: T) -> Session<M, T> {
        Session {
            model,
            tokenizer,
            cached: Vec::new(),
            eog_ids: None,
        }
    }

    pub fn model(&self) -> &M {
        &self.model
    }
    pub fn model_mut(&mut self) -> &mut M {
        &mut self.model
    }
    pub fn tokenizer(&self) -> &T {
        &self.tokenizer
    }
    /// Tokens currently in the context.
    pub fn context_tokens(&self) -> &[u32] {
        &self.cached
    }
    pub fn context_size(&self) -> usize {
        self.model.capacity()
    }

    /// Drops positions `start..start + n` of the context, moving the later ones down with
    /// their cached keys re-rotated (see `Model::shift_cache`): nothing is recomputed.
    pub fn discard(&mut self, start: usize, n: usize) -> Result<(), SessionError> {
        let end = (start + n).min(self.cached.len());
        if start >= end {
            return Ok(());
        }
        self.model.discard(start, end - start)?;
        self.cached.drain(start..end);
        Ok(())
    }

    /// Empty the context.
    pub fn reset(&mut self) {
        self.model.truncate(0);
        self.cached.clear();
    }

    /// Tokenize a prompt: control-token text is recognised, BOS added as the vocabulary
    /// asks — but not twice when the text already starts with it (chat templates often
    /// write `{{ bos_token }}` themselves).
    pub fn tokenize_prompt(&self, text: &str) -> Vec<u32> {
        let mut ids = self.tokenizer.encode(text, true, true);
        drop_doubled_bos(&mut ids, self.tokenizer.bos_id());
        ids
    }

    /// Generate a continuation of `prompt`. The longest common prefix with what is already
    /// in the context is reused rather than recomputed. `on_text` receives each piece of
    /// new text (always complete UTF-8) and can end generation early.
    pub fn generate(
        &mut self,
        prompt: &[u32],
        sampler: &mut Sampler,
        opts: &GenerateOptions,
        on_text: &mut dyn FnMut(&str) -> ControlFlow<()>,
    ) -> Result<Completion, SessionError> {
        let start = Instant::now();
        if prompt.is_empty() {
            return Err(SessionError::EmptyPrompt);
        }
        let n_ctx = self.model.capacity();
        let mut truncated = 0;
        let shortened;
        let prompt = match opts.shift {
            Some(policy) if prompt.len() >= n_ctx => {
                (shortened, truncated) = truncate_prompt(prompt, n_ctx, policy.keep);
                tracing::info!(
                    "the prompt of {} tokens does not fit the context of {n_ctx}: {truncated} dropped",
                    prompt.len()
                );
                &shortened[..]
            }
            _ => prompt,
        };
        if prompt.len() > n_ctx {
            return Err(SessionError::PromptTooLong {
                tokens: prompt.len(),
                n_ctx,
            });
        }
        // With context shift the context never fills, so something else must end it.
        let max_tokens = match (opts.max_tokens, opts.shift) {
            (None, Some(_)) => Some(n_ctx),
            (m, _) => m,
        };
        // Turn positions no longer hold after a truncation of the prompt.
        let mut turn_starts = if truncated > 0 {
            Vec::new()
        } else {
            opts.turn_starts.clone()
        };
        let mut answer_start = prompt.len();
        let vocab = self.model.vocab_size();

        // Reuse the shared prefix; at least one token must run to produce logits.
        let common = self
            .cached
            .iter()
            .zip(prompt)
            .take_while(|(a, b)| a == b)
            .count()
            .min(prompt.len() - 1);
        self.model.truncate(common);
        self.cached.truncate(common);

        for &t in prompt {
            sampler.accept(t);
        }
        if opts.ignore_eos {
            let eog = self.eog_ids().to_vec();
            sampler.set_banned(eog);
        } else {
            sampler.set_banned(Vec::new());
        }
        if sampler.needs_dry_breakers() {
            let breakers = &sampler.config().dry_sequence_breakers;
            sampler.set_dry_breakers(crate::dry::breaker_tokens(&self.tokenizer, breakers));
        }
        let mut cycles = crate::dry::CycleDetector::default();

        let suffix = &prompt[common..];
        tracing::debug!(
            prompt = prompt.len(),
            reused = common,
            "prefill {} tokens",
            suffix.len()
        );
        let mut stats = GenerationStats {
            prompt_tokens: prompt.len(),
            reused_tokens: common,
            n_discarded: truncated,
            ..Default::default()
        };
        let mut logits = self.model.forward(suffix)?;
        self.cached.extend_from_slice(suffix);
        stats.prefill_time = start.elapsed();

        let mut stream = TextStream::new(&opts.stop);
        let mut text = String::new();
        let mut tokens = Vec::new();
        let finish = loop {
            if max_tokens.is_some_and(|max| tokens.len() >= max) {
                break FinishReason::Length;
            }
            let tok = sampler.sample(&logits, vocab)?;
            if stats.time_to_first_token.is_none() {
                stats.time_to_first_token = Some(opts.load_time + start.elapsed());
            }
            sampler.accept(tok);
            if !opts.ignore_eos && self.tokenizer.is_eog(tok) {
                break FinishReason::Stop;
            }
            tokens.push(tok);
            // Under ignore_eos (benchmarks) answers run to their limit whatever they say.
            let stuck = cycles.push(tok).filter(|_| !opts.ignore_eos);
            if !self.tokenizer.is_control(tok) {
                let step = stream.push(self.tokenizer.token_bytes(tok));
                if !step.text.is_empty() {
                    text.push_str(&step.text);
                    if on_text(&step.text).is_break() {
                        break FinishReason::Cancelled;
                    }
                }
                if step.stopped {
                    break FinishReason::Stop;
                }
            }
            if let Some(block) = stuck {
                tracing::info!("generation stuck repeating a block of {block} tokens: stopped");
                break FinishReason::Repetition;
            }
            if self.model.position() >= n_ctx {
                let plan = opts
                    .shift
                    .and_then(|p| p.plan(self.cached.len(), &turn_starts, answer_start));
                let Some((start, n)) = plan else {
                    break FinishReason::Context;
                };
                self.discard(start, n)?;
                shift_positions(&mut turn_starts, start, n);
                if answer_start >= start + n {
                    answer_start -= n;
                } else if answer_start > start {
                    answer_start = start;
                }
                stats.n_discarded += n;
                stats.shifts += 1;
                tracing::info!("context shift: dropped {n} tokens at position {start}");
            }
            let t = Instant::now();
            logits = self.model.forward(&[tok])?;
            stats.decode_time += t.elapsed();
            stats.decode_steps += 1;
            self.cached.push(tok);
        };
        if finish != FinishReason::Cancelled {
            let rest = stream.finish();
            if !rest.is_empty() {
                text.push_str(&rest);
                // The generation is over either way; a request to stop changes nothing.
                let _ = on_text(&rest);
            }
        }
        stats.generated_tokens = tokens.len();
        stats.total_time = start.elapsed();
        Ok(Completion {
            text,
            tokens,
            finish_reason: finish,
            stats,
        })
    }

    fn eog_ids(&mut self) -> &[u32] {
        let tokenizer = &self.tokenizer;
        self.eog_ids.get_or_insert_with(|| tokenizer.eog_ids())
    }
}

/// Removes the BOS the tokenizer prepended when the text itself already began with one
/// (a chat template's `{{ bos_token }}`), so the model never sees BOS twice.
pub fn drop_doubled_bos(ids: &mut Vec<u32>, bos: Option<u32>) {
    if let Some(bos) = bos {
        if ids.len() >= 2 && ids[0] == bos && ids[1] == bos {
            ids.remove(0);
        }
    }
}
