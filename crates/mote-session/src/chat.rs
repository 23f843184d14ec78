//! Chat: turning a list of messages into a prompt, and keeping a conversation going.
//!
//! The prompt format comes from the file's `tokenizer.chat_template` (a Jinja template,
//! rendered with minijinja in Hugging Face's settings: `trim_blocks`, `lstrip_blocks`,
//! Python string methods, `raise_exception`). Files without one get a built-in format,
//! see [`ChatTemplate::detect`].

use std::ops::ControlFlow;

use mote_file::GgufFile;

use crate::generate::{Completion, GenerateOptions, LogitsSource, Session, TokenCodec};
use crate::sampling::Sampler;
use crate::shift::ShiftPolicy;
use crate::SessionError;

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ChatMessage {
    /// `system`, `user` or `assistant`.
    pub role: String,
    pub content: String,
}

impl ChatMessage {
    pub fn new(role: &str, content: &str) -> ChatMessage {
        ChatMessage {
            role: role.to_string(),
            content: content.to_string(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ChatError {
    #[error("chat template: {0}")]
    Render(String),
}

impl From<minijinja::Error> for ChatError {
    fn from(e: minijinja::Error) -> Self {
        // `{:#}` includes the failing template line, which is what a user needs to see.
        ChatError::Render(format!("{e:#}"))
    }
}

/// Formats used when a file has no template of its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BuiltinFormat {
    /// `<start_of_turn>user\n…<end_of_turn>\n<start_of_turn>model\n`; system text is
    /// folded into the first user turn (Gemma has no system role).
    Gemma,
    /// `<|im_start|>role\n…<|im_end|>\n`, ending with `<|im_start|>assistant\n`.
    ChatMl,
    /// `[INST] <<SYS>>\n…\n<</SYS>>\n\n… [/INST] reply</s><s>[INST] …`.
    Llama2,
    /// `User: …\nAssistant: …\n`, with `\nUser:` as a stop string.
    Plain,
}

impl BuiltinFormat {
    pub fn name(self) -> &'static str {
        match self {
            BuiltinFormat::Gemma => "gemma",
            BuiltinFormat::ChatMl => "chatml",
            BuiltinFormat::Llama2 => "llama2",
            BuiltinFormat::Plain => "plain",
        }
    }

    pub fn from_name(name: &str) -> Option<BuiltinFormat> {
        [
            BuiltinFormat::Gemma,
            BuiltinFormat::ChatMl,
            BuiltinFormat::Llama2,
            BuiltinFormat::Plain,
        ]
        .into_iter()
        .find(|f| f.name() == name)
    }
}

#[derive(Clone, Debug)]
enum Format {
    Jinja(String),
    Builtin(BuiltinFormat),
}

/// A prompt format plus the special-token texts it may refer to.
#[derive(Clone, Debug)]
pub struct ChatTemplate {
    format: Format,
    bos_token: String,
    eos_token: String,
}

impl ChatTemplate {
    /// A Jinja template (Hugging Face `chat_template` syntax).
    pub fn jinja(
        source: &str,
        bos_token: &str,
        eos_token: &str,
    ) -> Result<ChatTemplate, ChatError> {
        // Compile once up front so a broken template fails at load, not mid-chat.
        jinja_env().template_from_str(source)?;
        Ok(ChatTemplate {
            format: Format::Jinja(source.to_string()),
            bos_token: bos_token.to_string(),
            eos_token: eos_token.to_string(),
        })
    }

    pub fn builtin(format: BuiltinFormat, bos_token: &str, eos_token: &str) -> ChatTemplate {
        ChatTemplate {
            format: Format::Builtin(format),
            bos_token: bos_token.to_string(),
            eos_token: eos_token.to_string(),
        }
    }

    /// The template for a model file. In order:
    /// 1. the file's `tokenizer.chat_template`;
    /// 2. [`BuiltinFormat::Gemma`] for `gemma*` architectures or a `<start_of_turn>` token;
    /// 3. [`BuiltinFormat::ChatMl`] when the vocabulary has `<|im_start|>`;
    /// 4. [`BuiltinFormat::Llama2`] when it has `[INST]`, or for a `llama` architecture
    ///    with a SentencePiece (`llama`) tokenizer, the Llama 2 / Mistral family;
    /// 5. [`BuiltinFormat::Plain`] otherwise.
    pub fn detect(file: &GgufFile, tokenizer: &impl TokenCodec) -> Result<ChatTemplate, ChatError> {
        let bos = tokenizer
            .bos_id()
            .map(|id| tokenizer.token_text(id))
            .unwrap_or_default();
        let eos = tokenizer
            .eos_id()
            .map(|id| tokenizer.token_text(id))
            .unwrap_or_default();
        if let Ok(Some(source)) = file.get_str("tokenizer.chat_template") {
            return ChatTemplate::jinja(source, &bos, &eos);
        }
        let arch = file.architecture().unwrap_or("");
        let tok_model = file
            .get_str("tokenizer.ggml.model")
            .ok()
            .flatten()
            .unwrap_or("");
        let format = if arch.starts_with("gemma") || tokenizer.token_id("<start_of_turn>").is_some()
        {
            BuiltinFormat::Gemma
        } else if tokenizer.token_id("<|im_start|>").is_some() {
            BuiltinFormat::ChatMl
        } else if tokenizer.token_id("[INST]").is_some()
            || (arch == "llama" && tok_model == "llama")
        {
            BuiltinFormat::Llama2
        } else {
            BuiltinFormat::Plain
        };
        tracing::info!(
            "no chat template in the file; using the built-in {} format",
            format.name()
        );
        Ok(ChatTemplate::builtin(format, &bos, &eos))
    }

    /// A short description: `jinja (from file)` or the built-in format's name.
    pub fn describe(&self) -> String {
        match &self.format {
            Format::Jinja(_) => "jinja template from the model file".to_string(),
            Format::Builtin(f) => format!("built-in {} format", f.name()),
        }
    }

    /// Whether this is the plain `User:`/`Assistant:` transcript chosen for models with no
    /// chat format of their own.
    pub fn is_plain(&self) -> bool {
        matches!(self.format, Format::Builtin(BuiltinFormat::Plain))
    }

    /// Extra stop strings the format needs (formats without an end-of-turn token).
    pub fn stop_strings(&self) -> Vec<String> {
        match self.format {
            Format::Builtin(BuiltinFormat::Plain) => vec!["\nUser:".to_string()],
            Format::Builtin(BuiltinFormat::Llama2) => vec!["[INST]".to_string()],
            _ => Vec::new(),
        }
    }

    pub fn render(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
    ) -> Result<String, ChatError> {
        match &self.format {
            Format::Jinja(source) => {
                let env = jinja_env();
                let tmpl = env.template_from_str(source)?;
                let out = tmpl.render(minijinja::context! {
                    messages => messages,
                    add_generation_prompt => add_generation_prompt,
                    bos_token => &self.bos_token,
                    eos_token => &self.eos_token,
                })?;
                Ok(out)
            }
            Format::Builtin(f) => Ok(render_builtin(
                *f,
                messages,
                add_generation_prompt,
                &self.eos_token,
                &self.bos_token,
            )),
        }
    }
}

fn jinja_env() -> minijinja::Environment<'static> {
    let mut env = minijinja::Environment::new();
    // The settings transformers uses when it applies chat templates.
    env.set_trim_blocks(true);
    env.set_lstrip_blocks(true);
    env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
    env.add_function(
        "raise_exception",
        |msg: String| -> Result<String, minijinja::Error> {
            Err(minijinja::Error::new(
                minijinja::ErrorKind::InvalidOperation,
                msg,
            ))
        },
    );
    env
}

fn render_builtin(
    format: BuiltinFormat,
    messages: &[ChatMessage],
    gen: bool,
    eos: &str,
    bos: &str,
) -> String {
    let mut out = String::new();
    match format {
        BuiltinFormat::ChatMl => {
            for m in messages {
                out += &format!("<|im_start|>{}\n{}<|im_end|>\n", m.role, m.content);
            }
            if gen {
                out += "<|im_start|>assistant\n";
            }
        }
        BuiltinFormat::Gemma => {
            let mut system = String::new();
            for m in messages {
                match m.role.as_str() {
                    "system" => {
                        system += &m.content;
                        system += "\n\n";
                    }
                    role => {
                        let role = if role == "assistant" { "model" } else { role };
                        let content = if role == "user" {
                            std::mem::take(&mut system) + &m.content
                        } else {
                            m.content.clone()
                        };
                        out += &format!("<start_of_turn>{role}\n{content}<end_of_turn>\n");
                    }
                }
            }
            if gen {
                out += "<start_of_turn>model\n";
            }
        }
        BuiltinFormat::Llama2 => {
            let mut system: Option<String> = None;
            let mut first = true;
            for m in messages {
                match m.role.as_str() {
                    "system" => system = Some(m.content.clone()),
                    "assistant" => out += &format!(" {}{eos}", m.content),
                    _ => {
                        if !first {
                            out += bos;
                        }
                        first = false;
                        out += "[INST] ";
                        if let Some(sys) = system.take() {
                            out += &format!("<<SYS>>\n{sys}\n<</SYS>>\n\n");
                        }
                        out += &format!("{} [/INST]", m.content);
                    }
                }
            }
        }
        BuiltinFormat::Plain => {
            for m in messages {
                match m.role.as_str() {
                    "system" => out += &format!("{}\n\n", m.content),
                    "assistant" => out += &format!("Assistant: {}\n", m.content),
                    _ => out += &format!("User: {}\n", m.content),
                }
            }
            if gen {
                out += "Assistant:";
            }
        }
    }
    out
}

/// A conversation: the messages so far, rendered with a template into one prompt per turn.
/// The session's context is kept between turns, so only the new part of each prompt runs.
pub struct Chat {
    template: ChatTemplate,
    system_prompt: Option<String>,
    messages: Vec<ChatMessage>,
}

impl Chat {
    pub fn new(template: ChatTemplate, system_prompt: Option<String>) -> Chat {
        let mut chat = Chat {
            template,
            system_prompt,
            messages: Vec::new(),
        };
        chat.reset();
        chat
    }

    pub fn template(&self) -> &ChatTemplate {
        &self.template
    }

    pub fn messages(&self) -> &[ChatMessage] {
        &self.messages
    }

    /// Continue a saved conversation: these messages replace the current ones.
    pub fn set_messages(&mut self, messages: Vec<ChatMessage>) {
        self.messages = messages;
    }

    /// Forget the conversation (the system prompt stays).
    pub fn reset(&mut self) {
        self.messages.clear();
        if let Some(sys) = &self.system_prompt {
            self.messages.push(ChatMessage::new("system", sys));
        }
    }

    /// The prompt for the next reply after `user` says something.
    pub fn prompt_for(&self, user: &str) -> Result<String, ChatError> {
        let mut messages = self.messages.clone();
        messages.push(ChatMessage::new("user", user));
        self.template.render(&messages, true)
    }

    /// One turn: render, generate (streaming through `on_text`), and remember both sides.
    ///
    /// With `opts.shift` (context shift), a conversation that no longer fits (with room for
    /// a quarter-context reply) first loses its oldest whole turns, the system prompt
    /// excepted; the dropped turns are cut out of the cache in place (later keys
    /// re-rotated), and during generation a full context drops whole turns again.
    /// `Completion::stats.n_discarded` counts every dropped token.
    pub fn respond<M: LogitsSource, T: TokenCodec>(
        &mut self,
        session: &mut Session<M, T>,
        sampler: &mut Sampler,
        opts: &GenerateOptions,
        user: &str,
        on_text: &mut dyn FnMut(&str) -> ControlFlow<()>,
    ) -> Result<Completion, SessionError> {
        let mut opts = opts.clone();
        opts.stop.extend(self.template.stop_strings());
        let mut dropped = 0;
        if let Some(policy) = opts.shift {
            dropped = self.make_room(session, user)?;
            let turns = self.turn_starts(session, user)?;
            // The system prompt is always kept; --keep may ask for more.
            let system_end = match self.messages.first() {
                Some(m) if m.role == "system" => turns.get(1).copied().unwrap_or(0),
                _ => 0,
            };
            opts.shift = Some(ShiftPolicy {
                keep: policy.keep.max(system_end),
                ..policy
            });
            opts.turn_starts = turns;
        }
        let prompt = self.prompt_for(user)?;
        tracing::debug!("chat prompt: {prompt:?}");
        let ids = session.tokenize_prompt(&prompt);
        let mut completion = session.generate(&ids, sampler, &opts, on_text)?;
        completion.stats.n_discarded += dropped;
        self.messages.push(ChatMessage::new("user", user));
        self.messages
            .push(ChatMessage::new("assistant", completion.text.trim_start()));
        Ok(completion)
    }

    /// Token positions where each message of the next prompt begins (the last entry is
    /// where the new user turn begins).
    fn turn_starts<M: LogitsSource, T: TokenCodec>(
        &self,
        session: &Session<M, T>,
        user: &str,
    ) -> Result<Vec<usize>, ChatError> {
        let mut all = self.messages.clone();
        all.push(ChatMessage::new("user", user));
        let mut starts = vec![0];
        for i in 1..all.len() {
            let text = self.template.render(&all[..i], false)?;
            starts.push(session.tokenize_prompt(&text).len());
        }
        Ok(starts)
    }

    /// Drops the oldest turns (after a system prompt) until the next prompt leaves a
    /// quarter of the context for the reply; cuts them out of the session's cache in place
    /// when the rest of the cached conversation is unchanged. Returns the tokens dropped.
    fn make_room<M: LogitsSource, T: TokenCodec>(
        &mut self,
        session: &mut Session<M, T>,
        user: &str,
    ) -> Result<usize, SessionError> {
        let n_ctx = session.context_size();
        let fits = |chat: &Chat, session: &Session<M, T>| -> Result<(bool, usize), ChatError> {
            let n = session.tokenize_prompt(&chat.prompt_for(user)?).len();
            Ok((n + n_ctx / 4 <= n_ctx, n))
        };
        let first = usize::from(self.messages.first().is_some_and(|m| m.role == "system"));
        let (mut ok, before) = fits(self, session)?;
        let mut removed = 0;
        while !ok && self.messages.len() > first {
            // A user turn goes with the reply that followed it.
            let n = if self.messages.len() > first + 1
                && self.messages[first + 1].role == "assistant"
            {
                2
            } else {
                1
            };
            self.messages.drain(first..first + n);
            removed += n;
            ok = fits(self, session)?.0;
        }
        if removed == 0 {
            return Ok(0);
        }
        let after = fits(self, session)?.1;
        let dropped = before.saturating_sub(after);
        // Where the dropped turns sat in the cache: after the kept messages' tokens.
        let start = match first {
            0 => 0,
            _ => session
                .tokenize_prompt(&self.template.render(&self.messages[..first], false)?)
                .len(),
        };
        let ids = session.tokenize_prompt(&self.prompt_for(user)?);
        let cached = session.context_tokens();
        let same_after = |d: usize| {
            cached.len() > start + d
                && ids.len() > start
                && cached[..start] == ids[..start]
                && cached[start + d] == ids[start]
        };
        if dropped > 0 && same_after(dropped) {
            session.discard(start, dropped)?;
        }
        tracing::info!("context shift: dropped {removed} earlier messages ({dropped} tokens)");
        Ok(dropped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn convo() -> Vec<ChatMessage> {
        vec![
            ChatMessage::new("system", "Be brief."),
            ChatMessage::new("user", "Hi"),
            ChatMessage::new("assistant", "Hello!"),
            ChatMessage::new("user", "Bye"),
        ]
    }

    #[test]
    fn chatml_fallback() {
        let t = ChatTemplate::builtin(BuiltinFormat::ChatMl, "", "");
        assert_eq!(
            t.render(&convo(), true).unwrap(),
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n\
             <|im_start|>assistant\nHello!<|im_end|>\n<|im_start|>user\nBye<|im_end|>\n\
             <|im_start|>assistant\n"
        );
    }

    #[test]
    fn gemma_fallback_folds_system_into_first_user_turn() {
        let t = ChatTemplate::builtin(BuiltinFormat::Gemma, "<bos>", "<eos>");
        assert_eq!(
            t.render(&convo(), true).unwrap(),
            "<start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n<start_of_turn>model\nHello!<end_of_turn>\n\
             <start_of_turn>user\nBye<end_of_turn>\n<start_of_turn>model\n"
        );
    }

    #[test]
    fn llama2_fallback() {
        let t = ChatTemplate::builtin(BuiltinFormat::Llama2, "<s>", "</s>");
        assert_eq!(
            t.render(&convo(), true).unwrap(),
            "[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHi [/INST] Hello!</s><s>[INST] Bye [/INST]"
        );
    }

    #[test]
    fn plain_fallback() {
        let t = ChatTemplate::builtin(BuiltinFormat::Plain, "", "");
        assert_eq!(
            t.render(&convo(), true).unwrap(),
            "Be brief.\n\nUser: Hi\nAssistant: Hello!\nUser: Bye\nAssistant:"
        );
        assert_eq!(t.stop_strings(), vec!["\nUser:".to_string()]);
    }

    #[test]
    fn jinja_with_python_methods_and_special_tokens() {
        let src = "{{ bos_token }}{% for m in messages %}{% if m.role == 'user' %}\
                   [{{ m.content.strip().upper() }}]{% elif m.content.startswith('Hel') %}ok{% endif %}\
                   {% endfor %}{% if add_generation_prompt %}>{{ eos_token }}{% endif %}";
        let t = ChatTemplate::jinja(src, "<s>", "</s>").unwrap();
        let msgs = vec![
            ChatMessage::new("user", "  hi "),
            ChatMessage::new("assistant", "Hello"),
        ];
        assert_eq!(t.render(&msgs, true).unwrap(), "<s>[HI]ok></s>");
        assert_eq!(t.render(&msgs, false).unwrap(), "<s>[HI]ok");
    }

    #[test]
    fn jinja_trims_blocks_like_transformers() {
        let src = "{% for m in messages %}\n  {% if true %}\n{{ m.content }}\n  {% endif %}\n{% endfor %}\n";
        let t = ChatTemplate::jinja(src, "", "").unwrap();
        assert_eq!(
            t.render(&[ChatMessage::new("user", "a")], false).unwrap(),
            "a\n"
        );
    }

    #[test]
    fn raise_exception_becomes_an_error() {
        let src = "{% if messages[0].role != 'user' %}{{ raise_exception('first message must be from the user') }}{% endif %}";
        let t = ChatTemplate::jinja(src, "", "").unwrap();
        let err = t
            .render(&[ChatMessage::new("assistant", "x")], true)
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("first message must be from the user"),
            "{err}"
        );
    }

    #[test]
    fn broken_template_fails_up_front() {
        assert!(ChatTemplate::jinja("{% for %}", "", "").is_err());
    }

    #[test]
    fn builtin_names_round_trip() {
        for name in ["gemma", "chatml", "llama2", "plain"] {
            assert_eq!(BuiltinFormat::from_name(name).map(|f| f.name()), Some(name));
        }
        assert_eq!(BuiltinFormat::from_name("nope"), None);
    }
}
