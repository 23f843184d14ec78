//! Perplexity of a long text through a small KV cache: how well attention sinks
//! (StreamingLLM) keep a model on track compared with a plain rolling window and with
//! strided recomputation (`mote perplexity --kv-window sinks|window|strided`).
//!
//! All three score the same tokens, `ctx..n` (every token predicted from a full cache),
//! one at a time, with a cache of at most `ctx` positions:
//! - `sinks`: the first 4 tokens stay, the rest is a rolling window; when the cache is
//!   full the oldest `evict` tokens after the sinks go and the cache is shifted in place
//!   (`Model::shift_cache`, keys re-rotated), so positions stay `0..ctx`;
//! - `window`: the same without sinks (the oldest tokens go, the first ones included);
//! - `strided`: no cache carried over: windows of `ctx` tokens recomputed from scratch
//!   every `stride` tokens, the last `stride` of each scored (the usual "sliding window"
//!   perplexity; each token sees `ctx - stride .. ctx - 1` tokens of context).

use std::str::FromStr;

use mote_model::Model;
use serde::Serialize;

use crate::error::{CompressError, Result};
use crate::perplexity::{log_sum_exp, NllStats};

/// Which way a long text goes through a small cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum KvWindow {
    Sinks,
    Window,
    Strided,
}

impl FromStr for KvWindow {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "sinks" => Ok(KvWindow::Sinks),
            "window" => Ok(KvWindow::Window),
            "strided" => Ok(KvWindow::Strided),
            _ => Err(format!(
                "unknown --kv-window {s:?} (sinks, window or strided)"
            )),
        }
    }
}

/// Attention-sink tokens kept by `sinks` (StreamingLLM's 4).
pub const SINKS: usize = 4;

#[derive(Clone, Debug, Serialize)]
pub struct LongReport {
    pub mode: KvWindow,
    pub ctx: usize,
    pub tokens_in_text: usize,
    pub scored_tokens: usize,
    pub ppl: f64,
    pub ppl_error: f64,
    /// Largest KV cache held, in bytes.
    pub max_cache_bytes: usize,
    /// Model positions run (tokens through the model), a measure of the work.
    pub positions_run: usize,
    pub seconds: f64,
}

fn nll(row: &[f32], target: u32) -> f64 {
    log_sum_exp(row)
        - row
            .get(target as usize)
            .copied()
            .unwrap_or(f32::NEG_INFINITY) as f64
}

/// Scores `tokens[ctx..]` with a cache of `ctx` positions. `evict`: tokens dropped per
/// shift (sinks/window); `stride`: tokens scored per recomputed window (strided).
pub fn evaluate_long(
    model: &Model,
    tokens: &[u32],
    ctx: usize,
    mode: KvWindow,
    evict: usize,
    stride: usize,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<LongReport> {
    let started = std::time::Instant::now();
    if ctx <= SINKS + 1 || tokens.len() <= ctx + 1 {
        return Err(CompressError::Invalid(format!(
            "--kv-window needs a context above {} and a text longer than it ({} tokens)",
            SINKS + 1,
            tokens.len()
        )));
    }
    let vocab = model.config().vocab_size;
    let mut stats = NllStats::default();
    let (mut max_bytes, mut run) = (0usize, 0usize);
    let total = tokens.len() - ctx;
    match mode {
        KvWindow::Sinks | KvWindow::Window => {
            let keep = if mode == KvWindow::Sinks { SINKS } else { 0 };
            let evict = evict.clamp(1, ctx - keep - 1);
            let mut cache = model.new_cache(ctx);
            // The first window in one pass; its last logits predict token ctx.
            let mut logits = model.forward(&tokens[..ctx], &mut cache, false)?;
            run += ctx;
            for i in ctx..tokens.len() {
                stats.add(nll(&logits, tokens[i]));
                if i + 1 == tokens.len() {
                    break;
                }
                if cache.len() == ctx {
                    model.shift_cache(&mut cache, keep, evict)?;
                }
                logits = model.forward(&tokens[i..=i], &mut cache, false)?;
                run += 1;
                max_bytes = max_bytes.max(cache.memory_bytes());
                if (i - ctx).is_multiple_of(256) {
                    progress(i - ctx, total);
                }
            }
        }
        KvWindow::Strided => {
            let stride = stride.clamp(1, ctx - 1);
            let mut end = ctx;
            while end < tokens.len() {
                // Score tokens end+1-stride ..= end (those of them >= ctx) from windows of
                // ctx tokens ending just before each.
                let last = (end + stride).min(tokens.len() - 1);
                let first_scored = end;
                let start = (last + 1).saturating_sub(ctx + 1);
                let mut cache = model.new_cache(ctx);
                let window = &tokens[start..last];
                let all = model.forward(window, &mut cache, true)?;
                run += window.len();
                max_bytes = max_bytes.max(cache.memory_bytes());
                for (target, &token) in tokens.iter().enumerate().take(last + 1).skip(first_scored)
                {
                    let row_index = target - 1 - start;
                    let row = all
                        .get(row_index * vocab..(row_index + 1) * vocab)
                        .ok_or_else(|| CompressError::Invalid("too few logits".into()))?;
                    stats.add(nll(row, token));
                }
                end = last + 1;
                progress(end - ctx, total);
            }
        }
    }
    Ok(LongReport {
        mode,
        ctx,
        tokens_in_text: tokens.len(),
        scored_tokens: stats.count,
        ppl: stats.ppl(),
        ppl_error: stats.ppl_error(),
        max_cache_bytes: max_bytes,
        positions_run: run,
        seconds: started.elapsed().as_secs_f64(),
    })
}
