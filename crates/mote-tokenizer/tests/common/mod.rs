//! Shared helpers: locating model files and reading fixtures.

#![allow(dead_code)]

use std::path::PathBuf;

pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

pub fn read_json(name: &str) -> serde_json::Value {
    let text = std::fs::read_to_string(fixture(name)).expect("fixture readable");
    serde_json::from_str(&text).expect("fixture is JSON")
}

/// A model file, or `None` (after printing "skipping") when it is absent and
/// `MOTE_REQUIRE_MODELS` is not set.
pub fn model(name: &str) -> Option<PathBuf> {
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

pub fn ids(v: &serde_json::Value) -> Vec<u32> {
    v.as_array()
        .expect("id list")
        .iter()
        .map(|x| x.as_u64().expect("id") as u32)
        .collect()
}

pub fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}
