//! Perplexity the way llama-perplexity measures it, so the numbers compare directly.
//!
//! The text is tokenized once (with BOS when the vocabulary adds one) and cut into
//! non-overlapping windows of `ctx` tokens. Each window runs from an empty cache with
//! its first token replaced by BOS (when the vocabulary adds BOS), and only the second
//! half is scored: the logits at positions `ctx/2 .. ctx-2` predict tokens
//! `ctx/2+1 .. ctx-1`. The first half only gives the scored tokens some context.

use mote_model::Model;
use mote_tokenizer::Tokenizer;
use serde::Serialize;

use crate::error::{CompressError, Result};
use crate::kl::{KlReader, KlStats, KlWriter};

/// How to cut the text into windows.
#[derive(Clone, Copy, Debug)]
pub struct PerplexityOptions {
    /// Tokens per window.
    pub ctx: usize,
    /// At most this many windows (`None`: as many as the text fills).
    pub chunks: Option<usize>,
}

impl Default for PerplexityOptions {
    fn default() -> Self {
        PerplexityOptions {
            ctx: 512,
            chunks: None,
        }
    }
}

/// What to do with a reference-logits file.
pub enum KlMode<'a> {
    None,
    /// Store this run's distributions as the reference.
    Write(&'a mut KlWriter),
    /// Compare this run's distributions with a stored reference.
    Compare(&'a mut KlReader),
}

/// Running sums of the negative log-likelihood, as llama-perplexity keeps them.
#[derive(Clone, Copy, Debug, Default)]
pub struct NllStats {
    pub count: usize,
    sum: f64,
    sum_sq: f64,
}

impl NllStats {
    pub fn add(&mut self, nll: f64) {
        self.count += 1;
        self.sum += nll;
        self.sum_sq += nll * nll;
    }

    pub fn mean(&self) -> f64 {
        if self.count == 0 {
            return f64::NAN;
        }
        self.sum / self.count as f64
    }

    pub fn ppl(&self) -> f64 {
        self.mean().exp()
    }

    /// llama-perplexity's uncertainty: the standard error of the mean NLL, carried to
    /// PPL to first order (d exp(x) = exp(x) dx).
    pub fn ppl_error(&self) -> f64 {
        if self.count < 2 {
            return f64::NAN;
        }
        let n = self.count as f64;
        let mean = self.sum / n;
        let var = self.sum_sq / n - mean * mean;
        if var <= 0.0 {
            return 0.0;
        }
        (var / (n - 1.0)).sqrt() * mean.exp()
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct PerplexityReport {
    pub ctx: usize,
    pub chunks: usize,
    pub tokens_in_text: usize,
    pub scored_tokens: usize,
    pub ppl: f64,
    pub ppl_error: f64,
    pub mean_nll: f64,
    /// Present when compared against a reference-logits file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kl: Option<KlStats>,
    pub seconds: f64,
}

/// Tokenizes `text` as llama-perplexity does (special tokens added, not parsed).
pub fn tokenize_text(tokenizer: &Tokenizer, text: &str) -> Vec<u32> {
    tokenizer.encode(text, true, false)
}

/// The windows `tokens` is cut into, checked against the options.
pub fn window_count(tokens: usize, opts: &PerplexityOptions) -> Result<usize> {
    if opts.ctx < 4 {
        return Err(CompressError::Invalid(format!(
            "context size {} is too small (at least 4)",
            opts.ctx
        )));
    }
    let fit = tokens / opts.ctx;
    if fit == 0 {
        return Err(CompressError::TextTooShort {
            tokens,
            needed: opts.ctx,
            ctx: opts.ctx,
        });
    }
    Ok(match opts.chunks {
        Some(n) if n > 0 => n.min(fit),
        _ => fit,
    })
}

/// log(sum(exp(row))) computed stably.
pub(crate) fn log_sum_exp(row: &[f32]) -> f64 {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    if !max.is_finite() {
        return max as f64;
    }
    let sum: f64 = row.iter().map(|&l| ((l - max) as f64).exp()).sum();
    max as f64 + sum.ln()
}

/// Runs the model over `tokens` window by window. `progress(done, total)` is called
/// after each window.
pub fn evaluate(
    model: &Model,
    tokenizer: &Tokenizer,
    tokens: &[u32],
    opts: &PerplexityOptions,
    mut kl: KlMode<'_>,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<PerplexityReport> {
    let started = std::time::Instant::now();
    let chunks = window_count(tokens.len(), opts)?;
    let ctx = opts.ctx;
    let first = ctx / 2;
    let vocab = model.config().vocab_size;
    let bos = tokenizer.adds_bos().then(|| tokenizer.bos_id()).flatten();
    let evaluated = &tokens[..chunks * ctx];

    match &mut kl {
        KlMode::Write(w) => w.begin(vocab, ctx, chunks, first, evaluated)?,
        KlMode::Compare(r) => r.check(vocab, ctx, chunks, first, evaluated)?,
        KlMode::None => {}
    }

    let mut stats = NllStats::default();
    let mut window = vec![0u32; ctx];
    for chunk in 0..chunks {
        window.copy_from_slice(&evaluated[chunk * ctx..(chunk + 1) * ctx]);
        if let Some(b) = bos {
            window[0] = b;
        }
        let mut cache = model.new_cache(ctx);
        // The unscored half needs no logits: running it separately keeps the logits
        // buffer at half a window (it is ctx/2 x vocab floats; 0.5 GB for Gemma 3).
        model.forward(&window[..first], &mut cache, false)?;
        let logits = model.forward(&window[first..], &mut cache, true)?;
        for j in 0..(ctx - 1 - first) {
            let row = logits
                .get(j * vocab..(j + 1) * vocab)
                .ok_or_else(|| CompressError::Invalid("model returned too few logits".into()))?;
            let target = window[first + 1 + j] as usize;
            let lse = log_sum_exp(row);
            let nll = lse - row.get(target).copied().unwrap_or(f32::NEG_INFINITY) as f64;
            stats.add(nll);
            match &mut kl {
                KlMode::Write(w) => w.record(row, lse, nll)?,
                KlMode::Compare(r) => r.compare(row, lse, nll)?,
                KlMode::None => {}
            }
        }
        progress(chunk + 1, chunks);
    }

    let kl_stats = match kl {
        KlMode::Write(w) => {
            w.finish()?;
            None
        }
        KlMode::Compare(r) => Some(r.stats(&stats)),
        KlMode::None => None,
    };
    Ok(PerplexityReport {
        ctx,
        chunks,
        tokens_in_text: tokens.len(),
        scored_tokens: stats.count,
        ppl: stats.ppl(),
        ppl_error: stats.ppl_error(),
        mean_nll: stats.mean(),
        kl: kl_stats,
        seconds: started.elapsed().as_secs_f64(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ppl_of_uniform_guess_is_vocab_size() {
        let mut s = NllStats::default();
        for _ in 0..10 {
            s.add((8f64).ln());
        }
        assert!((s.ppl() - 8.0).abs() < 1e-9);
        assert!(s.ppl_error().abs() < 1e-6);
    }

    #[test]
    fn error_matches_standard_error_of_mean() {
        let mut s = NllStats::default();
        let xs = [1.0, 2.0, 3.0, 4.0];
        for x in xs {
            s.add(x);
        }
        // sample variance with n-1 = 5/3; std error = sqrt(var/n)
        let mean: f64 = 2.5;
        let pop_var = 1.25;
        let want = (pop_var / 3.0f64).sqrt() * mean.exp();
        assert!((s.ppl_error() - want).abs() < 1e-9);
    }

    #[test]
    fn windows_are_counted_and_checked() {
        let o = PerplexityOptions {
            ctx: 8,
            chunks: None,
        };
        assert_eq!(window_count(20, &o).unwrap(), 2);
        assert!(window_count(7, &o).is_err());
        let o = PerplexityOptions {
            ctx: 8,
            chunks: Some(1),
        };
        assert_eq!(window_count(20, &o).unwrap(), 1);
    }

    #[test]
    fn log_sum_exp_is_stable() {
        let v = [1000.0f32, 1000.0];
        assert!((log_sum_exp(&v) - (1000.0 + 2f64.ln())).abs() < 1e-6);
    }
}
