//! A question in natural language, answered by a tool-calling model in-process:
//! model → tool calls → tool results → model → answer.
//!
//! The prompt uses the Hermes / Qwen2.5 tool format (the tools' JSON Schemas inside
//! `<tools>`, calls as `<tool_call>{"name", "arguments"}</tool_call>`, results as
//! `<tool_response>` in a user turn), rendered through the model's own chat template.
//! The first turn must call a tool: the assistant turn is opened with `<tool_call>` and the
//! model picks the tool's name; a tool whose arguments are all optional is called with its
//! defaults, otherwise the model writes the arguments. Later turns may call more tools or
//! answer.
//!
//! Small models misquote numbers and invent rooms, so the answer is checked
//! ([`crate::grounding`]): every number in it must appear in a tool result, and when
//! `find_anomalies` ran, the rooms it names must be exactly the abnormal ones. An answer
//! that fails is replaced by one written from the tool results ([`crate::grounding::template_answer`]),
//! and the record says which happened.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use mote_session::{
    ChatMessage, ChatTemplate, GenerateOptions, ModelRunner, Sampler, SamplerConfig, Session,
};

use crate::anomaly::Thresholds;
use crate::clock::format_ts;
use crate::grounding::{check_answer, template_answer, Checks, Language};
use crate::store::Store;
use crate::tools::{specs, Tools};
use crate::GatewayError;

pub const DEFAULT_MODEL: &str = "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf";
pub const FALLBACK_MODEL: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";

#[derive(clap::Args, Debug, Clone)]
pub struct AskOptions {
    /// Model file (GGUF). Default: models/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf, or
    /// SmolLM2-135M-Instruct when that is missing (looked up in $MOTE_MODELS, then ./models).
    #[arg(long, short = 'm')]
    pub model: Option<PathBuf>,
    /// Kernel worker threads; 0: one per physical core.
    #[arg(long, short = 't', default_value_t = 0)]
    pub threads: usize,
    /// Sampling temperature (0: greedy, reproducible).
    #[arg(long, default_value_t = 0.0)]
    pub temp: f32,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Most model turns per question (each may call tools).
    #[arg(long, default_value_t = 4)]
    pub max_turns: usize,
    /// Most tokens per model turn.
    #[arg(long, short = 'n', default_value_t = 160)]
    pub n_predict: usize,
    /// Context positions.
    #[arg(long, short = 'c', default_value_t = 4096)]
    pub ctx_size: usize,
}

fn resolve_model(given: Option<&PathBuf>) -> Result<PathBuf, GatewayError> {
    if let Some(p) = given {
        return Ok(p.clone());
    }
    let dirs: Vec<PathBuf> = std::env::var_os("MOTE_MODELS")
        .map(PathBuf::from)
        .into_iter()
        .chain([PathBuf::from("models")])
        .collect();
    for name in [DEFAULT_MODEL, FALLBACK_MODEL] {
        if let Some(p) = dirs.iter().map(|d| d.join(name)).find(|p| p.exists()) {
            return Ok(p);
        }
    }
    Err(GatewayError::Ask(format!(
        "no model: pass --model, or fetch one with scripts/fetch-models.sh qwen (looked for {DEFAULT_MODEL} and {FALLBACK_MODEL} in $MOTE_MODELS and ./models)"
    )))
}

/// One tool call and what it returned.
#[derive(Clone, Debug)]
pub struct CallRecord {
    pub name: String,
    pub arguments: Value,
    /// The tool's JSON result, or `{"error": ...}`.
    pub result: Value,
}

/// One model turn.
#[derive(Clone, Debug)]
pub struct TurnRecord {
    pub output: String,
    pub prompt_tokens: usize,
    pub reused_tokens: usize,
    pub generated_tokens: usize,
    pub prefill: Duration,
    pub decode: Duration,
}

/// Everything about one question.
#[derive(Clone, Debug)]
pub struct AskRecord {
    pub question: String,
    pub answer: String,
    /// The model's own final text (empty when it never answered).
    pub model_answer: String,
    /// Whether `answer` is the model's (it passed the checks) or written from the results.
    pub grounded_by: &'static str,
    pub checks: Checks,
    pub calls: Vec<CallRecord>,
    pub turns: Vec<TurnRecord>,
    pub total: Duration,
}

impl AskRecord {
    pub fn to_json(&self) -> Value {
        let ms = |d: Duration| (d.as_secs_f64() * 1e4).round() / 10.0;
        json!({
            "question": self.question,
            "answer": self.answer,
            "model_answer": self.model_answer,
            "answer_source": self.grounded_by,
            "checks": self.checks.to_json(),
            "tool_calls": self.calls.iter().map(|c| json!({"name": c.name, "arguments": c.arguments, "result": c.result})).collect::<Vec<_>>(),
            "turns": self.turns.iter().map(|t| json!({"output": t.output, "prompt_tokens": t.prompt_tokens,
                "reused_tokens": t.reused_tokens, "generated_tokens": t.generated_tokens,
                "prefill_ms": ms(t.prefill), "decode_ms": ms(t.decode)})).collect::<Vec<_>>(),
            "total_ms": ms(self.total),
        })
    }
}

/// A loaded model ready to answer questions.
pub struct Asker {
    session: Session<ModelRunner, mote_tokenizer::Tokenizer>,
    template: ChatTemplate,
    opts: AskOptions,
    pub model_path: PathBuf,
    pub load_time: Duration,
}

const CALL_OPEN: &str = "<tool_call>\n";
/// How the first turn starts: a call whose tool name the model completes.
const FIRST_TURN: &str = "<tool_call>\n{\"name\": \"";
const CALL_CLOSE: &str = "</tool_call>";

impl Asker {
    pub fn load(opts: &AskOptions) -> Result<Asker, GatewayError> {
        let path = resolve_model(opts.model.as_ref())?;
        let load_opts = mote_model::LoadOptions {
            threads: opts.threads,
            ..Default::default()
        };
        let loaded = mote_session::load(&path, &load_opts, opts.ctx_size)?;
        let template = ChatTemplate::detect(
            loaded.session.model().model().gguf(),
            loaded.session.tokenizer(),
        )
        .map_err(mote_session::SessionError::from)?;
        Ok(Asker {
            session: loaded.session,
            template,
            opts: opts.clone(),
            model_path: path,
            load_time: loaded.load_time,
        })
    }

    fn system_prompt(&self, store: &Store, rooms: &[String]) -> Result<String, GatewayError> {
        let now = store.latest_ts()?.unwrap_or(0);
        let tools: Vec<String> = specs(rooms)
            .iter()
            .map(|s| s.to_openai().to_string())
            .collect();
        Ok(format!(
            "You are the assistant of a home IoT gateway. Each room has sensors for temperature (°C) and humidity (% RH). \
             Rooms: {rooms}. Today is {today}.\n\
             Answer with the tools, never from memory. Write room ids exactly as the tools do. Copy every number from a tool result; \
             do not compute new numbers. For abnormal, unusual or out-of-range readings call find_anomalies with no arguments \
             (it checks both metrics for all of today); if it reports no anomalies, answer \"none\". \
             Leave out since and until to mean today. Answer briefly, in the language of the question.\n\n\
             # Tools\n\nYou may call one or more functions to assist with the user query.\n\n\
             You are provided with function signatures within <tools></tools> XML tags:\n<tools>\n{tools}\n</tools>\n\n\
             For each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\n\
             <tool_call>\n{{\"name\": <function-name>, \"arguments\": <args-json-object>}}\n</tool_call>",
            rooms = rooms.join(", "),
            today = format_ts(now).split(' ').next().unwrap_or_default(),
            tools = tools.join("\n"),
        ))
    }

    fn turn(&mut self, prompt: &str, stop: &[&str]) -> Result<TurnRecord, GatewayError> {
        let ids = self.session.tokenize_prompt(prompt);
        let cfg = SamplerConfig {
            temperature: self.opts.temp,
            seed: self.opts.seed,
            ..SamplerConfig::default()
        };
        let mut sampler = Sampler::new(cfg, self.session.context_size())
            .map_err(mote_session::SessionError::from)?;
        let gen = GenerateOptions {
            max_tokens: Some(self.opts.n_predict),
            stop: stop
                .iter()
                .map(|s| s.to_string())
                .chain(self.template.stop_strings())
                .collect(),
            ..Default::default()
        };
        let c = self.session.generate(&ids, &mut sampler, &gen, &mut |_| {
            std::ops::ControlFlow::Continue(())
        })?;
        Ok(TurnRecord {
            output: c.text,
            prompt_tokens: c.stats.prompt_tokens,
            reused_tokens: c.stats.reused_tokens,
            generated_tokens: c.stats.generated_tokens,
            prefill: c.stats.prefill_time,
            decode: c.stats.decode_time,
        })
    }

    /// The first turn, constrained to a call: the model picks the tool name after the
    /// opened call; a tool without required arguments is called with its defaults (for
    /// `find_anomalies`: both metrics, all of today), otherwise the model writes the
    /// arguments object.
    fn first_call(
        &mut self,
        prompt: &str,
        rooms: &[String],
        turns: &mut Vec<TurnRecord>,
    ) -> Result<String, GatewayError> {
        let opened = format!("{prompt}{FIRST_TURN}");
        let rec = self.turn(&opened, &["\""])?;
        let name = rec.output.trim().to_string();
        turns.push(rec);
        let required = specs(rooms).into_iter().find(|s| s.name == name).map(|s| {
            s.parameters
                .get("required")
                .and_then(Value::as_array)
                .is_some_and(|r| !r.is_empty())
        });
        let head = format!("{FIRST_TURN}{name}\", \"arguments\": {{");
        if required == Some(false) {
            return Ok(format!("{head}}}}}\n{CALL_CLOSE}"));
        }
        let rec = self.turn(&format!("{prompt}{head}"), &[CALL_CLOSE])?;
        let out = format!("{head}{}", rec.output);
        turns.push(rec);
        Ok(out)
    }

    /// Answers `question` from the data in `store`.
    pub fn ask(&mut self, store: &Store, question: &str) -> Result<AskRecord, GatewayError> {
        let start = Instant::now();
        let tools = Tools {
            store,
            thresholds: Thresholds::default(),
        };
        let rooms = tools.room_names()?;
        let mut messages = vec![
            ChatMessage::new("system", &self.system_prompt(store, &rooms)?),
            ChatMessage::new("user", question),
        ];
        let mut calls: Vec<CallRecord> = Vec::new();
        let mut turns = Vec::new();
        let mut model_answer = String::new();
        for turn in 0..self.opts.max_turns.max(1) {
            let prompt = self
                .template
                .render(&messages, true)
                .map_err(mote_session::SessionError::from)?;
            let mut output = if turn == 0 {
                self.first_call(&prompt, &rooms, &mut turns)?
            } else {
                let rec = self.turn(&prompt, &[CALL_CLOSE])?;
                let out = rec.output.clone();
                turns.push(rec);
                out
            };
            let found = parse_calls(&output);
            if found.is_empty() {
                model_answer = output.trim().to_string();
                break;
            }
            if !output.trim_end().ends_with(CALL_CLOSE) {
                output = format!("{}\n{CALL_CLOSE}", output.trim_end());
            }
            messages.push(ChatMessage::new("assistant", output.trim()));
            let mut responses = Vec::new();
            for call in found {
                let result = match call {
                    Ok((name, arguments)) => {
                        let result = tools
                            .call(&name, &arguments)
                            .unwrap_or_else(|e| json!({"error": e.to_string()}));
                        calls.push(CallRecord {
                            name,
                            arguments,
                            result: result.clone(),
                        });
                        result
                    }
                    Err(why) => json!({"error": why}),
                };
                responses.push(format!("<tool_response>\n{result}\n</tool_response>"));
            }
            messages.push(ChatMessage::new("user", &responses.join("\n")));
        }
        let lang = Language::of(question);
        let checks = check_answer(&model_answer, &calls, &rooms, lang);
        let (answer, grounded_by) = if checks.ok() {
            (model_answer.clone(), "model")
        } else {
            (template_answer(&calls, lang), "tool-results")
        };
        Ok(AskRecord {
            question: question.to_string(),
            answer,
            model_answer,
            grounded_by,
            checks,
            calls,
            turns,
            total: start.elapsed(),
        })
    }
}

/// The `<tool_call>` blocks of a model turn: each a tool name and its arguments, or why it
/// could not be read.
pub fn parse_calls(text: &str) -> Vec<Result<(String, Value), String>> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find(CALL_OPEN.trim_end()) {
        let body = &rest[i + CALL_OPEN.trim_end().len()..];
        let (inner, next) = match body.find(CALL_CLOSE) {
            Some(j) => (&body[..j], &body[j + CALL_CLOSE.len()..]),
            None => (body, ""),
        };
        out.push(parse_call(inner.trim()));
        rest = next;
    }
    out
}

fn parse_call(text: &str) -> Result<(String, Value), String> {
    let v: Value = serde_json::from_str(text)
        .map_err(|e| format!("the tool call is not JSON ({e}): {text}"))?;
    let name = v
        .get("name")
        .and_then(Value::as_str)
        .ok_or_else(|| format!("the tool call has no \"name\": {text}"))?;
    let args = match v.get("arguments") {
        None | Some(Value::Null) => json!({}),
        // Some models write the arguments as a JSON string, as OpenAI's API carries them.
        Some(Value::String(s)) => {
            serde_json::from_str(s).map_err(|e| format!("arguments of {name} are not JSON: {e}"))?
        }
        Some(a) => a.clone(),
    };
    Ok((name.to_string(), args))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_calls() {
        let t = "<tool_call>\n{\"name\": \"get_stats\", \"arguments\": {\"room\": \"bedroom\"}}\n</tool_call>\n<tool_call>\n{\"name\": \"list_rooms\", \"arguments\": \"{}\"}\n</tool_call>";
        let c = parse_calls(t);
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].as_ref().unwrap().1["room"], "bedroom");
        assert_eq!(c[1].as_ref().unwrap().0, "list_rooms");
        assert!(parse_calls("<tool_call>\n{\"arguments\": {}}")[0].is_err());
        assert!(parse_calls("<tool_call>{oops</tool_call>")[0].is_err());
        assert!(parse_calls("The bedroom was warm.").is_empty());
    }
}
