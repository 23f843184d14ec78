//! Tokenizers: text ↔ token ids, rebuilt from a GGUF file's `tokenizer.ggml.*` metadata.
//!
//! API contract (stub; the implementation replaces the bodies, not the signatures).

use mote_file::GgufFile;

#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    #[error("tokenizer: {0}")]
    Invalid(String),
    #[error(transparent)]
    Gguf(#[from] mote_file::GgufError),
}

pub struct Tokenizer {
    _private: (),
}

impl Tokenizer {
    pub fn from_gguf(_file: &GgufFile) -> Result<Tokenizer, TokenizerError> {
        Err(TokenizerError::Invalid("not implemented yet".into()))
    }

    /// Text to ids. `add_special`: prepend BOS (and append EOS) as the vocabulary's
    /// `add_bos_token`/`add_eos_token` say; `parse_special`: recognise control-token text
    /// such as `<|im_start|>` in `text` instead of splitting it as plain characters.
    pub fn encode(&self, _text: &str, _add_special: bool, _parse_special: bool) -> Vec<u32> {
        Vec::new()
    }

    /// The raw bytes of one token's text (byte tokens give their byte; control tokens
    /// give their text). Streaming output concatenates these and emits complete UTF-8.
    pub fn token_bytes(&self, _id: u32) -> &[u8] {
        &[]
    }

    /// Ids to text (invalid UTF-8 from partial byte tokens is replaced with U+FFFD).
    /// `skip_special`: leave control tokens out.
    pub fn decode(&self, _ids: &[u32], _skip_special: bool) -> String {
        String::new()
    }

    pub fn vocab_size(&self) -> usize {
        0
    }
    pub fn bos_id(&self) -> Option<u32> {
        None
    }
    pub fn eos_id(&self) -> Option<u32> {
        None
    }
    /// End-of-generation: EOS, EOT, `<|im_end|>`, `<end_of_turn>` and the like.
    pub fn is_eog(&self, _id: u32) -> bool {
        false
    }
    pub fn token_id(&self, _piece: &str) -> Option<u32> {
        None
    }
}
