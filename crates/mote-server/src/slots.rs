//! Slot persistence, llama-server's API: `POST /slots/{id}?action=save|restore|erase`
//! with `{"filename": ...}`, and `GET /slots`.
//!
//! Files live in the `--slot-save-path` folder only: a name is one plain path component
//! (no separators, no `..`, not hidden), and a name that is a symbolic link is refused,
//! so nothing outside the folder is read or written. Saving writes a temporary file in
//! the folder and renames it. The actions run on the scheduler thread between steps,
//! each once its slot is idle; a refused restore leaves the slot as it was.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{Path as UrlPath, Query, State};
use axum::Json;
use serde_json::{json, Value};
use tokio::sync::oneshot;

use crate::engine::EngineError;
use crate::error::ApiError;
use crate::routes::AppState;
use crate::scheduler::Worker;

/// What a slot command asks for.
#[derive(Debug)]
pub enum SlotAction {
    Save(PathBuf),
    Restore(PathBuf),
    Erase,
    List,
}

/// One slot action and where its answer goes.
pub struct SlotCommand {
    pub slot: usize,
    pub action: SlotAction,
    pub reply: oneshot::Sender<Result<SlotReply, EngineError>>,
}

/// A slot as `GET /slots` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SlotState {
    pub id: usize,
    pub n_ctx: usize,
    pub is_processing: bool,
    /// Tokens whose keys and values the slot's cache holds.
    pub n_cached: usize,
}

#[derive(Debug)]
pub enum SlotReply {
    /// A slot saved to (`saved`) or restored from a file.
    File {
        saved: bool,
        n_tokens: usize,
        n_bytes: u64,
        ms: f64,
    },
    Erased {
        n_tokens: usize,
    },
    List(Vec<SlotState>),
}

/// `name` inside `dir`, or why it is refused: one plain file name, at most 255 bytes,
/// not hidden (temporary files start with a dot), no control characters, and not a
/// symbolic link.
pub fn file_in(dir: &Path, name: &str) -> Result<PathBuf, ApiError> {
    let bad = |why: &str| {
        ApiError::invalid_param("filename", format!("Invalid filename {name:?}: {why}."))
            .with_code("invalid_filename")
    };
    if name.is_empty() || name.len() > 255 {
        return Err(bad("a name of 1 to 255 bytes is required"));
    }
    if name.contains(['/', '\\']) || Path::new(name).is_absolute() {
        return Err(bad("it must be a plain file name, without a folder"));
    }
    if name.starts_with('.') {
        return Err(bad("names starting with a dot are not allowed"));
    }
    if name.chars().any(|c| c.is_control() || c == ':') {
        return Err(bad("control characters and ':' are not allowed"));
    }
    let path = dir.join(name);
    if std::fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_symlink()) {
        return Err(bad("it is a symbolic link"));
    }
    Ok(path)
}

#[derive(serde::Deserialize)]
struct SlotBody {
    filename: Option<String>,
}

/// `POST /slots/{id_slot}?action=save|restore|erase`.
pub async fn slot_action(
    State(state): State<Arc<AppState>>,
    UrlPath(id): UrlPath<String>,
    Query(query): Query<HashMap<String, String>>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let Some(dir) = &state.config.slot_save_path else {
        return Err(ApiError::not_supported(
            "This server does not save or restore slots: start it with --slot-save-path DIR.",
        ));
    };
    let slot = id
        .parse::<usize>()
        .ok()
        .filter(|&s| s < state.config.n_slots)
        .ok_or_else(|| {
            ApiError::invalid_param(
                "id_slot",
                format!(
                    "Invalid slot id {id:?}: this server has slots 0 to {}.",
                    state.config.n_slots - 1
                ),
            )
        })?;
    let filename = || -> Result<String, ApiError> {
        let parsed: SlotBody = serde_json::from_slice(&body).map_err(|e| {
            ApiError::invalid(format!(
                "The body must be JSON like {{\"filename\": \"...\"}}: {e}"
            ))
        })?;
        parsed.filename.ok_or_else(|| {
            ApiError::invalid_param("filename", "Missing required parameter: `filename`.")
        })
    };
    let action_name = query.get("action").map(String::as_str).unwrap_or("");
    let (action, name) = match action_name {
        "save" => {
            let name = filename()?;
            (SlotAction::Save(file_in(dir, &name)?), Some(name))
        }
        "restore" => {
            let name = filename()?;
            let path = file_in(dir, &name)?;
            if !path.is_file() {
                return Err(ApiError::not_found_file(&name));
            }
            (SlotAction::Restore(path), Some(name))
        }
        "erase" => (SlotAction::Erase, None),
        other => {
            return Err(ApiError::invalid_param(
                "action",
                format!("Invalid action {other:?}: use ?action=save, restore or erase."),
            ))
        }
    };
    let reply = ask(&state, slot, action).await?;
    let filename = name.unwrap_or_default();
    Ok(Json(match reply {
        SlotReply::File {
            saved,
            n_tokens,
            n_bytes,
            ms,
        } => {
            let [n, bytes, time] = if saved {
                ["n_saved", "n_written", "save_ms"]
            } else {
                ["n_restored", "n_read", "restore_ms"]
            };
            json!({"id_slot": slot, "filename": filename, n: n_tokens, bytes: n_bytes,
                   "timings": {time: ms}})
        }
        SlotReply::Erased { n_tokens } => json!({"id_slot": slot, "n_erased": n_tokens}),
        SlotReply::List(_) => json!({"id_slot": slot}),
    }))
}

/// `GET /slots`: every slot's state.
pub async fn list(State(state): State<Arc<AppState>>) -> Result<Json<Value>, ApiError> {
    match ask(&state, 0, SlotAction::List).await? {
        SlotReply::List(slots) => Ok(Json(json!(slots))),
        _ => Err(ApiError::internal("unexpected answer to a slot listing")),
    }
}

/// Queues a slot action on the scheduler and waits for its answer.
async fn ask(state: &AppState, slot: usize, action: SlotAction) -> Result<SlotReply, ApiError> {
    let (tx, rx) = oneshot::channel();
    state
        .scheduler
        .slot_command(SlotCommand {
            slot,
            action,
            reply: tx,
        })
        .map_err(|e| ApiError::unavailable(e.to_string()))?;
    match rx.await {
        Ok(Ok(reply)) => Ok(reply),
        Ok(Err(EngineError::SlotFile(msg))) => Err(ApiError::invalid(format!(
            "The slot file was refused: {msg}"
        ))
        .with_code("invalid_slot_file")),
        Ok(Err(e @ EngineError::SlotsUnsupported)) => Err(ApiError::not_supported(e.to_string())),
        Ok(Err(e)) => Err(ApiError::internal(e.to_string())),
        Err(_) => Err(ApiError::unavailable("the server is shutting down")),
    }
}

/// The scheduler's side: runs slot actions between steps.
impl Worker {
    /// Runs the queued slot actions whose slot is idle; the others wait (as llama-server
    /// defers them) until their slot's request ends.
    pub(crate) fn run_slot_commands(&mut self) {
        if let Ok(mut q) = self.shared.queue.lock() {
            self.deferred.extend(q.commands.drain(..));
        }
        for cmd in std::mem::take(&mut self.deferred) {
            let busy = self.slots.get(cmd.slot).is_some_and(|s| s.job.is_some());
            if busy && !matches!(cmd.action, SlotAction::List) {
                self.deferred.push(cmd);
                continue;
            }
            let result = self.slot_action(cmd.slot, cmd.action);
            let _ = cmd.reply.send(result);
        }
    }

    fn slot_action(&mut self, slot: usize, action: SlotAction) -> Result<SlotReply, EngineError> {
        let started = Instant::now();
        let ms = || started.elapsed().as_secs_f64() * 1e3;
        if let SlotAction::List = action {
            let list = self.slots.iter().enumerate().map(|(id, s)| SlotState {
                id,
                n_ctx: self.n_ctx,
                is_processing: s.job.is_some(),
                n_cached: s.cached.len(),
            });
            return Ok(SlotReply::List(list.collect()));
        }
        if slot >= self.slots.len() {
            return Err(EngineError::SlotFile(format!("there is no slot {slot}")));
        }
        match action {
            SlotAction::List => Ok(SlotReply::List(Vec::new())),
            SlotAction::Save(path) => {
                // Only what the cache holds (the last sampled token never went in).
                let s = &self.slots[slot];
                let n = s.cached.len().min(self.backend.cache_len(slot));
                let n_bytes = self.backend.save_slot(slot, &s.cached[..n], &path)?;
                Ok(SlotReply::File {
                    saved: true,
                    n_tokens: n,
                    n_bytes,
                    ms: ms(),
                })
            }
            SlotAction::Restore(path) => {
                let (tokens, n_bytes) = self.backend.restore_slot(slot, &path)?;
                let n_tokens = tokens.len();
                self.clock += 1;
                let s = &mut self.slots[slot];
                s.cached = tokens;
                s.last_used = self.clock;
                Ok(SlotReply::File {
                    saved: false,
                    n_tokens,
                    n_bytes,
                    ms: ms(),
                })
            }
            SlotAction::Erase => {
                let n_tokens = self.slots[slot].cached.len();
                self.backend.truncate(slot, 0);
                self.slots[slot].cached.clear();
                Ok(SlotReply::Erased { n_tokens })
            }
        }
    }
}
