//! `tokenizer.model` (a SentencePiece `ModelProto`) → `tokenizer.ggml.model = llama`:
//! pieces, scores and types as llama.cpp's converter takes them from SentencePiece
//! (Llama 2, TinyLlama, Mistral). Only the few protobuf fields needed are decoded, with
//! every length checked.

use mote_file::{MetaArray, MetaValue};

use super::HfError;

/// SentencePiece piece types; GGUF's token types use the same numbers.
const NORMAL: i32 = 1;
const USER_DEFINED: i32 = 4;
const UNUSED: i32 = 5;

pub struct SpmModel {
    /// (piece, score, type) by id.
    pub pieces: Vec<(String, f32, i32)>,
    /// `trainer_spec.model_type`: 1 unigram, 2 BPE, 3 word, 4 char.
    pub model_type: u64,
    /// `normalizer_spec.add_dummy_prefix`.
    pub add_dummy_prefix: bool,
}

fn err(msg: impl Into<String>) -> HfError {
    HfError::Tokenizer(format!("tokenizer.model: {}", msg.into()))
}

/// One protobuf field: number, and either a varint/fixed value or a byte slice.
enum Field<'a> {
    Int(u64),
    Bytes(&'a [u8]),
}

struct Reader<'a> {
    buf: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn varint(&mut self) -> Result<u64, HfError> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = *self
                .buf
                .get(self.at)
                .ok_or_else(|| err("truncated varint"))?;
            self.at += 1;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(err("varint longer than 10 bytes"))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], HfError> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or_else(|| err("field runs past the end"))?;
        let s = &self.buf[self.at..end];
        self.at = end;
        Ok(s)
    }

    fn next(&mut self) -> Result<Option<(u64, Field<'a>)>, HfError> {
        if self.at >= self.buf.len() {
            return Ok(None);
        }
        let key = self.varint()?;
        let field = match key & 7 {
            0 => Field::Int(self.varint()?),
            1 => {
                let b = self.take(8)?;
                Field::Int(u64::from_le_bytes(
                    b.try_into().map_err(|_| err("fixed64"))?,
                ))
            }
            2 => {
                let n = usize::try_from(self.varint()?).map_err(|_| err("huge length"))?;
                Field::Bytes(self.take(n)?)
            }
            5 => {
                let b = self.take(4)?;
                Field::Int(u64::from(u32::from_le_bytes(
                    b.try_into().map_err(|_| err("fixed32"))?,
                )))
            }
            w => return Err(err(format!("unsupported wire type {w}"))),
        };
        Ok(Some((key >> 3, field)))
    }
}

fn fields(buf: &[u8]) -> Reader<'_> {
    Reader { buf, at: 0 }
}

pub fn parse(buf: &[u8]) -> Result<SpmModel, HfError> {
    let mut model = SpmModel {
        pieces: Vec::new(),
        model_type: 1,
        add_dummy_prefix: true,
    };
    let mut r = fields(buf);
    while let Some((num, f)) = r.next()? {
        match (num, f) {
            (1, Field::Bytes(p)) => {
                let (mut piece, mut score, mut ty) = (None, 0f32, NORMAL);
                let mut pr = fields(p);
                while let Some((n, f)) = pr.next()? {
                    match (n, f) {
                        (1, Field::Bytes(s)) => {
                            piece = Some(
                                String::from_utf8(s.to_vec())
                                    .map_err(|_| err("a piece is not UTF-8"))?,
                            )
                        }
                        (2, Field::Int(bits)) => score = f32::from_bits(bits as u32),
                        (3, Field::Int(t)) => ty = i32::try_from(t).unwrap_or(NORMAL),
                        _ => {}
                    }
                }
                let piece = piece.ok_or_else(|| err("a piece has no text"))?;
                model.pieces.push((piece, score, ty));
            }
            (2, Field::Bytes(t)) => {
                let mut tr = fields(t);
                while let Some((n, f)) = tr.next()? {
                    if let (3, Field::Int(v)) = (n, f) {
                        model.model_type = v;
                    }
                }
            }
            (3, Field::Bytes(t)) => {
                let mut nr = fields(t);
                while let Some((n, f)) = nr.next()? {
                    if let (3, Field::Int(v)) = (n, f) {
                        model.add_dummy_prefix = v != 0;
                    }
                }
            }
            _ => {}
        }
    }
    if model.pieces.is_empty() {
        return Err(err("no pieces (not a SentencePiece model?)"));
    }
    if model.model_type != 2 {
        return Err(err(format!(
            "model type {} is not supported (BPE SentencePiece models are)",
            match model.model_type {
                1 => "unigram",
                3 => "word",
                4 => "char",
                _ => "unknown",
            }
        )));
    }
    Ok(model)
}

/// Added tokens from `added_tokens.json` or `tokenizer_config.json`'s
/// `added_tokens_decoder`: (id, content, special).
pub type AddedToken = (usize, String, bool);

/// The `tokenizer.ggml.*` vocabulary keys (tokens, scores, types) for a model with
/// `vocab_size` embedding rows.
pub fn vocab_metadata(
    model: &SpmModel,
    added: &[AddedToken],
    vocab_size: usize,
) -> Result<Vec<(String, MetaValue)>, HfError> {
    if model.pieces.len() > vocab_size {
        return Err(err(format!(
            "{} pieces for a model with vocab_size {vocab_size}",
            model.pieces.len()
        )));
    }
    let mut tokens: Vec<String> = (0..vocab_size).map(|i| format!("[PAD{i}]")).collect();
    let mut scores = vec![-10000f32; vocab_size];
    let mut types = vec![UNUSED; vocab_size];
    for (i, (p, s, t)) in model.pieces.iter().enumerate() {
        tokens[i] = p.clone();
        scores[i] = *s;
        types[i] = *t;
    }
    for (id, content, special) in added {
        let id = *id;
        if id >= vocab_size {
            return Err(err(format!(
                "added token {content:?} has id {id}, outside vocab_size {vocab_size}"
            )));
        }
        scores[id] = -1000.0;
        if *special || super::vocab::looks_special(content) {
            types[id] = 3;
            tokens[id] = content.clone();
        } else {
            types[id] = USER_DEFINED;
            tokens[id] = content.replace('\u{2581}', " ");
        }
    }
    Ok(vec![
        (
            "tokenizer.ggml.model".into(),
            MetaValue::String("llama".into()),
        ),
        (
            "tokenizer.ggml.pre".into(),
            MetaValue::String("default".into()),
        ),
        (
            "tokenizer.ggml.tokens".into(),
            MetaValue::Array(MetaArray::String(tokens)),
        ),
        (
            "tokenizer.ggml.scores".into(),
            MetaValue::Array(MetaArray::F32(scores)),
        ),
        (
            "tokenizer.ggml.token_type".into(),
            MetaValue::Array(MetaArray::I32(types)),
        ),
        (
            "tokenizer.ggml.add_space_prefix".into(),
            MetaValue::Bool(model.add_dummy_prefix),
        ),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(num: u64, wire: u64, body: &[u8]) -> Vec<u8> {
        let mut v = vec![(num << 3 | wire) as u8];
        if wire == 2 {
            v.push(body.len() as u8);
        }
        v.extend_from_slice(body);
        v
    }

    #[test]
    fn parses_pieces_and_refuses_garbage() {
        let mut piece = field(1, 2, "▁the".as_bytes());
        piece.extend(field(2, 5, &(-3.5f32).to_le_bytes()));
        let mut unk = field(1, 2, b"<unk>");
        unk.extend(field(3, 0, &[2]));
        let mut buf = field(1, 2, &unk);
        buf.extend(field(1, 2, &piece));
        buf.extend(field(2, 2, &field(3, 0, &[2])));
        buf.extend(field(3, 2, &field(3, 0, &[0])));
        let m = parse(&buf).unwrap();
        assert_eq!(m.pieces[0], ("<unk>".into(), 0.0, 2));
        assert_eq!(m.pieces[1], ("▁the".into(), -3.5, 1));
        assert!(!m.add_dummy_prefix);
        assert!(parse(&buf[..buf.len() - 1]).is_err());
        assert!(parse(b"\x0a\xff\xff").is_err());
        // Unigram (the default model type) is refused.
        assert!(parse(&field(1, 2, &piece)).is_err());
    }
}
