//! Tensors: element types, the ggml block-quantization layouts, and the kernels that
//! compute with them. No I/O and no required threads, so it builds for wasm32 too.

pub mod bytes;
pub mod dtype;
pub mod ggml_math;
pub mod kernels;
pub mod matrix;
pub mod parallel;
pub mod quant;

pub use bytes::Bytes;
pub use dtype::{DType, DTypeError};
pub use matrix::Matrix;
pub use quant::QuantError;
