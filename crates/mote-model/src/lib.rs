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
mod identity;
mod load_quant;
mod norm;
mod observer;
mod profile;
pub mod rope;
mod slot_file;
pub mod spec;
pub mod weights;

use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock, RwLock};

use mote_file::GgufFile;

pub use cache::{KvCache, KvPrecision, UnknownKvPrecision};
pub use config::{LayerConfig, ModelConfig};
pub use load_quant::{fit_to_row, parse_quantize_type, target_type, LoadQuantization};
pub use observer::MatmulObserver;
pub use slot_file::{Restored, SlotFileError, SLOT_MAGIC, SLOT_VERSION};
pub use spec::ArchSpec;

use decoder::{Decoder, Workspace};
pub use rope::{Rope, RopeTable};
pub use weights::{LayerWeights, ModelWeights};

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
    /// Precision of the keys and values in caches made by [`Model::new_cache`]
    /// (llama.cpp's `--cache-type-k` / `--cache-type-v`; F16 by default).
    pub cache_type_k: KvPrecision,
    pub cache_type_v: KvPrecision,
    /// Quantize the weight matrices of a float model (F32/F16/BF16) to this type while
    /// loading (`--quantize q8_0`); already-quantized matrices are left alone. See
    /// [`Model::load_quantization`] for what was done.
    pub quantize: Option<mote_tensor::DType>,
}

/// One sequence of a [`Model::forward_batch`] call.
pub struct BatchItem<'a> {
    /// Tokens to run at positions `cache.len()..`.
    pub tokens: &'a [u32],
    pub cache: &'a mut KvCache,
    /// Logits of every token (`tokens.len() * vocab_size`), not only the last.
    pub all_logits: bool,
}

pub struct Model {
    file: Arc<GgufFile>,
    spec: &'static ArchSpec,
    config: ModelConfig,
    weights: ModelWeights,
    /// The distinct RoPE settings of the layers, and which one each layer uses.
    ropes: Vec<Rope>,
    layer_rope: Vec<usize>,
    /// Key and value precision of [`Model::new_cache`].
    cache_types: (KvPrecision, KvPrecision),
    /// Buffers of finished calls, taken by the next ones (one per concurrent caller).
    workspaces: Mutex<Vec<Workspace>>,
    /// Calibration hook, see [`Model::set_observer`].
    observer: RwLock<Option<Arc<dyn MatmulObserver>>>,
    /// What load-time quantization did, when it was asked for.
    load_quantization: Option<LoadQuantization>,
    /// The load-time quantization type (part of the identity).
    quantize: Option<mote_tensor::DType>,
    /// See [`Model::identity`]; computed on first use.
    identity: OnceLock<u64>,
}

impl Model {
    pub fn load(path: &Path, opts: &LoadOptions) -> Result<Model, ModelError> {
        let file = GgufFile::open(path)?;
        Model::from_gguf(Arc::new(file), opts)
    }

    /// Builds the model from an already-parsed file; weights stay views of its bytes.
    pub fn from_gguf(file: Arc<GgufFile>, opts: &LoadOptions) -> Result<Model, ModelError> {
        let arch = file.architecture()?;
        let spec = ArchSpec::lookup(arch).ok_or_else(|| {
            ModelError::UnsupportedArch(format!(
                "{arch} (supported: {})",
                ArchSpec::supported().collect::<Vec<_>>().join(", ")
            ))
        })?;
        let (vocab_size, _) = weights::embedding_shape(&file)?;
        let config = ModelConfig::from_gguf(&file, spec, vocab_size)?;
        let (weights, load_quantization) = ModelWeights::load(&file, spec, &config, opts.quantize)?;
        let mut kinds: Vec<&LayerConfig> = Vec::new();
        let mut layer_rope = Vec::with_capacity(config.n_layer);
        for lc in &config.layers {
            let same =
                |k: &&LayerConfig| k.rope_base == lc.rope_base && k.rope_scale == lc.rope_scale;
            layer_rope.push(match kinds.iter().position(same) {
                Some(i) => i,
                None => {
                    kinds.push(lc);
                    kinds.len() - 1
                }
            });
        }
        let ropes = kinds
            .iter()
            .map(|lc| {
                Rope::new(
                    spec.rope,
                    config.n_rot,
                    lc.rope_base,
                    lc.rope_scale,
                    weights.rope_freq_factors.as_deref(),
                )
            })
            .collect();
        Ok(Model {
            file,
            spec,
            config,
            weights,
            ropes,
            layer_rope,
            cache_types: (opts.cache_type_k, opts.cache_type_v),
            workspaces: Mutex::new(Vec::new()),
            observer: RwLock::new(None),
            load_quantization,
            quantize: opts.quantize,
            identity: OnceLock::new(),
        })
    }

    /// Which weights this is, as slot files record it: a hash of the file's metadata and
    /// tensor table, the first bytes of every tensor and the load-time quantization. A
    /// cache saved by one model is refused by any other.
    pub fn identity(&self) -> u64 {
        *self
            .identity
            .get_or_init(|| identity::of(&self.file, self.quantize))
    }

    /// Saves the first `tokens.len()` positions of `cache` (the keys and values of
    /// `tokens`) with `extra` as a slot file (format in `slot_file.rs`); returns the bytes
    /// written.
    pub fn save_cache(
        &self,
        cache: &KvCache,
        tokens: &[u32],
        extra: &[u8],
        out: &mut impl std::io::Write,
    ) -> Result<u64, SlotFileError> {
        cache.save_slot(self.identity(), tokens, extra, out)
    }

    /// Replaces `cache`'s contents with a slot file's after checking it was saved by this
    /// model, with this cache's types, whole and uncorrupted; a refused file leaves the
    /// cache as it was.
    pub fn restore_cache(
        &self,
        cache: &mut KvCache,
        bytes: &[u8],
    ) -> Result<Restored, SlotFileError> {
        cache.restore_slot(self.identity(), self.config.vocab_size, bytes)
    }

    /// What `LoadOptions::quantize` did (matrices converted, sizes before and after);
    /// `None` when it was not asked for.
    pub fn load_quantization(&self) -> Option<&LoadQuantization> {
        self.load_quantization.as_ref()
    }

    /// Installs (or removes) a hook that sees the input rows of every weight product of
    /// later forward passes, keyed by GGUF tensor name; used for calibration.
    pub fn set_observer(&self, observer: Option<Arc<dyn MatmulObserver>>) {
        *self.observer.write().unwrap_or_else(|e| e.into_inner()) = observer;
    }

    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// The tensors as loaded (matrices are views of the file, vectors decoded to f32);
    /// training copies them to f32 parameters.
    pub fn weights(&self) -> &ModelWeights {
        &self.weights
    }

    /// The rotary embedding layer `il` uses (its base and scaling).
    pub fn layer_rope(&self, il: usize) -> Option<&Rope> {
        self.layer_rope.get(il).map(|&r| &self.ropes[r])
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

    /// An empty cache for up to `n_ctx` positions, in the precisions of the
    /// [`LoadOptions`] (F16 by default, as llama.cpp); memory is taken as positions fill.
    pub fn new_cache(&self, n_ctx: usize) -> KvCache {
        self.new_cache_types(n_ctx, self.cache_types.0, self.cache_types.1)
    }

    /// [`Model::new_cache`] with a chosen precision for keys and values.
    pub fn new_cache_with(&self, n_ctx: usize, precision: KvPrecision) -> KvCache {
        self.new_cache_types(n_ctx, precision, precision)
    }

    /// [`Model::new_cache`] with separate key and value precisions (llama.cpp's
    /// `--cache-type-k` / `--cache-type-v`). Q8_0 needs head sizes that are multiples of
    /// 32; for other models that part of the cache is F16 (see [`KvCache::precisions`]).
    pub fn new_cache_types(&self, n_ctx: usize, k: KvPrecision, v: KvPrecision) -> KvCache {
        let c = &self.config;
        KvCache::new(
            c.n_layer,
            c.n_head_kv,
            (c.head_dim_k, c.head_dim_v),
            n_ctx,
            (k, v),
        )
    }

    /// Context shift: removes positions `start..start + n` of `cache` and moves the later
    /// ones down by `n`, re-rotating their keys by `-n` positions (RoPE applied to the cache
    /// in place, with each layer's own RoPE settings; F16 and Q8_0 keys are rounded again)
    /// instead of recomputing them. The result is the cache a run of the kept tokens at
    /// their new positions would have made, up to that rounding; for sliding-window layers
    /// the window then counts new positions, as it would in that run. Also the eviction
    /// step of attention sinks (StreamingLLM).
    pub fn shift_cache(
        &self,
        cache: &mut KvCache,
        start: usize,
        n: usize,
    ) -> Result<(), ModelError> {
        if start + n > cache.len() {
            return Err(ModelError::Invalid(format!(
                "cannot discard positions {start}..{} of a cache holding {}",
                start + n,
                cache.len()
            )));
        }
        if cache.layers.len() != self.config.n_layer {
            return Err(ModelError::Invalid(
                "the cache was made by a different model".into(),
            ));
        }
        if n == 0 {
            return Ok(());
        }
        cache.remove_positions(start, n);
        let tables: Vec<_> = self
            .ropes
            .iter()
            .map(|r| r.delta_table(-(n as i64)))
            .collect();
        let dk = self.config.head_dim_k;
        let end = cache.len();
        for il in 0..self.config.n_layer {
            let ri = self.layer_rope[il];
            let (rope, table) = (&self.ropes[ri], &tables[ri]);
            cache.map_keys(il, start..end, &mut |row| rope.apply(table, 0, row, dk));
        }
        Ok(())
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
        let mut items = [BatchItem {
            tokens,
            cache,
            all_logits,
        }];
        let mut out = self.forward_batch(&mut items)?;
        Ok(out.pop().unwrap_or_default())
    }

    /// Runs several sequences, each with its own cache, in one pass: their tokens form
    /// one activation matrix for every weight product (so N sequences decoding a token
    /// each read the weights once, not N times); attention is per sequence. Returns one
    /// logits vector per item, as [`Model::forward`] would. On error no cache changes.
    pub fn forward_batch(&self, items: &mut [BatchItem]) -> Result<Vec<Vec<f32>>, ModelError> {
        let observer = self
            .observer
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let mut ws = self
            .workspaces
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop()
            .unwrap_or_default();
        let result = Decoder {
            spec: self.spec,
            cfg: &self.config,
            w: &self.weights,
            ropes: &self.ropes,
            layer_rope: &self.layer_rope,
            observer: observer.as_deref(),
        }
        .forward_batch(items, &mut ws);
        self.workspaces
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(ws);
        result
    }
}
