//! llama.cpp's DRY ("Don't Repeat Yourself") penalty, and a detector of generations
//! stuck in a cycle.
//!
//! **DRY** (same semantics and defaults as llama.cpp's `--dry-*` flags): when the last
//! tokens repeat an earlier stretch of the context of length `n >= allowed_length`, the
//! token that followed that earlier stretch (the one that would extend the repeat) loses
//! `multiplier * base^(n - allowed_length)` from its logit. Matches never reach back past
//! a sequence breaker (a token whose text contains one of the breaker strings, `\n`, `:`,
//! `"` and `*` by default), and breakers themselves are never penalized. The longest
//! match for every earlier position comes from one pass of the Z-algorithm over the
//! reversed window, so the cost is linear in `penalty_last_n`.
//!
//! **Cycles**: [`CycleDetector`] says when the last tokens of a generation are one short
//! block repeated over and over ("-fashion-bubble-of-fashion-bubble-of…"), so the loop
//! can end with the documented finish reason `repetition` instead of running to the
//! context limit.

use std::collections::HashMap;

use crate::generate::TokenCodec;

/// llama.cpp's default `dry_sequence_breakers`.
pub const DEFAULT_BREAKERS: [&str; 4] = ["\n", ":", "\"", "*"];

/// Ids of the tokens whose text contains one of `breakers`: llama.cpp's single-token
/// sequence breakers (for one-character breakers, the defaults, this is all of them).
pub fn breaker_tokens(codec: &impl TokenCodec, breakers: &[String]) -> Vec<u32> {
    let wanted: Vec<&[u8]> = breakers
        .iter()
        .map(|b| b.as_bytes())
        .filter(|b| !b.is_empty())
        .collect();
    if wanted.is_empty() {
        return Vec::new();
    }
    (0..codec.vocab_size() as u32)
        .filter(|&id| {
            let bytes = codec.token_bytes(id);
            wanted
                .iter()
                .any(|w| bytes.windows(w.len()).any(|x| x == *w))
        })
        .collect()
}

/// DRY settings of one sampler.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Dry {
    pub multiplier: f32,
    pub base: f32,
    pub allowed_length: usize,
}

impl Dry {
    /// The logit penalty of every token that would extend a repeat of `window` (oldest
    /// first); `breakers` is sorted.
    pub fn penalties(&self, window: &[u32], breakers: &[u32]) -> HashMap<u32, f32> {
        let mut out = HashMap::new();
        let n = window.len();
        if self.multiplier == 0.0 || n <= self.allowed_length {
            return out;
        }
        let is_breaker = |t: u32| breakers.binary_search(&t).is_ok();
        // The repeat may not reach back past the most recent breaker.
        let rep_limit = window
            .iter()
            .rev()
            .position(|&t| is_breaker(t))
            .unwrap_or(n);
        if rep_limit < self.allowed_length {
            return out;
        }
        // rev[i] is the i-th token from the end; z[k] is the longest common prefix of rev
        // and rev[k..]: the length of the match between the context's tail and the
        // stretch ending k tokens earlier, which was followed by rev[k - 1].
        let rev: Vec<u32> = window.iter().rev().copied().collect();
        let z = z_function(&rev);
        let mut longest: HashMap<u32, usize> = HashMap::new();
        for k in 1..n {
            let len = z[k].min(rep_limit);
            if len >= self.allowed_length {
                let e = longest.entry(rev[k - 1]).or_insert(0);
                *e = (*e).max(len);
            }
        }
        // Keep base^exponent finite, as llama.cpp does.
        let max_exponent = if self.base > 1.000_001 {
            (88.722_84 / self.base.ln()) as usize
        } else {
            0
        };
        for (token, len) in longest {
            if is_breaker(token) {
                continue;
            }
            let mut exp = len - self.allowed_length;
            if max_exponent > 0 {
                exp = exp.min(max_exponent);
            }
            out.insert(token, self.multiplier * self.base.powi(exp as i32));
        }
        out
    }
}

/// `z[k]`: length of the longest common prefix of `s` and `s[k..]` (`z[0] = 0`).
fn z_function(s: &[u32]) -> Vec<usize> {
    let n = s.len();
    let mut z = vec![0usize; n];
    let (mut l, mut r) = (0usize, 0usize); // [l, r) is the rightmost match found
    for k in 1..n {
        let mut len = if k < r { z[k - l].min(r - k) } else { 0 };
        while k + len < n && s[len] == s[k + len] {
            len += 1;
        }
        z[k] = len;
        if k + len > r {
            (l, r) = (k, k + len);
        }
    }
    z
}

/// Longest block a [`CycleDetector`] looks for.
pub const MAX_CYCLE: usize = 32;
/// Tokens of repetition that end a generation: at least this many, and at least
/// [`CYCLE_REPEATS`] copies of the block.
pub const MIN_CYCLE_SPAN: usize = 64;
pub const CYCLE_REPEATS: usize = 8;

/// Notices when the last generated tokens are one block of up to [`MAX_CYCLE`] tokens
/// repeated back to back over at least `max(MIN_CYCLE_SPAN, CYCLE_REPEATS × block)`
/// tokens (64 tokens of one token repeated; 13 copies of a 5-token phrase; 8 of a
/// 32-token sentence). Constant work per token.
#[derive(Clone, Debug)]
pub struct CycleDetector {
    /// The last `MAX_CYCLE` tokens, as a ring.
    recent: [u32; MAX_CYCLE],
    seen: usize,
    /// `runs[p - 1]`: how many tokens in a row equalled the token `p` before them.
    runs: [usize; MAX_CYCLE],
}

impl Default for CycleDetector {
    fn default() -> Self {
        CycleDetector {
            recent: [0; MAX_CYCLE],
            seen: 0,
            runs: [0; MAX_CYCLE],
        }
    }
}

impl CycleDetector {
    /// Records a generated token; returns the block length when the generation is stuck.
    pub fn push(&mut self, token: u32) -> Option<usize> {
        let mut found = None;
        for p in 1..=MAX_CYCLE {
            let same = self.seen >= p && self.recent[(self.seen - p) % MAX_CYCLE] == token;
            let run = &mut self.runs[p - 1];
            *run = if same { *run + 1 } else { 0 };
            // A run of r equalities means the last r + p tokens have period p.
            if found.is_none() && *run + p >= MIN_CYCLE_SPAN.max(CYCLE_REPEATS * p) {
                found = Some(p);
            }
        }
        self.recent[self.seen % MAX_CYCLE] = token;
        self.seen += 1;
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dry() -> Dry {
        Dry {
            multiplier: 0.8,
            base: 1.75,
            allowed_length: 2,
        }
    }

    /// The longest match for each next token, by brute force.
    fn brute(window: &[u32], breakers: &[u32]) -> HashMap<u32, usize> {
        let n = window.len();
        let limit = window
            .iter()
            .rev()
            .position(|t| breakers.contains(t))
            .unwrap_or(n);
        let mut best = HashMap::new();
        for end in 0..n - 1 {
            // The stretch window[..=end] against the tail window[..n].
            let mut len = 0;
            while len <= end && window[end - len] == window[n - 1 - len] {
                len += 1;
            }
            let len = len.min(limit);
            if len >= 2 && !breakers.contains(&window[end + 1]) {
                let e = best.entry(window[end + 1]).or_insert(0);
                *e = len.max(*e);
            }
        }
        best
    }

    #[test]
    fn repeat_is_penalized_by_its_length() {
        // "a b c d ... a b c": the next token would be d, extending a repeat of 3.
        let w = [1, 2, 3, 4, 9, 1, 2, 3];
        let p = dry().penalties(&w, &[]);
        assert_eq!(p.len(), 1);
        assert!((p[&4] - 0.8 * 1.75f32).abs() < 1e-6, "{p:?}");
        // A repeat shorter than allowed_length is free.
        assert!(dry().penalties(&[1, 2, 9, 1], &[]).is_empty());
    }

    #[test]
    fn breakers_stop_matches_and_are_never_penalized() {
        // The tail 1 2 3 repeats; with 2 a breaker the repeat is cut to the one token
        // after it, below the allowed length.
        let w = [1, 2, 3, 4, 1, 2, 3];
        assert_eq!(dry().penalties(&w, &[]).len(), 1);
        assert!(dry().penalties(&w, &[2]).is_empty());
        // The token that would follow is a breaker: not penalized.
        let w = [1, 2, 5, 1, 2];
        assert!(dry().penalties(&w, &[5]).is_empty());
    }

    #[test]
    fn matches_brute_force() {
        let mut rng = crate::sampling::Rng::new(7);
        for round in 0..300 {
            let n = 2 + (rng.next_u64() % 60) as usize;
            let alphabet = 2 + round % 5;
            let w: Vec<u32> = (0..n)
                .map(|_| (rng.next_u64() % alphabet as u64) as u32)
                .collect();
            let breakers: Vec<u32> = if round % 3 == 0 { vec![0] } else { vec![] };
            let got = dry().penalties(&w, &breakers);
            let want = brute(&w, &breakers);
            assert_eq!(got.len(), want.len(), "{w:?}");
            for (t, len) in want {
                let exp = 0.8 * 1.75f32.powi(len as i32 - 2);
                assert!((got[&t] - exp).abs() < 1e-4 * exp, "{w:?} {t}");
            }
        }
    }

    #[test]
    fn z_function_small() {
        assert_eq!(z_function(&[1, 1, 2, 1, 1]), vec![0, 1, 0, 2, 1]);
    }

    #[test]
    fn cycles_are_found_and_prose_is_not() {
        let mut d = CycleDetector::default();
        let hits: Vec<usize> = (0..200u32).filter_map(|_| d.push(7)).collect();
        assert_eq!(hits.first(), Some(&1));
        let mut d = CycleDetector::default();
        let stuck =
            (0..200u32).position(|i| d.push([10, 11, 12, 13, 14][i as usize % 5]).is_some());
        assert_eq!(stuck, Some(63));
        let mut d = CycleDetector::default();
        // Distinct tokens with an occasional repeat never trigger.
        assert!((0..5000u32).all(|i| d.push(i % 997 + (i / 997) * 3).is_none()));
        // A 40-token block is longer than MAX_CYCLE: not reported.
        let mut d = CycleDetector::default();
        assert!((0..400u32).all(|i| d.push(i % 40).is_none()));
    }
}
