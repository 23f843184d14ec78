//! Import and export between model formats. `hf` reads a Hugging Face folder
//! (`config.json`, `tokenizer.json`, safetensors) as GGUF tensors and metadata;
//! [`TensorSource`] is the one interface every importer offers (a GGUF file is one too),
//! so `quantize` and the exporters read any input tensor by tensor. `export` writes a GGUF
//! model out for other runtimes (ONNX for ONNX Runtime, safetensors for transformers);
//! `cli` is `mote export`'s front end.

pub mod cli;
pub mod error;
pub mod export;
pub mod hf;
pub mod source;

pub use error::{ConvertError, Result};
pub use source::TensorSource;
