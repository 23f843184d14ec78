//! Reading `tokenizer.ggml.*` metadata out of a GGUF file, with every shape checked.

use mote_file::{GgufFile, MetaArray};

use crate::pretokenize::PreTokenizer;
use crate::vocab::{Model, RawVocab, SpecialIds};
use crate::TokenizerError;

pub(crate) struct GgufParts<'f> {
    pub vocab: RawVocab,
    pub pre: Option<PreTokenizer>,
    pub merges: Option<&'f [String]>,
}

fn invalid(msg: impl Into<String>) -> TokenizerError {
    TokenizerError::Invalid(msg.into())
}

fn array<'f>(file: &'f GgufFile, key: &str) -> Result<Option<&'f MetaArray>, TokenizerError> {
    Ok(file.get_array(key)?)
}

pub(crate) fn read_gguf(file: &GgufFile) -> Result<GgufParts<'_>, TokenizerError> {
    let model_name = file
        .get_str("tokenizer.ggml.model")?
        .ok_or_else(|| invalid("no tokenizer in this file (tokenizer.ggml.model missing)"))?;
    let model = match model_name {
        "llama" => Model::Spm,
        "gpt2" => Model::Bpe,
        other => {
            return Err(invalid(format!(
                "unsupported tokenizer model '{other}' (supported: 'gpt2' byte-level BPE, \
                 'llama' SentencePiece)"
            )))
        }
    };

    let pre = match model {
        Model::Spm => None,
        // llama.cpp falls back to `default` (with a warning) only when the key is absent.
        Model::Bpe => Some(match file.get_str("tokenizer.ggml.pre")? {
            None => PreTokenizer::Default,
            Some(name) => PreTokenizer::from_name(name).ok_or_else(|| {
                invalid(format!(
                    "unsupported pre-tokenizer '{name}' (tokenizer.ggml.pre); supported \
                     families: default, gpt-2, smollm/starcoder, llama3/llama-bpe, qwen2"
                ))
            })?,
        }),
    };

    let tokens = array(file, "tokenizer.ggml.tokens")?
        .ok_or_else(|| invalid("tokenizer.ggml.tokens missing"))?
        .as_strings()
        .ok_or_else(|| invalid("tokenizer.ggml.tokens is not an array of strings"))?
        .to_vec();

    let scores = match array(file, "tokenizer.ggml.scores")? {
        None => None,
        Some(a) => Some(a.to_f32_vec().ok_or_else(|| {
            invalid(format!(
                "tokenizer.ggml.scores holds {}, not numbers",
                a.elem_type_name()
            ))
        })?),
    };
    let token_types = match array(file, "tokenizer.ggml.token_type")? {
        None => None,
        Some(a) => Some(a.to_i64_vec().ok_or_else(|| {
            invalid(format!(
                "tokenizer.ggml.token_type holds {}, not integers",
                a.elem_type_name()
            ))
        })?),
    };

    let merges = match model {
        Model::Spm => None,
        Model::Bpe => Some(
            array(file, "tokenizer.ggml.merges")?
                .ok_or_else(|| invalid("byte-level BPE needs tokenizer.ggml.merges"))?
                .as_strings()
                .ok_or_else(|| invalid("tokenizer.ggml.merges is not an array of strings"))?,
        ),
    };

    let id = |key: &str| -> Result<Option<u32>, TokenizerError> {
        Ok(file.get_u32(&format!("tokenizer.ggml.{key}"))?)
    };
    let ids = SpecialIds {
        bos: id("bos_token_id")?,
        eos: id("eos_token_id")?,
        eot: id("eot_token_id")?,
        eom: id("eom_token_id")?,
        unk: id("unknown_token_id")?,
        sep: id("seperator_token_id")?,
        pad: id("padding_token_id")?,
        mask: id("mask_token_id")?,
        // The older prefix/suffix/middle keys are read after the fim_* ones and win.
        fim_pre: id("prefix_token_id")?.or(id("fim_pre_token_id")?),
        fim_suf: id("suffix_token_id")?.or(id("fim_suf_token_id")?),
        fim_mid: id("middle_token_id")?.or(id("fim_mid_token_id")?),
        fim_pad: id("fim_pad_token_id")?,
        fim_rep: id("fim_rep_token_id")?,
        fim_sep: id("fim_sep_token_id")?,
    };

    let vocab = RawVocab {
        model,
        tokens,
        scores,
        token_types,
        ids,
        add_bos: file.get_bool("tokenizer.ggml.add_bos_token")?,
        add_eos: file.get_bool("tokenizer.ggml.add_eos_token")?,
        add_space_prefix: file.get_bool("tokenizer.ggml.add_space_prefix")?,
        model_name: file
            .get_str("general.name")
            .ok()
            .flatten()
            .unwrap_or("")
            .to_lowercase(),
    };
    Ok(GgufParts { vocab, pre, merges })
}
