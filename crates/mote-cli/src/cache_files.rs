//! `--prompt-cache FILE` and `mote chat --session FILE`: KV caches kept between runs in
//! slot files (format in mote-model's `slot_file.rs`, docs/context.md "Slot files").

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use mote_session::ChatMessage;

use crate::args::GenArgs;
use crate::run::RealSession;

/// The prompt cache of one run: what the file held, and whether to write it.
pub struct PromptCache {
    path: PathBuf,
    read_only: bool,
    /// Tokens the file held (empty when there was no usable file).
    restored: Vec<u32>,
    /// Time spent reading and restoring the file.
    pub restore_time: std::time::Duration,
}

impl PromptCache {
    /// Restores `--prompt-cache FILE` into the session when the file exists and fits this
    /// model and cache; a file that does not is reported and left to be replaced.
    pub fn open(gen: &GenArgs, session: &mut RealSession) -> Option<PromptCache> {
        let path = gen.prompt_cache.clone()?;
        let started = std::time::Instant::now();
        let mut restored = Vec::new();
        match session.restore_context(&path) {
            Ok(_) => {
                restored = session.context_tokens().to_vec();
                tracing::info!("prompt cache {}: {} tokens", path.display(), restored.len());
            }
            Err(e) if e.is_not_found() => {}
            Err(e) => eprintln!("mote: ignoring the prompt cache: {e}"),
        }
        Some(PromptCache {
            path,
            read_only: gen.prompt_cache_ro,
            restored,
            restore_time: started.elapsed(),
        })
    }

    /// After a generation from `prompt`: saves the prompt's positions unless the file
    /// already began with the whole prompt (or is read-only).
    pub fn update(&mut self, session: &RealSession, prompt: &[u32]) -> Result<()> {
        if self.read_only || self.restored.starts_with(prompt) {
            return Ok(());
        }
        let context = session.context_tokens();
        let n = prompt.len().min(context.len());
        if context[..n] != *prompt {
            return Ok(());
        }
        let bytes = session
            .save_context(&self.path, n, &[])
            .context("cannot save the prompt cache")?;
        tracing::info!(
            "prompt cache {}: saved {n} tokens, {bytes} bytes",
            self.path.display()
        );
        self.restored = prompt.to_vec();
        Ok(())
    }
}

/// What a chat session file keeps besides the cache.
#[derive(serde::Serialize, serde::Deserialize)]
struct SavedChat {
    messages: Vec<ChatMessage>,
}

/// Resumes the conversation saved at `path`; `None` when there is no such file yet.
pub fn resume_chat(session: &mut RealSession, path: &Path) -> Result<Option<Vec<ChatMessage>>> {
    let extra = match session.restore_context(path) {
        Ok(extra) => extra,
        Err(e) if e.is_not_found() => return Ok(None),
        Err(e) => {
            return Err(e).context("cannot resume the chat session (the file was left as it is)")
        }
    };
    let saved: SavedChat = serde_json::from_slice(&extra).with_context(|| {
        format!(
            "{} holds a KV cache but no chat messages (a --prompt-cache file?)",
            path.display()
        )
    })?;
    Ok(Some(saved.messages))
}

/// Saves the conversation (messages and the whole context) to `path`.
pub fn save_chat(session: &RealSession, messages: &[ChatMessage], path: &Path) -> Result<()> {
    let extra = serde_json::to_vec(&SavedChat {
        messages: messages.to_vec(),
    })?;
    session
        .save_context(path, usize::MAX, &extra)
        .context("cannot save the chat session")?;
    Ok(())
}
