//! Parses arbitrary bytes as a safetensors file and touches every tensor's bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mote_file::SafetensorsFile;

fuzz_target!(|data: &[u8]| {
    let Ok(file) = SafetensorsFile::from_bytes(data.to_vec()) else {
        return;
    };
    let mut sink = 0u64;
    for t in file.tensors() {
        let bytes = file.tensor_bytes(t);
        assert_eq!(bytes.len() as u64, t.size_bytes());
        sink = sink.wrapping_add(bytes.as_slice().iter().map(|&b| b as u64).sum::<u64>());
        assert!(file.tensor(&t.name).is_some());
    }
    std::hint::black_box(sink);
});
