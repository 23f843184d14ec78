//! Helpers shared by the integration tests.

use std::path::PathBuf;

/// The model file `file` from `MOTE_MODELS` (default `models/`), or `None` (the test is
/// skipped) when it is missing and `MOTE_REQUIRE_MODELS` is not set.
pub fn model_path(file: &str) -> Option<PathBuf> {
    let dir = std::env::var_os("MOTE_MODELS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models"));
    let p = dir.join(file);
    if p.exists() {
        return Some(p);
    }
    assert!(
        std::env::var_os("MOTE_REQUIRE_MODELS").is_none(),
        "{file} missing: run scripts/fetch-models.sh all"
    );
    eprintln!("skipping: {} not found", p.display());
    None
}
