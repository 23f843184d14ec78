//! One error type for the whole crate, so the CLI can print any failure plainly.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum CompressError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Gguf(#[from] mote_file::GgufError),
    #[error(transparent)]
    GgufWrite(#[from] mote_file::GgufWriteError),
    #[error(transparent)]
    Safetensors(#[from] mote_file::SafetensorsError),
    #[error(transparent)]
    Hf(#[from] mote_convert::hf::HfError),
    #[error(transparent)]
    Convert(#[from] mote_convert::ConvertError),
    #[error(transparent)]
    Model(#[from] mote_model::ModelError),
    #[error(transparent)]
    Tokenizer(#[from] mote_tokenizer::TokenizerError),
    #[error("tensor {tensor:?}: {source}")]
    Quant {
        tensor: String,
        #[source]
        source: mote_tensor::QuantError,
    },
    #[error("{0}")]
    Invalid(String),
    #[error("the text has {tokens} tokens; at least {needed} are needed for one window of {ctx}")]
    TextTooShort {
        tokens: usize,
        needed: usize,
        ctx: usize,
    },
    #[error("KL base file {path}: {reason}")]
    KlBase { path: PathBuf, reason: String },
    #[error(
        "tensor {tensor:?} is already quantized ({dtype}); pass --allow-requantize to \
         dequantize and quantize it again (quality suffers)"
    )]
    Requantize { tensor: String, dtype: String },
    #[error(
        "GPTQ Hessian cache {path}: made with {setting} {cached}, this run has {wanted}; \
         delete the file to calibrate again (it is then rewritten), or run with the \
         settings it was made with"
    )]
    HessianCacheMismatch {
        path: PathBuf,
        setting: String,
        cached: String,
        wanted: String,
    },
    #[error("interrupted")]
    Interrupted,
}

pub type Result<T> = std::result::Result<T, CompressError>;
