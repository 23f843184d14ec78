//! `tokenizer.model` for a SentencePiece vocabulary: a SentencePiece `ModelProto` with
//! the pieces, scores and types of the GGUF (`tokenizer.ggml.model = llama`), a BPE
//! trainer spec with byte fallback and the special ids, and an identity normalizer that
//! adds the dummy prefix when the model does. Field numbers are SentencePiece's
//! `sentencepiece_model.proto`: ModelProto pieces 1, trainer_spec 2, normalizer_spec 3;
//! SentencePiece piece 1, score 2, type 3; TrainerSpec model_type 3, vocab_size 4,
//! byte_fallback 35, unk_id 40, bos_id 41, eos_id 42, pad_id 43; NormalizerSpec name 1,
//! add_dummy_prefix 3, remove_extra_whitespaces 4, escape_whitespaces 5.

use super::model::ExportModel;
use super::onnx::proto::{bytes_field, f32_field, int_field};

/// SentencePiece's BPE model type.
const BPE: i64 = 2;

pub fn spm_model(
    model: &ExportModel,
    tokens: &[String],
    scores: &[f32],
    types: &[i64],
    add_dummy_prefix: bool,
) -> Vec<u8> {
    let mut b = Vec::new();
    for (i, t) in tokens.iter().enumerate() {
        let mut piece = Vec::new();
        bytes_field(&mut piece, 1, t.as_bytes());
        f32_field(&mut piece, 2, scores.get(i).copied().unwrap_or(0.0));
        int_field(&mut piece, 3, types.get(i).copied().unwrap_or(1));
        bytes_field(&mut b, 1, &piece);
    }
    let id = |key: &str| model.token_id(key).map_or(-1, i64::from);
    let mut trainer = Vec::new();
    int_field(&mut trainer, 3, BPE);
    int_field(&mut trainer, 4, tokens.len() as i64);
    int_field(&mut trainer, 35, 1);
    int_field(&mut trainer, 40, id("unknown_token_id").max(0));
    int_field(&mut trainer, 41, id("bos_token_id"));
    int_field(&mut trainer, 42, id("eos_token_id"));
    int_field(&mut trainer, 43, id("padding_token_id"));
    bytes_field(&mut b, 2, &trainer);
    let mut normalizer = Vec::new();
    bytes_field(&mut normalizer, 1, b"identity");
    int_field(&mut normalizer, 3, i64::from(add_dummy_prefix));
    int_field(&mut normalizer, 4, 0);
    int_field(&mut normalizer, 5, 1);
    bytes_field(&mut b, 3, &normalizer);
    b
}
