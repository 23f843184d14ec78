//! Choosing the next token from a row of logits.
//!
//! The chain follows llama.cpp's default order and semantics, so that the same flags give
//! comparable behaviour:
//!
//! 1. **penalties** over the last `repeat_last_n` tokens (prompt included): a logit of a
//!    token seen `c > 0` times is divided by `repeat_penalty` when positive (multiplied when
//!    not), then lowered by `c * frequency_penalty + presence_penalty`;
//! 2. **DRY** (off unless `dry_multiplier > 0`): tokens that would extend a repeat of an
//!    earlier stretch of the last `dry_penalty_last_n` tokens are lowered, see [`crate::dry`];
//! 3. **top-k** keeps the `k` highest logits (`k <= 0` keeps all);
//! 4. **top-p** keeps the smallest set of most likely tokens whose probability reaches `p`
//!    (`p >= 1` keeps all, `p <= 0` keeps just the best);
//! 5. **min-p** drops tokens less likely than `p` times the most likely one;
//! 6. **temperature** divides the logits (`temperature <= 0` means greedy: the highest
//!    logit wins, ties going to the lowest id);
//! 7. a draw from the softmax with a seeded generator: the same seed gives the same tokens.

use std::collections::VecDeque;

/// Why no token could be chosen.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SamplingError {
    #[error("the model returned {got} logits, expected {expected} (one per vocabulary entry)")]
    WrongLength { got: usize, expected: usize },
    #[error("the model returned an invalid logit {value} for token {token}; the model output is broken (NaN or +inf)")]
    InvalidLogit { token: u32, value: f32 },
    #[error("every token is masked (all logits are -inf), nothing can be sampled")]
    NoCandidates,
    #[error("invalid sampling setting: {0}")]
    BadConfig(String),
}

/// Sampling settings; the defaults are llama.cpp's.
#[derive(Clone, Debug, PartialEq)]
pub struct SamplerConfig {
    pub temperature: f32,
    pub top_k: i32,
    pub top_p: f32,
    pub min_p: f32,
    /// 1.0 disables the repetition penalty.
    pub repeat_penalty: f32,
    /// How many recent tokens the penalties look at; 0 disables them, -1 means the whole
    /// context (the caller resolves -1 to the context size with [`SamplerConfig::resolve_last_n`]).
    pub repeat_last_n: i32,
    pub presence_penalty: f32,
    pub frequency_penalty: f32,
    /// DRY penalty strength; 0 disables DRY (llama.cpp's default).
    pub dry_multiplier: f32,
    /// DRY: each token of repeat beyond `dry_allowed_length` multiplies the penalty by this.
    pub dry_base: f32,
    /// DRY: repeats up to this many tokens are free.
    pub dry_allowed_length: u32,
    /// DRY: how many recent tokens are searched for repeats; 0 disables DRY, -1 means the
    /// whole context.
    pub dry_penalty_last_n: i32,
    /// DRY: strings that no repeat may reach across (llama.cpp's `dry_sequence_breakers`).
    pub dry_sequence_breakers: Vec<String>,
    pub seed: u64,
}

impl Default for SamplerConfig {
    fn default() -> Self {
        SamplerConfig {
            temperature: 0.8,
            top_k: 40,
            top_p: 0.95,
            min_p: 0.05,
            repeat_penalty: 1.0,
            repeat_last_n: 64,
            presence_penalty: 0.0,
            frequency_penalty: 0.0,
            dry_multiplier: 0.0,
            dry_base: 1.75,
            dry_allowed_length: 2,
            dry_penalty_last_n: -1,
            dry_sequence_breakers: crate::dry::DEFAULT_BREAKERS
                .iter()
                .map(|s| s.to_string())
                .collect(),
            seed: 0x6d6f_7465,
        }
    }
}

impl SamplerConfig {
    /// Greedy decoding: always the most likely token.
    pub fn greedy() -> Self {
        SamplerConfig {
            temperature: 0.0,
            ..Default::default()
        }
    }

    /// Number of recent tokens the penalties consider, given the context size.
    pub fn resolve_last_n(&self, n_ctx: usize) -> usize {
        match self.repeat_last_n {
            n if n < 0 => n_ctx,
            n => n as usize,
        }
    }

    fn validate(&self) -> Result<(), SamplingError> {
        let finite = [
            ("temperature", self.temperature),
            ("top-p", self.top_p),
            ("min-p", self.min_p),
            ("repeat-penalty", self.repeat_penalty),
            ("presence-penalty", self.presence_penalty),
            ("frequency-penalty", self.frequency_penalty),
            ("dry-multiplier", self.dry_multiplier),
            ("dry-base", self.dry_base),
        ];
        for (name, v) in finite {
            if !v.is_finite() {
                return Err(SamplingError::BadConfig(format!(
                    "{name} must be a number, got {v}"
                )));
            }
        }
        if self.repeat_penalty <= 0.0 {
            return Err(SamplingError::BadConfig(format!(
                "repeat-penalty must be positive (1.0 disables it), got {}",
                self.repeat_penalty
            )));
        }
        if self.dry_multiplier < 0.0 {
            return Err(SamplingError::BadConfig(format!(
                "dry-multiplier must be 0 (off) or positive, got {}",
                self.dry_multiplier
            )));
        }
        if self.dry_base < 1.0 {
            return Err(SamplingError::BadConfig(format!(
                "dry-base must be at least 1, got {}",
                self.dry_base
            )));
        }
        Ok(())
    }

    /// Whether the DRY penalty is on.
    pub fn dry_active(&self) -> bool {
        self.dry_multiplier > 0.0 && self.dry_penalty_last_n != 0
    }
}

/// A small, fast, seedable generator (SplitMix64 to expand the seed, xoshiro256** to draw):
/// reproducible across platforms, which is all sampling needs.
#[derive(Clone, Debug)]
pub struct Rng {
    s: [u64; 4],
}

impl Rng {
    pub fn new(seed: u64) -> Rng {
        let mut x = seed;
        let mut next = || {
            x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        };
        Rng {
            s: [next(), next(), next(), next()],
        }
    }

    pub fn next_u64(&mut self) -> u64 {
        let result = self.s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = self.s[1] << 17;
        self.s[2] ^= self.s[0];
        self.s[3] ^= self.s[1];
        self.s[1] ^= self.s[2];
        self.s[0] ^= self.s[3];
        self.s[2] ^= t;
        self.s[3] = self.s[3].rotate_left(45);
        result
    }

    /// Uniform in `[0, 1)`.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

#[derive(Clone, Copy, Debug)]
struct Candidate {
    id: u32,
    logit: f32,
}

/// Turns logits into tokens, remembering recent tokens for the penalties.
#[derive(Clone, Debug)]
pub struct Sampler {
    config: SamplerConfig,
    rng: Rng,
    /// The most recent tokens, oldest first, at most `keep` of them.
    history: VecDeque<u32>,
    /// Tokens the repetition penalties look at.
    last_n: usize,
    /// Tokens DRY looks at (0 when DRY is off).
    dry_last_n: usize,
    /// Length of `history`: the larger of the two windows.
    keep: usize,
    /// Sorted ids of the DRY sequence breakers; `None` until the caller sets them.
    dry_breakers: Option<Vec<u32>>,
    /// Tokens that may never be chosen (end-of-generation tokens under `--ignore-eos`).
    banned: Vec<u32>,
    /// Scratch space reused between calls.
    candidates: Vec<Candidate>,
}

impl Sampler {
    /// `n_ctx` resolves `repeat_last_n = -1`.
    pub fn new(config: SamplerConfig, n_ctx: usize) -> Result<Sampler, SamplingError> {
        config.validate()?;
        let last_n = config.resolve_last_n(n_ctx);
        let dry_last_n = match config.dry_penalty_last_n {
            _ if !config.dry_active() => 0,
            n if n < 0 => n_ctx,
            n => n as usize,
        };
        Ok(Sampler {
            rng: Rng::new(config.seed),
            last_n,
            dry_last_n,
            keep: last_n.max(dry_last_n),
            dry_breakers: None,
            config,
            history: VecDeque::new(),
            banned: Vec::new(),
            candidates: Vec::new(),
        })
    }

    pub fn config(&self) -> &SamplerConfig {
        &self.config
    }

    /// Never choose these tokens (their logits are treated as -inf).
    pub fn set_banned(&mut self, tokens: Vec<u32>) {
        self.banned = tokens;
    }

    /// Record a token (from the prompt or generated) for the repetition penalties.
    pub fn accept(&mut self, token: u32) {
        if self.keep == 0 {
            return;
        }
        if self.history.len() == self.keep {
            self.history.pop_front();
        }
        self.history.push_back(token);
    }

    /// Whether DRY is on and still needs its breaker token ids ([`Sampler::set_dry_breakers`]).
    pub fn needs_dry_breakers(&self) -> bool {
        self.dry_last_n > 0 && self.dry_breakers.is_none()
    }

    /// The token ids DRY treats as sequence breakers (see [`crate::dry::breaker_tokens`]).
    pub fn set_dry_breakers(&mut self, mut ids: Vec<u32>) {
        ids.sort_unstable();
        ids.dedup();
        self.dry_breakers = Some(ids);
    }

    /// Forget the penalty history and restart the random sequence from the seed.
    pub fn reset(&mut self) {
        self.history.clear();
        self.rng = Rng::new(self.config.seed);
    }

    /// Choose the next token. Does not [`accept`](Sampler::accept) it.
    pub fn sample(&mut self, logits: &[f32], vocab_size: usize) -> Result<u32, SamplingError> {
        if logits.len() != vocab_size {
            return Err(SamplingError::WrongLength {
                got: logits.len(),
                expected: vocab_size,
            });
        }
        let mut cands = std::mem::take(&mut self.candidates);
        cands.clear();
        for (i, &logit) in logits.iter().enumerate() {
            if logit.is_nan() || logit == f32::INFINITY {
                self.candidates = cands;
                return Err(SamplingError::InvalidLogit {
                    token: i as u32,
                    value: logit,
                });
            }
            cands.push(Candidate {
                id: i as u32,
                logit,
            });
        }
        for &b in &self.banned {
            if let Some(c) = cands.get_mut(b as usize) {
                c.logit = f32::NEG_INFINITY;
            }
        }
        self.apply_penalties(&mut cands);
        self.apply_dry(&mut cands);
        let result = self.choose(&mut cands);
        self.candidates = cands;
        result
    }

    fn apply_penalties(&self, cands: &mut [Candidate]) {
        let c = &self.config;
        let active =
            c.repeat_penalty != 1.0 || c.presence_penalty != 0.0 || c.frequency_penalty != 0.0;
        if !active || self.history.is_empty() {
            return;
        }
        let mut counts: std::collections::HashMap<u32, u32> = std::collections::HashMap::new();
        let skip = self.history.len().saturating_sub(self.last_n);
        for &t in self.history.iter().skip(skip) {
            *counts.entry(t).or_insert(0) += 1;
        }
        for (&tok, &count) in &counts {
            let Some(cand) = cands.get_mut(tok as usize) else {
                continue;
            };
            if cand.logit <= 0.0 {
                cand.logit *= c.repeat_penalty;
            } else {
                cand.logit /= c.repeat_penalty;
            }
            cand.logit -= count as f32 * c.frequency_penalty + c.presence_penalty;
        }
    }

    fn apply_dry(&mut self, cands: &mut [Candidate]) {
        if self.dry_last_n == 0 {
            return;
        }
        let skip = self.history.len().saturating_sub(self.dry_last_n);
        let window: Vec<u32> = self.history.iter().skip(skip).copied().collect();
        let dry = crate::dry::Dry {
            multiplier: self.config.dry_multiplier,
            base: self.config.dry_base,
            allowed_length: self.config.dry_allowed_length as usize,
        };
        let breakers = self.dry_breakers.as_deref().unwrap_or(&[]);
        for (token, penalty) in dry.penalties(&window, breakers) {
            if let Some(c) = cands.get_mut(token as usize) {
                c.logit -= penalty;
            }
        }
    }

    fn choose(&mut self, cands: &mut Vec<Candidate>) -> Result<u32, SamplingError> {
        cands.retain(|c| c.logit > f32::NEG_INFINITY);
        if cands.is_empty() {
            return Err(SamplingError::NoCandidates);
        }
        let c = self.config.clone();
        if c.temperature <= 0.0 {
            // The first maximum wins, as llama.cpp's greedy pick does.
            let mut best = cands[0];
            for &cand in cands.iter().skip(1) {
                if cand.logit > best.logit {
                    best = cand;
                }
            }
            return Ok(best.id);
        }
        // Descending by logit; ties keep id order so results are deterministic (a total
        // order, so selecting the top k first keeps exactly the set a full sort would).
        let by_logit =
            |a: &Candidate, b: &Candidate| b.logit.total_cmp(&a.logit).then(a.id.cmp(&b.id));
        let k = c.top_k as usize;
        if k > 0 && k < cands.len() {
            // Sorting a 50k-262k vocabulary every token costs milliseconds, as much as a
            // small model's whole forward pass; selecting the k best first is linear.
            cands.select_nth_unstable_by(k - 1, by_logit);
            cands.truncate(k);
        }
        cands.sort_by(by_logit);
        if c.top_p < 1.0 {
            let probs = softmax(cands);
            let mut cum = 0.0f64;
            let mut keep = cands.len();
            for (i, p) in probs.iter().enumerate() {
                cum += *p;
                if cum >= c.top_p as f64 {
                    keep = i + 1;
                    break;
                }
            }
            cands.truncate(keep.max(1));
        }
        if c.min_p > 0.0 {
            // p_i >= min_p * p_max  <=>  logit_i >= logit_max + ln(min_p)
            let threshold = cands[0].logit + c.min_p.ln();
            let keep = cands.iter().take_while(|x| x.logit >= threshold).count();
            cands.truncate(keep.max(1));
        }
        for cand in cands.iter_mut() {
            cand.logit /= c.temperature;
        }
        let probs = softmax(cands);
        let r = self.rng.next_f64();
        let mut cum = 0.0f64;
        for (cand, p) in cands.iter().zip(&probs) {
            cum += p;
            if r < cum {
                return Ok(cand.id);
            }
        }
        // Rounding can leave `cum` a hair under 1: the last candidate takes the remainder.
        Ok(cands[cands.len() - 1].id)
    }
}

/// Probabilities of `cands` (which must be non-empty and sorted descending), in f64 so
/// long tails of tiny probabilities still add up.
fn softmax(cands: &[Candidate]) -> Vec<f64> {
    let max = cands.first().map_or(0.0, |c| c.logit) as f64;
    let mut probs: Vec<f64> = cands.iter().map(|c| (c.logit as f64 - max).exp()).collect();
    let sum: f64 = probs.iter().sum();
    for p in &mut probs {
        *p /= sum;
    }
    probs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sampler(config: SamplerConfig) -> Sampler {
        Sampler::new(config, 128).unwrap()
    }

    fn histogram(s: &mut Sampler, logits: &[f32], n: usize) -> Vec<usize> {
        let mut h = vec![0; logits.len()];
        for _ in 0..n {
            h[s.sample(logits, logits.len()).unwrap() as usize] += 1;
        }
        h
    }

    fn plain(temperature: f32) -> SamplerConfig {
        SamplerConfig {
            temperature,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
            ..Default::default()
        }
    }

    #[test]
    fn greedy_picks_first_maximum() {
        let mut s = sampler(SamplerConfig::greedy());
        assert_eq!(s.sample(&[0.1, 3.0, 3.0, -1.0], 4).unwrap(), 1);
        assert_eq!(s.sample(&[5.0, 3.0, 3.0, -1.0], 4).unwrap(), 0);
    }

    #[test]
    fn temperature_one_matches_softmax() {
        let logits = [0.0f32, (2.0f32).ln(), (3.0f32).ln(), (4.0f32).ln()];
        let mut s = sampler(plain(1.0));
        let n = 40_000;
        let h = histogram(&mut s, &logits, n);
        for (i, count) in h.iter().enumerate() {
            let expected = (i + 1) as f64 / 10.0;
            let got = *count as f64 / n as f64;
            assert!(
                (got - expected).abs() < 0.015,
                "token {i}: {got} vs {expected}"
            );
        }
    }

    #[test]
    fn low_temperature_sharpens() {
        let logits = [0.0f32, 1.0];
        let mut s = sampler(plain(0.1));
        let h = histogram(&mut s, &logits, 2000);
        assert!(h[1] > 1990, "{h:?}");
    }

    #[test]
    fn same_seed_same_tokens() {
        let logits: Vec<f32> = (0..50).map(|i| (i as f32 * 0.37).sin()).collect();
        let mut a = sampler(plain(1.0));
        let mut b = sampler(plain(1.0));
        let ta: Vec<u32> = (0..100).map(|_| a.sample(&logits, 50).unwrap()).collect();
        let tb: Vec<u32> = (0..100).map(|_| b.sample(&logits, 50).unwrap()).collect();
        assert_eq!(ta, tb);
        let mut c = sampler(SamplerConfig {
            seed: 99,
            ..plain(1.0)
        });
        let tc: Vec<u32> = (0..100).map(|_| c.sample(&logits, 50).unwrap()).collect();
        assert_ne!(ta, tc);
        a.reset();
        let again: Vec<u32> = (0..100).map(|_| a.sample(&logits, 50).unwrap()).collect();
        assert_eq!(ta, again);
    }

    #[test]
    fn top_k_limits_choices() {
        let logits = [1.0f32, 5.0, 4.0, 3.0, 2.0];
        let mut s = sampler(SamplerConfig {
            top_k: 2,
            ..plain(5.0)
        });
        let h = histogram(&mut s, &logits, 2000);
        assert_eq!(h[0] + h[3] + h[4], 0, "{h:?}");
        assert!(h[1] > 0 && h[2] > 0);
        // k larger than the vocabulary keeps everything.
        let mut s = sampler(SamplerConfig {
            top_k: 1000,
            ..plain(100.0)
        });
        let h = histogram(&mut s, &logits, 2000);
        assert!(h.iter().all(|&c| c > 0), "{h:?}");
    }

    #[test]
    fn top_p_edges() {
        let logits = [0.0f32, 1.0, 2.0];
        // p = 0 keeps only the best token.
        let mut s = sampler(SamplerConfig {
            top_p: 0.0,
            ..plain(10.0)
        });
        assert_eq!(histogram(&mut s, &logits, 500), vec![0, 0, 500]);
        // p = 1 keeps all.
        let mut s = sampler(SamplerConfig {
            top_p: 1.0,
            ..plain(10.0)
        });
        assert!(histogram(&mut s, &logits, 2000).iter().all(|&c| c > 0));
        // probabilities 0.5, 0.3, 0.2: p = 0.7 keeps the first two.
        let logits = [0.5f32.ln(), 0.3f32.ln(), 0.2f32.ln()];
        let mut s = sampler(SamplerConfig {
            top_p: 0.7,
            ..plain(1.0)
        });
        let h = histogram(&mut s, &logits, 2000);
        assert_eq!(h[2], 0);
        assert!(h[0] > 0 && h[1] > 0);
    }

    #[test]
    fn min_p_drops_unlikely() {
        // probabilities relative to the best: 1, 0.5, 0.04
        let logits = [0.0f32, 0.5f32.ln(), 0.04f32.ln()];
        let mut s = sampler(SamplerConfig {
            min_p: 0.05,
            ..plain(1.0)
        });
        let h = histogram(&mut s, &logits, 3000);
        assert_eq!(h[2], 0);
        assert!(h[1] > 0);
    }

    #[test]
    fn repetition_penalty_follows_llama_cpp() {
        // Token 0 positive logit gets divided, token 1 negative gets multiplied.
        let mut s = sampler(SamplerConfig {
            repeat_penalty: 2.0,
            ..SamplerConfig::greedy()
        });
        s.accept(0);
        // 3.0 / 2 = 1.5 < 2.0 -> token 2 wins.
        assert_eq!(s.sample(&[3.0, -1.0, 2.0], 3).unwrap(), 2);
        // Penalties only look at the last `repeat_last_n` tokens.
        let mut s = sampler(SamplerConfig {
            repeat_penalty: 2.0,
            repeat_last_n: 1,
            ..SamplerConfig::greedy()
        });
        s.accept(0);
        s.accept(2);
        assert_eq!(s.sample(&[3.0, -1.0, 2.0], 3).unwrap(), 0);
    }

    #[test]
    fn presence_and_frequency_penalties() {
        let mut s = sampler(SamplerConfig {
            frequency_penalty: 1.0,
            ..SamplerConfig::greedy()
        });
        s.accept(0);
        s.accept(0);
        // 3 - 2*1 = 1 < 2
        assert_eq!(s.sample(&[3.0, 0.0, 2.0], 3).unwrap(), 2);
        let mut s = sampler(SamplerConfig {
            presence_penalty: 0.5,
            ..SamplerConfig::greedy()
        });
        s.accept(0);
        s.accept(0);
        // 3 - 0.5 = 2.5 > 2: presence counts once.
        assert_eq!(s.sample(&[3.0, 0.0, 2.0], 3).unwrap(), 0);
    }

    #[test]
    fn masked_and_broken_logits() {
        let mut s = sampler(plain(1.0));
        let inf = f32::NEG_INFINITY;
        assert_eq!(s.sample(&[inf, inf], 2), Err(SamplingError::NoCandidates));
        assert!(matches!(
            s.sample(&[0.0, f32::NAN], 2),
            Err(SamplingError::InvalidLogit { token: 1, .. })
        ));
        assert!(matches!(
            s.sample(&[f32::INFINITY, 0.0], 2),
            Err(SamplingError::InvalidLogit { token: 0, .. })
        ));
        assert!(matches!(
            s.sample(&[0.0], 2),
            Err(SamplingError::WrongLength {
                got: 1,
                expected: 2
            })
        ));
        // -inf entries are never drawn.
        let h = histogram(&mut s, &[inf, 0.0, inf, 0.0], 500);
        assert_eq!(h[0] + h[2], 0);
        let mut g = sampler(SamplerConfig::greedy());
        assert_eq!(g.sample(&[inf, inf, -5.0], 3).unwrap(), 2);
    }

    #[test]
    fn banned_tokens_are_never_chosen() {
        let mut s = sampler(SamplerConfig::greedy());
        s.set_banned(vec![1]);
        assert_eq!(s.sample(&[0.0, 9.0, 1.0], 3).unwrap(), 2);
        s.set_banned(vec![0, 1, 2]);
        assert_eq!(
            s.sample(&[0.0, 9.0, 1.0], 3),
            Err(SamplingError::NoCandidates)
        );
    }

    #[test]
    fn bad_config_is_rejected() {
        assert!(Sampler::new(
            SamplerConfig {
                temperature: f32::NAN,
                ..Default::default()
            },
            8
        )
        .is_err());
        assert!(Sampler::new(
            SamplerConfig {
                repeat_penalty: 0.0,
                ..Default::default()
            },
            8
        )
        .is_err());
    }

    #[test]
    fn repeat_last_n_minus_one_means_context() {
        let c = SamplerConfig {
            repeat_last_n: -1,
            ..Default::default()
        };
        assert_eq!(c.resolve_last_n(512), 512);
    }
}
