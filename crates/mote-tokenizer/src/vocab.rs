//! The vocabulary: token texts, scores, attributes, special ids and the end-of-generation set,
//! with the same defaults and text-based fix-ups llama.cpp applies when it loads a GGUF file.

use crate::fasthash::FastMap;

use crate::TokenizerError;

/// Token attribute bits (our own numbering; GGUF stores a single `token_type` per token).
pub(crate) mod attr {
    pub const UNKNOWN: u16 = 1 << 0;
    pub const UNUSED: u16 = 1 << 1;
    pub const NORMAL: u16 = 1 << 2;
    pub const CONTROL: u16 = 1 << 3;
    pub const USER_DEFINED: u16 = 1 << 4;
    pub const BYTE: u16 = 1 << 5;
    pub const LSTRIP: u16 = 1 << 7;
    pub const RSTRIP: u16 = 1 << 8;
}

/// GGUF `tokenizer.ggml.token_type` values → attribute bits.
pub(crate) fn attr_from_token_type(t: i64) -> u16 {
    match t {
        1 => attr::NORMAL,
        2 => attr::UNKNOWN,
        3 => attr::CONTROL,
        4 => attr::USER_DEFINED,
        5 => attr::UNUSED,
        6 => attr::BYTE,
        _ => 0, // undefined
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Model {
    /// SentencePiece (`llama`): score-driven merges over characters, byte fallback.
    Spm,
    /// Byte-level BPE (`gpt2`): ranked merges over GPT-2 byte characters.
    Bpe,
}

/// Special ids as read from metadata (`None` = key absent).
#[derive(Clone, Debug, Default)]
pub(crate) struct SpecialIds {
    pub bos: Option<u32>,
    pub eos: Option<u32>,
    pub eot: Option<u32>,
    pub eom: Option<u32>,
    pub unk: Option<u32>,
    pub sep: Option<u32>,
    pub pad: Option<u32>,
    pub mask: Option<u32>,
    pub fim_pre: Option<u32>,
    pub fim_suf: Option<u32>,
    pub fim_mid: Option<u32>,
    pub fim_pad: Option<u32>,
    pub fim_rep: Option<u32>,
    pub fim_sep: Option<u32>,
}

/// Everything the constructor needs, however it was obtained (GGUF or parts).
pub(crate) struct RawVocab {
    pub model: Model,
    pub tokens: Vec<String>,
    pub scores: Option<Vec<f32>>,
    pub token_types: Option<Vec<i64>>,
    pub ids: SpecialIds,
    pub add_bos: Option<bool>,
    pub add_eos: Option<bool>,
    pub add_space_prefix: Option<bool>,
    /// `general.name`, lower-cased: llama.cpp keys a few per-model token attributes on it.
    pub model_name: String,
}

pub(crate) struct Vocab {
    pub model: Model,
    pub texts: Vec<Box<str>>,
    pub scores: Vec<f32>,
    pub attrs: Vec<u16>,
    pub text_to_id: FastMap<Box<[u8]>, u32>,
    pub bos: Option<u32>,
    pub eos: Option<u32>,
    pub eot: Option<u32>,
    pub eom: Option<u32>,
    pub unk: Option<u32>,
    pub pad: Option<u32>,
    pub add_bos: bool,
    pub add_eos: bool,
    pub add_space_prefix: bool,
    pub eog: Vec<u32>,
}

const EOT_TEXTS: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "<|end_of_text|>",
    "<EOT>",
    "_<EOT>",
    "[EOT]",
    "<｜end▁of▁sentence｜>",
    "<end_of_utterance>",
];
const EOM_TEXTS: &[&str] = &["<|eom_id|>"];
const FIM_PRE_TEXTS: &[&str] = &[
    "<|fim_prefix|>",
    "<fim-prefix>",
    "<fim_prefix>",
    "<｜fim▁begin｜>",
    "<PRE>",
    "▁<PRE>",
    "<|code_prefix|>",
    "<|prefix|>",
];
const FIM_SUF_TEXTS: &[&str] = &[
    "<|fim_suffix|>",
    "<fim-suffix>",
    "<fim_suffix>",
    "<｜fim▁hole｜>",
    "<SUF>",
    "▁<SUF>",
    "<|code_suffix|>",
    "<|suffix|>",
];
const FIM_MID_TEXTS: &[&str] = &[
    "<|fim_middle|>",
    "<fim-middle>",
    "<fim_middle>",
    "<｜fim▁end｜>",
    "<MID>",
    "▁<MID>",
    "<|code_middle|>",
    "<|middle|>",
];
const FIM_PAD_TEXTS: &[&str] = &["<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]"];
const FIM_REP_TEXTS: &[&str] = &[
    "<|fim_repo|>",
    "<|repo_name|>",
    "<fim-repo>",
    "<REPO>",
    "<reponame>",
];
const FIM_SEP_TEXTS: &[&str] = &["<|file_sep|>"];
/// Texts llama.cpp treats as end-of-generation whatever the metadata says.
const EOG_TEXTS: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<|return|>",
    "<|call|>",
    "<|flush|>",
    "<|calls|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "</s>",
    "<|eom_id|>",
    "<EOT>",
    "_<EOT>",
    "[EOT]",
    "[EOS]",
    "<|end_of_text|>",
    "<end_of_utterance>",
    "<eos>",
    "<turn|>",
    "<|tool_response>",
    "<｜end▁of▁sentence｜>",
    "[e~[",
];

impl Vocab {
    pub(crate) fn build(raw: RawVocab) -> Result<Vocab, TokenizerError> {
        let n = raw.tokens.len();
        if n == 0 {
            return Err(TokenizerError::Invalid("the vocabulary is empty".into()));
        }
        if u32::try_from(n).is_err() || n > i32::MAX as usize {
            return Err(TokenizerError::Invalid(format!(
                "{n} tokens is more than token ids can address"
            )));
        }
        let scores = match raw.scores {
            Some(s) if s.len() < n => {
                return Err(TokenizerError::Invalid(format!(
                    "{} scores for {n} tokens",
                    s.len()
                )))
            }
            Some(mut s) => {
                s.truncate(n);
                s
            }
            None => vec![0.0; n],
        };
        let mut attrs = match raw.token_types {
            Some(t) if t.len() < n => {
                return Err(TokenizerError::Invalid(format!(
                    "{} token types for {n} tokens",
                    t.len()
                )))
            }
            Some(t) => t[..n].iter().map(|&t| attr_from_token_type(t)).collect(),
            None => vec![attr::NORMAL; n],
        };

        // Empty texts would match everywhere; llama.cpp renames them the same way.
        let texts: Vec<Box<str>> = raw
            .tokens
            .into_iter()
            .enumerate()
            .map(|(i, t)| {
                if t.is_empty() {
                    format!("[EMPTY_{i}]").into_boxed_str()
                } else {
                    t.into_boxed_str()
                }
            })
            .collect();
        // A duplicated text resolves to its last id, as in llama.cpp.
        let mut text_to_id: FastMap<Box<[u8]>, u32> = FastMap::default();
        text_to_id.reserve(n);
        for (i, t) in texts.iter().enumerate() {
            text_to_id.insert(Box::from(t.as_bytes()), i as u32);
        }
        // llama.cpp finds tokens by text through its text → id map, so a duplicated text
        // stands for its last id only; `lookup` gives exactly those ids.
        let lookup = |t: &str| text_to_id.get(t.as_bytes()).copied();
        // Among several candidate texts llama.cpp takes whichever its hash map yields first;
        // we take the lowest id.
        let first_of = |names: &[&str]| names.iter().filter_map(|t| lookup(t)).min();

        let (default_bos, default_eos, default_unk) = match raw.model {
            Model::Spm => (Some(1), Some(2), Some(0)),
            Model::Bpe => (Some(11), Some(11), None),
        };
        let in_range = |id: Option<u32>| id.filter(|&i| (i as usize) < n);
        // A metadata id outside the vocabulary is ignored (llama.cpp warns and keeps the
        // default); a default outside it is dropped.
        let pick = |meta: Option<u32>, default: Option<u32>| in_range(meta).or(in_range(default));
        let ids = &raw.ids;
        let bos = pick(ids.bos, default_bos);
        let eos = pick(ids.eos, default_eos);
        let unk = pick(ids.unk, default_unk);
        let pad = pick(ids.pad, None);
        let _ = (ids.sep, ids.mask); // read for completeness; no behaviour depends on them
        let mut eot = pick(ids.eot, None);
        let mut eom = pick(ids.eom, None);
        let mut fim = [
            (pick(ids.fim_pre, None), FIM_PRE_TEXTS),
            (pick(ids.fim_suf, None), FIM_SUF_TEXTS),
            (pick(ids.fim_mid, None), FIM_MID_TEXTS),
            (pick(ids.fim_pad, None), FIM_PAD_TEXTS),
            (pick(ids.fim_rep, None), FIM_REP_TEXTS),
            (pick(ids.fim_sep, None), FIM_SEP_TEXTS),
        ];

        // Find unset special ids by their text; a found token becomes a control token.
        for (slot, names) in std::iter::once((&mut eot, EOT_TEXTS))
            .chain(std::iter::once((&mut eom, EOM_TEXTS)))
            .chain(fim.iter_mut().map(|(id, t)| (id, *t)))
        {
            if slot.is_none() {
                *slot = first_of(names);
                if let Some(id) = *slot {
                    attrs[id as usize] |= attr::CONTROL;
                }
            }
        }

        // Control tokens named "unused…" are unused.
        for (i, a) in attrs.iter_mut().enumerate() {
            if *a & attr::CONTROL != 0 && texts[i].contains("unused") {
                *a |= attr::UNUSED;
            }
        }

        let mut eog: Vec<u32> = Vec::new();
        let add_eog = |eog: &mut Vec<u32>, id: u32| {
            if !eog.contains(&id) {
                eog.push(id);
            }
        };
        for id in [fim[3].0, fim[4].0, fim[5].0].into_iter().flatten() {
            add_eog(&mut eog, id);
        }
        let mut by_text: Vec<u32> = EOG_TEXTS.iter().filter_map(|t| lookup(t)).collect();
        by_text.sort_unstable();
        for id in by_text {
            add_eog(&mut eog, id);
            attrs[id as usize] |= attr::CONTROL;
        }
        // gpt-oss: these must always be rendered.
        for t in ["<|channel|>", "<|message|>", "<|start|>", "<|constrain|>"] {
            if let Some(id) = lookup(t) {
                attrs[id as usize] = attr::USER_DEFINED;
            }
        }
        for id in [eos, eot, eom].into_iter().flatten() {
            add_eog(&mut eog, id);
        }
        let has = |eog: &[u32], t: &str| eog.iter().any(|&i| &*texts[i as usize] == t);
        // Harmony / solar-open: "<|end|>" ends a message, not the generation.
        if (has(&eog, "<|return|>") && has(&eog, "<|call|>") && has(&eog, "<|end|>"))
            || (has(&eog, "<|calls|>") && has(&eog, "<|flush|>") && has(&eog, "<|end|>"))
        {
            if let Some(pos) = eog.iter().position(|&i| &*texts[i as usize] == "<|end|>") {
                let id = eog.remove(pos);
                attrs[id as usize] = attr::USER_DEFINED;
            }
        }
        // Gemma 4 / PLaMo: "</s>" is an ordinary token there.
        if (has(&eog, "<|tool_response>") || has(&eog, "<|plamo:eos|>")) && has(&eog, "</s>") {
            if let Some(pos) = eog.iter().position(|&i| &*texts[i as usize] == "</s>") {
                let id = eog.remove(pos);
                attrs[id as usize] = attr::NORMAL;
            }
        }
        eog.sort_unstable();

        // Phi-3: special tokens swallow the whitespace after them.
        if raw.model_name.contains("phi-3") || raw.model_name.contains("phi3") {
            for a in attrs.iter_mut() {
                if *a & (attr::CONTROL | attr::USER_DEFINED | attr::UNKNOWN) != 0 {
                    *a |= attr::RSTRIP;
                }
            }
            for (t, on) in [
                ("</s>", true),
                ("<unk>", false),
                ("<s>", false),
                ("<|endoftext|>", false),
            ] {
                if let Some(&id) = text_to_id.get(t.as_bytes()) {
                    let a = &mut attrs[id as usize];
                    *a = if on {
                        *a | attr::RSTRIP
                    } else {
                        *a & !attr::RSTRIP
                    };
                }
            }
        }

        let (add_bos_default, add_space_default) = match raw.model {
            Model::Spm => (true, true),
            Model::Bpe => (false, false),
        };
        Ok(Vocab {
            model: raw.model,
            texts,
            scores,
            attrs,
            text_to_id,
            bos,
            eos,
            eot,
            eom,
            unk,
            pad,
            add_bos: raw.add_bos.unwrap_or(add_bos_default),
            add_eos: raw.add_eos.unwrap_or(false),
            add_space_prefix: raw.add_space_prefix.unwrap_or(add_space_default),
            eog,
        })
    }

    pub(crate) fn len(&self) -> usize {
        self.texts.len()
    }

    pub(crate) fn id_of(&self, text: &[u8]) -> Option<u32> {
        self.text_to_id.get(text).copied()
    }

    /// Tokens matched as whole units before any splitting, longest text first.
    pub(crate) fn special_tokens(&self) -> Vec<u32> {
        let mut ids: Vec<u32> = (0..self.len() as u32)
            .filter(|&i| {
                self.attrs[i as usize] & (attr::CONTROL | attr::USER_DEFINED | attr::UNKNOWN) != 0
            })
            .collect();
        ids.sort_by(|&a, &b| {
            self.texts[b as usize]
                .len()
                .cmp(&self.texts[a as usize].len())
                .then(a.cmp(&b))
        });
        ids
    }

    /// Appends the bytes a token stands for when printed with special tokens shown.
    pub(crate) fn append_piece(&self, id: usize, out: &mut Vec<u8>) {
        let text: &str = &self.texts[id];
        let a = self.attrs[id];
        if a & (attr::UNKNOWN | attr::CONTROL | attr::USER_DEFINED) != 0 {
            out.extend_from_slice(text.as_bytes());
        } else if a & attr::NORMAL != 0 {
            match self.model {
                Model::Spm => {
                    for (i, part) in text.split('\u{2581}').enumerate() {
                        if i > 0 {
                            out.push(b' ');
                        }
                        out.extend_from_slice(part.as_bytes());
                    }
                }
                Model::Bpe => decode_byte_level(text, out),
            }
        } else if a & attr::BYTE != 0 {
            match parse_byte_token(text) {
                Some(b) => out.push(b),
                None => out.extend_from_slice(text.as_bytes()),
            }
        }
    }
}

/// `<0xAB>` → 0xAB.
pub(crate) fn parse_byte_token(text: &str) -> Option<u8> {
    let hex = text.strip_prefix("<0x")?.strip_suffix('>')?;
    if hex.len() != 2 {
        return None;
    }
    u8::from_str_radix(hex, 16).ok()
}

/// A byte-level BPE token's text back to bytes. A character outside GPT-2's byte alphabet is
/// rendered the way llama.cpp renders it, so the two stay byte-identical.
fn decode_byte_level(text: &str, out: &mut Vec<u8>) {
    for c in text.chars() {
        match crate::unicode::char_to_byte(c) {
            Some(b) => out.push(b),
            None => {
                out.extend_from_slice(b"[UNK_BYTE_0x");
                let mut buf = [0u8; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    out.extend_from_slice(format!("{b:02x}").as_bytes());
                }
                out.extend_from_slice(text.as_bytes());
                out.push(b']');
            }
        }
    }
}
