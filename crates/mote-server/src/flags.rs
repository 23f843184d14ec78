//! Command-line flag groups that `mote serve` shares with `mote run` and `mote chat`
//! (flattened into each command's flags, so the names and help are the same everywhere).

use mote_session::SamplerConfig;

/// llama.cpp's DRY repetition penalty flags (same names, defaults and meaning).
#[derive(Clone, Debug, clap::Args)]
pub struct DryArgs {
    /// DRY repetition penalty strength: tokens that would extend a repeat of an earlier
    /// stretch of text lose MULT·base^(length − allowed length) from their logit; 0 = off.
    #[arg(long = "dry-multiplier", default_value_t = 0.0, value_name = "MULT")]
    pub dry_multiplier: f32,
    /// DRY: growth of the penalty per token of repeat.
    #[arg(long = "dry-base", default_value_t = 1.75, value_name = "X")]
    pub dry_base: f32,
    /// DRY: repeats up to N tokens long are not penalized.
    #[arg(long = "dry-allowed-length", default_value_t = 2, value_name = "N")]
    pub dry_allowed_length: u32,
    /// DRY: how many recent tokens are searched for repeats; 0 = off, -1 = the context.
    #[arg(
        long = "dry-penalty-last-n",
        default_value_t = -1,
        allow_negative_numbers = true,
        value_name = "N"
    )]
    pub dry_penalty_last_n: i32,
    /// DRY: text no repeat may reach across; repeat the flag for several, "none" for
    /// none. Default: "\n", ":", "\"", "*".
    #[arg(long = "dry-sequence-breaker", value_name = "TEXT")]
    pub dry_sequence_breaker: Vec<String>,
}

impl DryArgs {
    /// Writes the DRY settings into `config`.
    pub fn apply(&self, config: &mut SamplerConfig) {
        config.dry_multiplier = self.dry_multiplier;
        config.dry_base = self.dry_base;
        config.dry_allowed_length = self.dry_allowed_length;
        config.dry_penalty_last_n = self.dry_penalty_last_n;
        if !self.dry_sequence_breaker.is_empty() {
            config.dry_sequence_breakers = self
                .dry_sequence_breaker
                .iter()
                .filter(|b| b.as_str() != "none")
                .cloned()
                .collect();
        }
    }
}

/// What happens when a conversation or a generation outgrows the context.
#[derive(Clone, Debug, Default, clap::Args)]
pub struct ContextArgs {
    /// When the context is full, drop the oldest part (after --keep) and go on instead of
    /// stopping: whole chat turns are dropped, never a part of one, and the kept keys are
    /// re-rotated in the cache rather than recomputed. A prompt longer than the context is
    /// truncated the same way. Replies report `truncated` and `n_discarded`.
    #[arg(long = "context-shift", conflicts_with = "streaming")]
    pub context_shift: bool,
    /// Tokens at the start never dropped by --context-shift (after BOS); -1 = the whole
    /// first message (the system prompt).
    #[arg(
        long = "keep",
        default_value_t = 0,
        allow_negative_numbers = true,
        value_name = "N"
    )]
    pub keep: i64,
    /// Attention sinks (StreamingLLM): keep the first 4 tokens and a rolling window of the
    /// latest ones, positions re-assigned in the cache, for endless generation at constant
    /// memory and per-token cost.
    #[arg(long = "streaming")]
    pub streaming: bool,
}

impl ContextArgs {
    /// The shift policy for a context of `n_ctx` positions. `first_message` is the length
    /// in tokens of the first message (what `--keep -1` keeps) and `bos` whether sequences
    /// start with BOS (always kept, as llama.cpp does). `None`: stop when full.
    pub fn policy(
        &self,
        n_ctx: usize,
        first_message: usize,
        bos: bool,
    ) -> Option<mote_session::ShiftPolicy> {
        if self.streaming {
            return Some(mote_session::ShiftPolicy::streaming(n_ctx));
        }
        if !self.context_shift {
            return None;
        }
        let keep = match self.keep {
            k if k < 0 => first_message,
            k => k as usize + usize::from(bos),
        };
        Some(mote_session::ShiftPolicy {
            mode: mote_session::ShiftMode::Shift,
            keep: keep.min(n_ctx / 2),
        })
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.keep < -1 {
            return Err(format!(
                "--keep must be -1 or at least 0, got {}",
                self.keep
            ));
        }
        Ok(())
    }
}
