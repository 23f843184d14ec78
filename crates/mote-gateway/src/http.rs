//! `mote gateway serve`: the gateway over HTTP, with the ingest running beside it.
//!
//! - `POST /ask` `{"question": "..."}` → the answer and its record (tool calls, results,
//!   checks, timings), as `mote gateway ask --json` prints it;
//! - `GET /tools` → the tools (OpenAI `tools` array); `POST /tools/<name>` with the
//!   arguments as a JSON object → the tool's result;
//! - `GET /health` → reading count and ingest counters.
//!
//! Questions are answered one at a time (one model, one KV cache); the database is opened
//! per request, so answers always see the newest readings.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};

use crate::anomaly::Thresholds;
use crate::ask::Asker;
use crate::cli::{BrokerArgs, ServeArgs};
use crate::ingest::{self, IngestStats};
use crate::store::Store;
use crate::tools::{specs, Tools};
use crate::GatewayError;

struct AppState {
    db: PathBuf,
    asker: Mutex<Asker>,
    stats: Arc<IngestStats>,
}

fn error(status: StatusCode, message: String) -> Response {
    (status, Json(json!({"error": {"message": message}}))).into_response()
}

impl IntoResponse for GatewayError {
    fn into_response(self) -> Response {
        let status = match self {
            GatewayError::Tool(_) | GatewayError::Time(_) => StatusCode::BAD_REQUEST,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        error(status, self.to_string())
    }
}

/// Runs `f` with a freshly opened store on a blocking thread.
async fn with_store<T: Send + 'static>(
    state: &Arc<AppState>,
    f: impl FnOnce(&Arc<AppState>, &Store) -> Result<T, GatewayError> + Send + 'static,
) -> Result<T, GatewayError> {
    let state = state.clone();
    tokio::task::spawn_blocking(move || {
        let store = Store::open(&state.db)?;
        f(&state, &store)
    })
    .await
    .map_err(|e| GatewayError::Ask(format!("worker failed: {e}")))?
}

async fn health(State(s): State<Arc<AppState>>) -> Result<Json<Value>, GatewayError> {
    let readings = with_store(&s, |_, store| Ok(store.count()?)).await?;
    Ok(Json(
        json!({"status": "ok", "readings": readings, "ingest": s.stats.to_json()}),
    ))
}

async fn list_tools(State(s): State<Arc<AppState>>) -> Result<Json<Value>, GatewayError> {
    with_store(&s, |_, store| {
        let tools = Tools {
            store,
            thresholds: Thresholds::default(),
        };
        Ok(Json(Value::Array(
            specs(&tools.room_names()?)
                .iter()
                .map(|t| t.to_openai())
                .collect(),
        )))
    })
    .await
}

async fn call_tool(
    State(s): State<Arc<AppState>>,
    Path(name): Path<String>,
    body: Option<Json<Value>>,
) -> Result<Json<Value>, GatewayError> {
    let args = body.map_or(json!({}), |Json(v)| v);
    with_store(&s, move |_, store| {
        Ok(Json(
            Tools {
                store,
                thresholds: Thresholds::default(),
            }
            .call(&name, &args)?,
        ))
    })
    .await
}

async fn ask(
    State(s): State<Arc<AppState>>,
    body: Result<Json<Value>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let question = match body {
        Ok(Json(v)) => match v.get("question").and_then(Value::as_str) {
            Some(q) if !q.trim().is_empty() => q.to_string(),
            _ => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "the body needs a non-empty \"question\" string".into(),
                )
            }
        },
        Err(e) => return error(StatusCode::BAD_REQUEST, e.body_text()),
    };
    let r = with_store(&s, move |state, store| {
        let mut asker = state
            .asker
            .lock()
            .map_err(|_| GatewayError::Ask("the model failed on an earlier request".into()))?;
        Ok(asker.ask(store, &question)?.to_json())
    })
    .await;
    match r {
        Ok(v) => Json(v).into_response(),
        Err(e) => e.into_response(),
    }
}

pub fn serve(args: ServeArgs) -> Result<(), GatewayError> {
    let asker = Asker::load(&args.ask)?;
    eprintln!(
        "mote gateway: model {} loaded in {:.2} s",
        asker.model_path.display(),
        asker.load_time.as_secs_f64()
    );
    // Create the database before the ingest and the first request race to.
    Store::open(&args.db.db)?;
    let stats: Arc<IngestStats> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let ingest_thread = match &args.broker {
        Some(broker) => {
            let b = BrokerArgs {
                broker: broker.clone(),
                client_id: Some(args.client_id.clone()),
            };
            let opts = ingest::IngestOptions {
                mqtt: b.options("mote-gateway")?,
                db: args.db.db.clone(),
                batch: 256,
            };
            let (stats, stop) = (stats.clone(), stop.clone());
            Some(std::thread::spawn(move || ingest::run(opts, stats, stop)))
        }
        None => None,
    };
    let state = Arc::new(AppState {
        db: args.db.db.clone(),
        asker: Mutex::new(asker),
        stats,
    });
    let app = Router::new()
        .route("/health", get(health))
        .route("/tools", get(list_tools))
        .route("/tools/{name}", post(call_tool))
        .route("/ask", post(ask))
        .with_state(state);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let served = runtime.block_on(async move {
        let addr = format!("{}:{}", args.host, args.port);
        let listener = tokio::net::TcpListener::bind(&addr).await?;
        eprintln!(
            "mote gateway: listening on http://{}",
            listener.local_addr()?
        );
        axum::serve(listener, app)
            .with_graceful_shutdown(shutdown_signal())
            .await
    });
    stop.store(true, Ordering::Relaxed);
    if let Some(t) = ingest_thread {
        match t.join() {
            Ok(r) => r?,
            Err(_) => return Err(GatewayError::Mqtt("the ingest thread panicked".into())),
        }
    }
    Ok(served?)
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    mote_server::shutdown_signal().await
}
