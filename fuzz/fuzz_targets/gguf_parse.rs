//! Parses arbitrary bytes as GGUF; on success touches every metadata value and every
//! tensor's bytes so that any unchecked size or offset the parser let through shows up.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mote_file::{GgufFile, MetaValue};

fuzz_target!(|data: &[u8]| {
    let Ok(file) = GgufFile::from_bytes(data.to_vec()) else {
        return;
    };
    let mut sink = 0u64;
    for (key, value) in file.metadata() {
        sink = sink.wrapping_add(key.len() as u64);
        sink = sink.wrapping_add(value.display_short(usize::MAX).len() as u64);
        let _ = (
            value.as_u64(),
            value.as_i64(),
            value.as_f64(),
            value.type_name(),
        );
        if let MetaValue::Array(a) = value {
            let _ = (a.to_f32_vec(), a.to_i64_vec(), a.len());
        }
        assert!(file.get(key).is_some());
        let _ = (file.get_u32(key), file.get_f32(key), file.get_str(key));
    }
    for t in file.tensors() {
        let bytes = file.tensor_bytes(t);
        assert_eq!(bytes.len() as u64, t.size_bytes);
        sink = sink.wrapping_add(bytes.as_slice().iter().map(|&b| b as u64).sum::<u64>());
        let _ = (t.elements(), t.rows_cols());
        assert!(file.tensor(&t.name).is_some());
    }
    std::hint::black_box(sink);
});
