//! Models: an architecture spec read from file metadata, the weights, and one generic
//! decoder.
//!
//! [`ArchSpec`] says which optional parts a family has (biases, q/k norms, post-norms,
//! sliding windows, ...); [`ModelConfig`] holds the hyper-parameters read from the file;
//! the decoder is the same code for every family.

mod attention;
mod cache;
mod config;
mod decoder;
mod ffn;
mod norm;
mod rope;
pub mod spec;
mod weights;

use std::path::Path;
use std::sync::Arc;

use mote_file::GgufFile;

pub use cache::{KvCache, KvPrecision};
pub use config::{LayerConfig, ModelConfig};
pub use spec::ArchSpec;

use decoder::Decoder;
use weights::ModelWeights;

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
    #[error("tensor {0:?} is missing from the file")]
    MissingTensor(String),
    #[error("token id {token} is outside the vocabulary of {vocab_size} tokens")]
    TokenOutOfRange { token: u32, vocab_size: usize },
    #[error(transparent)]
    Quant(#[from] mote_tensor::QuantError),
}

#[derive(Clone, Debug, Default)]
pub struct LoadOptions {
    /// Worker threads for the kernels; 0 means one per physical core.
    pub threads: usize,
}

pub struct Model {
    file: Arc<GgufFile>,
    spec: &'static ArchSpec,
    config: ModelConfig,
    weights: ModelWeights,
}

impl Model {
    pub fn load(path: &Path, opts: &LoadOptions) -> Result<Model, ModelError> {
        let file = GgufFile::open(path)?;
        Model::from_gguf(Arc::new(file), opts)
    }

    /// Builds the model from an already-parsed file; weights stay views of its bytes.
    pub fn from_gguf(file: Arc<GgufFile>, _opts: &LoadOptions) -> Result<Model, ModelError> {
        let arch = file.architecture()?;
        let spec = ArchSpec::lookup(arch).ok_or_else(|| {
            ModelError::UnsupportedArch(format!(
                "{arch} (supported: {})",
                ArchSpec::supported().collect::<Vec<_>>().join(", ")
            ))
        })?;
        let (vocab_size, _) = weights::embedding_shape(&file)?;
        let config = ModelConfig::from_gguf(&file, spec, vocab_size)?;
        let weights = ModelWeights::load(&file, spec, &config)?;
        Ok(Model {
            file,
            spec,
            config,
            weights,
        })
    }

    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// The architecture switches this model runs with.
    pub fn spec(&self) -> &'static ArchSpec {
        self.spec
    }

    /// The file the model came from (metadata, tokenizer, chat template).
    pub fn gguf(&self) -> &GgufFile {
        &self.file
    }

    /// A shared handle to the file the model came from.
    pub fn gguf_arc(&self) -> Arc<GgufFile> {
        self.file.clone()
    }

    /// An empty cache for up to `n_ctx` positions; memory is taken as positions fill.
    pub fn new_cache(&self, n_ctx: usize) -> KvCache {
        self.new_cache_with(n_ctx, KvPrecision::default())
    }

    /// [`Model::new_cache`] with a chosen precision.
    pub fn new_cache_with(&self, n_ctx: usize, precision: KvPrecision) -> KvCache {
        let c = &self.config;
        KvCache::new(
            c.n_layer,
            c.n_head_kv * c.head_dim_k,
            c.n_head_kv * c.head_dim_v,
            n_ctx,
            precision,
        )
    }

    /// Runs `tokens` at positions `cache.len()..`, appending them to the cache. Returns
    /// the logits of the last token (`vocab_size` values), or of every token
    /// (`tokens.len() * vocab_size`, row-major) when `all_logits` is set.
    pub fn forward(
        &self,
        tokens: &[u32],
        cache: &mut KvCache,
        all_logits: bool,
    ) -> Result<Vec<f32>, ModelError> {
        Decoder {
            spec: self.spec,
            cfg: &self.config,
            w: &self.weights,
        }
        .forward(tokens, cache, all_logits)
    }
}
