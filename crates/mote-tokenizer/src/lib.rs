//! Tokenizers: text ↔ token ids, rebuilt from a GGUF file's `tokenizer.ggml.*` metadata.
//!
//! Two models are supported, and both aim to give llama.cpp's ids exactly:
//! * `gpt2` — byte-level BPE with a pre-tokenizer chosen by `tokenizer.ggml.pre`
//!   (see [`PreTokenizer`]; SmolLM2, Qwen2/3, Llama 3, GPT-2 style vocabularies);
//! * `llama` — SentencePiece-style score merging with `<0xXX>` byte fallback (Llama 2,
//!   Gemma 3).
//!
//! Unknown `tokenizer.ggml.model` or `tokenizer.ggml.pre` values are errors rather than a
//! silent fallback: a wrong split rule produces plausible-looking but different ids. A
//! *missing* `tokenizer.ggml.pre` selects `default`, as llama.cpp does (it warns).

mod bpe;
mod fasthash;
mod load;
mod pretokenize;
mod special;
mod spm;
mod unicode;
mod vocab;

use mote_file::GgufFile;

pub use pretokenize::PreTokenizer;

use special::{Fragment, SpecialMatcher};
use vocab::{attr, Model, Vocab};

#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    #[error("tokenizer: {0}")]
    Invalid(String),
    #[error(transparent)]
    Gguf(#[from] mote_file::GgufError),
}

pub struct Tokenizer {
    vocab: Vocab,
    kind: Kind,
    special: SpecialMatcher,
    /// Every token's output bytes (special tokens as their text), back to back.
    piece_bytes: Vec<u8>,
    /// `piece_offsets[i]..piece_offsets[i + 1]` is token `i`'s slice of `piece_bytes`.
    piece_offsets: Vec<usize>,
}

enum Kind {
    Spm {
        /// Token for each byte value (`<0xXX>`), for characters with no token of their own.
        byte_tokens: Box<[Option<u32>; 256]>,
        segmenter: spm::Segmenter,
    },
    Bpe {
        pre: PreTokenizer,
        merges: bpe::Merges,
    },
}

impl Tokenizer {
    /// Builds the tokenizer described by `file`'s `tokenizer.ggml.*` metadata.
    pub fn from_gguf(file: &GgufFile) -> Result<Tokenizer, TokenizerError> {
        let parts = load::read_gguf(file)?;
        Tokenizer::build(parts.vocab, parts.pre, parts.merges)
    }

    /// A byte-level BPE tokenizer from plain parts, for tests and tools that hold a Hugging
    /// Face style vocabulary rather than a GGUF file.
    ///
    /// * `tokens`: token texts in id order (GPT-2 byte-level alphabet, e.g. `Ġthe`);
    /// * `merges`: `"left right"` pairs, best first;
    /// * `pre_tokenizer`: a `tokenizer.ggml.pre` name such as `qwen2` or `llama-bpe`;
    /// * `control_ids`: ids to treat as control tokens (matched in text with
    ///   `parse_special`, dropped by `decode(.., true)`).
    ///
    /// No BOS/EOS is added by `encode`; end-of-generation tokens are found by their text.
    pub fn from_parts(
        tokens: Vec<String>,
        merges: &[String],
        pre_tokenizer: &str,
        control_ids: &[u32],
    ) -> Result<Tokenizer, TokenizerError> {
        let n = tokens.len();
        let mut types = vec![1i64; n];
        for &id in control_ids {
            let slot = types.get_mut(id as usize).ok_or_else(|| {
                TokenizerError::Invalid(format!("control id {id} outside {n} tokens"))
            })?;
            *slot = 3;
        }
        let pre = PreTokenizer::from_name(pre_tokenizer).ok_or_else(|| {
            TokenizerError::Invalid(format!("unknown pre-tokenizer '{pre_tokenizer}'"))
        })?;
        let raw = vocab::RawVocab {
            model: Model::Bpe,
            tokens,
            scores: None,
            token_types: Some(types),
            ids: vocab::SpecialIds::default(),
            add_bos: Some(false),
            add_eos: Some(false),
            add_space_prefix: Some(false),
            model_name: String::new(),
        };
        Tokenizer::build(raw, Some(pre), Some(merges))
    }

    fn build(
        raw: vocab::RawVocab,
        pre: Option<PreTokenizer>,
        merges: Option<&[String]>,
    ) -> Result<Tokenizer, TokenizerError> {
        let vocab = Vocab::build(raw)?;
        let kind = match vocab.model {
            Model::Spm => {
                let mut byte_tokens = Box::new([None; 256]);
                for (b, slot) in byte_tokens.iter_mut().enumerate() {
                    *slot = vocab
                        .id_of(format!("<0x{b:02X}>").as_bytes())
                        .or_else(|| vocab.id_of(&[b as u8]));
                }
                let segmenter = spm::Segmenter::new(&vocab);
                Kind::Spm {
                    byte_tokens,
                    segmenter,
                }
            }
            Model::Bpe => Kind::Bpe {
                pre: pre.unwrap_or(PreTokenizer::Default),
                merges: bpe::Merges::new(merges.unwrap_or(&[])),
            },
        };
        let special = SpecialMatcher::new(&vocab);
        let mut piece_bytes = Vec::new();
        let mut piece_offsets = Vec::with_capacity(vocab.len() + 1);
        piece_offsets.push(0);
        for id in 0..vocab.len() {
            vocab.append_piece(id, &mut piece_bytes);
            piece_offsets.push(piece_bytes.len());
        }
        unicode::warm_up();
        Ok(Tokenizer {
            vocab,
            kind,
            special,
            piece_bytes,
            piece_offsets,
        })
    }

    /// Text to ids. `add_special`: prepend BOS (and append EOS) as the vocabulary's
    /// `add_bos_token`/`add_eos_token` say; `parse_special`: recognise control-token text
    /// such as `<|im_start|>` in `text` instead of splitting it as plain characters.
    /// (User-defined tokens are recognised either way, as in llama.cpp.)
    pub fn encode(&self, text: &str, add_special: bool, parse_special: bool) -> Vec<u32> {
        let v = &self.vocab;
        let fragments = self.special.partition(v, text, parse_special);
        let mut out = Vec::with_capacity(text.len() / 3 + 2);
        if add_special && v.add_bos {
            out.extend(v.bos);
        }
        match &self.kind {
            Kind::Spm {
                byte_tokens,
                segmenter,
            } => {
                // A space is prefixed to the first text and to any text after a special
                // token; then every space becomes `▁`.
                let mut after_special = true;
                let escaped: Vec<Option<String>> = fragments
                    .iter()
                    .map(|f| match *f {
                        Fragment::Token(_) => {
                            after_special = true;
                            None
                        }
                        Fragment::Text(s, e) => {
                            let mut buf = String::with_capacity(3 * (e - s) + 3);
                            if v.add_space_prefix && after_special {
                                buf.push('\u{2581}');
                            }
                            for c in text[s..e].chars() {
                                buf.push(if c == ' ' { '\u{2581}' } else { c });
                            }
                            after_special = false;
                            Some(buf)
                        }
                    })
                    .collect();
                let mut cache = fasthash::FastMap::default();
                for (f, esc) in fragments.iter().zip(&escaped) {
                    match (f, esc) {
                        (Fragment::Token(id), _) => out.push(*id),
                        (Fragment::Text(..), Some(esc)) => spm::encode_fragment(
                            v,
                            byte_tokens,
                            segmenter,
                            esc,
                            &mut cache,
                            &mut out,
                        ),
                        (Fragment::Text(..), None) => {}
                    }
                }
            }
            Kind::Bpe { pre, merges } => {
                let mut cache: fasthash::FastMap<&str, (usize, usize)> = Default::default();
                let mut encoded = String::new();
                for f in fragments {
                    match f {
                        Fragment::Token(id) => out.push(id),
                        Fragment::Text(s, e) => {
                            for word in pre.split(&text[s..e]) {
                                // Repeated words reuse the ids of their first occurrence.
                                if let Some(&(at, len)) = cache.get(word) {
                                    out.extend_from_within(at..at + len);
                                    continue;
                                }
                                encoded.clear();
                                encoded.extend(word.bytes().map(unicode::byte_to_char));
                                let at = out.len();
                                bpe::encode_word(v, merges, &encoded, &mut out);
                                cache.insert(word, (at, out.len() - at));
                            }
                        }
                    }
                }
            }
        }
        if add_special && v.add_eos {
            out.extend(v.eos);
        }
        out
    }

    /// The raw bytes of one token's text (byte tokens give their byte; control tokens
    /// give their text). Streaming output concatenates these and emits complete UTF-8.
    /// Unused and undefined tokens, and ids outside the vocabulary, give no bytes.
    pub fn token_bytes(&self, id: u32) -> &[u8] {
        let i = id as usize;
        match (self.piece_offsets.get(i), self.piece_offsets.get(i + 1)) {
            (Some(&s), Some(&e)) => &self.piece_bytes[s..e],
            _ => &[],
        }
    }

    /// Ids to text (invalid UTF-8 from partial byte tokens is replaced with U+FFFD).
    /// `skip_special`: leave control tokens out.
    ///
    /// This is the plain concatenation of [`Tokenizer::token_bytes`]: the space that
    /// SentencePiece's `add_space_prefix` puts before the first word is kept (use
    /// [`Tokenizer::adds_space_prefix`] to strip it), and no "clean up" of spaces before
    /// punctuation is done, so `decode(encode(s))` gives `s` back for byte-level BPE.
    pub fn decode(&self, ids: &[u32], skip_special: bool) -> String {
        let mut bytes = Vec::with_capacity(ids.len() * 4);
        for &id in ids {
            if skip_special && self.is_control(id) {
                continue;
            }
            bytes.extend_from_slice(self.token_bytes(id));
        }
        match String::from_utf8(bytes) {
            Ok(s) => s,
            Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
        }
    }

    pub fn vocab_size(&self) -> usize {
        self.vocab.len()
    }
    pub fn bos_id(&self) -> Option<u32> {
        self.vocab.bos
    }
    pub fn eos_id(&self) -> Option<u32> {
        self.vocab.eos
    }
    /// End-of-turn token (`<|im_end|>`, `<end_of_turn>`, `<|eot_id|>`, ...), if any.
    pub fn eot_id(&self) -> Option<u32> {
        self.vocab.eot
    }
    /// End-of-message token (`<|eom_id|>`), if any.
    pub fn eom_id(&self) -> Option<u32> {
        self.vocab.eom
    }
    pub fn unknown_id(&self) -> Option<u32> {
        self.vocab.unk
    }
    pub fn padding_id(&self) -> Option<u32> {
        self.vocab.pad
    }
    /// End-of-generation: EOS, EOT, `<|im_end|>`, `<end_of_turn>` and the like.
    pub fn is_eog(&self, id: u32) -> bool {
        self.vocab.eog.binary_search(&id).is_ok()
    }
    /// All end-of-generation ids, ascending.
    pub fn eog_ids(&self) -> &[u32] {
        &self.vocab.eog
    }
    /// Control or unknown tokens: the ones `decode(.., skip_special = true)` leaves out.
    pub fn is_control(&self, id: u32) -> bool {
        self.vocab
            .attrs
            .get(id as usize)
            .is_some_and(|a| a & (attr::CONTROL | attr::UNKNOWN) != 0)
    }
    pub fn token_id(&self, piece: &str) -> Option<u32> {
        self.vocab.id_of(piece.as_bytes())
    }
    /// The token's text as stored in the vocabulary (`Ġthe`, `▁the`, `<0x0A>`).
    pub fn token_text(&self, id: u32) -> Option<&str> {
        self.vocab.texts.get(id as usize).map(|t| &**t)
    }
    /// Whether `encode(.., add_special = true, ..)` prepends BOS.
    pub fn adds_bos(&self) -> bool {
        self.vocab.add_bos && self.vocab.bos.is_some()
    }
    /// Whether SentencePiece encoding puts a space before the first word.
    pub fn adds_space_prefix(&self) -> bool {
        matches!(self.kind, Kind::Spm { .. }) && self.vocab.add_space_prefix
    }
    /// The pre-tokenizer, for byte-level BPE vocabularies.
    pub fn pre_tokenizer(&self) -> Option<PreTokenizer> {
        match &self.kind {
            Kind::Bpe { pre, .. } => Some(*pre),
            Kind::Spm { .. } => None,
        }
    }
    /// Number of distinct merge rules (byte-level BPE only; 0 for SentencePiece).
    pub fn merge_count(&self) -> usize {
        match &self.kind {
            Kind::Bpe { merges, .. } => merges.len(),
            Kind::Spm { .. } => 0,
        }
    }
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("model", &self.vocab.model)
            .field("pre", &self.pre_tokenizer())
            .field("vocab_size", &self.vocab.len())
            .field("bos", &self.vocab.bos)
            .field("eos", &self.vocab.eos)
            .finish()
    }
}
