//! Metadata look-ups for `quantize`; the [`TensorSource`] it reads from (a GGUF file, a
//! Hugging Face folder) lives in `mote-convert`.

use mote_file::MetaValue;

pub use mote_convert::TensorSource;

/// Reads an unsigned integer from a metadata list.
pub(crate) fn meta_u64(meta: &[(String, MetaValue)], key: &str) -> Option<u64> {
    meta.iter()
        .find(|(k, _)| k == key)
        .and_then(|(_, v)| v.as_u64())
}

/// Reads a string from a metadata list.
pub(crate) fn meta_str<'m>(meta: &'m [(String, MetaValue)], key: &str) -> Option<&'m str> {
    meta.iter()
        .find(|(k, _)| k == key)
        .and_then(|(_, v)| v.as_str())
}
