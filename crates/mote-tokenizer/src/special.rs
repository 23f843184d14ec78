//! Special-token partitioning: control and user-defined tokens written out in the text are
//! cut out as whole tokens before the rest is tokenized.
//!
//! llama.cpp processes the special tokens one at a time, longest text first, splitting every
//! remaining text fragment at each (non-overlapping, leftmost-first) occurrence. That order is
//! observable (a long token wins over a shorter one that starts earlier), so it is kept here.
//! To avoid scanning the text once per special token (Gemma has thousands), one Aho-Corasick
//! pass first finds which special tokens occur in the text at all; only those are processed.

use aho_corasick::AhoCorasick;

use crate::vocab::{attr, Vocab};

pub(crate) struct SpecialMatcher {
    /// Special token ids, longest text first (the processing order).
    ordered: Vec<u32>,
    /// Pattern `i` is the text of `ordered[i]`.
    automaton: Option<AhoCorasick>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fragment {
    /// A byte range of the input still to be tokenized.
    Text(usize, usize),
    Token(u32),
}

impl SpecialMatcher {
    pub(crate) fn new(vocab: &Vocab) -> SpecialMatcher {
        let ordered = vocab.special_tokens();
        let patterns: Vec<&[u8]> = ordered
            .iter()
            .map(|&id| vocab.texts[id as usize].as_bytes())
            .collect();
        // Building can only fail on absurd pattern sets; then every text is left unsplit,
        // which is a visible, non-crashing degradation.
        let automaton = if patterns.is_empty() {
            None
        } else {
            AhoCorasick::new(&patterns).ok()
        };
        SpecialMatcher { ordered, automaton }
    }

    pub(crate) fn partition(
        &self,
        vocab: &Vocab,
        text: &str,
        parse_special: bool,
    ) -> Vec<Fragment> {
        let mut fragments = vec![Fragment::Text(0, text.len())];
        if text.is_empty() {
            return Vec::new();
        }
        let Some(ac) = &self.automaton else {
            return fragments;
        };
        let mut present = vec![false; self.ordered.len()];
        let mut any = false;
        for m in ac.find_overlapping_iter(text.as_bytes()) {
            present[m.pattern().as_usize()] = true;
            any = true;
        }
        if !any {
            return fragments;
        }
        let bytes = text.as_bytes();
        for (i, &id) in self.ordered.iter().enumerate() {
            if !present[i] {
                continue;
            }
            let a = vocab.attrs[id as usize];
            // Without parse_special only user-defined tokens are cut out.
            if !parse_special && a & (attr::CONTROL | attr::UNKNOWN) != 0 {
                continue;
            }
            let pat: &str = &vocab.texts[id as usize];
            let mut next = Vec::with_capacity(fragments.len() + 2);
            for f in fragments {
                let Fragment::Text(mut start, end) = f else {
                    next.push(f);
                    continue;
                };
                while let Some(rel) = text[start..end].find(pat) {
                    let at = start + rel;
                    let mut left_end = at;
                    if a & attr::LSTRIP != 0 {
                        while left_end > start && bytes[left_end - 1].is_ascii_whitespace_c() {
                            left_end -= 1;
                        }
                    }
                    if left_end > start {
                        next.push(Fragment::Text(start, left_end));
                    }
                    next.push(Fragment::Token(id));
                    start = at + pat.len();
                    if a & attr::RSTRIP != 0 {
                        while start < end && bytes[start].is_ascii_whitespace_c() {
                            start += 1;
                        }
                    }
                }
                if start < end {
                    next.push(Fragment::Text(start, end));
                }
            }
            fragments = next;
        }
        fragments
    }
}

trait CSpace {
    /// C's `isspace` in the "C" locale: space, \t, \n, \v, \f, \r.
    fn is_ascii_whitespace_c(&self) -> bool;
}

impl CSpace for u8 {
    fn is_ascii_whitespace_c(&self) -> bool {
        matches!(self, b' ' | b'\t' | b'\n' | 0x0B | 0x0C | b'\r')
    }
}
