//! The HTTP surface: routing, API-key check, request metrics and the endpoint handlers.

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{header, Uri};
use axum::middleware::{self, Next};
use axum::response::sse::{Event, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::{Stream, StreamExt};
use serde_json::{json, Value};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};
use tokio_stream::wrappers::UnboundedReceiverStream;

use crate::api::{GenParams, GenerationBody};
use crate::engine::{ChatMessage, Frontend};
use crate::error::ApiError;
use crate::extract::{BodyLimit, JsonBody};
use crate::metrics::Metrics;
use mote_session::{Sampler, SamplerConfig};

use crate::scheduler::{
    FinishReason, GenEvent, GenRequest, SchedulerHandle, SubmitError, Timings, Usage,
};

const INDEX_HTML: &str = include_str!("../web/index.html");

/// Settings the handlers read.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    pub api_key: Option<String>,
    /// Positions per slot.
    pub n_ctx: usize,
    pub n_slots: usize,
    /// Requests that may wait for a slot.
    pub max_queue: usize,
    pub body_limit: usize,
    pub sampling: SamplerConfig,
    /// Seed for requests without one; None: a fresh seed per request.
    pub seed: Option<u64>,
    /// Default completion length when a request gives none; None: until the context fills.
    pub max_tokens: Option<usize>,
    /// Never end at an end-of-generation token (their logits are masked): answers run to
    /// their token limit. For benchmarks and tests, as llama-server's `--ignore-eos`.
    pub ignore_eos: bool,
    /// `--context-shift`, `--keep`, `--streaming`.
    pub context: crate::flags::ContextArgs,
    /// Folder of slot files (`--slot-save-path`, canonical); None: slot actions disabled.
    pub slot_save_path: Option<std::path::PathBuf>,
}

pub struct AppState {
    pub frontend: Arc<dyn Frontend>,
    pub scheduler: SchedulerHandle,
    pub metrics: Arc<Metrics>,
    pub config: ServerConfig,
    next_id: AtomicU64,
}

impl AppState {
    pub fn new(
        frontend: Arc<dyn Frontend>,
        scheduler: SchedulerHandle,
        metrics: Arc<Metrics>,
        config: ServerConfig,
    ) -> Self {
        AppState {
            frontend,
            scheduler,
            metrics,
            config,
            next_id: AtomicU64::new(1),
        }
    }

    fn new_id(&self, prefix: &str) -> String {
        let n = self.next_id.fetch_add(1, Ordering::Relaxed);
        format!("{prefix}-{:x}{n:06}", unix_time())
    }

    fn check_model(&self, model: Option<&str>) -> Result<(), ApiError> {
        match model {
            None | Some("") => Ok(()),
            Some(m) => {
                let id = self.frontend.model_id();
                if m == id || m.strip_suffix(".gguf") == Some(id) {
                    Ok(())
                } else {
                    Err(ApiError::model_not_found(m))
                }
            }
        }
    }
}

type Shared = Arc<AppState>;

fn unix_time() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

pub fn router(state: Shared) -> Router {
    let limit = state.config.body_limit;
    let api = Router::new()
        .route("/chat", post(chat_simple))
        .route("/v1/chat/completions", post(chat_completions))
        .route("/v1/completions", post(completions))
        .route("/v1/models", get(models))
        .route("/metrics", get(metrics))
        .route("/slots", get(crate::slots::list))
        .route("/slots/{id_slot}", post(crate::slots::slot_action))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_key));
    Router::new()
        .route("/", get(index))
        .route("/health", get(health))
        .merge(api)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(
            state.clone(),
            count_requests,
        ))
        .layer(DefaultBodyLimit::max(limit))
        .layer(axum::Extension(BodyLimit(limit)))
        .with_state(state)
}

async fn not_found(uri: Uri) -> ApiError {
    ApiError::not_found(uri.path())
}

async fn method_not_allowed() -> ApiError {
    ApiError::method_not_allowed()
}

/// `Authorization: Bearer <key>` when the server was started with `--api-key`.
async fn require_key(State(state): State<Shared>, req: Request, next: Next) -> Response {
    if let Some(key) = &state.config.api_key {
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
        if !given.is_some_and(|g| constant_time_eq(g.as_bytes(), key.as_bytes())) {
            return ApiError::unauthorized().into_response();
        }
    }
    next.run(req).await
}

/// Compares without an early exit, so response time does not leak how much of a key matched.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn count_requests(State(state): State<Shared>, req: Request, next: Next) -> Response {
    let endpoint = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "other".into());
    let resp = next.run(req).await;
    state
        .metrics
        .record_request(&endpoint, resp.status().as_u16());
    resp
}

async fn index() -> Html<&'static str> {
    Html(INDEX_HTML)
}

async fn health(State(state): State<Shared>) -> Json<Value> {
    Json(json!({
        "status": "ok",
        "model": state.frontend.model_id(),
        "slots": state.config.n_slots,
        "slots_busy": state.metrics.active_slots.load(Ordering::Relaxed),
        "queue": state.metrics.queue_depth.load(Ordering::Relaxed),
    }))
}

async fn metrics(State(state): State<Shared>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(),
    )
}

async fn models(State(state): State<Shared>) -> Json<Value> {
    Json(json!({
        "object": "list",
        "data": [{
            "id": state.frontend.model_id(),
            "object": "model",
            "created": 0,
            "owned_by": "mote",
            "meta": {"n_ctx_train": state.frontend.n_ctx_train(), "n_ctx_slot": state.config.n_ctx},
        }],
    }))
}

/// How a request's prompt is given.
enum PromptInput<'a> {
    Text(&'a str),
    /// Messages, and the tokens the answer should have room for.
    Chat(&'a [ChatMessage], usize),
}

/// Tokenizes, fits the context (see [`crate::context`]) and queues a generation; returns
/// its event stream.
fn start(
    state: &AppState,
    input: PromptInput,
    params: GenParams,
) -> Result<UnboundedReceiver<GenEvent>, ApiError> {
    let n_ctx = state.config.n_ctx;
    let frontend = &*state.frontend;
    let policy = |first: usize, bos: bool| state.config.context.policy(n_ctx, first, bos);
    let fitted = match input {
        PromptInput::Text(text) => crate::context::fit_prompt(frontend, n_ctx, policy, text)?,
        PromptInput::Chat(messages, room) => {
            crate::context::fit_chat(frontend, n_ctx, policy, messages, room)?
        }
    };
    let max_tokens = params
        .max_tokens
        .or(state.config.max_tokens)
        .unwrap_or(n_ctx);
    let mut sampler =
        Sampler::new(params.sampling, n_ctx).map_err(|e| ApiError::invalid(e.to_string()))?;
    if sampler.needs_dry_breakers() {
        let breakers = &sampler.config().dry_sequence_breakers;
        sampler.set_dry_breakers(state.frontend.breaker_tokens(breakers));
    }
    let (tx, rx) = unbounded_channel();
    state
        .scheduler
        .submit(GenRequest {
            prompt: fitted.tokens,
            max_tokens,
            stops: params.stops,
            sampler,
            events: tx,
            arrived: Instant::now(),
            shift: fitted.shift,
            turn_starts: fitted.turn_starts,
            n_discarded: fitted.n_discarded,
        })
        .map_err(|e| match e {
            SubmitError::QueueFull(_) => ApiError::busy(e.to_string()),
            SubmitError::ShuttingDown => ApiError::unavailable(e.to_string()),
        })?;
    Ok(rx)
}

/// A whole generation.
struct Collected {
    text: String,
    finish: FinishReason,
    usage: Usage,
    timings: Timings,
}

/// Waits for a whole generation.
async fn collect(mut rx: UnboundedReceiver<GenEvent>) -> Result<Collected, ApiError> {
    let mut text = String::new();
    while let Some(ev) = rx.recv().await {
        match ev {
            GenEvent::Text(t) => text.push_str(&t),
            GenEvent::Done {
                finish,
                usage,
                timings,
            } => {
                return Ok(Collected {
                    text,
                    finish,
                    usage,
                    timings,
                })
            }
            GenEvent::Error(e) => return Err(ApiError::internal(e)),
        }
    }
    Err(ApiError::internal("the generation ended without a result"))
}

/// Token limit of a `/chat` answer when neither the request (`max_tokens`) nor the
/// server (`--n-predict`) gives one; the web page sends the same default.
pub const CHAT_DEFAULT_MAX_TOKENS: usize = 512;

/// `POST /chat {"prompt": "..."}` → `{"response": "..."}`.
///
/// The prompt is one user turn sent through the model's chat template (when the model has
/// a chat format; a plain completion otherwise), which is what an instruction-tuned model
/// expects. `"raw": true` (or the older `"chat_template": false`) passes the prompt to the
/// model as is. Answers end at [`CHAT_DEFAULT_MAX_TOKENS`] unless `max_tokens` says
/// otherwise.
async fn chat_simple(
    State(state): State<Shared>,
    JsonBody(body): JsonBody<GenerationBody>,
) -> Result<Json<Value>, ApiError> {
    state.check_model(body.model.as_deref())?;
    let prompt = match &body.prompt {
        Some(crate::api::PromptField::Text(t)) => t.clone(),
        Some(_) => {
            return Err(ApiError::invalid_param(
                "prompt",
                "`prompt` must be a string.",
            ))
        }
        None => {
            return Err(ApiError::invalid_param(
                "prompt",
                "Missing required parameter: `prompt`.",
            ))
        }
    };
    let mut params = body.params(&state.config.sampling, state.config.seed)?;
    if params.max_tokens.is_none() && state.config.max_tokens.is_none() {
        params.max_tokens = Some(CHAT_DEFAULT_MAX_TOKENS);
    }
    let raw = body.raw.unwrap_or(body.chat_template == Some(false));
    let messages = [ChatMessage {
        role: "user".into(),
        content: prompt,
    }];
    let input = if !raw && state.frontend.has_chat_template() {
        params.stops.extend(state.frontend.chat_stops());
        PromptInput::Chat(
            &messages,
            params.max_tokens.unwrap_or(CHAT_DEFAULT_MAX_TOKENS),
        )
    } else {
        PromptInput::Text(&messages[0].content)
    };
    let rx = start(&state, input, params)?;
    let done = collect(rx).await?;
    let mut out = json!({ "response": done.text, "finish_reason": done.finish });
    add_shift_fields(&mut out, &done.usage);
    Ok(Json(out))
}

/// `truncated` and `n_discarded` (llama-server's names) when context shift dropped
/// anything.
fn add_shift_fields(out: &mut Value, usage: &Usage) {
    if usage.n_discarded > 0 {
        out["truncated"] = json!(true);
        out["n_discarded"] = json!(usage.n_discarded);
    }
}

async fn chat_completions(
    State(state): State<Shared>,
    JsonBody(body): JsonBody<GenerationBody>,
) -> Result<Response, ApiError> {
    state.check_model(body.model.as_deref())?;
    let messages = body.messages()?;
    let mut params = body.params(&state.config.sampling, state.config.seed)?;
    params.stops.extend(state.frontend.chat_stops());
    let room = params
        .max_tokens
        .or(state.config.max_tokens)
        .unwrap_or(state.config.n_ctx / 4);
    let rx = start(&state, PromptInput::Chat(&messages, room), params)?;
    let id = state.new_id("chatcmpl");
    let model = state.frontend.model_id().to_string();
    let created = unix_time();
    if body.stream == Some(true) {
        let include_usage = body
            .stream_options
            .as_ref()
            .and_then(|o| o.include_usage)
            .unwrap_or(false);
        let chunk = move |delta: Value, finish: Option<FinishReason>, usage: Option<Usage>| {
            let mut c = json!({
                "id": id, "object": "chat.completion.chunk", "created": created,
                "model": model, "system_fingerprint": null,
                "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}],
            });
            if include_usage {
                c["usage"] = json!(usage);
            }
            c
        };
        let first = chunk(json!({"role": "assistant", "content": ""}), None, None);
        let stream = sse_stream(rx, Some(first), move |ev| match ev {
            Piece::Text(t) => vec![chunk(json!({"content": t}), None, None)],
            Piece::Done(finish, usage) => {
                let mut out = vec![chunk(json!({}), Some(finish), None)];
                if include_usage {
                    let mut u = chunk(json!({}), None, Some(usage));
                    u["choices"] = json!([]);
                    out.push(u);
                }
                out
            }
        });
        return Ok(Sse::new(stream).into_response());
    }
    let done = collect(rx).await?;
    let mut out = json!({
        "id": id, "object": "chat.completion", "created": created, "model": model,
        "system_fingerprint": null,
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": done.text, "refusal": null},
            "logprobs": null,
            "finish_reason": done.finish,
        }],
        "usage": done.usage,
        "timings": done.timings,
    });
    add_shift_fields(&mut out, &done.usage);
    Ok(Json(out).into_response())
}

async fn completions(
    State(state): State<Shared>,
    JsonBody(body): JsonBody<GenerationBody>,
) -> Result<Response, ApiError> {
    state.check_model(body.model.as_deref())?;
    let prompt = body.prompt()?;
    let params = body.params(&state.config.sampling, state.config.seed)?;
    let rx = start(&state, PromptInput::Text(&prompt), params)?;
    let id = state.new_id("cmpl");
    let model = state.frontend.model_id().to_string();
    let created = unix_time();
    if body.stream == Some(true) {
        let include_usage = body
            .stream_options
            .as_ref()
            .and_then(|o| o.include_usage)
            .unwrap_or(false);
        let chunk = move |text: &str, finish: Option<FinishReason>, usage: Option<Usage>| {
            let mut c = json!({
                "id": id, "object": "text_completion", "created": created, "model": model,
                "system_fingerprint": null,
                "choices": [{"index": 0, "text": text, "logprobs": null, "finish_reason": finish}],
            });
            if include_usage {
                c["usage"] = json!(usage);
            }
            c
        };
        let stream = sse_stream(rx, None, move |ev| match ev {
            Piece::Text(t) => vec![chunk(&t, None, None)],
            Piece::Done(finish, usage) => {
                let mut out = vec![chunk("", Some(finish), None)];
                if include_usage {
                    let mut u = chunk("", None, Some(usage));
                    u["choices"] = json!([]);
                    out.push(u);
                }
                out
            }
        });
        return Ok(Sse::new(stream).into_response());
    }
    let done = collect(rx).await?;
    let mut out = json!({
        "id": id, "object": "text_completion", "created": created, "model": model,
        "system_fingerprint": null,
        "choices": [{"index": 0, "text": done.text, "logprobs": null, "finish_reason": done.finish}],
        "usage": done.usage,
        "timings": done.timings,
    });
    add_shift_fields(&mut out, &done.usage);
    Ok(Json(out).into_response())
}

enum Piece {
    Text(String),
    Done(FinishReason, Usage),
}

/// Server-sent events for a generation: `first` (if any), one or more chunks per event,
/// then `data: [DONE]`. An error mid-stream is sent as an `{"error": ...}` event. Dropping
/// the stream (client gone) drops the receiver, which cancels the generation.
fn sse_stream(
    rx: UnboundedReceiver<GenEvent>,
    first: Option<Value>,
    mut to_chunks: impl FnMut(Piece) -> Vec<Value> + Send + 'static,
) -> impl Stream<Item = Result<Event, Infallible>> + Send + 'static {
    let data = |v: &Value| Event::default().data(v.to_string());
    let head = futures_util::stream::iter(first.iter().map(data).collect::<Vec<_>>());
    let body = UnboundedReceiverStream::new(rx).flat_map(move |ev| {
        let events: Vec<Event> = match ev {
            GenEvent::Text(t) => to_chunks(Piece::Text(t)).iter().map(data).collect(),
            GenEvent::Done { finish, usage, .. } => {
                let mut v: Vec<Event> = to_chunks(Piece::Done(finish, usage))
                    .iter()
                    .map(data)
                    .collect();
                v.push(Event::default().data("[DONE]"));
                v
            }
            GenEvent::Error(e) => vec![
                data(&ApiError::internal(e).body()),
                Event::default().data("[DONE]"),
            ],
        };
        futures_util::stream::iter(events)
    });
    head.chain(body).map(Ok)
}
