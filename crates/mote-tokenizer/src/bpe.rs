//! Byte-level BPE merging: within one pre-tokenized word, repeatedly merge the adjacent pair
//! with the lowest merge rank (ties: leftmost first), as llama.cpp does.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use crate::fasthash::FastMap;
use crate::vocab::Vocab;

/// Merge ranks keyed by `left ++ 0xFF ++ right` (0xFF never occurs in UTF-8, so the key is
/// unambiguous and one flat byte string serves as the hash key).
pub(crate) struct Merges {
    ranks: FastMap<Box<[u8]>, u32>,
}

impl Merges {
    /// `lines` are "left right" strings in rank order; the split is at the first space after
    /// the first character. A line without one is ignored; a repeated pair keeps its first
    /// (best) rank.
    pub(crate) fn new(lines: &[String]) -> Merges {
        let mut ranks = FastMap::default();
        ranks.reserve(lines.len());
        for (rank, line) in lines.iter().enumerate() {
            let Some(first_len) = line.chars().next().map(char::len_utf8) else {
                continue;
            };
            let Some(space) = line[first_len..].find(' ').map(|p| p + first_len) else {
                continue;
            };
            let key = merge_key(&line[..space], &line[space + 1..]);
            ranks
                .entry(key.into_boxed_slice())
                .or_insert(rank.min(u32::MAX as usize) as u32);
        }
        Merges { ranks }
    }

    pub(crate) fn len(&self) -> usize {
        self.ranks.len()
    }

    fn rank(&self, scratch: &mut Vec<u8>, left: &[u8], right: &[u8]) -> Option<u32> {
        scratch.clear();
        scratch.extend_from_slice(left);
        scratch.push(0xFF);
        scratch.extend_from_slice(right);
        self.ranks.get(scratch.as_slice()).copied()
    }
}

fn merge_key(left: &str, right: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(left.len() + right.len() + 1);
    k.extend_from_slice(left.as_bytes());
    k.push(0xFF);
    k.extend_from_slice(right.as_bytes());
    k
}

/// (rank, left index, right index, left length, right length).
type PairEntry = (u32, usize, usize, usize, usize);

#[derive(Clone, Copy)]
struct Symbol {
    start: usize,
    len: usize,
    prev: Option<usize>,
    next: Option<usize>,
}

/// Merges one byte-encoded word and appends its token ids.
pub(crate) fn encode_word(vocab: &Vocab, merges: &Merges, word: &str, out: &mut Vec<u32>) {
    let bytes = word.as_bytes();
    let mut symbols: Vec<Symbol> = Vec::with_capacity(word.len());
    for (i, (start, c)) in word.char_indices().enumerate() {
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

    // Heap entries: (rank, left index), plus the pair's lengths to spot stale entries
    // (symbols only grow, so unchanged lengths mean an unchanged pair).
    let mut heap: BinaryHeap<Reverse<PairEntry>> = BinaryHeap::new();
    let mut scratch = Vec::new();
    let text = |s: &Symbol| &bytes[s.start..s.start + s.len];
    let push_pair = |heap: &mut BinaryHeap<_>,
                     scratch: &mut Vec<u8>,
                     symbols: &[Symbol],
                     l: usize,
                     r: usize| {
        let (ls, rs) = (&symbols[l], &symbols[r]);
        if let Some(rank) = merges.rank(scratch, text(ls), text(rs)) {
            heap.push(Reverse((rank, l, r, ls.len, rs.len)));
        }
    };
    for i in 1..n {
        push_pair(&mut heap, &mut scratch, &symbols, i - 1, i);
    }
    while let Some(Reverse((_, l, r, llen, rlen))) = heap.pop() {
        if symbols[l].len == 0
            || symbols[r].len == 0
            || symbols[l].len != llen
            || symbols[r].len != rlen
        {
            continue;
        }
        symbols[l].len += rlen;
        symbols[r].len = 0;
        let after = symbols[r].next;
        symbols[l].next = after;
        if let Some(a) = after {
            symbols[a].prev = Some(l);
        }
        if let Some(p) = symbols[l].prev {
            push_pair(&mut heap, &mut scratch, &symbols, p, l);
        }
        if let Some(a) = after {
            push_pair(&mut heap, &mut scratch, &symbols, l, a);
        }
    }

    for s in symbols.iter().filter(|s| s.len > 0) {
        let piece = text(s);
        match vocab.id_of(piece) {
            Some(id) => out.push(id),
            // No token for the merged text: fall back to single bytes of the encoded text,
            // dropping any that have no token either (llama.cpp does the same).
            None => out.extend(
                piece
                    .iter()
                    .filter_map(|b| vocab.id_of(std::slice::from_ref(b))),
            ),
        }
    }
}
