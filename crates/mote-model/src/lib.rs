//! Models: an architecture spec read from file metadata, the weights, and one generic
//! decoder. API contract (stub; the implementation keeps these signatures).

use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error(transparent)]
    Gguf(#[from] mote_file::GgufError),
    #[error("unsupported architecture {0:?}")]
    UnsupportedArch(String),
    #[error("{0}")]
    Invalid(String),
    #[error("context full: {needed} positions needed, the cache holds {capacity}")]
    ContextFull { needed: usize, capacity: usize },
}

#[derive(Clone, Debug, Default)]
pub struct LoadOptions {
    /// Worker threads for the kernels; 0 means one per physical core.
    pub threads: usize,
}

/// Hyper-parameters read from the file.
#[derive(Clone, Debug)]
pub struct ModelConfig {
    pub arch: String,
    pub vocab_size: usize,
    /// Context length the model was trained with (`<arch>.context_length`).
    pub n_ctx_train: usize,
}

pub struct Model {
    config: ModelConfig,
}

/// Keys and values of the positions processed so far, for one sequence.
pub struct KvCache {
    len: usize,
    capacity: usize,
}

impl KvCache {
    /// Positions already in the cache; the next token goes at this position.
    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    pub fn capacity(&self) -> usize {
        self.capacity
    }
    /// Forget positions `n..` (to re-use a shared prompt prefix, or to reset with 0).
    pub fn truncate(&mut self, n: usize) {
        self.len = self.len.min(n);
    }
}

impl Model {
    pub fn load(_path: &Path, _opts: &LoadOptions) -> Result<Model, ModelError> {
        Err(ModelError::Invalid("not implemented yet".into()))
    }

    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// The file the model came from (metadata, tokenizer, chat template).
    pub fn gguf(&self) -> &mote_file::GgufFile {
        unimplemented!()
    }

    pub fn new_cache(&self, n_ctx: usize) -> KvCache {
        KvCache {
            len: 0,
            capacity: n_ctx,
        }
    }

    /// Runs `tokens` at positions `cache.len()..`, appending them to the cache. Returns
    /// the logits of the last token (`vocab_size` values), or of every token
    /// (`tokens.len() * vocab_size`, row-major) when `all_logits` is set.
    pub fn forward(
        &self,
        _tokens: &[u32],
        _cache: &mut KvCache,
        _all_logits: bool,
    ) -> Result<Vec<f32>, ModelError> {
        Err(ModelError::Invalid("not implemented yet".into()))
    }
}
