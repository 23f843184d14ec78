//! What to drop when a sequence no longer fits its context: context shift (llama.cpp's
//! `--context-shift` with `--keep`, but cutting at chat-turn boundaries) and attention
//! sinks (StreamingLLM's `--streaming`: the first 4 tokens plus a rolling window).
//!
//! These are pure plans over token positions; the KV cache itself is shifted in place by
//! `mote_model::Model::shift_cache` (keys re-rotated to their new positions), so no kept
//! token is recomputed. Used by [`crate::Session`] (`mote run`, `mote chat`) and by the
//! server's scheduler alike.

/// How a full context is made room in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShiftMode {
    /// llama.cpp's context shift: keep the first `keep` tokens, drop half of the rest
    /// (whole chat turns when the turns are known).
    Shift,
    /// Attention sinks: keep the first `keep` tokens (4) and a rolling window of the most
    /// recent ones, dropping the oldest `step` tokens after the sinks each time.
    Streaming { step: usize },
}

/// A context-shift setting: what to keep and how to drop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShiftPolicy {
    pub mode: ShiftMode,
    /// Tokens at the start that are never dropped (the system prompt). Resolved by the
    /// caller from `--keep` (`-1`: the whole first message).
    pub keep: usize,
}

/// StreamingLLM's number of attention-sink tokens.
pub const SINK_TOKENS: usize = 4;

impl ShiftPolicy {
    /// Attention sinks for a context of `n_ctx` positions: 4 sinks, and the window slides
    /// by 1/16 of itself at a time (so the re-rotation work per token stays small and
    /// constant).
    pub fn streaming(n_ctx: usize) -> ShiftPolicy {
        let window = n_ctx.saturating_sub(SINK_TOKENS);
        ShiftPolicy {
            mode: ShiftMode::Streaming {
                step: (window / 16).max(1),
            },
            keep: SINK_TOKENS,
        }
    }

    /// The positions `start..start + n` to drop from a sequence of `len` tokens so that at
    /// least one more fits. `turn_starts` are the positions where chat turns begin
    /// (ascending; empty when unknown) and `answer_start` where the text being generated
    /// begins: a shift drops whole turns when it can, never a part of one, and only cuts
    /// into the answer being generated when nothing else is left. `None` when nothing can
    /// be dropped (the kept part alone fills the context).
    pub fn plan(
        &self,
        len: usize,
        turn_starts: &[usize],
        answer_start: usize,
    ) -> Option<(usize, usize)> {
        let keep = self.keep.min(len);
        let droppable = len - keep;
        // Leave at least one token after the kept ones, so the sequence goes on.
        if droppable < 2 {
            return None;
        }
        let (start, n) = match self.mode {
            ShiftMode::Streaming { step } => (keep, step.clamp(1, droppable - 1)),
            // No turns known (a plain prompt): llama.cpp's half.
            ShiftMode::Shift if turn_starts.is_empty() => (keep, droppable / 2),
            ShiftMode::Shift => {
                let wanted = droppable / 2;
                // The first turn boundary that frees at least half; else the start of the
                // answer being generated (all earlier turns go); else half of the answer.
                let boundary = turn_starts
                    .iter()
                    .copied()
                    .chain(std::iter::once(answer_start))
                    .filter(|&b| b >= keep + wanted && b < len)
                    .min()
                    .or_else(|| {
                        let b = answer_start.min(len);
                        (b > keep).then_some(b)
                    });
                match boundary {
                    Some(b) if b > keep && b < len => (keep, b - keep),
                    _ => {
                        let from = answer_start.clamp(keep, len);
                        let n = (len - from) / 2;
                        if n == 0 {
                            return None;
                        }
                        (from, n)
                    }
                }
            }
        };
        Some((start, n))
    }
}

/// Positions in `positions` after dropping `start..start + n`: those inside the range go,
/// those after it move down by `n`.
pub fn shift_positions(positions: &mut Vec<usize>, start: usize, n: usize) {
    positions.retain(|&p| p < start || p >= start + n);
    for p in positions.iter_mut() {
        if *p >= start + n {
            *p -= n;
        }
    }
}

/// llama-server's truncation of a prompt that does not fit `n_ctx`: keep the first
/// `keep` tokens, then drop whole blocks of `(n_ctx - keep) / 2` tokens after them until
/// the rest fits in half the context. Returns the kept tokens and how many were dropped.
pub fn truncate_prompt(prompt: &[u32], n_ctx: usize, keep: usize) -> (Vec<u32>, usize) {
    if prompt.len() < n_ctx {
        return (prompt.to_vec(), 0);
    }
    let keep = keep.min(n_ctx / 2);
    let block = ((n_ctx - keep) / 2).max(1);
    let erased = ((prompt.len() - keep - block) / block).max(1);
    let from = (keep + erased * block).min(prompt.len() - 1);
    let mut out = prompt[..keep].to_vec();
    out.extend_from_slice(&prompt[from..]);
    (out, from - keep)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shift(keep: usize) -> ShiftPolicy {
        ShiftPolicy {
            mode: ShiftMode::Shift,
            keep,
        }
    }

    #[test]
    fn plain_shift_drops_half_after_keep() {
        assert_eq!(shift(4).plan(100, &[], 100), Some((4, 48)));
        assert_eq!(shift(0).plan(10, &[], 10), Some((0, 5)));
        assert_eq!(shift(99).plan(100, &[], 100), None);
    }

    #[test]
    fn chat_shift_drops_whole_turns() {
        // System 0..10, turns at 10, 40, 70, 95; the answer started at 120.
        let turns = [0, 10, 40, 70, 95];
        // Keep the system turn; half of 140 is 70: up to the turn at 95 (≥ 10 + 65).
        assert_eq!(shift(10).plan(150, &turns, 120), Some((10, 85)));
        // No boundary far enough: all earlier turns go, the answer stays.
        assert_eq!(shift(10).plan(200, &turns, 120), Some((10, 110)));
        // The answer alone fills the context: its older half goes.
        assert_eq!(shift(10).plan(200, &[0, 10], 10), Some((10, 95)));
    }

    #[test]
    fn streaming_slides_after_the_sinks() {
        let p = ShiftPolicy::streaming(256);
        assert_eq!(p.plan(256, &[], 0), Some((4, 15)));
        let p = ShiftPolicy {
            mode: ShiftMode::Streaming { step: 1 },
            keep: 4,
        };
        assert_eq!(p.plan(256, &[], 0), Some((4, 1)));
    }

    #[test]
    fn positions_follow_the_shift() {
        let mut p = vec![0, 10, 40, 70, 95];
        shift_positions(&mut p, 10, 60);
        assert_eq!(p, vec![0, 10, 35]);
    }

    #[test]
    fn prompt_truncation_matches_llama_server() {
        // llama-server's test: 301 tokens, n_ctx 256, n_keep 0 → the last 173 tokens.
        let prompt: Vec<u32> = (0..301).collect();
        let (kept, dropped) = truncate_prompt(&prompt, 256, 0);
        assert_eq!((kept.len(), dropped), (173, 128));
        assert_eq!(kept[0], 128);
        let (kept, dropped) = truncate_prompt(&prompt, 256, 10);
        assert_eq!(&kept[..10], &prompt[..10]);
        assert!(kept.len() < 256 && dropped + kept.len() == 301);
        assert_eq!(truncate_prompt(&prompt[..20], 256, 0).1, 0);
    }
}
