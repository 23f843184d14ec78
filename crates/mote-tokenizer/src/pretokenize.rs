//! Pre-tokenizers for byte-level BPE: split text into words before merging.
//!
//! Each `tokenizer.ggml.pre` name selects a list of passes. A pass refines every piece of the
//! previous pass independently (a match never crosses a piece boundary), and the text between
//! matches survives as pieces of its own — that is how llama.cpp chains several regexes.
//! The word patterns (GPT-2's and the Llama-3/Qwen2 family's) are hand-written scanners that
//! reproduce llama.cpp's own splitters exactly, including where those differ in small ways
//! from a true regex engine; the helper passes (`\p{N}`, `\p{N}+`, punctuation runs, digit
//! triples) are trivial character-class scans.

use crate::unicode::{flags, LETTER, NUMBER, PUNCTUATION, VALID, WHITESPACE};

/// A pre-tokenizer family: the names in `tokenizer.ggml.pre` that share one split rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PreTokenizer {
    /// llama.cpp's fallback: punctuation runs, GPT-2 words, digit runs, digit triples.
    Default,
    /// GPT-2's pattern alone (`gpt-2`, `phi-2`, `mpt`, `olmo`, ...).
    Gpt2,
    /// Each digit alone, then GPT-2 words (`smollm`, `starcoder`, `refact`, ...).
    StarCoder,
    /// Llama-3's pattern: case-insensitive contractions, digit groups of up to three.
    Llama3,
    /// Qwen2's pattern: as Llama-3 but every digit alone.
    Qwen2,
}

impl PreTokenizer {
    /// Maps a `tokenizer.ggml.pre` value to its family; `None` for names this crate does not
    /// implement (the caller reports them — guessing a split rule silently changes ids).
    pub fn from_name(name: &str) -> Option<PreTokenizer> {
        Some(match name {
            "default" => PreTokenizer::Default,
            "gpt-2" | "phi-2" | "jina-es" | "jina-de" | "gigachat" | "jina-v2-es"
            | "jina-v2-de" | "a.x-4.0" | "mellum" | "modern-bert" | "jina-v1-en"
            | "jina-v2-code" | "roberta-bpe" | "mpt" | "olmo" | "jais" | "trillion"
            | "granite-docling" | "exaone4" => PreTokenizer::Gpt2,
            "smollm" | "starcoder" | "refact" | "command-r" | "codeshell" | "exaone"
            | "minerva-7b" | "mellum2" => PreTokenizer::StarCoder,
            "llama3" | "llama-v3" | "llama-bpe" | "falcon3" | "falcon-h1" | "pixtral"
            | "midm-2.0" | "lfm2" | "jina-v5-nano" | "dbrx" | "smaug-bpe" => PreTokenizer::Llama3,
            "qwen2" | "deepseek-r1-qwen" | "kormo" | "f2llmv2" | "stablelm2" | "megrez"
            | "hunyuan" | "solar-open" => PreTokenizer::Qwen2,
            _ => return None,
        })
    }

    fn passes(self) -> &'static [Pass] {
        match self {
            PreTokenizer::Default => &[
                Pass::PunctuationRuns,
                Pass::Gpt2Words,
                Pass::NumberRuns,
                Pass::AsciiDigitTriples,
            ],
            PreTokenizer::Gpt2 => &[Pass::Gpt2Words],
            PreTokenizer::StarCoder => &[Pass::EachNumber, Pass::Gpt2Words],
            PreTokenizer::Llama3 => &[Pass::Llama3Words { digit_group: 3 }],
            PreTokenizer::Qwen2 => &[Pass::Llama3Words { digit_group: 1 }],
        }
    }

    /// Splits `text` into words; concatenated, the words give back `text`.
    pub fn split(self, text: &str) -> Vec<&str> {
        let mut cpts = Vec::with_capacity(text.len());
        let mut byte_at = Vec::with_capacity(text.len() + 1);
        for (i, c) in text.char_indices() {
            cpts.push(c);
            byte_at.push(i);
        }
        byte_at.push(text.len());
        let chars = Chars {
            flags: cpts.iter().map(|&c| flags(c)).collect(),
            cpts,
        };

        let mut pieces = vec![(0, chars.cpts.len())];
        for pass in self.passes() {
            let mut next = Vec::with_capacity(pieces.len() * 2);
            for &(start, end) in &pieces {
                let mut out = Out {
                    pieces: &mut next,
                    prev: start,
                };
                pass.run(&chars, start, end, &mut out);
                out.emit(end);
            }
            pieces = next;
        }
        pieces
            .into_iter()
            .filter(|(s, e)| e > s)
            .map(|(s, e)| &text[byte_at[s]..byte_at[e]])
            .collect()
    }
}

struct Chars {
    cpts: Vec<char>,
    flags: Vec<u8>,
}

/// Collects piece boundaries: `emit(end)` closes the piece that started at the last end.
struct Out<'a> {
    pieces: &'a mut Vec<(usize, usize)>,
    prev: usize,
}

impl Out<'_> {
    fn emit(&mut self, end: usize) {
        if end > self.prev {
            self.pieces.push((self.prev, end));
        }
        self.prev = end;
    }
}

#[derive(Clone, Copy, Debug)]
enum Pass {
    /// `\p{N}`: every number character is a piece of its own.
    EachNumber,
    /// `\p{N}+`.
    NumberRuns,
    /// `[\p{P}\$\+<=>\^~\|]+`.
    PunctuationRuns,
    /// `[0-9][0-9][0-9]`, matched left to right.
    AsciiDigitTriples,
    /// `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`.
    Gpt2Words,
    /// `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,G}|
    ///  ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`.
    Llama3Words { digit_group: usize },
}

/// One piece `[start, end)` of the text, read with out-of-piece positions as "nothing".
struct Window<'a> {
    chars: &'a Chars,
    start: usize,
    end: usize,
}

impl Window<'_> {
    fn cpt(&self, pos: usize) -> Option<char> {
        (self.start <= pos && pos < self.end).then(|| self.chars.cpts[pos])
    }
    fn fl(&self, pos: usize) -> u8 {
        if self.start <= pos && pos < self.end {
            self.chars.flags[pos]
        } else {
            0
        }
    }
    fn is_cr_or_lf(&self, pos: usize) -> bool {
        matches!(self.cpt(pos), Some('\r' | '\n'))
    }
}

/// ASCII members of the default pre-tokenizer's punctuation class: `\p{P}` plus `$+<=>^~|`
/// (every ASCII symbol except the backtick).
fn is_default_punct(c: char, f: u8) -> bool {
    if c.is_ascii() {
        c.is_ascii_punctuation() && c != '`'
    } else {
        f & PUNCTUATION != 0
    }
}

impl Pass {
    fn run(self, chars: &Chars, start: usize, end: usize, out: &mut Out) {
        let w = Window { chars, start, end };
        match self {
            Pass::EachNumber => {
                for pos in start..end {
                    if w.fl(pos) & NUMBER != 0 {
                        out.emit(pos);
                        out.emit(pos + 1);
                    }
                }
            }
            Pass::NumberRuns => runs(&w, out, |_, f| f & NUMBER != 0),
            Pass::PunctuationRuns => runs(&w, out, is_default_punct),
            Pass::AsciiDigitTriples => {
                let mut pos = start;
                while pos + 3 <= end {
                    if (pos..pos + 3).all(|p| chars.cpts[p].is_ascii_digit()) {
                        out.emit(pos);
                        out.emit(pos + 3);
                        pos += 3;
                    } else {
                        pos += 1;
                    }
                }
            }
            Pass::Gpt2Words => gpt2_words(&w, out),
            Pass::Llama3Words { digit_group } => llama3_words(&w, out, digit_group),
        }
    }
}

/// Maximal runs of characters satisfying `pred` become pieces (and so do the gaps).
fn runs(w: &Window, out: &mut Out, pred: impl Fn(char, u8) -> bool) {
    let mut pos = w.start;
    while pos < w.end {
        if pred(w.chars.cpts[pos], w.chars.flags[pos]) {
            out.emit(pos);
            while pos < w.end && pred(w.chars.cpts[pos], w.chars.flags[pos]) {
                pos += 1;
            }
            out.emit(pos);
        } else {
            pos += 1;
        }
    }
}

/// Length of a contraction (`'s`, `'t`, `'m`, `'d`, `'re`, `'ve`, `'ll`) at `pos`, if any.
fn contraction_len(w: &Window, pos: usize, fold_case: bool) -> Option<usize> {
    if w.cpt(pos) != Some('\'') || pos + 1 >= w.end {
        return None;
    }
    let lower = |p: usize| {
        w.cpt(p)
            .map(|c| if fold_case { c.to_ascii_lowercase() } else { c })
    };
    let c1 = lower(pos + 1)?;
    if matches!(c1, 's' | 't' | 'm' | 'd') {
        return Some(2);
    }
    if pos + 2 < w.end {
        let c2 = lower(pos + 2)?;
        if matches!((c1, c2), ('r', 'e') | ('v', 'e') | ('l', 'l')) {
            return Some(3);
        }
    }
    None
}

/// Whitespace handling shared by both word scanners: `\s+(?!\S)` (a run followed by a
/// non-space gives up its last character to the next word) or plain `\s+`.
fn whitespace_run(w: &Window, pos: usize) -> usize {
    let mut n = 0;
    while w.fl(pos + n) & WHITESPACE != 0 {
        n += 1;
    }
    if n > 1 && w.cpt(pos + n).is_some() {
        pos + n - 1
    } else if n > 0 {
        pos + n
    } else {
        pos + 1
    }
}

fn gpt2_words(w: &Window, out: &mut Out) {
    let not_word = WHITESPACE | LETTER | NUMBER;
    let mut pos = w.start;
    while pos < w.end {
        if let Some(n) = contraction_len(w, pos, false) {
            pos += n;
            out.emit(pos);
            continue;
        }
        let is_space = w.cpt(pos) == Some(' ');
        // A single leading space joins the word that follows it.
        let head = if is_space { w.fl(pos + 1) } else { w.fl(pos) };
        let class = if head & LETTER != 0 {
            Some(LETTER)
        } else if head & NUMBER != 0 {
            Some(NUMBER)
        } else {
            None
        };
        if let Some(class) = class {
            pos += usize::from(is_space);
            while w.fl(pos) & class != 0 {
                pos += 1;
            }
            out.emit(pos);
            continue;
        }
        if head & not_word == 0 && head & VALID != 0 {
            pos += usize::from(is_space);
            while w.fl(pos) & not_word == 0 && w.fl(pos) & VALID != 0 {
                pos += 1;
            }
            out.emit(pos);
            continue;
        }
        pos = whitespace_run(w, pos);
        out.emit(pos);
    }
}

fn llama3_words(w: &Window, out: &mut Out, digit_group: usize) {
    let not_word = WHITESPACE | LETTER | NUMBER;
    let mut pos = w.start;
    while pos < w.end {
        if let Some(n) = contraction_len(w, pos, true) {
            pos += n;
            out.emit(pos);
            continue;
        }
        let f = w.fl(pos);
        // [^\r\n\p{L}\p{N}]?\p{L}+
        if !w.is_cr_or_lf(pos)
            && f & NUMBER == 0
            && (f & LETTER != 0 || w.fl(pos + 1) & LETTER != 0)
        {
            pos += 1;
            while w.fl(pos) & LETTER != 0 {
                pos += 1;
            }
            out.emit(pos);
            continue;
        }
        // \p{N}{1,G}
        if f & NUMBER != 0 {
            let mut group_start = pos;
            while w.fl(pos) & NUMBER != 0 {
                pos += 1;
                if pos - group_start >= digit_group {
                    out.emit(pos);
                    group_start = pos;
                }
            }
            out.emit(pos);
            continue;
        }
        // ' ?[^\s\p{L}\p{N}]+[\r\n]*'
        let is_space = w.cpt(pos) == Some(' ');
        let head = if is_space { w.fl(pos + 1) } else { f };
        if head & not_word == 0 && f & VALID != 0 {
            pos += usize::from(is_space);
            while w.fl(pos) & not_word == 0 && w.fl(pos) & VALID != 0 {
                pos += 1;
            }
            while w.is_cr_or_lf(pos) {
                pos += 1;
            }
            out.emit(pos);
            continue;
        }
        // \s*[\r\n]+ : whitespace up to and including its last line break
        let mut n = 0;
        let mut after_last_break = None;
        while w.fl(pos + n) & WHITESPACE != 0 {
            if w.is_cr_or_lf(pos + n) {
                after_last_break = Some(pos + n + 1);
            }
            n += 1;
        }
        if let Some(e) = after_last_break {
            pos = e;
            out.emit(pos);
            continue;
        }
        pos = whitespace_run(w, pos);
        out.emit(pos);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(p: PreTokenizer, s: &str) -> Vec<&str> {
        let words = p.split(s);
        assert_eq!(words.concat(), s);
        words
    }

    #[test]
    fn gpt2_basic() {
        let p = PreTokenizer::Gpt2;
        assert_eq!(split(p, "Hello world"), ["Hello", " world"]);
        assert_eq!(split(p, "it's  ok"), ["it", "'s", " ", " ok"]);
        assert_eq!(split(p, "a  "), ["a", "  "]);
        assert_eq!(split(p, "x 123!!"), ["x", " 123", "!!"]);
    }

    #[test]
    fn starcoder_isolates_digits() {
        let p = PreTokenizer::StarCoder;
        assert_eq!(split(p, "a 123"), ["a", " ", "1", "2", "3"]);
    }

    #[test]
    fn llama3_and_qwen2() {
        let p = PreTokenizer::Llama3;
        assert_eq!(split(p, "1234567"), ["123", "456", "7"]);
        assert_eq!(
            split(p, "I'M here\n\n x"),
            ["I", "'M", " here", "\n\n", " x"]
        );
        assert_eq!(split(p, "(hi)"), ["(hi", ")"]);
        let q = PreTokenizer::Qwen2;
        assert_eq!(split(q, "x 12"), ["x", " ", "1", "2"]);
        assert_eq!(split(q, "a;\n\nb"), ["a", ";\n\n", "b"]);
    }

    #[test]
    fn default_passes() {
        let p = PreTokenizer::Default;
        assert_eq!(split(p, "a+b 12345"), ["a", "+", "b", " ", "123", "45"]);
    }

    #[test]
    fn empty_and_names() {
        assert!(PreTokenizer::Qwen2.split("").is_empty());
        assert_eq!(
            PreTokenizer::from_name("smollm"),
            Some(PreTokenizer::StarCoder)
        );
        assert_eq!(PreTokenizer::from_name("nope"), None);
    }
}
