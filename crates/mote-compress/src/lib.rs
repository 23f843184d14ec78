//! Compression and its yardsticks: `quantize` rewrites a GGUF model with smaller
//! types (llama.cpp's presets and per-tensor overrides); `perplexity` measures a model
//! on held-out text the way llama-perplexity does, and `kl` compares its token
//! distributions with a stored reference run. Hugging Face folders are read by
//! `mote-convert`. `cli` holds the command-line front ends
//! that the `mote` binary mounts as subcommands.

pub mod calibrate;
pub mod cli;
pub mod error;
pub mod gptq;
pub mod imatrix;
pub mod kl;
pub mod perplexity;
pub mod prune;
pub mod quantize;
pub mod streaming;

pub use error::{CompressError, Result};
