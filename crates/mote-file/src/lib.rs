//! Model files: `gguf` reads and writes llama.cpp's GGUF format; `safetensors` reads
//! Hugging Face's safetensors (single files and sharded folders).

pub mod gguf;
pub mod safetensors;
mod storage;

pub use gguf::{
    GgufError, GgufFile, GgufWriteError, GgufWriter, MetaArray, MetaValue, TensorInfo,
    TensorProblem, TensorSpec,
};
pub use safetensors::{SafetensorsDir, SafetensorsError, SafetensorsFile, StDType, StTensorInfo};
