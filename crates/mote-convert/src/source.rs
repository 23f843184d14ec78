//! Where tensors are read from: a GGUF file, or anything else that can list its tensors
//! up front and hand out one tensor's bytes at a time (a Hugging Face folder, see
//! [`crate::hf`]).

use mote_file::{GgufFile, MetaValue, TensorInfo};
use mote_tensor::Bytes;

use crate::error::Result;

/// A model: metadata, a tensor table, and each tensor's data on demand.
///
/// `tensor_data` is called once per tensor, in the writer's order, and its result is
/// dropped before the next call, so a source that builds tensors (dtype changes, row
/// permutations) keeps only one of them in memory.
pub trait TensorSource {
    /// The metadata to copy into the output (before the quantizer sets the file type).
    fn metadata(&self) -> Vec<(String, MetaValue)>;
    /// Every tensor, with its ggml dims and the dtype `tensor_data` returns it in.
    fn tensors(&self) -> &[TensorInfo];
    /// The bytes of one tensor of [`TensorSource::tensors`], `info.size_bytes` long.
    fn tensor_data(&self, info: &TensorInfo) -> Result<Bytes>;
}

impl TensorSource for GgufFile {
    fn metadata(&self) -> Vec<(String, MetaValue)> {
        self.metadata_owned()
    }

    fn tensors(&self) -> &[TensorInfo] {
        GgufFile::tensors(self)
    }

    fn tensor_data(&self, info: &TensorInfo) -> Result<Bytes> {
        Ok(self.tensor_bytes(info))
    }
}
