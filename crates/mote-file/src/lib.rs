//! Model files: `gguf` reads and writes llama.cpp's GGUF format; `safetensors` reads
//! Hugging Face's safetensors (single files and sharded folders).

pub mod gguf;
pub mod safetensors;
mod storage;

/// Maps (with the `mmap` feature) or reads a whole file: a zero-copy view of its bytes.
pub fn load_bytes(path: &std::path::Path) -> std::io::Result<mote_tensor::Bytes> {
    storage::load(path)
}

pub use gguf::{
    GgufError, GgufFile, GgufWriteError, GgufWriter, MetaArray, MetaValue, TensorInfo,
    TensorProblem, TensorSpec,
};
pub use safetensors::{SafetensorsDir, SafetensorsError, SafetensorsFile, StDType, StTensorInfo};
