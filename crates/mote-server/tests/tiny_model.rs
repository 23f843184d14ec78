//! The server on a real model file (the tiny random llama): loading, chat template,
//! streaming and the context check go through the real tokenizer and decoder.

use std::path::PathBuf;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use mote_server::routes::ServerConfig;
use mote_server::Server;
use mote_session::SamplerConfig;
use serde_json::{json, Value};
use tower::ServiceExt;

fn model(name: &str) -> Option<PathBuf> {
    let dir = std::env::var_os("MOTE_MODELS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models"));
    let p = dir.join(name);
    if p.exists() {
        Some(p)
    } else {
        assert!(
            std::env::var_os("MOTE_REQUIRE_MODELS").is_none(),
            "{name} missing: run scripts/fetch-models.sh all"
        );
        eprintln!("skipping: {} not found", p.display());
        None
    }
}

async fn send(router: &axum::Router, path: &str, body: Value) -> (StatusCode, String) {
    let req = Request::post(path)
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    let resp = router.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

#[tokio::test]
async fn tiny_model_serves_chat_and_completions() {
    let Some(path) = model("tiny.gguf") else {
        return;
    };
    let (frontend, backend, n_ctx) = mote_server::model_engine::load(&path, 1, 2, 128).unwrap();
    assert_eq!(n_ctx, 128);
    let server = Server::new(
        frontend,
        Box::new(backend),
        ServerConfig {
            api_key: None,
            n_ctx,
            n_slots: 2,
            max_queue: 4,
            body_limit: 1 << 20,
            sampling: SamplerConfig::default(),
            seed: Some(7),
            max_tokens: Some(16),
        },
    );
    let router = server.router();
    let msgs = json!([{"role": "user", "content": "Hello there"}]);

    let (status, text) = send(
        &router,
        "/v1/chat/completions",
        json!({"messages": msgs, "max_tokens": 8}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{text}");
    let body: Value = serde_json::from_str(&text).unwrap();
    let usage = &body["usage"];
    assert!(usage["prompt_tokens"].as_u64().unwrap() > 2);
    assert!(usage["completion_tokens"].as_u64().unwrap() <= 8);
    assert!(body["choices"][0]["message"]["content"].is_string());

    // The same seed gives the same answer, also when the prompt comes from the cache.
    let req = json!({"messages": msgs, "max_tokens": 8, "seed": 11, "temperature": 1.0});
    let (_, a) = send(&router, "/v1/chat/completions", req.clone()).await;
    let (_, b) = send(&router, "/v1/chat/completions", req).await;
    let content = |t: &str| {
        serde_json::from_str::<Value>(t).unwrap()["choices"][0]["message"]["content"].clone()
    };
    assert_eq!(content(&a), content(&b));

    let (status, text) = send(
        &router,
        "/v1/chat/completions",
        json!({"messages": msgs, "stream": true, "max_tokens": 6, "stream_options": {"include_usage": true}}),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(text.trim_end().ends_with("data: [DONE]"), "{text}");
    assert!(text.contains("\"usage\""));

    let (status, text) = send(
        &router,
        "/v1/completions",
        json!({"prompt": "Once upon a time", "max_tokens": 4}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{text}");

    let long = "word ".repeat(400);
    let (status, text) = send(&router, "/v1/completions", json!({"prompt": long})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{text}");
    assert!(text.contains("context_length_exceeded"));

    let (status, text) = send(&router, "/chat", json!({"prompt": "The sky is"})).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    assert!(serde_json::from_str::<Value>(&text).unwrap()["response"].is_string());
    server.state.scheduler.shutdown();
}

/// `--parallel`: the model backend decodes all slots in one batched pass; the logits
/// must be those of decoding each slot on its own.
#[test]
fn batched_decode_matches_one_slot_at_a_time() {
    use mote_server::engine::Backend;
    let Some(path) = model("tiny.gguf") else {
        return;
    };
    let (_, mut batched, _) = mote_server::model_engine::load(&path, 1, 3, 64).unwrap();
    let (_, mut single, _) = mote_server::model_engine::load(&path, 1, 3, 64).unwrap();
    let prompts: [&[u32]; 3] = [&[1, 5, 9], &[1, 7], &[1, 3, 4, 8, 2]];
    for (slot, p) in prompts.iter().enumerate() {
        batched.forward(slot, p).unwrap();
        single.forward(slot, p).unwrap();
    }
    for step in 0..3u32 {
        // Slots in a scrambled order, as the scheduler may list them.
        let batch = [(2, 11 + step), (0, 21 + step), (1, 31 + step)];
        let got = batched.forward_batch(&batch);
        for (&(slot, token), logits) in batch.iter().zip(got) {
            let logits = logits.unwrap();
            let want = single.forward(slot, &[token]).unwrap();
            let diff = logits
                .iter()
                .zip(&want)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            assert!(diff < 1e-4, "slot {slot} step {step}: {diff}");
        }
    }
    assert_eq!(batched.cache_len(2), 8);
}
