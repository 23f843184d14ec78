//! `tokenizer.json` (+ `tokenizer_config.json`, `config.json`, `generation_config.json`)
//! → `tokenizer.ggml.*` metadata for a byte-level BPE (`gpt2`) vocabulary.
//!
//! The facts follow llama.cpp's converter and gguf-py's `SpecialVocab`: token types
//! (added special tokens, or ones that look special, are CONTROL; other added tokens
//! USER_DEFINED; ids without a token `[PAD<id>]`/UNUSED up to the model's vocab size),
//! merges as `"a b"` strings, special ids from `tokenizer_config.json` first and
//! `config.json` second. Instead of hashing the tokenizer's output to name its
//! pre-tokenizer, the `pre_tokenizer` entry is matched against the split rules
//! `mote-tokenizer` implements; anything else is refused rather than guessed.

use std::collections::HashMap;

use mote_file::{MetaArray, MetaValue};
use serde_json::Value;

use super::json::Obj;
use super::HfError;

/// Optional side files, already parsed.
pub struct SideFiles<'a> {
    pub tokenizer_config: Option<&'a Value>,
    pub config: &'a Value,
    pub generation_config: Option<&'a Value>,
    /// `chat_template.jinja` text, when the folder has one.
    pub chat_template_file: Option<String>,
}

const NORMAL: i32 = 1;
const CONTROL: i32 = 3;
const USER_DEFINED: i32 = 4;
const UNUSED: i32 = 5;

fn err(msg: impl Into<String>) -> HfError {
    HfError::Tokenizer(msg.into())
}

// The regexes of the Split pre-tokenizers mote-tokenizer reproduces, as tokenizer.json
// spells them.
const GPT2_RE: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";
const LLAMA3_RE: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const QWEN2_RE: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// Names the `tokenizer.ggml.pre` family whose split rule equals this pre-tokenizer.
pub fn detect_pre(pre: Option<&Value>) -> Result<&'static str, HfError> {
    let describe = |v: &Value| {
        let s = v.to_string();
        if s.chars().count() > 300 {
            format!("{}…", s.chars().take(300).collect::<String>())
        } else {
            s
        }
    };
    let unsupported = |v: &Value| {
        err(format!(
            "pre_tokenizer {} is not one mote supports (byte-level BPE with GPT-2's split, \
             digits-then-GPT-2 (SmolLM/StarCoder), Llama-3's or Qwen2's split)",
            describe(v)
        ))
    };
    let Some(pre) = pre.filter(|v| !v.is_null()) else {
        return Err(err(
            "no pre_tokenizer: not a byte-level BPE tokenizer mote supports",
        ));
    };
    let steps: Vec<&Value> = match ty(pre) {
        Some("Sequence") => match pre.get("pretokenizers") {
            Some(Value::Array(a)) => a.iter().collect(),
            _ => return Err(unsupported(pre)),
        },
        _ => vec![pre],
    };
    let byte_level = |v: &Value, regex: bool| {
        ty(v) == Some("ByteLevel")
            && v.get("add_prefix_space").and_then(Value::as_bool) != Some(true)
            && v.get("use_regex").and_then(Value::as_bool).unwrap_or(true) == regex
    };
    let name = match steps.as_slice() {
        [b] if byte_level(b, true) => "gpt-2",
        [d, b]
            if ty(d) == Some("Digits")
                && d.get("individual_digits").and_then(Value::as_bool) == Some(true)
                && byte_level(b, true) =>
        {
            "smollm"
        }
        [s, b] if ty(s) == Some("Split") && byte_level(b, false) => {
            let isolated = s.get("behavior").and_then(Value::as_str) == Some("Isolated");
            let inverted = s.get("invert").and_then(Value::as_bool).unwrap_or(false);
            let regex = s
                .get("pattern")
                .and_then(|p| p.get("Regex"))
                .and_then(Value::as_str);
            match regex {
                _ if !isolated || inverted => return Err(unsupported(pre)),
                Some(GPT2_RE) => "gpt-2",
                Some(LLAMA3_RE) => "llama-bpe",
                Some(QWEN2_RE) => "qwen2",
                _ => return Err(unsupported(pre)),
            }
        }
        _ => return Err(unsupported(pre)),
    };
    Ok(name)
}

fn ty(v: &Value) -> Option<&str> {
    v.get("type").and_then(Value::as_str)
}

/// llama.cpp's "looks like a control token" test for added tokens not marked special.
pub(super) fn looks_special(t: &str) -> bool {
    matches!(t, "<pad>" | "<mask>" | "<2mass>" | "[@BOS@]")
        || (t.starts_with("<|") && t.ends_with("|>"))
        || (t.starts_with("<｜") && t.ends_with("｜>"))
        || (t.starts_with("<unused") && t.ends_with('>'))
}

struct Added {
    content: String,
    special: bool,
}

/// Builds every `tokenizer.*` key. `vocab_size` is the embedding's row count.
pub fn tokenizer_metadata(
    tokenizer: &Value,
    side: &SideFiles,
    vocab_size: usize,
) -> Result<Vec<(String, MetaValue)>, HfError> {
    let model = tokenizer
        .get("model")
        .filter(|m| m.is_object())
        .ok_or_else(|| err("no \"model\" object"))?;
    match ty(model) {
        Some("BPE") | None => {}
        Some(other) => {
            return Err(err(format!(
                "model type {other:?} is not supported (byte-level BPE is)"
            )))
        }
    }
    if model.get("byte_fallback").and_then(Value::as_bool) == Some(true) {
        return Err(err(
            "a BPE with byte_fallback is SentencePiece-style: it needs the folder's \
             tokenizer.model (Llama family); otherwise only byte-level BPE is supported",
        ));
    }
    for k in ["continuing_subword_prefix", "end_of_word_suffix"] {
        if model.get(k).is_some_and(|v| !v.is_null() && v != "") {
            return Err(err(format!("model.{k} is not supported")));
        }
    }
    match tokenizer.get("normalizer").filter(|v| !v.is_null()) {
        // llama.cpp applies no normalizer to byte-level BPE either (Qwen2 ships NFC).
        None => {}
        Some(n) if ty(n) == Some("NFC") => {}
        Some(n) => {
            return Err(err(format!(
                "normalizer {} is not supported (none or NFC)",
                ty(n).unwrap_or("?")
            )))
        }
    }
    let pre = detect_pre(tokenizer.get("pre_tokenizer"))?;

    let mut tokens: Vec<Option<String>> = vec![None; vocab_size];
    let mut place = |id: u64, tok: &str| -> Result<(), HfError> {
        let slot = usize::try_from(id)
            .ok()
            .and_then(|i| tokens.get_mut(i))
            .ok_or_else(|| {
                err(format!(
                    "token {tok:?} has id {id}, outside the model's vocab_size {vocab_size}"
                ))
            })?;
        match slot {
            Some(prev) if prev != tok => {
                Err(err(format!("id {id} names both {prev:?} and {tok:?}")))
            }
            _ => {
                *slot = Some(tok.to_string());
                Ok(())
            }
        }
    };
    let vocab = model
        .get("vocab")
        .and_then(Value::as_object)
        .ok_or_else(|| err("model.vocab is not an object of token → id"))?;
    for (tok, id) in vocab {
        let id = id
            .as_u64()
            .ok_or_else(|| err(format!("model.vocab: id of {tok:?} is not an integer")))?;
        place(id, tok)?;
    }
    let mut added: HashMap<u64, Added> = HashMap::new();
    if let Some(list) = tokenizer.get("added_tokens").filter(|v| !v.is_null()) {
        let list = list
            .as_array()
            .ok_or_else(|| err("added_tokens is not a list"))?;
        for a in list {
            let id = a.get("id").and_then(Value::as_u64);
            let content = a.get("content").and_then(Value::as_str);
            let (Some(id), Some(content)) = (id, content) else {
                return Err(err(
                    "an added_tokens entry lacks an integer id or a content",
                ));
            };
            place(id, content)?;
            let special = a.get("special").and_then(Value::as_bool).unwrap_or(false);
            added.insert(
                id,
                Added {
                    content: content.to_string(),
                    special,
                },
            );
        }
    }

    let mut names = Vec::with_capacity(vocab_size);
    let mut types = Vec::with_capacity(vocab_size);
    for (i, t) in tokens.into_iter().enumerate() {
        match (t, added.get(&(i as u64))) {
            (None, _) => {
                names.push(format!("[PAD{i}]"));
                types.push(UNUSED);
            }
            (Some(t), Some(a)) if a.special || looks_special(&t) => {
                names.push(t);
                types.push(CONTROL);
            }
            (Some(t), Some(_)) => {
                names.push(t.replace('\u{2581}', " "));
                types.push(USER_DEFINED);
            }
            (Some(t), None) => {
                names.push(t);
                types.push(NORMAL);
            }
        }
    }

    let merges = merges(model)?;
    let mut meta = vec![
        ("tokenizer.ggml.model".to_string(), s("gpt2")),
        ("tokenizer.ggml.pre".to_string(), s(pre)),
        (
            "tokenizer.ggml.tokens".to_string(),
            MetaValue::Array(MetaArray::String(names)),
        ),
        (
            "tokenizer.ggml.token_type".to_string(),
            MetaValue::Array(MetaArray::I32(types)),
        ),
        (
            "tokenizer.ggml.merges".to_string(),
            MetaValue::Array(MetaArray::String(merges)),
        ),
    ];
    let by_content: HashMap<&str, u64> = added
        .iter()
        .map(|(&id, a)| (a.content.as_str(), id))
        .collect();
    special_tokens(tokenizer, side, &by_content, vocab_size, &mut meta)?;
    Ok(meta)
}

fn s(v: &str) -> MetaValue {
    MetaValue::String(v.to_string())
}

fn merges(model: &Value) -> Result<Vec<String>, HfError> {
    let list = model
        .get("merges")
        .and_then(Value::as_array)
        .ok_or_else(|| err("model.merges is missing"))?;
    list.iter()
        .map(|m| match m {
            Value::String(s) => Ok(s.clone()),
            // Pair form (tokenizers ≥ 0.20): spaces inside a part are written as U+0120,
            // as gguf-py does, so that "a b" stays unambiguous.
            Value::Array(p) => match p.as_slice() {
                [Value::String(a), Value::String(b)] => {
                    let enc = |x: &str| x.replace(' ', "\u{120}");
                    Ok(format!("{} {}", enc(a), enc(b)))
                }
                _ => Err(err("a merge is not a pair of strings")),
            },
            _ => Err(err("a merge is neither \"a b\" nor [a, b]")),
        })
        .collect()
}

/// Special-token kinds, with their GGUF key names.
const KINDS: [(&str, &str); 7] = [
    ("bos", "bos_token_id"),
    ("eos", "eos_token_id"),
    ("unk", "unknown_token_id"),
    ("sep", "seperator_token_id"),
    ("pad", "padding_token_id"),
    ("cls", "cls_token_id"),
    ("mask", "mask_token_id"),
];

pub(super) fn special_tokens(
    tokenizer: &Value,
    side: &SideFiles,
    by_content: &HashMap<&str, u64>,
    vocab_size: usize,
    meta: &mut Vec<(String, MetaValue)>,
) -> Result<(), HfError> {
    let tc = side
        .tokenizer_config
        .map(|v| Obj::new("tokenizer_config.json", v))
        .transpose()?;
    // The content a tokenizer_config entry names: a string or {"content": ...}.
    let tc_content = |kind: &str| -> Option<String> {
        let v = tc?.get(&format!("{kind}_token"))?;
        match v {
            Value::String(s) => Some(s.clone()),
            Value::Object(o) => o.get("content").and_then(Value::as_str).map(String::from),
            _ => None,
        }
    };

    let mut add: HashMap<&str, bool> = HashMap::new();
    let mut ids: HashMap<&str, u64> = HashMap::new();
    // What the post-processor adds around a single sequence.
    if let Some(pp) = tokenizer.get("post_processor").filter(|v| v.is_object()) {
        let procs: Vec<&Value> = match pp.get("processors").and_then(Value::as_array) {
            Some(a) => a.iter().collect(),
            None => vec![pp],
        };
        for p in procs {
            match ty(p) {
                Some("ByteLevel") => {
                    add.entry("bos").or_insert(false);
                    add.entry("eos").or_insert(false);
                }
                Some("TemplateProcessing") => {
                    let single = p.get("single").and_then(Value::as_array);
                    let special = |v: Option<&Value>| {
                        v.and_then(|x| x.get("SpecialToken"))
                            .and_then(|x| x.get("id"))
                            .and_then(Value::as_str)
                            .map(String::from)
                    };
                    if let Some(single) = single.filter(|s| s.len() > 1) {
                        let bos = tc_content("bos");
                        if let Some(first) = special(single.first()) {
                            add.insert("bos", bos.is_none() || bos.as_deref() == Some(&first));
                            if bos.is_none() {
                                if let Some(&id) = by_content.get(first.as_str()) {
                                    ids.insert("bos", id);
                                }
                            }
                        }
                        let eos = tc_content("eos");
                        if let Some(last) = special(single.last()) {
                            add.insert("eos", eos.is_none() || eos.as_deref() == Some(&last));
                        }
                    }
                }
                _ => {}
            }
        }
    }
    for (kind, _) in KINDS {
        if let Some(tc) = tc {
            if let Some(b) = tc.bool(&format!("add_{kind}_token"))? {
                add.entry(kind).or_insert(b);
            }
        }
        if let Some(content) = tc_content(kind) {
            if let Some(&id) = by_content.get(content.as_str()) {
                ids.entry(kind).or_insert(id);
            }
        }
    }
    // config.json, then generation_config.json, fill what is still unknown.
    for file in [Some(side.config), side.generation_config]
        .into_iter()
        .flatten()
    {
        for (kind, _) in KINDS {
            let id = match file.get(format!("{kind}_token_id")) {
                Some(Value::Number(n)) => n.as_u64(),
                // A list (several end tokens): the first is the primary one.
                Some(Value::Array(a)) => a.first().and_then(Value::as_u64),
                _ => None,
            };
            if let Some(id) = id.filter(|&i| i < vocab_size as u64) {
                ids.entry(kind).or_insert(id);
            }
        }
    }
    for (kind, key) in KINDS {
        if let Some(&id) = ids.get(kind) {
            meta.push((format!("tokenizer.ggml.{key}"), MetaValue::U32(id as u32)));
        }
    }
    for kind in ["bos", "eos"] {
        if let Some(&b) = add.get(kind) {
            meta.push((
                format!("tokenizer.ggml.add_{kind}_token"),
                MetaValue::Bool(b),
            ));
        }
    }
    chat_templates(tc, side, meta)
}

fn chat_templates(
    tc: Option<Obj>,
    side: &SideFiles,
    meta: &mut Vec<(String, MetaValue)>,
) -> Result<(), HfError> {
    let key = "tokenizer.chat_template";
    match tc.and_then(|t| t.get("chat_template")) {
        Some(Value::String(t)) => meta.push((key.into(), s(t))),
        // Named templates: [{"name": ..., "template": ...}].
        Some(Value::Array(list)) => {
            for entry in list {
                let name = entry.get("name").and_then(Value::as_str);
                let text = entry.get("template").and_then(Value::as_str);
                let (Some(name), Some(text)) = (name, text) else {
                    return Err(HfError::BadField {
                        file: "tokenizer_config.json",
                        field: "chat_template".into(),
                        problem: "has an entry without a name and a template".into(),
                    });
                };
                let k = if name == "default" {
                    key.to_string()
                } else {
                    format!("{key}.{name}")
                };
                meta.push((k, s(text)));
            }
        }
        Some(_) => {
            return Err(HfError::BadField {
                file: "tokenizer_config.json",
                field: "chat_template".into(),
                problem: "is neither a string nor a list of named templates".into(),
            })
        }
        None => {
            if let Some(t) = &side.chat_template_file {
                meta.push((key.into(), s(t)));
            }
        }
    }
    Ok(())
}

/// The `tokenizer.*` keys for a SentencePiece `tokenizer.model` (llama.cpp's preferred
/// source for Llama-family folders): its pieces, plus the added tokens of
/// `added_tokens.json` and `tokenizer_config.json`, plus the special ids and template.
pub fn spm_tokenizer_metadata(
    model_bytes: &[u8],
    tokenizer: Option<&Value>,
    added_tokens_json: Option<&Value>,
    side: &SideFiles,
    vocab_size: usize,
) -> Result<Vec<(String, MetaValue)>, HfError> {
    let model = super::spm::parse(model_bytes)?;
    let mut added: Vec<super::spm::AddedToken> = Vec::new();
    if let Some(Value::Object(map)) = added_tokens_json {
        for (content, id) in map {
            let id = id
                .as_u64()
                .and_then(|i| usize::try_from(i).ok())
                .ok_or_else(|| {
                    err(format!(
                        "added_tokens.json: id of {content:?} is not an integer"
                    ))
                })?;
            added.push((id, content.clone(), false));
        }
    }
    let decoder = side
        .tokenizer_config
        .and_then(|t| t.get("added_tokens_decoder"))
        .and_then(Value::as_object);
    for (id, entry) in decoder.into_iter().flatten() {
        let id: usize = id.parse().map_err(|_| HfError::BadField {
            file: "tokenizer_config.json",
            field: "added_tokens_decoder".into(),
            problem: format!("has a non-numeric id {id:?}"),
        })?;
        let Some(content) = entry.get("content").and_then(Value::as_str) else {
            continue;
        };
        let special = entry
            .get("special")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        added.push((id, content.to_string(), special));
    }
    let mut meta = super::spm::vocab_metadata(&model, &added, vocab_size)?;

    // Special tokens named by content resolve through the added tokens, and (beyond what
    // gguf-py does) through the model's own control/unknown pieces such as "<s>".
    let mut by_content: HashMap<&str, u64> = HashMap::new();
    for (i, (p, _, t)) in model.pieces.iter().enumerate() {
        if *t == 2 || *t == CONTROL {
            by_content.insert(p.as_str(), i as u64);
        }
    }
    for (id, content, _) in &added {
        by_content.insert(content.as_str(), *id as u64);
    }
    let list = tokenizer
        .and_then(|t| t.get("added_tokens"))
        .and_then(Value::as_array);
    for a in list.into_iter().flatten() {
        if let (Some(id), Some(c)) = (
            a.get("id").and_then(Value::as_u64),
            a.get("content").and_then(Value::as_str),
        ) {
            by_content.insert(c, id);
        }
    }
    let null = Value::Null;
    special_tokens(
        tokenizer.unwrap_or(&null),
        side,
        &by_content,
        vocab_size,
        &mut meta,
    )?;
    Ok(meta)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn pre_tokenizers_are_recognized_or_refused() {
        let bl = json!({"type": "ByteLevel", "add_prefix_space": false, "use_regex": true});
        assert_eq!(detect_pre(Some(&bl)).ok(), Some("gpt-2"));
        let smol = json!({"type": "Sequence", "pretokenizers": [
            {"type": "Digits", "individual_digits": true}, bl]});
        assert_eq!(detect_pre(Some(&smol)).ok(), Some("smollm"));
        let qwen = json!({"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": QWEN2_RE}, "behavior": "Isolated", "invert": false},
            {"type": "ByteLevel", "add_prefix_space": false, "use_regex": false}]});
        assert_eq!(detect_pre(Some(&qwen)).ok(), Some("qwen2"));
        let odd = json!({"type": "Whitespace"});
        assert!(matches!(detect_pre(Some(&odd)), Err(HfError::Tokenizer(_))));
        assert!(detect_pre(None).is_err());
        let prefixed = json!({"type": "ByteLevel", "add_prefix_space": true});
        assert!(detect_pre(Some(&prefixed)).is_err());
    }
}
