//! Per-codepoint character classes used by the pre-tokenizers, and GPT-2's byte ↔ char map.
//!
//! The classes are Unicode general categories (`\p{L}`, `\p{N}`, `\p{P}`, `\p{M}`) and the
//! White_Space property, the same facts llama.cpp's splitters consult. The ranges come from
//! `regex-syntax`'s Unicode tables and are flattened once into a byte-per-codepoint table so
//! the splitters pay one array load per character.

use std::sync::OnceLock;

use regex_syntax::hir::{Class, HirKind};

pub(crate) const LETTER: u8 = 1 << 0;
pub(crate) const NUMBER: u8 = 1 << 1;
pub(crate) const WHITESPACE: u8 = 1 << 2;
pub(crate) const PUNCTUATION: u8 = 1 << 3;
pub(crate) const MARK: u8 = 1 << 4;
/// Set for every real codepoint; positions outside the piece being split read as 0, which is
/// how the splitters tell "end of piece" from "a character in no class".
pub(crate) const VALID: u8 = 1 << 7;

const N_CODEPOINTS: usize = 0x11_0000;

fn table() -> &'static [u8] {
    static TABLE: OnceLock<Box<[u8]>> = OnceLock::new();
    TABLE.get_or_init(build_table)
}

fn build_table() -> Box<[u8]> {
    let mut t = vec![VALID; N_CODEPOINTS];
    for (pattern, bit) in [
        (r"\p{L}", LETTER),
        (r"\p{N}", NUMBER),
        (r"\p{White_Space}", WHITESPACE),
        (r"\p{P}", PUNCTUATION),
        (r"\p{M}", MARK),
    ] {
        // The patterns are constants, so a parse failure would be a build problem; the
        // unit tests below check every class is non-empty.
        let Ok(hir) = regex_syntax::Parser::new().parse(pattern) else {
            continue;
        };
        if let HirKind::Class(Class::Unicode(class)) = hir.kind() {
            for r in class.ranges() {
                let (lo, hi) = (r.start() as usize, r.end() as usize);
                for slot in &mut t[lo..=hi.min(N_CODEPOINTS - 1)] {
                    *slot |= bit;
                }
            }
        }
    }
    t.into_boxed_slice()
}

/// The class bits of `c` (always includes [`VALID`]).
#[inline]
pub(crate) fn flags(c: char) -> u8 {
    table()[c as usize]
}

/// Builds the class table now rather than on the first encode.
pub(crate) fn warm_up() {
    let _ = table();
}

/// GPT-2's reversible byte → printable-char map: printable Latin-1 bytes map to themselves,
/// the other 68 bytes to U+0100.. in byte order.
pub(crate) fn byte_to_char(b: u8) -> char {
    BYTE_CHARS.get_or_init(build_byte_chars)[b as usize]
}

/// Inverse of [`byte_to_char`].
pub(crate) fn char_to_byte(c: char) -> Option<u8> {
    let inverse = CHAR_BYTES.get_or_init(|| {
        let mut inv = [None; 0x100 + 68];
        for b in 0..=255u8 {
            let cp = byte_to_char(b) as usize;
            if let Some(slot) = inv.get_mut(cp) {
                *slot = Some(b);
            }
        }
        inv
    });
    inverse.get(c as usize).copied().flatten()
}

static CHAR_BYTES: OnceLock<[Option<u8>; 0x100 + 68]> = OnceLock::new();
static BYTE_CHARS: OnceLock<[char; 256]> = OnceLock::new();

fn is_self_mapped(cp: u32) -> bool {
    (0x21..=0x7E).contains(&cp) || (0xA1..=0xAC).contains(&cp) || (0xAE..=0xFF).contains(&cp)
}

fn build_byte_chars() -> [char; 256] {
    let mut out = ['\0'; 256];
    let mut next = 0x100u32;
    for (b, slot) in out.iter_mut().enumerate() {
        let cp = if is_self_mapped(b as u32) {
            b as u32
        } else {
            next += 1;
            next - 1
        };
        *slot = char::from_u32(cp).unwrap_or('\u{FFFD}');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes() {
        assert_eq!(flags('a') & LETTER, LETTER);
        assert_eq!(flags('中') & LETTER, LETTER);
        assert_eq!(flags('7') & NUMBER, NUMBER);
        assert_eq!(flags('²') & NUMBER, NUMBER);
        assert_eq!(flags(' ') & WHITESPACE, WHITESPACE);
        assert_eq!(flags('\u{3000}') & WHITESPACE, WHITESPACE);
        assert_eq!(flags('\u{85}') & WHITESPACE, WHITESPACE);
        assert_eq!(flags('!') & PUNCTUATION, PUNCTUATION);
        assert_eq!(flags('\u{301}') & MARK, MARK);
        assert_eq!(
            flags('😀') & (LETTER | NUMBER | WHITESPACE | PUNCTUATION),
            0
        );
        assert_eq!(flags('😀') & VALID, VALID);
        assert_eq!(flags('$') & PUNCTUATION, 0);
    }

    #[test]
    fn byte_map_round_trips() {
        assert_eq!(byte_to_char(b' '), 'Ġ');
        assert_eq!(byte_to_char(b'\n'), 'Ċ');
        assert_eq!(byte_to_char(b'a'), 'a');
        for b in 0..=255u8 {
            assert_eq!(char_to_byte(byte_to_char(b)), Some(b));
        }
        assert_eq!(char_to_byte('€'), None);
    }
}
