//! Fitting a request into a slot's context: with `--context-shift`, a conversation that
//! does not fit keeps its system message and its latest turns (whole turns only), and a
//! plain prompt is truncated as llama-server does; without it, `context_length_exceeded`.

use mote_session::shift::truncate_prompt;
use mote_session::{ShiftMode, ShiftPolicy};

use crate::engine::{ChatMessage, Frontend};
use crate::error::ApiError;

/// A prompt ready for the scheduler.
pub struct Fitted {
    pub tokens: Vec<u32>,
    /// Where each message begins (chat requests with context shift only).
    pub turn_starts: Vec<usize>,
    /// Prompt tokens dropped to make it fit.
    pub n_discarded: usize,
    /// How the slot makes room when the context fills during generation.
    pub shift: Option<ShiftPolicy>,
}

fn too_long(n_ctx: usize, tokens: usize) -> ApiError {
    ApiError::invalid(format!(
        "This model's context holds {n_ctx} tokens per slot, but the prompt has {tokens} tokens \
         (it exceeds the available context size). Shorten the prompt, start the server with a \
         larger --ctx-size, or with --context-shift to keep the latest part."
    ))
    .with_code("context_length_exceeded")
}

fn empty() -> ApiError {
    ApiError::invalid_param(
        "prompt",
        "The prompt is empty: give at least one token of text.",
    )
}

/// Tokens of the first message (what `--keep -1` keeps), and whether BOS leads.
fn bos_leads(frontend: &dyn Frontend, tokens: &[u32]) -> bool {
    let bos = frontend.tokenize("");
    !bos.is_empty() && tokens.first() == bos.first()
}

/// A plain prompt (`/v1/completions`, raw `/chat`).
pub fn fit_prompt(
    frontend: &dyn Frontend,
    n_ctx: usize,
    policy: impl Fn(usize, bool) -> Option<ShiftPolicy>,
    text: &str,
) -> Result<Fitted, ApiError> {
    let tokens = frontend.tokenize(text);
    if tokens.is_empty() {
        return Err(empty());
    }
    // `--keep -1`: the whole prompt is the "first message".
    let shift = policy(tokens.len(), bos_leads(frontend, &tokens));
    // One position must stay free for the first generated token.
    if tokens.len() < n_ctx {
        return Ok(Fitted {
            tokens,
            turn_starts: Vec::new(),
            n_discarded: 0,
            shift,
        });
    }
    let Some(shift) = shift else {
        return Err(too_long(n_ctx, tokens.len()));
    };
    let (kept, n_discarded) = truncate_prompt(&tokens, n_ctx, shift.keep);
    tracing::info!(
        "prompt of {} tokens truncated to {} for a context of {n_ctx}",
        tokens.len(),
        kept.len()
    );
    Ok(Fitted {
        tokens: kept,
        turn_starts: Vec::new(),
        n_discarded,
        shift: Some(shift),
    })
}

/// A conversation (`/v1/chat/completions`, `/chat`): rendered whole when it fits; with
/// context shift, the oldest turns after a leading system message are dropped (a user
/// turn with the reply that followed it) until the prompt leaves `room` tokens for the
/// answer, always keeping the last message.
pub fn fit_chat(
    frontend: &dyn Frontend,
    n_ctx: usize,
    policy: impl Fn(usize, bool) -> Option<ShiftPolicy>,
    messages: &[ChatMessage],
    room: usize,
) -> Result<Fitted, ApiError> {
    let render = |m: &[ChatMessage]| {
        frontend
            .render_chat(m)
            .map_err(|e| ApiError::invalid_param("messages", e.to_string()))
    };
    let mut kept: Vec<ChatMessage> = messages.to_vec();
    let mut tokens = frontend.tokenize(&render(&kept)?);
    if tokens.is_empty() {
        return Err(empty());
    }
    let all = tokens.len();
    let system = usize::from(kept.first().is_some_and(|m| m.role == "system"));
    let probe = policy(0, false);
    if tokens.len() >= n_ctx && probe.is_none() {
        return Err(too_long(n_ctx, tokens.len()));
    }
    if probe.is_some() {
        let room = room.min(n_ctx / 4).max(1);
        while tokens.len() + room > n_ctx && kept.len() > system + 1 {
            let n = if kept.len() > system + 2 && kept[system + 1].role == "assistant" {
                2
            } else {
                1
            };
            kept.drain(system..system + n);
            tokens = frontend.tokenize(&render(&kept)?);
        }
    }
    let mut n_discarded = all - tokens.len().min(all);
    // Where each message begins, so shifts during generation drop whole turns.
    let mut turn_starts = vec![0];
    if probe.is_some() {
        for i in 1..kept.len() {
            let prefix = frontend.render_chat_prefix(&kept[..i]);
            match prefix {
                Some(text) => turn_starts.push(frontend.tokenize(&text).len()),
                None => break,
            }
        }
    }
    let first_message = turn_starts.get(1).copied();
    let mut shift = policy(
        first_message.unwrap_or(tokens.len()),
        bos_leads(frontend, &tokens),
    );
    if let (Some(s), Some(end)) = (&mut shift, first_message) {
        // The system message is always kept.
        if system == 1 && s.mode == ShiftMode::Shift {
            s.keep = s.keep.max(end.min(n_ctx / 2));
        }
    }
    if tokens.len() >= n_ctx {
        // Even the system message and the last turn do not fit: plain truncation.
        let keep = shift.map_or(0, |s| s.keep);
        let (t, dropped) = truncate_prompt(&tokens, n_ctx, keep);
        tokens = t;
        n_discarded += dropped;
        turn_starts.clear();
    }
    if n_discarded > 0 {
        tracing::info!(
            "conversation of {all} tokens: {n_discarded} dropped to fit a context of {n_ctx}"
        );
    }
    Ok(Fitted {
        tokens,
        turn_starts,
        n_discarded,
        shift,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::FakeFrontend;

    fn msg(role: &str, content: &str) -> ChatMessage {
        ChatMessage {
            role: role.into(),
            content: content.into(),
        }
    }

    fn shift(_first: usize, _bos: bool) -> Option<ShiftPolicy> {
        Some(ShiftPolicy {
            mode: ShiftMode::Shift,
            keep: 0,
        })
    }

    #[test]
    fn long_conversations_keep_the_system_message_and_the_latest_turns() {
        let mut messages = vec![msg("system", "Be brief.")];
        for i in 0..20 {
            messages.push(msg("user", &format!("question number {i} with some words")));
            messages.push(msg(
                "assistant",
                &format!("answer number {i}, also with words"),
            ));
        }
        messages.push(msg("user", "the last question"));
        let f = fit_chat(&FakeFrontend, 300, shift, &messages, 40).unwrap();
        let text: String = f.tokens[1..].iter().map(|&t| t as u8 as char).collect();
        assert!(text.starts_with("system: Be brief.\n"), "{text}");
        assert!(
            text.ends_with("user: the last question\nassistant:"),
            "{text}"
        );
        // Whole turns: every kept user turn is followed by its answer.
        assert!(text.contains("user: question number 19") && !text.contains("number 0 "));
        assert!(f.tokens.len() + 40 <= 300 && f.n_discarded > 0);
        assert_eq!(f.shift.map(|s| s.keep), Some(0));

        // Without context shift: refused.
        let err = fit_chat(&FakeFrontend, 300, |_, _| None, &messages, 40);
        assert!(err.is_err());
        // A short one passes untouched.
        let f = fit_chat(&FakeFrontend, 300, |_, _| None, &messages[..3], 40).unwrap();
        assert_eq!(f.n_discarded, 0);
    }

    #[test]
    fn long_prompts_are_truncated_only_with_context_shift() {
        let text = "x".repeat(400);
        assert!(fit_prompt(&FakeFrontend, 256, |_, _| None, &text).is_err());
        let f = fit_prompt(&FakeFrontend, 256, shift, &text).unwrap();
        assert!(f.tokens.len() < 256 && f.n_discarded + f.tokens.len() == 401);
    }
}
