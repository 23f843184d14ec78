//! Import and export between model formats. `hf` reads a Hugging Face folder
//! (`config.json`, `tokenizer.json`, safetensors) as GGUF tensors and metadata;
//! [`TensorSource`] is the one interface every importer offers (a GGUF file is one too),
//! so `quantize` and the exporters read any input tensor by tensor.

pub mod error;
pub mod hf;
pub mod source;

pub use error::{ConvertError, Result};
pub use source::TensorSource;
