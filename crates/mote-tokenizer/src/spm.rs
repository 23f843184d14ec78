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

/// Tokenizes one (already space-escaped) text fragment and appends the ids.
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
