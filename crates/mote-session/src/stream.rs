//! Turning token bytes into text that is safe to show as it arrives.
//!
//! Two things make this more than concatenation:
//! - a UTF-8 character can be split over several tokens (byte-fallback tokens, or BPE
//!   merges that cut a character), so bytes wait until they form whole characters;
//! - a stop string must never reach the reader, so text that could be the start of one
//!   is held back until the following tokens show whether it is.

/// What one [`TextStream::push`] produced.
#[derive(Debug, Default, PartialEq)]
pub struct StreamStep {
    /// Text that is now final and can be shown.
    pub text: String,
    /// A stop string was completed; everything from it on was dropped.
    pub stopped: bool,
}

/// Incremental token-bytes → text decoder with stop-string detection.
#[derive(Debug, Default)]
pub struct TextStream {
    stops: Vec<String>,
    /// Bytes that do not form a complete character yet.
    pending: Vec<u8>,
    /// Decoded text withheld because it may begin a stop string.
    held: String,
}

impl TextStream {
    /// Empty stop strings are ignored (they would match everywhere).
    pub fn new(stops: &[String]) -> TextStream {
        TextStream {
            stops: stops.iter().filter(|s| !s.is_empty()).cloned().collect(),
            ..Default::default()
        }
    }

    pub fn push(&mut self, bytes: &[u8]) -> StreamStep {
        self.pending.extend_from_slice(bytes);
        let decoded = take_complete_utf8(&mut self.pending);
        self.held.push_str(&decoded);

        if let Some(pos) = self.earliest_stop() {
            let text = self.held[..pos].to_string();
            self.held.clear();
            self.pending.clear();
            return StreamStep {
                text,
                stopped: true,
            };
        }
        let keep = self.possible_stop_prefix_len();
        let cut = self.held.len() - keep;
        let text: String = self.held.drain(..cut).collect();
        StreamStep {
            text,
            stopped: false,
        }
    }

    /// Everything still withheld, at the end of generation. Bytes of an unfinished
    /// character become U+FFFD.
    pub fn finish(&mut self) -> String {
        let mut out = std::mem::take(&mut self.held);
        if !self.pending.is_empty() {
            out.push_str(&String::from_utf8_lossy(&self.pending));
            self.pending.clear();
        }
        out
    }

    fn earliest_stop(&self) -> Option<usize> {
        self.stops
            .iter()
            .filter_map(|s| self.held.find(s.as_str()))
            .min()
    }

    /// Length of the longest tail of `held` that is a proper prefix of some stop string.
    fn possible_stop_prefix_len(&self) -> usize {
        let mut best = 0;
        for stop in &self.stops {
            let max = (stop.len() - 1).min(self.held.len());
            for k in (best + 1..=max).rev() {
                if stop.is_char_boundary(k) && self.held.ends_with(&stop[..k]) {
                    best = k;
                    break;
                }
            }
        }
        best
    }
}

/// Removes and returns the longest decodable prefix of `bytes`. Invalid sequences become
/// U+FFFD; an incomplete character at the end stays in `bytes` for the next call.
fn take_complete_utf8(bytes: &mut Vec<u8>) -> String {
    let mut out = String::new();
    let mut i = 0;
    while i < bytes.len() {
        match std::str::from_utf8(&bytes[i..]) {
            Ok(s) => {
                out.push_str(s);
                i = bytes.len();
            }
            Err(e) => {
                let valid = e.valid_up_to();
                // Valid up to `valid`, so this borrows without replacing anything.
                out.push_str(&String::from_utf8_lossy(&bytes[i..i + valid]));
                match e.error_len() {
                    Some(bad) => {
                        out.push('\u{FFFD}');
                        i += valid + bad;
                    }
                    None => {
                        i += valid;
                        break;
                    }
                }
            }
        }
    }
    bytes.drain(..i);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(stops: &[&str], pieces: &[&[u8]]) -> (Vec<String>, bool, String) {
        let stops: Vec<String> = stops.iter().map(|s| s.to_string()).collect();
        let mut s = TextStream::new(&stops);
        let mut out = Vec::new();
        for p in pieces {
            let step = s.push(p);
            out.push(step.text);
            if step.stopped {
                return (out, true, String::new());
            }
        }
        let rest = s.finish();
        (out, false, rest)
    }

    #[test]
    fn multibyte_characters_wait_for_all_bytes() {
        let euro = "€".as_bytes(); // e2 82 ac
        let (out, _, rest) = run(&[], &[b"a", &euro[..1], &euro[1..2], &euro[2..], b"b"]);
        assert_eq!(out, vec!["a", "", "", "€", "b"]);
        assert_eq!(rest, "");
        // Every emitted piece is valid UTF-8 by construction (String); also check a 4-byte one.
        let crab = "🦀".as_bytes();
        let (out, _, _) = run(&[], &[&crab[..3], &crab[3..]]);
        assert_eq!(out.concat(), "🦀");
    }

    #[test]
    fn invalid_bytes_become_replacement_characters() {
        let (out, _, rest) = run(&[], &[b"x\xffy", b"\xe2\x82"]);
        assert_eq!(out, vec!["x\u{FFFD}y", ""]);
        assert_eq!(rest, "\u{FFFD}");
    }

    #[test]
    fn stop_string_is_not_emitted() {
        let (out, stopped, _) = run(
            &["\nUser:"],
            &[b"Hello", b" there", b"\nUs", b"er:", b" more"],
        );
        assert!(stopped);
        assert_eq!(out.concat(), "Hello there");
        // The possible prefix was held back, not shown and then retracted.
        assert_eq!(out, vec!["Hello", " there", "", ""]);
    }

    #[test]
    fn false_alarm_prefix_is_released() {
        let (out, stopped, rest) = run(&["STOP"], &[b"ST", b"OVE", b" S"]);
        assert!(!stopped);
        assert_eq!(out, vec!["", "STOVE", " "]);
        assert_eq!(rest, "S");
    }

    #[test]
    fn stop_inside_one_token_and_multiple_stops() {
        let (out, stopped, _) = run(&["###", "END"], &[b"abc END### x"]);
        assert!(stopped);
        assert_eq!(out.concat(), "abc ");
    }

    #[test]
    fn stop_string_split_inside_a_character() {
        let (out, stopped, _) = run(&["é!"], &[b"caf\xc3", b"\xa9", b"!"]);
        assert!(stopped);
        assert_eq!(out.concat(), "caf");
    }

    #[test]
    fn empty_stop_strings_are_ignored() {
        let (out, stopped, _) = run(&[""], &[b"abc"]);
        assert!(!stopped);
        assert_eq!(out, vec!["abc"]);
    }
}
