//! `MOTE_PROFILE=1`: time spent per phase of each forward call, printed to stderr.
//!
//! Off by default, and then costs one branch per phase (no clock reads).

use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The phases of a forward pass, in the order they run within a layer.
#[derive(Clone, Copy, Debug)]
pub enum Phase {
    Embed,
    Norm,
    Qkv,
    /// Biases, q/k norms, RoPE and writing the cache.
    RopeKv,
    Attention,
    AttnOut,
    GateUp,
    Activation,
    Down,
    Head,
}

const PHASES: [(Phase, &str); 10] = [
    (Phase::Embed, "embed"),
    (Phase::Norm, "norm+add"),
    (Phase::Qkv, "qkv"),
    (Phase::RopeKv, "rope+kv"),
    (Phase::Attention, "attention"),
    (Phase::AttnOut, "attn-out"),
    (Phase::GateUp, "gate+up"),
    (Phase::Activation, "act"),
    (Phase::Down, "down"),
    (Phase::Head, "head"),
];

fn enabled() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| std::env::var("MOTE_PROFILE").is_ok_and(|v| !v.is_empty() && v != "0"))
}

/// Accumulated phase times of one forward call.
#[derive(Default)]
pub struct Profile {
    last: Option<Instant>,
    spent: [Duration; PHASES.len()],
}

impl Profile {
    /// Starts timing (a no-op unless `MOTE_PROFILE` is set).
    pub fn start(&mut self) {
        if enabled() {
            self.spent = Default::default();
            self.last = Some(Instant::now());
        }
    }

    /// Charges the time since the previous mark to `phase`.
    pub fn mark(&mut self, phase: Phase) {
        if let Some(last) = self.last {
            let now = Instant::now();
            self.spent[phase as usize] += now - last;
            self.last = Some(now);
        }
    }

    /// Prints the breakdown of the call that processed `tokens` tokens of `seqs` sequences.
    pub fn report(&mut self, tokens: usize, seqs: usize) {
        if self.last.take().is_none() {
            return;
        }
        let total: Duration = self.spent.iter().sum();
        let mut line = format!(
            "mote-profile: {tokens} tokens, {seqs} seq, {:.3} ms:",
            total.as_secs_f64() * 1e3
        );
        for ((_, name), t) in PHASES.iter().zip(&self.spent) {
            let ms = t.as_secs_f64() * 1e3;
            let pct = 100.0 * t.as_secs_f64() / total.as_secs_f64().max(1e-12);
            line.push_str(&format!(" {name} {ms:.3} ({pct:.0}%)"));
        }
        eprintln!("{line}");
    }
}
