//! Request bodies of the generation endpoints and their validation into [`GenParams`].
//!
//! One struct serves `/chat`, `/v1/chat/completions` and `/v1/completions`: the fields
//! they share mean the same thing, and each endpoint checks the ones it requires. Unknown
//! fields are ignored, as OpenAI's own server does for fields it does not use.

use serde::Deserialize;

use crate::engine::ChatMessage;
use crate::error::ApiError;
use mote_session::SamplerConfig;

#[derive(Debug, Default, Deserialize)]
pub struct GenerationBody {
    pub model: Option<String>,
    pub messages: Option<Vec<MessageBody>>,
    pub prompt: Option<PromptField>,
    pub stream: Option<bool>,
    pub stream_options: Option<StreamOptions>,
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    pub top_k: Option<u32>,
    pub min_p: Option<f32>,
    pub presence_penalty: Option<f32>,
    pub frequency_penalty: Option<f32>,
    pub repeat_penalty: Option<f32>,
    pub max_tokens: Option<u32>,
    pub max_completion_tokens: Option<u32>,
    pub stop: Option<StopField>,
    pub seed: Option<i64>,
    pub n: Option<u32>,
    /// llama-server's DRY fields (see `mote_session::dry`).
    pub dry_multiplier: Option<f32>,
    pub dry_base: Option<f32>,
    pub dry_allowed_length: Option<u32>,
    pub dry_penalty_last_n: Option<i32>,
    pub dry_sequence_breakers: Option<Vec<String>>,
    /// `/chat` only: `true` sends the prompt to the model as is (plain completion)
    /// instead of as one user turn through the chat template.
    pub raw: Option<bool>,
    /// `/chat` only, the older spelling: `false` means `"raw": true`.
    pub chat_template: Option<bool>,
}

#[derive(Debug, Deserialize)]
pub struct StreamOptions {
    pub include_usage: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum PromptField {
    Text(String),
    Many(Vec<String>),
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum StopField {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Deserialize)]
pub struct MessageBody {
    pub role: String,
    #[serde(default)]
    pub content: Option<Content>,
}

/// A message's content: a string, or an array of parts of which only text is supported.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Content {
    Text(String),
    Parts(Vec<ContentPart>),
}

#[derive(Debug, Deserialize)]
pub struct ContentPart {
    #[serde(rename = "type")]
    pub kind: String,
    pub text: Option<String>,
}

/// Everything a generation needs besides the prompt.
#[derive(Clone, Debug)]
pub struct GenParams {
    pub sampling: SamplerConfig,
    pub max_tokens: Option<usize>,
    pub stops: Vec<String>,
}

const MAX_STOPS: usize = 16;

fn check_range(name: &str, v: Option<f32>, lo: f32, hi: f32) -> Result<(), ApiError> {
    match v {
        Some(x) if !(lo..=hi).contains(&x) || x.is_nan() => Err(ApiError::invalid_param(
            name,
            format!("`{name}` must be between {lo} and {hi}, got {x}."),
        )),
        _ => Ok(()),
    }
}

impl GenerationBody {
    /// Sampling settings: server defaults, overridden by the request's fields.
    /// A request without a seed (and a server without `--seed`) gets a fresh one.
    pub fn params(
        &self,
        defaults: &SamplerConfig,
        default_seed: Option<u64>,
    ) -> Result<GenParams, ApiError> {
        check_range("temperature", self.temperature, 0.0, 2.0)?;
        check_range("top_p", self.top_p, 0.0, 1.0)?;
        check_range("min_p", self.min_p, 0.0, 1.0)?;
        check_range("presence_penalty", self.presence_penalty, -2.0, 2.0)?;
        check_range("frequency_penalty", self.frequency_penalty, -2.0, 2.0)?;
        check_range("repeat_penalty", self.repeat_penalty, 0.0, 10.0)?;
        check_range("dry_multiplier", self.dry_multiplier, 0.0, 100.0)?;
        check_range("dry_base", self.dry_base, 1.0, 100.0)?;
        if let Some(b) = &self.dry_sequence_breakers {
            if b.len() > MAX_STOPS {
                return Err(ApiError::invalid_param(
                    "dry_sequence_breakers",
                    format!("At most {MAX_STOPS} sequence breakers are supported."),
                ));
            }
        }
        if let Some(n) = self.n {
            if n != 1 {
                return Err(ApiError::invalid_param(
                    "n",
                    "Only n = 1 is supported: one choice per request.",
                ));
            }
        }
        let max_tokens = self.max_completion_tokens.or(self.max_tokens);
        if max_tokens == Some(0) {
            return Err(ApiError::invalid_param(
                "max_tokens",
                "`max_tokens` must be at least 1.",
            ));
        }
        let stops = match &self.stop {
            None => Vec::new(),
            Some(StopField::One(s)) => vec![s.clone()],
            Some(StopField::Many(v)) => v.clone(),
        };
        if stops.len() > MAX_STOPS {
            return Err(ApiError::invalid_param(
                "stop",
                format!("At most {MAX_STOPS} stop strings are supported."),
            ));
        }
        let d = defaults;
        Ok(GenParams {
            sampling: SamplerConfig {
                temperature: self.temperature.unwrap_or(d.temperature),
                top_k: self
                    .top_k
                    .map(|k| k.min(i32::MAX as u32) as i32)
                    .unwrap_or(d.top_k),
                top_p: self.top_p.unwrap_or(d.top_p),
                min_p: self.min_p.unwrap_or(d.min_p),
                presence_penalty: self.presence_penalty.unwrap_or(d.presence_penalty),
                frequency_penalty: self.frequency_penalty.unwrap_or(d.frequency_penalty),
                repeat_penalty: self.repeat_penalty.unwrap_or(d.repeat_penalty),
                repeat_last_n: d.repeat_last_n,
                dry_multiplier: self.dry_multiplier.unwrap_or(d.dry_multiplier),
                dry_base: self.dry_base.unwrap_or(d.dry_base),
                dry_allowed_length: self.dry_allowed_length.unwrap_or(d.dry_allowed_length),
                dry_penalty_last_n: self.dry_penalty_last_n.unwrap_or(d.dry_penalty_last_n),
                dry_sequence_breakers: self
                    .dry_sequence_breakers
                    .clone()
                    .unwrap_or_else(|| d.dry_sequence_breakers.clone()),
                // Negative seeds are accepted and reinterpreted, as any 64 bits will do.
                seed: self
                    .seed
                    .map(|s| s as u64)
                    .or(default_seed)
                    .unwrap_or_else(fresh_seed),
            },
            max_tokens: max_tokens.map(|m| m as usize),
            stops,
        })
    }

    pub fn messages(&self) -> Result<Vec<ChatMessage>, ApiError> {
        let Some(messages) = &self.messages else {
            return Err(ApiError::invalid_param(
                "messages",
                "Missing required parameter: `messages`.",
            ));
        };
        if messages.is_empty() {
            return Err(ApiError::invalid_param(
                "messages",
                "`messages` must hold at least one message.",
            )
            .with_code("empty_array"));
        }
        let mut out = Vec::with_capacity(messages.len());
        for (i, m) in messages.iter().enumerate() {
            if !matches!(
                m.role.as_str(),
                "system" | "user" | "assistant" | "developer" | "tool"
            ) {
                return Err(ApiError::invalid_param(
                    &format!("messages[{i}].role"),
                    format!(
                        "Unknown role `{}`: expected system, user, assistant, developer or tool.",
                        m.role
                    ),
                ));
            }
            let content = match &m.content {
                None => String::new(),
                Some(Content::Text(t)) => t.clone(),
                Some(Content::Parts(parts)) => {
                    let mut text = String::new();
                    for (j, p) in parts.iter().enumerate() {
                        match (p.kind.as_str(), &p.text) {
                            ("text", Some(t)) => text.push_str(t),
                            _ => {
                                return Err(ApiError::invalid_param(
                                    &format!("messages[{i}].content[{j}]"),
                                    "Only text content parts are supported.",
                                ))
                            }
                        }
                    }
                    text
                }
            };
            // `developer` is OpenAI's newer name for `system`; templates know `system`.
            let role = if m.role == "developer" {
                "system".to_string()
            } else {
                m.role.clone()
            };
            out.push(ChatMessage { role, content });
        }
        Ok(out)
    }

    pub fn prompt(&self) -> Result<String, ApiError> {
        match &self.prompt {
            None => Err(ApiError::invalid_param(
                "prompt",
                "Missing required parameter: `prompt`.",
            )),
            Some(PromptField::Text(t)) => Ok(t.clone()),
            Some(PromptField::Many(v)) if v.len() == 1 => Ok(v[0].clone()),
            Some(PromptField::Many(_)) => Err(ApiError::invalid_param(
                "prompt",
                "Only one prompt per request is supported.",
            )),
        }
    }
}

/// A seed for requests that did not ask for one: distinct per request, not reproducible.
fn fresh_seed() -> u64 {
    use std::collections::hash_map::RandomState;
    use std::hash::{BuildHasher, Hasher};
    let mut h = RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.finish()
}
