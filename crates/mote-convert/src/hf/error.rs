//! What can be wrong with a Hugging Face model folder.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum HfError {
    #[error("{0} is not a Hugging Face model folder: it has no {1}")]
    MissingFile(PathBuf, &'static str),
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not valid JSON: {message}")]
    Json { path: PathBuf, message: String },
    #[error("{file}: {field:?} is missing")]
    MissingField { file: &'static str, field: String },
    #[error("{file}: {field:?} {problem}")]
    BadField {
        file: &'static str,
        field: String,
        problem: String,
    },
    #[error(
        "architecture {0:?} is not supported (supported: LlamaForCausalLM, \
         MistralForCausalLM, Qwen2ForCausalLM, Gemma3ForCausalLM)"
    )]
    UnknownArchitecture(String),
    #[error("{0}")]
    Unsupported(String),
    #[error("tensor {0:?} is not part of a supported model (no GGUF name for it)")]
    UnknownTensor(String),
    #[error("tensor {0:?} is missing from the checkpoint")]
    MissingTensor(String),
    #[error("tensor {tensor:?} has shape {shape:?}, expected {expected:?} from config.json")]
    BadShape {
        tensor: String,
        shape: Vec<u64>,
        expected: Vec<u64>,
    },
    #[error("tensor {tensor:?}: dtype {dtype} is not supported (F32, F16, BF16 are)")]
    UnsupportedDType { tensor: String, dtype: String },
    #[error("tokenizer.json: {0}")]
    Tokenizer(String),
    #[error(transparent)]
    Safetensors(#[from] mote_file::SafetensorsError),
}
