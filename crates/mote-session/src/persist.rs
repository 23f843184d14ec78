//! KV caches on disk: a session's context saved to a slot file and restored from one
//! (`--prompt-cache`, `mote chat --session`, the server's slot actions).
//!
//! Files are written to a temporary name in the same folder and renamed, so a reader
//! never sees half a file; they are read through a memory map where the platform has
//! one, and the checked bytes are copied once, straight from the map into the cache.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use mote_model::{KvCache, Model, Restored, SlotFileError};

use crate::generate::{ModelRunner, Session, TokenCodec};

/// A slot file could not be written or read.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {source}")]
pub struct PersistError {
    pub path: String,
    #[source]
    pub source: SlotFileError,
}

impl PersistError {
    fn new(path: &Path, source: impl Into<SlotFileError>) -> PersistError {
        PersistError {
            path: path.display().to_string(),
            source: source.into(),
        }
    }

    /// Whether the file was simply not there.
    pub fn is_not_found(&self) -> bool {
        matches!(&self.source, SlotFileError::Io(e) if e.kind() == std::io::ErrorKind::NotFound)
    }
}

/// Runs `write` on a temporary file next to `path`, then renames it to `path`; on error
/// the temporary file is removed and `path` is untouched. Returns what `write` returned.
pub fn write_atomically(
    path: &Path,
    write: impl FnOnce(&mut dyn Write) -> Result<u64, SlotFileError>,
) -> Result<u64, PersistError> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
    let tmp: PathBuf = path.with_file_name(format!(
        ".{}.tmp-{}-{}",
        name.unwrap_or_default(),
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let result: Result<u64, SlotFileError> = (|| {
        let file = std::fs::File::create(&tmp)?;
        let mut out = BufWriter::with_capacity(1 << 20, file);
        let n = write(&mut out)?;
        out.flush()?;
        drop(out);
        std::fs::rename(&tmp, path)?;
        Ok(n)
    })();
    result.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        PersistError::new(path, e)
    })
}

/// Saves the first `tokens.len()` positions of `cache` to `path` (atomically); returns
/// the bytes written.
pub fn save_cache_file(
    model: &Model,
    cache: &KvCache,
    tokens: &[u32],
    extra: &[u8],
    path: &Path,
) -> Result<u64, PersistError> {
    write_atomically(path, |out| {
        let mut out = out;
        model.save_cache(cache, tokens, extra, &mut out)
    })
}

/// Restores `cache` from the slot file at `path`; returns what it held and its size. A
/// refused file leaves the cache as it was.
pub fn restore_cache_file(
    model: &Model,
    cache: &mut KvCache,
    path: &Path,
) -> Result<(Restored, u64), PersistError> {
    let bytes = mote_file::load_bytes(path).map_err(|e| PersistError::new(path, e))?;
    let restored = model
        .restore_cache(cache, bytes.as_slice())
        .map_err(|e| PersistError::new(path, e))?;
    Ok((restored, bytes.len() as u64))
}

impl ModelRunner {
    pub fn cache(&self) -> &KvCache {
        &self.cache
    }
}

impl<T: TokenCodec> Session<ModelRunner, T> {
    /// Saves the first `n` tokens of the context (all of it when `n` is larger) and
    /// `extra` to `path`; returns the bytes written.
    pub fn save_context(&self, path: &Path, n: usize, extra: &[u8]) -> Result<u64, PersistError> {
        let tokens = &self.cached[..n.min(self.cached.len())];
        save_cache_file(self.model.model(), &self.model.cache, tokens, extra, path)
    }

    /// Replaces the context with the one saved at `path`; returns the extra bytes saved
    /// with it. On error the context is unchanged.
    pub fn restore_context(&mut self, path: &Path) -> Result<Vec<u8>, PersistError> {
        let runner = &mut self.model;
        let (restored, _) = restore_cache_file(&runner.model, &mut runner.cache, path)?;
        self.cached = restored.tokens;
        Ok(restored.extra)
    }
}
