//! Parses the real model files fetched by scripts/fetch-models.sh.

use std::path::PathBuf;

use mote_file::GgufFile;

fn model(name: &str) -> Option<PathBuf> {
    let dir = std::env::var_os("MOTE_MODELS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models"));
    let p = dir.join(name);
    if p.exists() {
        Some(p)
    } else {
        assert!(
            std::env::var_os("MOTE_REQUIRE_MODELS").is_none(),
            "{name} missing: run scripts/fetch-models.sh all"
        );
        eprintln!("skipping: {} not found", p.display());
        None
    }
}

#[test]
fn real_files_parse() {
    for (name, arch) in [
        ("SmolLM2-135M-Instruct.Q4_1.gguf", "llama"),
        ("gemma-3-270m-Q4_K_M.gguf", "gemma3"),
        ("tiny.gguf", "llama"),
    ] {
        let Some(p) = model(name) else { continue };
        let f = GgufFile::open(&p).unwrap();
        assert_eq!(f.architecture().unwrap(), arch);
        assert!(!f.tensors().is_empty());
        let total: u64 = f.tensors().iter().map(|t| t.size_bytes).sum();
        assert!(f.data_offset() + total <= f.file_len());
        for t in f.tensors() {
            assert_eq!(f.tensor_bytes(t).len() as u64, t.size_bytes);
        }
    }
}
