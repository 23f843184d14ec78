//! Model files. `gguf` reads (and later writes) llama.cpp's GGUF format.

pub mod gguf;

pub use gguf::{GgufError, GgufFile, MetaArray, MetaValue, TensorInfo};
