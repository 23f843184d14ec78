//! Training text: tokenised once, then windows of `-c + 1` tokens drawn at seeded
//! random offsets (the first `c` are the input, the last `c` the labels), or cut
//! back to back for evaluation.

use std::path::Path;

use mote_tokenizer::Tokenizer;

use crate::rng::Rng;
use crate::TrainError;

pub struct TokenData {
    pub tokens: Vec<u32>,
    pub window: usize,
}

/// Inputs and labels of a batch of windows, back to back.
pub struct Batch {
    pub inputs: Vec<u32>,
    pub labels: Vec<u32>,
}

impl TokenData {
    /// Reads and tokenises `path` (no BOS: windows start anywhere in the text).
    pub fn from_file(path: &Path, tok: &Tokenizer, window: usize) -> Result<TokenData, TrainError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| TrainError::Io(format!("reading {}", path.display()), e))?;
        TokenData::from_tokens(
            tok.encode(&text, false, false),
            window,
            &path.display().to_string(),
        )
    }

    pub fn from_tokens(
        tokens: Vec<u32>,
        window: usize,
        what: &str,
    ) -> Result<TokenData, TrainError> {
        if window == 0 || tokens.len() < window + 1 {
            return Err(TrainError::Invalid(format!(
                "{what}: {} tokens, fewer than one window of {window} (+1 for the labels); use a smaller -c or a longer text",
                tokens.len()
            )));
        }
        Ok(TokenData { tokens, window })
    }

    /// `n` windows at random offsets.
    pub fn sample(&self, rng: &mut Rng, n: usize) -> Batch {
        let c = self.window;
        let span = self.tokens.len() - c;
        let mut b = Batch {
            inputs: Vec::with_capacity(n * c),
            labels: Vec::with_capacity(n * c),
        };
        for _ in 0..n {
            let at = rng.below(span);
            b.inputs.extend_from_slice(&self.tokens[at..at + c]);
            b.labels.extend_from_slice(&self.tokens[at + 1..at + c + 1]);
        }
        b
    }

    /// Up to `max` non-overlapping windows from the start (every one if `max` is 0).
    pub fn eval_windows(&self, max: usize) -> Vec<Batch> {
        let c = self.window;
        let count = (self.tokens.len() - 1) / c;
        let count = if max == 0 { count } else { count.min(max) };
        (0..count)
            .map(|i| Batch {
                inputs: self.tokens[i * c..(i + 1) * c].to_vec(),
                labels: self.tokens[i * c + 1..(i + 1) * c + 1].to_vec(),
            })
            .collect()
    }

    /// Windows in one pass over the text.
    pub fn windows_per_epoch(&self) -> usize {
        (self.tokens.len() / self.window).max(1)
    }
}
