//! A model's identity for slot files: which weights computed a cache.

use mote_file::GgufFile;

/// 64-bit FNV-1a, continued from `h`: stable across builds and platforms.
fn fnv1a(h: u64, bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .fold(h, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

/// Hash of the file's header (every metadata key and value, and the tensor table: names,
/// types, shapes, data offsets), the first 64 bytes of every tensor's data (so a file
/// with the same layout but other weights differs), and the load-time quantization type
/// (which changes the weights that run).
pub(crate) fn of(file: &GgufFile, quantize: Option<mote_tensor::DType>) -> u64 {
    let mut h = fnv1a(0xcbf2_9ce4_8422_2325, file.header_bytes().as_slice());
    for t in file.tensors() {
        let data = file.tensor_bytes(t);
        let data = data.as_slice();
        h = fnv1a(h, &data[..data.len().min(64)]);
    }
    let q = quantize.map(|q| q.to_string()).unwrap_or_default();
    fnv1a(h, q.as_bytes())
}
