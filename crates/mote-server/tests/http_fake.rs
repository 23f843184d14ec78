//! The HTTP layer and scheduler on the deterministic fake engine, which always answers
//! `Hi, fake!`. Every malformed request is followed by a well-formed one that succeeds.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use mote_server::fake::{FakeBackend, FakeFrontend, REPLY};
use mote_server::routes::ServerConfig;
use mote_server::Server;
use mote_session::SamplerConfig;
use serde_json::{json, Value};
use tower::ServiceExt;

struct Opts {
    slots: usize,
    n_ctx: usize,
    max_queue: usize,
    body_limit: usize,
    api_key: Option<&'static str>,
    delay_ms: u64,
    ignore_eos: bool,
}

impl Default for Opts {
    fn default() -> Self {
        Opts {
            slots: 2,
            n_ctx: 256,
            max_queue: 8,
            body_limit: 4096,
            api_key: None,
            delay_ms: 0,
            ignore_eos: false,
        }
    }
}

struct Harness {
    server: Server,
    router: Router,
    forwarded: Arc<std::sync::atomic::AtomicUsize>,
}

fn harness(o: Opts) -> Harness {
    let backend = FakeBackend::new(o.slots, Duration::from_millis(o.delay_ms));
    let forwarded = backend.forwarded.clone();
    let server = Server::new(
        Arc::new(FakeFrontend),
        Box::new(backend),
        ServerConfig {
            api_key: o.api_key.map(String::from),
            n_ctx: o.n_ctx,
            n_slots: o.slots,
            max_queue: o.max_queue,
            body_limit: o.body_limit,
            sampling: SamplerConfig::default(),
            seed: Some(1),
            max_tokens: None,
            ignore_eos: o.ignore_eos,
            context: Default::default(),
            slot_save_path: None,
        },
    );
    let router = server.router();
    Harness {
        server,
        router,
        forwarded,
    }
}

fn post(path: &str, body: impl Into<Body>) -> Request<Body> {
    Request::post(path)
        .header("content-type", "application/json")
        .body(body.into())
        .unwrap()
}

async fn send(router: &Router, req: Request<Body>) -> (StatusCode, Value, String) {
    let resp = router.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let json = serde_json::from_str(&text).unwrap_or(Value::Null);
    (status, json, text)
}

fn chat_body() -> String {
    json!({"model": "fake", "messages": [{"role": "user", "content": "hello"}]}).to_string()
}

/// A well-formed chat request that must succeed.
async fn assert_chat_ok(router: &Router) {
    let (status, body, text) = send(router, post("/v1/chat/completions", chat_body())).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    assert_eq!(body["choices"][0]["message"]["content"], REPLY);
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
}

fn assert_error(status: StatusCode, body: &Value, want: StatusCode, text: &str) {
    assert_eq!(status, want, "{text}");
    let e = &body["error"];
    assert!(
        e["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{text}"
    );
    assert!(e["type"].is_string(), "{text}");
    assert!(
        e.get("param").is_some() && e.get("code").is_some(),
        "{text}"
    );
}

/// Data lines of a server-sent event stream.
fn sse_data(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .map(|d| d.trim().to_string())
        .collect()
}

#[tokio::test]
async fn malformed_json_is_400() {
    let h = harness(Opts::default());
    for bad in ["{", "not json", "[1, 2]", "", "{\"messages\": [}"] {
        let (status, body, text) = send(&h.router, post("/v1/chat/completions", bad)).await;
        assert_error(status, &body, StatusCode::BAD_REQUEST, &text);
        assert_chat_ok(&h.router).await;
    }
}

#[tokio::test]
async fn wrong_types_are_400_naming_the_field() {
    let h = harness(Opts::default());
    let cases = [
        (json!({"messages": "hello"}), "messages"),
        (
            json!({"messages": [{"role": "user", "content": "x"}], "temperature": "hot"}),
            "temperature",
        ),
        (
            json!({"messages": [{"role": "user", "content": "x"}], "max_tokens": -5}),
            "max_tokens",
        ),
        (
            json!({"messages": [{"role": "user", "content": "x"}], "stream": "yes"}),
            "stream",
        ),
        (
            json!({"messages": [{"role": "user", "content": "x"}], "stop": 7}),
            "stop",
        ),
        (
            json!({"messages": [{"role": 3, "content": "x"}]}),
            "messages[0].role",
        ),
    ];
    for (bad, param) in cases {
        let (status, body, text) =
            send(&h.router, post("/v1/chat/completions", bad.to_string())).await;
        assert_error(status, &body, StatusCode::BAD_REQUEST, &text);
        assert!(
            body["error"]["param"]
                .as_str()
                .is_some_and(|p| p.starts_with(param)),
            "param for {param}: {text}"
        );
        assert_chat_ok(&h.router).await;
    }
}

#[tokio::test]
async fn out_of_range_values_are_400() {
    let h = harness(Opts::default());
    let msgs = json!([{"role": "user", "content": "x"}]);
    for bad in [
        json!({"messages": msgs, "temperature": 5.0}),
        json!({"messages": msgs, "top_p": 1.5}),
        json!({"messages": msgs, "max_tokens": 0}),
        json!({"messages": msgs, "n": 2}),
        json!({"messages": [{"role": "wizard", "content": "x"}]}),
        json!({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}),
    ] {
        let (status, body, text) =
            send(&h.router, post("/v1/chat/completions", bad.to_string())).await;
        assert_error(status, &body, StatusCode::BAD_REQUEST, &text);
        assert_chat_ok(&h.router).await;
    }
}

#[tokio::test]
async fn unknown_model_is_404() {
    let h = harness(Opts::default());
    let bad = json!({"model": "gpt-17", "messages": [{"role": "user", "content": "x"}]});
    let (status, body, text) = send(&h.router, post("/v1/chat/completions", bad.to_string())).await;
    assert_error(status, &body, StatusCode::NOT_FOUND, &text);
    assert_eq!(body["error"]["code"], "model_not_found");
    assert_chat_ok(&h.router).await;
}

#[tokio::test]
async fn empty_or_missing_messages_are_400() {
    let h = harness(Opts::default());
    for bad in [json!({"messages": []}), json!({"model": "fake"})] {
        let (status, body, text) =
            send(&h.router, post("/v1/chat/completions", bad.to_string())).await;
        assert_error(status, &body, StatusCode::BAD_REQUEST, &text);
        assert_eq!(body["error"]["param"], "messages");
        assert_chat_ok(&h.router).await;
    }
}

#[tokio::test]
async fn body_over_the_limit_is_413() {
    let h = harness(Opts {
        body_limit: 1024,
        ..Opts::default()
    });
    let big = json!({"messages": [{"role": "user", "content": "x".repeat(5000)}]});
    let (status, body, text) = send(&h.router, post("/v1/chat/completions", big.to_string())).await;
    assert_error(status, &body, StatusCode::PAYLOAD_TOO_LARGE, &text);
    assert_chat_ok(&h.router).await;
}

#[tokio::test]
async fn prompt_longer_than_context_is_400() {
    let h = harness(Opts {
        n_ctx: 64,
        ..Opts::default()
    });
    let long = json!({"messages": [{"role": "user", "content": "y".repeat(200)}]});
    let (status, body, text) =
        send(&h.router, post("/v1/chat/completions", long.to_string())).await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, &text);
    assert_eq!(body["error"]["code"], "context_length_exceeded");
    let long = json!({"prompt": "z".repeat(200)});
    let (status, body, text) = send(&h.router, post("/v1/completions", long.to_string())).await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, &text);
    assert_eq!(body["error"]["code"], "context_length_exceeded");
    assert_chat_ok(&h.router).await;
}

#[tokio::test]
async fn generation_stops_at_a_full_context() {
    let h = harness(Opts {
        n_ctx: 30,
        ..Opts::default()
    });
    // 1 BOS + 25 bytes of prompt leaves room for 4 more positions.
    let req = json!({"prompt": ":".repeat(25)});
    let (status, body, text) = send(&h.router, post("/v1/completions", req.to_string())).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    assert_eq!(body["choices"][0]["finish_reason"], "length");
    assert_eq!(body["choices"][0]["text"], "Hi, f");
}

#[tokio::test]
async fn missing_or_wrong_api_key_is_401() {
    let h = harness(Opts {
        api_key: Some("sesame"),
        ..Opts::default()
    });
    for auth in [
        None,
        Some("Bearer nope"),
        Some("sesame"),
        Some("Basic sesame"),
    ] {
        let mut req = post("/v1/chat/completions", chat_body());
        if let Some(a) = auth {
            req.headers_mut()
                .insert("authorization", a.parse().unwrap());
        }
        let (status, body, text) = send(&h.router, req).await;
        assert_error(status, &body, StatusCode::UNAUTHORIZED, &text);
        let mut ok = post("/v1/chat/completions", chat_body());
        ok.headers_mut()
            .insert("authorization", "Bearer sesame".parse().unwrap());
        let (status, _, text) = send(&h.router, ok).await;
        assert_eq!(status, StatusCode::OK, "{text}");
    }
    // The page and the health check stay open.
    let (status, _, _) = send(
        &h.router,
        Request::get("/health").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, _) = send(&h.router, Request::get("/").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn unknown_route_and_method_answer_json() {
    let h = harness(Opts::default());
    let (status, body, text) = send(
        &h.router,
        Request::get("/v2/nothing").body(Body::empty()).unwrap(),
    )
    .await;
    assert_error(status, &body, StatusCode::NOT_FOUND, &text);
    let (status, body, text) = send(
        &h.router,
        Request::get("/v1/chat/completions")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_error(status, &body, StatusCode::METHOD_NOT_ALLOWED, &text);
    assert_chat_ok(&h.router).await;
}

#[tokio::test]
async fn full_queue_is_429_with_retry_after() {
    let h = harness(Opts {
        slots: 1,
        max_queue: 0,
        delay_ms: 30,
        ..Opts::default()
    });
    // Occupies the only slot for about 10 forward passes (300 ms).
    let busy = tokio::spawn({
        let router = h.router.clone();
        async move { send(&router, post("/v1/chat/completions", chat_body())).await }
    });
    tokio::time::sleep(Duration::from_millis(60)).await;
    let resp = h
        .router
        .clone()
        .oneshot(post("/v1/chat/completions", chat_body()))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(resp.headers().contains_key("retry-after"));
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let body: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(body["error"]["code"], "queue_full");
    let (status, _, text) = busy.await.unwrap();
    assert_eq!(status, StatusCode::OK, "{text}");
    assert_chat_ok(&h.router).await;
}

#[tokio::test]
async fn requests_beyond_the_slots_wait_in_the_queue() {
    let h = harness(Opts {
        slots: 2,
        max_queue: 8,
        delay_ms: 2,
        ..Opts::default()
    });
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let router = h.router.clone();
        tasks.push(tokio::spawn(async move {
            send(&router, post("/v1/chat/completions", chat_body())).await
        }));
    }
    for t in tasks {
        let (status, body, text) = t.await.unwrap();
        assert_eq!(status, StatusCode::OK, "{text}");
        assert_eq!(body["choices"][0]["message"]["content"], REPLY);
    }
}

#[tokio::test]
async fn non_streaming_chat_has_usage_and_limits() {
    let h = harness(Opts::default());
    let (status, body, text) = send(&h.router, post("/v1/chat/completions", chat_body())).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(body["choices"][0]["message"]["role"], "assistant");
    let usage = &body["usage"];
    assert_eq!(usage["completion_tokens"], REPLY.len());
    assert_eq!(
        usage["total_tokens"].as_u64(),
        Some(usage["prompt_tokens"].as_u64().unwrap() + REPLY.len() as u64)
    );

    let req = json!({"messages": [{"role": "user", "content": "x"}], "max_tokens": 3});
    let (_, body, _) = send(&h.router, post("/v1/chat/completions", req.to_string())).await;
    assert_eq!(body["choices"][0]["message"]["content"], "Hi,");
    assert_eq!(body["choices"][0]["finish_reason"], "length");
    assert_eq!(body["usage"]["completion_tokens"], 3);

    let req = json!({"messages": [{"role": "user", "content": "x"}], "max_completion_tokens": 2, "stop": ["fake"]});
    let (_, body, _) = send(&h.router, post("/v1/chat/completions", req.to_string())).await;
    assert_eq!(body["choices"][0]["message"]["content"], "Hi");

    let req = json!({"messages": [{"role": "user", "content": "x"}], "stop": "fake", "seed": -3,
                     "presence_penalty": 0.5, "frequency_penalty": 0.1, "temperature": 0});
    let (_, body, text) = send(&h.router, post("/v1/chat/completions", req.to_string())).await;
    assert_eq!(body["choices"][0]["message"]["content"], "Hi, ", "{text}");
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
}

#[tokio::test]
async fn streaming_chat_sends_chunks_usage_and_done() {
    let h = harness(Opts::default());
    let req = json!({"messages": [{"role": "user", "content": "hi"}], "stream": true,
                     "stream_options": {"include_usage": true}});
    let resp = h
        .router
        .clone()
        .oneshot(post("/v1/chat/completions", req.to_string()))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let data = sse_data(&String::from_utf8_lossy(&bytes));
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
    let chunks: Vec<Value> = data[..data.len() - 1]
        .iter()
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, REPLY);
    let finish: Vec<&Value> = chunks
        .iter()
        .map(|c| &c["choices"][0]["finish_reason"])
        .filter(|f| !f.is_null())
        .collect();
    assert_eq!(finish, [&json!("stop")]);
    let last = chunks.last().unwrap();
    assert_eq!(last["choices"], json!([]));
    assert_eq!(last["usage"]["completion_tokens"], REPLY.len());
    assert!(chunks
        .iter()
        .all(|c| c["object"] == "chat.completion.chunk"));
}

#[tokio::test]
async fn completions_and_simple_chat() {
    let h = harness(Opts::default());
    let (status, body, text) = send(
        &h.router,
        post("/v1/completions", json!({"prompt": "Once:"}).to_string()),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{text}");
    assert_eq!(body["object"], "text_completion");
    assert_eq!(body["choices"][0]["text"], REPLY);

    let req = json!({"prompt": ["Once:"], "stream": true, "max_tokens": 2});
    let (status, _, text) = send(&h.router, post("/v1/completions", req.to_string())).await;
    assert_eq!(status, StatusCode::OK);
    let data = sse_data(&text);
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
    let joined: String = data[..data.len() - 1]
        .iter()
        .map(|d| serde_json::from_str::<Value>(d).unwrap())
        .filter_map(|c| c["choices"][0]["text"].as_str().map(String::from))
        .collect();
    assert_eq!(joined, "Hi");

    for bad in [
        json!({}),
        json!({"prompt": 5}),
        json!({"prompt": ["a", "b"]}),
    ] {
        let (status, body, text) = send(&h.router, post("/v1/completions", bad.to_string())).await;
        assert_error(status, &body, StatusCode::BAD_REQUEST, &text);
    }

    let (status, body, text) = send(
        &h.router,
        post("/chat", json!({"prompt": "Hello"}).to_string()),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{text}");
    assert_eq!(body, json!({"response": REPLY, "finish_reason": "stop"}));
    for raw in [
        json!({"raw": true}),
        json!({"chat_template": false}),
        json!({}),
    ] {
        let mut req = json!({"prompt": "Hello", "temperature": 0});
        req.as_object_mut()
            .unwrap()
            .extend(raw.as_object().unwrap().clone());
        let (_, body, _) = send(&h.router, post("/chat", req.to_string())).await;
        assert_eq!(body["response"], REPLY);
    }
    for bad in [
        json!({}),
        json!({"prompt": ["a"]}),
        json!({"prompt": "x", "top_p": "high"}),
    ] {
        let (status, body, text) = send(&h.router, post("/chat", bad.to_string())).await;
        assert_error(status, &body, StatusCode::BAD_REQUEST, &text);
        let (status, _, _) = send(
            &h.router,
            post("/chat", json!({"prompt": "Hello"}).to_string()),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
    }
}

#[tokio::test]
async fn models_health_and_metrics() {
    let h = harness(Opts::default());
    assert_chat_ok(&h.router).await;
    let (status, body, _) = send(
        &h.router,
        Request::get("/v1/models").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["object"], "list");
    assert_eq!(body["data"][0]["id"], "fake");
    let (_, body, _) = send(
        &h.router,
        Request::get("/health").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(body["status"], "ok");
    let (status, _, text) = send(
        &h.router,
        Request::get("/metrics").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    for needle in [
        "mote_requests_total{endpoint=\"/v1/chat/completions\",status=\"200\"} 1",
        "mote_generated_tokens_total 9",
        "mote_prompt_tokens_total",
        "mote_queue_depth 0",
        "mote_tokens_per_second",
        "mote_time_to_first_token_seconds_count 1",
    ] {
        assert!(text.contains(needle), "{needle} missing in\n{text}");
    }
    let (_, _, page) = send(&h.router, Request::get("/").body(Body::empty()).unwrap()).await;
    assert!(page.contains("v1/chat/completions"));
}

#[tokio::test]
async fn a_continued_conversation_reuses_the_cached_prefix() {
    let h = harness(Opts {
        slots: 1,
        ..Opts::default()
    });
    let first = json!({"messages": [{"role": "user", "content": "tell me a long story please"}]});
    let (_, _, _) = send(&h.router, post("/v1/chat/completions", first.to_string())).await;
    let after_first = h.forwarded.load(Ordering::Relaxed);
    let next = json!({"messages": [
        {"role": "user", "content": "tell me a long story please"},
        {"role": "assistant", "content": REPLY},
        {"role": "user", "content": "more"},
    ]});
    let (status, _, _) = send(&h.router, post("/v1/chat/completions", next.to_string())).await;
    assert_eq!(status, StatusCode::OK);
    let second = h.forwarded.load(Ordering::Relaxed) - after_first;
    let prompt_len =
        1 + "user: tell me a long story please\nassistant: Hi, fake!\nuser: more\nassistant:".len();
    // The first prompt (1 + 42 tokens) comes from the cache; only the rest is computed.
    assert!(
        second < prompt_len - 30,
        "forwarded {second} tokens for a {prompt_len}-token prompt"
    );
}

#[tokio::test]
async fn a_client_that_goes_away_frees_its_slot() {
    let h = harness(Opts {
        slots: 1,
        max_queue: 0,
        delay_ms: 40,
        ..Opts::default()
    });
    let req = json!({"messages": [{"role": "user", "content": "hi"}], "stream": true});
    let resp = h
        .router
        .clone()
        .oneshot(post("/v1/chat/completions", req.to_string()))
        .await
        .unwrap();
    let mut body = resp.into_body();
    let first = body.frame().await.unwrap().unwrap();
    assert!(first.is_data());
    drop(body);
    // The slot frees within a couple of forward passes; then a new request fits.
    let mut ok = false;
    for _ in 0..50 {
        let (status, _, _) = send(&h.router, post("/v1/chat/completions", chat_body())).await;
        if status == StatusCode::OK {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(ok, "the slot was never freed");
    let (_, _, text) = send(
        &h.router,
        Request::get("/metrics").body(Body::empty()).unwrap(),
    )
    .await;
    assert!(text.contains("mote_cancelled_total 1"), "{text}");
}

#[tokio::test]
async fn shutdown_ends_streams_and_refuses_new_work() {
    let h = harness(Opts {
        slots: 1,
        delay_ms: 50,
        ..Opts::default()
    });
    let req = json!({"messages": [{"role": "user", "content": "hi"}], "stream": true});
    let stream = tokio::spawn({
        let router = h.router.clone();
        async move { send(&router, post("/v1/chat/completions", req.to_string())).await }
    });
    tokio::time::sleep(Duration::from_millis(120)).await;
    let scheduler = h.server.state.scheduler.clone();
    tokio::task::spawn_blocking(move || scheduler.shutdown())
        .await
        .unwrap();
    let (_, _, text) = tokio::time::timeout(Duration::from_secs(5), stream)
        .await
        .expect("the stream did not end")
        .unwrap();
    let data = sse_data(&text);
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
    assert!(text.contains("shutting down"), "{text}");
    let (status, body, text) = send(&h.router, post("/v1/chat/completions", chat_body())).await;
    assert_error(status, &body, StatusCode::SERVICE_UNAVAILABLE, &text);
}

#[tokio::test]
async fn serves_over_tcp_and_shuts_down_gracefully() {
    let h = harness(Opts::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(h.server.serve(listener, async {
        let _ = stop_rx.await;
    }));
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    let body = chat_body();
    let req = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    conn.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    conn.read_to_string(&mut out).await.unwrap();
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert!(out.contains(REPLY));
    let _ = stop_tx.send(());
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("serve did not return")
        .unwrap()
        .unwrap();
}

/// `--ignore-eos`: the end-of-generation token is never sampled, so an answer runs to its
/// token limit (the fake model would otherwise stop after its short reply).
#[tokio::test]
async fn ignore_eos_runs_to_the_token_limit() {
    for (ignore_eos, want_tokens, want_finish) in [(false, 9, "stop"), (true, 30, "length")] {
        let h = harness(Opts {
            ignore_eos,
            ..Opts::default()
        });
        let req = json!({"prompt": "Hello", "max_tokens": 30, "temperature": 0});
        let (status, body, text) = send(&h.router, post("/v1/completions", req.to_string())).await;
        assert_eq!(status, StatusCode::OK, "{text}");
        assert_eq!(body["usage"]["completion_tokens"], want_tokens, "{text}");
        assert_eq!(body["choices"][0]["finish_reason"], want_finish, "{text}");
    }
}
