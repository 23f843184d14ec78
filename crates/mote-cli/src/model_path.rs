//! Finding the model file, with a default so that `mote chat` works out of the box.

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};

use crate::args::ModelArg;

pub const DEFAULT_MODEL: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";

/// The model the user named, or the default one from `$MOTE_MODELS`, `./models` or the
/// source tree's `models/`.
pub fn resolve(arg: &ModelArg) -> Result<PathBuf> {
    if let Some(p) = arg.given() {
        if !p.exists() {
            bail!("model file {} does not exist", p.display());
        }
        return Ok(p.clone());
    }
    let mut dirs: Vec<PathBuf> = Vec::new();
    if let Some(d) = std::env::var_os("MOTE_MODELS") {
        dirs.push(PathBuf::from(d));
    }
    dirs.push(PathBuf::from("models"));
    dirs.push(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models"));
    for d in &dirs {
        let p = d.join(DEFAULT_MODEL);
        if p.exists() {
            tracing::info!("no model given, using {}", p.display());
            return Ok(p);
        }
    }
    bail!(
        "no model given and the default models/{DEFAULT_MODEL} was not found \
         (looked in $MOTE_MODELS and ./models); run scripts/fetch-models.sh to download it, \
         or pass a model file"
    )
}
