//! The real engine: a GGUF model, its tokenizer and chat template, one KV cache per slot.

use std::path::Path;
use std::sync::Arc;

use mote_model::{BatchItem, KvCache, LoadOptions, Model};
use mote_session::{persist, ChatTemplate, TokenCodec};
use mote_tokenizer::Tokenizer;

use crate::engine::{Backend, ChatMessage, EngineError, Frontend};

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("loading {path}: {source}")]
    Model {
        path: String,
        source: mote_model::ModelError,
    },
    #[error("reading the tokenizer of {path}: {source}")]
    Tokenizer {
        path: String,
        source: mote_tokenizer::TokenizerError,
    },
    #[error("the chat template of {path}: {source}")]
    Template {
        path: String,
        source: mote_session::ChatError,
    },
}

pub struct ModelFrontend {
    id: String,
    tokenizer: Tokenizer,
    template: ChatTemplate,
    n_ctx_train: usize,
}

pub struct ModelBackend {
    model: Model,
    caches: Vec<KvCache>,
}

/// Loads `path` and makes `n_slots` caches of `n_ctx` positions each. `n_ctx = 0` picks
/// the session's default (the trained context, capped). Returns the context size used.
pub fn load(
    path: &Path,
    threads: usize,
    n_slots: usize,
    n_ctx: usize,
) -> Result<(Arc<ModelFrontend>, ModelBackend, usize), LoadError> {
    let opts = LoadOptions {
        threads,
        ..Default::default()
    };
    load_with(path, &opts, n_slots, n_ctx)
}

/// [`load`] with every model option (threads, KV cache precisions).
pub fn load_with(
    path: &Path,
    opts: &LoadOptions,
    n_slots: usize,
    n_ctx: usize,
) -> Result<(Arc<ModelFrontend>, ModelBackend, usize), LoadError> {
    let shown = path.display().to_string();
    let model = Model::load(path, opts).map_err(|source| LoadError::Model {
        path: shown.clone(),
        source,
    })?;
    if let Some(q) = model.load_quantization() {
        eprintln!("mote serve: {}", q.summary());
    }
    let tokenizer = Tokenizer::from_gguf(model.gguf()).map_err(|source| LoadError::Tokenizer {
        path: shown.clone(),
        source,
    })?;
    let template =
        ChatTemplate::detect(model.gguf(), &tokenizer).map_err(|source| LoadError::Template {
            path: shown.clone(),
            source,
        })?;
    tracing::info!("chat format: {}", template.describe());
    let n_ctx_train = model.config().n_ctx_train;
    let n_ctx = match n_ctx {
        0 => mote_session::default_context_size(n_ctx_train),
        n => n,
    };
    let id = path
        .file_name()
        .map(|n| n.to_string_lossy().trim_end_matches(".gguf").to_string())
        .unwrap_or_else(|| "model".into());
    let caches = (0..n_slots.max(1))
        .map(|_| model.new_cache(n_ctx))
        .collect();
    Ok((
        Arc::new(ModelFrontend {
            id,
            tokenizer,
            template,
            n_ctx_train,
        }),
        ModelBackend { model, caches },
        n_ctx,
    ))
}

impl Frontend for ModelFrontend {
    fn model_id(&self) -> &str {
        &self.id
    }
    fn n_ctx_train(&self) -> usize {
        self.n_ctx_train
    }
    fn tokenize(&self, text: &str) -> Vec<u32> {
        // BOS as the vocabulary asks, but not twice (as `Session::tokenize_prompt`).
        let mut ids = self.tokenizer.encode(text, true, true);
        mote_session::drop_doubled_bos(&mut ids, self.tokenizer.bos_id());
        ids
    }
    fn render_chat(&self, messages: &[ChatMessage]) -> Result<String, EngineError> {
        let messages: Vec<mote_session::ChatMessage> = messages
            .iter()
            .map(|m| mote_session::ChatMessage::new(&m.role, &m.content))
            .collect();
        self.template
            .render(&messages, true)
            .map_err(|e| EngineError::Template(e.to_string()))
    }
    fn render_chat_prefix(&self, messages: &[ChatMessage]) -> Option<String> {
        let messages: Vec<mote_session::ChatMessage> = messages
            .iter()
            .map(|m| mote_session::ChatMessage::new(&m.role, &m.content))
            .collect();
        self.template.render(&messages, false).ok()
    }
    fn token_bytes(&self, id: u32) -> Vec<u8> {
        if TokenCodec::is_control(&self.tokenizer, id) {
            Vec::new()
        } else {
            self.tokenizer.token_bytes(id).to_vec()
        }
    }
    fn is_eog(&self, id: u32) -> bool {
        self.tokenizer.is_eog(id)
    }
    fn chat_stops(&self) -> Vec<String> {
        self.template.stop_strings()
    }
    fn has_chat_template(&self) -> bool {
        !self.template.is_plain()
    }
    fn breaker_tokens(&self, breakers: &[String]) -> Vec<u32> {
        mote_session::dry::breaker_tokens(&self.tokenizer, breakers)
    }
}

impl Backend for ModelBackend {
    fn vocab_size(&self) -> usize {
        self.model.config().vocab_size
    }
    fn cache_len(&self, slot: usize) -> usize {
        self.caches.get(slot).map_or(0, |c| c.len())
    }
    fn truncate(&mut self, slot: usize, n: usize) {
        if let Some(c) = self.caches.get_mut(slot) {
            c.truncate(n);
        }
    }
    fn shift(&mut self, slot: usize, start: usize, n: usize) -> Result<(), EngineError> {
        let cache = self
            .caches
            .get_mut(slot)
            .ok_or_else(|| EngineError::Model(format!("no slot {slot}")))?;
        self.model
            .shift_cache(cache, start, n)
            .map_err(|e| EngineError::Model(e.to_string()))
    }
    fn save_slot(&self, slot: usize, tokens: &[u32], path: &Path) -> Result<u64, EngineError> {
        let cache = self
            .caches
            .get(slot)
            .ok_or_else(|| EngineError::Model(format!("no slot {slot}")))?;
        persist::save_cache_file(&self.model, cache, tokens, &[], path)
            .map_err(|e| EngineError::Model(e.source.to_string()))
    }
    fn restore_slot(&mut self, slot: usize, path: &Path) -> Result<(Vec<u32>, u64), EngineError> {
        let cache = self
            .caches
            .get_mut(slot)
            .ok_or_else(|| EngineError::Model(format!("no slot {slot}")))?;
        let (restored, n_read) = persist::restore_cache_file(&self.model, cache, path)
            .map_err(|e| EngineError::SlotFile(e.source.to_string()))?;
        Ok((restored.tokens, n_read))
    }
    fn forward(&mut self, slot: usize, tokens: &[u32]) -> Result<Vec<f32>, EngineError> {
        let cache = self
            .caches
            .get_mut(slot)
            .ok_or_else(|| EngineError::Model(format!("no slot {slot}")))?;
        self.model
            .forward(tokens, cache, false)
            .map_err(|e| EngineError::Model(e.to_string()))
    }

    /// All entries (decode tokens and prompt chunks alike) run in one model pass: their
    /// tokens share every weight product; attention stays per slot.
    fn forward_batch(&mut self, batch: &[(usize, &[u32])]) -> Vec<Result<Vec<f32>, EngineError>> {
        let mut slots: Vec<usize> = batch.iter().map(|&(s, _)| s).collect();
        slots.sort_unstable();
        slots.dedup();
        let distinct = slots.len() == batch.len() && slots.iter().all(|&s| s < self.caches.len());
        if !distinct || batch.len() < 2 {
            // Nothing to share (or a slot twice / unknown): one at a time.
            return self.forward_each(batch);
        }
        // Hand each listed slot's cache out once, in batch order.
        let mut caches: Vec<Option<&mut KvCache>> = self.caches.iter_mut().map(Some).collect();
        let mut items: Vec<BatchItem> = Vec::with_capacity(batch.len());
        for &(slot, tokens) in batch {
            if let Some(cache) = caches[slot].take() {
                items.push(BatchItem {
                    tokens,
                    cache,
                    all_logits: false,
                });
            }
        }
        match self.model.forward_batch(&mut items) {
            Ok(logits) => logits.into_iter().map(Ok).collect(),
            // A failed pass leaves every cache as it was, so running the entries one by
            // one gives the error to the entry that caused it (a full context, say) and
            // lets the others go on.
            Err(_) => {
                drop(items);
                self.forward_each(batch)
            }
        }
    }
}

impl ModelBackend {
    fn forward_each(&mut self, batch: &[(usize, &[u32])]) -> Vec<Result<Vec<f32>, EngineError>> {
        batch
            .iter()
            .map(|&(slot, tokens)| self.forward(slot, tokens))
            .collect()
    }
}
