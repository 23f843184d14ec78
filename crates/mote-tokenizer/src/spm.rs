//! SentencePiece-style merging: start from characters, repeatedly merge the adjacent pair
//! whose concatenation is the highest-scoring token (ties: leftmost first); pieces that are
//! not tokens fall back to `<0xXX>` byte tokens.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use crate::vocab::Vocab;

#[derive(Clone, Copy)]
struct Symbol {
    start: usize,
    len: usize,
    prev: Option<usize>,
    next: Option<usize>,
}

struct Bigram {
    score: f32,
    left: usize,
    right: usize,
    size: usize,
}

impl PartialEq for Bigram {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Bigram {}
impl PartialOrd for Bigram {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Bigram {
    /// Max-heap order: higher score first, then the lower left index.
    fn cmp(&self, other: &Self) -> Ordering {
        self.score
            .total_cmp(&other.score)
            .then_with(|| other.left.cmp(&self.left))
    }
}

/// Where a fragment may be cut into independently merged segments.
///
/// Merging is global over a fragment, but a merge can only join two symbols whose joined
/// text is a token. A cut just before a `▁` whose preceding character `c` is not `▁` is safe
/// when no token contains `c▁`: no symbol can then ever span the cut, so the segments merge
/// independently and in any order (ties between equal scores only order merges within a
/// segment, where relative positions are unchanged). Cutting at word starts keeps the heaps
/// small and lets repeated words reuse their ids.
pub(crate) struct Segmenter {
    /// Characters that some token has right before a `▁` (Gemma: `>` in `>▁</`).
    glued_before_space: Vec<char>,
}

impl Segmenter {
    pub(crate) fn new(vocab: &Vocab) -> Segmenter {
        let mut glued = Vec::new();
        for t in &vocab.texts {
            let mut prev = None;
            for c in t.chars() {
                if let Some(p) = prev {
                    if c == SPACE && p != SPACE && !glued.contains(&p) {
                        glued.push(p);
                    }
                }
                prev = Some(c);
            }
        }
        Segmenter {
            glued_before_space: glued,
        }
    }

    /// Splits `text` at every safe cut; the segments concatenate back to `text`.
    pub(crate) fn segments<'t>(&'t self, text: &'t str) -> impl Iterator<Item = &'t str> + 't {
        let glued = &self.glued_before_space;
        let mut rest = text;
        std::iter::from_fn(move || {
            if rest.is_empty() {
                return None;
            }
            let mut prev: Option<char> = None;
            let mut cut = rest.len();
            for (i, c) in rest.char_indices() {
                if c == SPACE && i > 0 {
                    if let Some(p) = prev {
                        if p != SPACE && !glued.contains(&p) {
                            cut = i;
                            break;
                        }
                    }
                }
                prev = Some(c);
            }
            let (head, tail) = rest.split_at(cut);
            rest = tail;
            Some(head)
        })
    }
}

const SPACE: char = '\u{2581}';

/// Tokenizes one space-escaped text fragment and appends the ids, segment by segment, with
/// repeated segments served from `cache` (ranges of earlier output).
pub(crate) fn encode_fragment<'t>(
    vocab: &Vocab,
    byte_tokens: &[Option<u32>; 256],
    segmenter: &'t Segmenter,
    text: &'t str,
    cache: &mut crate::fasthash::FastMap<&'t str, (usize, usize)>,
    out: &mut Vec<u32>,
) {
    for seg in segmenter.segments(text) {
        if let Some(&(at, len)) = cache.get(seg) {
            out.extend_from_within(at..at + len);
            continue;
        }
        let at = out.len();
        encode(vocab, byte_tokens, seg, out);
        cache.insert(seg, (at, out.len() - at));
    }
}

/// Tokenizes one (already space-escaped) text and appends the ids.
pub(crate) fn encode(
    vocab: &Vocab,
    byte_tokens: &[Option<u32>; 256],
    text: &str,
    out: &mut Vec<u32>,
) {
    let bytes = text.as_bytes();
    let mut symbols: Vec<Symbol> = Vec::with_capacity(text.len());
    for (i, (start, c)) in text.char_indices().enumerate() {
        symbols.push(Symbol {
            start,
            len: c.len_utf8(),
            prev: i.checked_sub(1),
            next: None,
        });
    }
    let n = symbols.len();
    for (i, s) in symbols.iter_mut().enumerate() {
        s.next = (i + 1 < n).then_some(i + 1);
    }

    let mut heap = BinaryHeap::with_capacity(n);
    let try_add = |heap: &mut BinaryHeap<Bigram>, symbols: &[Symbol], l: usize, r: usize| {
        let start = symbols[l].start;
        let size = symbols[l].len + symbols[r].len;
        if let Some(id) = vocab.id_of(&bytes[start..start + size]) {
            heap.push(Bigram {
                score: vocab.scores[id as usize],
                left: l,
                right: r,
                size,
            });
        }
    };
    for i in 1..n {
        try_add(&mut heap, &symbols, i - 1, i);
    }
    while let Some(b) = heap.pop() {
        let (l, r) = (b.left, b.right);
        if symbols[l].len == 0 || symbols[r].len == 0 || symbols[l].len + symbols[r].len != b.size {
            continue;
        }
        symbols[l].len += symbols[r].len;
        symbols[r].len = 0;
        let after = symbols[r].next;
        symbols[l].next = after;
        if let Some(a) = after {
            symbols[a].prev = Some(l);
        }
        if let Some(p) = symbols[l].prev {
            try_add(&mut heap, &symbols, p, l);
        }
        if let Some(a) = after {
            try_add(&mut heap, &symbols, l, a);
        }
    }

    let mut i = (n > 0).then_some(0);
    while let Some(idx) = i {
        let s = symbols[idx];
        let piece = &bytes[s.start..s.start + s.len];
        match vocab.id_of(piece) {
            Some(id) => out.push(id),
            // Every merged symbol is a token, so only a single unknown character gets here.
            None => out.extend(
                piece
                    .iter()
                    .filter_map(|&b| byte_tokens[b as usize].or(vocab.unk)),
            ),
        }
        i = s.next;
    }
}
