//! Helpers shared by the tests on real model files.

use std::path::PathBuf;

/// `$MOTE_MODELS/name` (default `models/`), or None (the test is skipped) when it is not
/// there, unless `MOTE_REQUIRE_MODELS` is set.
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
