//! `mote serve`: an HTTP server for one model.
//!
//! Endpoints:
//! - `POST /chat` `{"prompt": "..."}` → `{"response": "..."}`. The prompt is a plain
//!   completion prompt passed to the model as is (no chat template), so the answer is the
//!   model's continuation of the text. Send `"chat_template": true` to have it wrapped as
//!   one user turn in the model's chat template instead. Sampling fields as below.
//! - `POST /v1/chat/completions`, `POST /v1/completions`, `GET /v1/models`: the OpenAI API
//!   (streaming as server-sent events ending in `data: [DONE]`, usage, stop strings, seed,
//!   penalties). `model` may be left out or name the served model (its file name, with or
//!   without `.gguf`); any other name is a 404.
//! - `GET /health`, `GET /metrics` (Prometheus), `GET /` (a web chat page).
//! - `POST /slots/{id}?action=save|restore|erase`, `GET /slots`: llama-server's slot
//!   persistence (with `--slot-save-path DIR`), see [`slots`].
//!
//! Structure: [`engine`] says what a model must offer; [`scheduler`] owns the model on its
//! own thread and interleaves `--parallel` slots; [`routes`] is the HTTP layer.

pub mod api;
pub mod context;
pub mod engine;
pub mod error;
pub mod extract;
pub mod fake;
pub mod flags;
pub mod metrics;
pub mod model_engine;
pub mod routes;
pub mod scheduler;
pub mod slots;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use mote_model::{KvPrecision, LoadOptions};
use mote_session::SamplerConfig;

use crate::engine::{Backend, Frontend};
use crate::metrics::Metrics;
use crate::routes::{AppState, ServerConfig};

/// `mote serve` flags.
#[derive(Clone, Debug, clap::Args)]
pub struct ServeArgs {
    /// GGUF model file.
    pub model: PathBuf,
    /// Address to bind. Keep 127.0.0.1 unless the server must be reachable from elsewhere.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// Requests generated at the same time (each slot has its own KV cache).
    #[arg(long, short = 'n', default_value_t = 2)]
    pub parallel: usize,
    /// Context positions per slot; 0: the model's trained context, capped at 4096.
    #[arg(long, short = 'c', default_value_t = 0)]
    pub ctx_size: usize,
    /// Require `Authorization: Bearer KEY` on the API (not on / and /health).
    #[arg(long, env = "MOTE_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// Requests that may wait for a free slot; more are answered 429 with Retry-After.
    #[arg(long, default_value_t = 64)]
    pub max_queue: usize,
    /// Kernel worker threads; 0: one per physical core.
    #[arg(long, short = 't', default_value_t = 0)]
    pub threads: usize,
    /// KV cache type for keys: f16 (default, as llama.cpp), f32 or q8_0. Also -ctk.
    #[arg(long = "cache-type-k", default_value_t = KvPrecision::F16, value_name = "TYPE")]
    pub cache_type_k: KvPrecision,
    /// KV cache type for values: f16 (default), f32 or q8_0. Also -ctv.
    #[arg(long = "cache-type-v", default_value_t = KvPrecision::F16, value_name = "TYPE")]
    pub cache_type_v: KvPrecision,
    /// Quantize a float (F32/F16/BF16) model's weight matrices to TYPE while loading
    /// (q8_0, q4_0, q4_k, ...; already-quantized matrices are left as they are).
    #[arg(long = "quantize", value_name = "TYPE", value_parser = mote_model::parse_quantize_type)]
    pub quantize: Option<mote_tensor::DType>,
    /// Largest request body accepted, in bytes.
    #[arg(long, default_value_t = 1 << 20)]
    pub body_limit: usize,
    /// Default token limit per response; 0: until end-of-generation or a full context.
    #[arg(long, default_value_t = 0)]
    pub n_predict: usize,
    /// Keep generating past end-of-generation tokens (they are never sampled), until the
    /// token limit or a full context: for benchmarks and tests (llama-server's flag).
    #[arg(long)]
    pub ignore_eos: bool,
    /// Default sampling temperature (0: greedy).
    #[arg(long, default_value_t = 0.8)]
    pub temp: f32,
    #[arg(long, default_value_t = 40)]
    pub top_k: i32,
    #[arg(long, default_value_t = 0.95)]
    pub top_p: f32,
    #[arg(long, default_value_t = 0.05)]
    pub min_p: f32,
    #[arg(long, default_value_t = 1.0)]
    pub repeat_penalty: f32,
    #[arg(long, default_value_t = 64)]
    pub repeat_last_n: i32,
    #[arg(long, default_value_t = 0.0)]
    pub presence_penalty: f32,
    #[arg(long, default_value_t = 0.0)]
    pub frequency_penalty: f32,
    /// Default seed for requests without one; unset: a fresh seed per request.
    #[arg(long)]
    pub seed: Option<u64>,
    #[command(flatten)]
    pub dry: flags::DryArgs,
    #[command(flatten)]
    pub context: flags::ContextArgs,
    /// Folder for slot files: enables `POST /slots/{id}?action=save|restore|erase` with
    /// `{"filename": NAME}` (NAME a plain file name inside DIR). Created if missing.
    #[arg(long, value_name = "DIR")]
    pub slot_save_path: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(transparent)]
    Load(#[from] model_engine::LoadError),
    #[error("invalid flag: {0}")]
    Flag(String),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error("server: {0}")]
    Io(#[from] std::io::Error),
}

impl ServeArgs {
    fn sampling(&self) -> SamplerConfig {
        let mut config = SamplerConfig {
            temperature: self.temp,
            top_k: self.top_k,
            top_p: self.top_p,
            min_p: self.min_p,
            repeat_penalty: self.repeat_penalty,
            repeat_last_n: self.repeat_last_n,
            presence_penalty: self.presence_penalty,
            frequency_penalty: self.frequency_penalty,
            seed: 0,
            ..Default::default()
        };
        self.dry.apply(&mut config);
        config
    }
}

/// Everything needed to serve, built from an engine; [`run`] uses the real model, tests a
/// fake one.
pub struct Server {
    pub state: Arc<AppState>,
}

impl Server {
    pub fn new(
        frontend: Arc<dyn Frontend>,
        backend: Box<dyn Backend>,
        config: ServerConfig,
    ) -> Self {
        let metrics = Arc::new(Metrics::default());
        let scheduler = scheduler::spawn(
            backend,
            frontend.clone(),
            config.n_slots,
            config.n_ctx,
            config.max_queue,
            config.ignore_eos,
            metrics.clone(),
        );
        Server {
            state: Arc::new(AppState::new(frontend, scheduler, metrics, config)),
        }
    }

    pub fn router(&self) -> axum::Router {
        routes::router(self.state.clone())
    }

    /// Serves on `listener` until `shutdown` resolves; then refuses new connections, ends
    /// every generation (streams get a final error event) and returns once connections
    /// have closed, or after a grace period.
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServerError> {
        let scheduler = self.state.scheduler.clone();
        let (stopping_tx, stopping_rx) = tokio::sync::oneshot::channel::<()>();
        let on_signal = async move {
            shutdown.await;
            tracing::info!("shutting down: cancelling generations");
            let _ = stopping_tx.send(());
            let _ = tokio::task::spawn_blocking(move || scheduler.shutdown()).await;
        };
        let server = axum::serve(listener, self.router()).with_graceful_shutdown(on_signal);
        let grace = async {
            if stopping_rx.await.is_ok() {
                tokio::time::sleep(Duration::from_secs(10)).await;
            } else {
                std::future::pending::<()>().await;
            }
        };
        tokio::select! {
            r = server => r?,
            _ = grace => tracing::warn!("connections still open after 10 s; exiting anyway"),
        }
        self.state.scheduler.shutdown();
        Ok(())
    }
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

/// `mote serve`: loads the model, binds, serves until Ctrl-C or SIGTERM.
pub fn run(args: ServeArgs) -> Result<(), ServerError> {
    if args.parallel == 0 {
        return Err(ServerError::Flag("--parallel must be at least 1".into()));
    }
    args.context.validate().map_err(ServerError::Flag)?;
    let opts = LoadOptions {
        threads: args.threads,
        cache_type_k: args.cache_type_k,
        cache_type_v: args.cache_type_v,
        quantize: args.quantize,
    };
    let slot_save_path = match &args.slot_save_path {
        None => None,
        Some(dir) => {
            let canonical = std::fs::create_dir_all(dir)
                .and_then(|_| dir.canonicalize())
                .map_err(|e| {
                    ServerError::Flag(format!("--slot-save-path {}: {e}", dir.display()))
                })?;
            Some(canonical)
        }
    };
    let (frontend, backend, n_ctx) =
        model_engine::load_with(&args.model, &opts, args.parallel, args.ctx_size)?;
    let config = ServerConfig {
        api_key: args.api_key.clone().filter(|k| !k.is_empty()),
        n_ctx,
        n_slots: args.parallel,
        max_queue: args.max_queue,
        body_limit: args.body_limit,
        sampling: args.sampling(),
        seed: args.seed,
        max_tokens: (args.n_predict > 0).then_some(args.n_predict),
        ignore_eos: args.ignore_eos,
        context: args.context.clone(),
        slot_save_path,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let addr = format!("{}:{}", args.host, args.port);
        let listener = tokio::net::TcpListener::bind(&addr)
            .await
            .map_err(|source| ServerError::Bind {
                addr: addr.clone(),
                source,
            })?;
        let local: SocketAddr = listener.local_addr()?;
        eprintln!(
            "mote serve: {} on http://{local}/ ({} slots x {n_ctx} positions, KV cache {}/{})",
            frontend.model_id(),
            args.parallel,
            args.cache_type_k,
            args.cache_type_v
        );
        let server = Server::new(frontend, Box::new(backend), config);
        server.serve(listener, shutdown_signal()).await
    })
}
