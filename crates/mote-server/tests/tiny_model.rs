//! The server on a real model file (the tiny random llama): loading, chat template,
//! streaming and the context check go through the real tokenizer and decoder.

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::model;
use http_body_util::BodyExt;
use mote_server::routes::ServerConfig;
use mote_server::Server;
use mote_session::SamplerConfig;
use serde_json::{json, Value};
use tower::ServiceExt;

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
            ignore_eos: false,
            context: Default::default(),
            slot_save_path: None,
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
        let tokens = [[11 + step], [21 + step], [31 + step]];
        let batch: [(usize, &[u32]); 3] = [(2, &tokens[0]), (0, &tokens[1]), (1, &tokens[2])];
        let got = batched.forward_batch(&batch);
        for (&(slot, tokens), logits) in batch.iter().zip(got) {
            let logits = logits.unwrap();
            let want = single.forward(slot, tokens).unwrap();
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

/// Continuous batching: prompt chunks of several slots and decode tokens of others share
/// one pass. Each slot's logits must be those of running it alone.
#[test]
fn mixed_prefill_and_decode_batch_matches_one_slot_at_a_time() {
    use mote_server::engine::Backend;
    let Some(path) = model("tiny.gguf") else {
        return;
    };
    let (_, mut batched, _) = mote_server::model_engine::load(&path, 1, 3, 64).unwrap();
    let (_, mut single, _) = mote_server::model_engine::load(&path, 1, 3, 64).unwrap();
    for (slot, p) in [(0usize, &[1u32, 5, 9][..]), (1, &[1, 7])] {
        batched.forward(slot, p).unwrap();
        single.forward(slot, p).unwrap();
    }
    // Slot 2 starts its prompt (two chunks) while slots 0 and 1 decode.
    let prompt: [u32; 9] = [1, 3, 4, 8, 2, 6, 10, 12, 14];
    for (step, chunk) in [&prompt[..5], &prompt[5..]].into_iter().enumerate() {
        let (a, b) = ([40 + step as u32], [50 + step as u32]);
        let batch: [(usize, &[u32]); 3] = [(0, &a), (2, chunk), (1, &b)];
        let got = batched.forward_batch(&batch);
        for (&(slot, tokens), logits) in batch.iter().zip(got) {
            let logits = logits.unwrap();
            let want = single.forward(slot, tokens).unwrap();
            let diff = logits
                .iter()
                .zip(&want)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            assert!(diff < 1e-4, "slot {slot} step {step}: {diff}");
        }
    }
    assert_eq!(batched.cache_len(2), 9);
    assert_eq!(batched.cache_len(0), 5);
}

/// Requests with prompts of different lengths, run at the same time on 3 slots (so some
/// slots prefill while others decode, and queued requests join mid-way), give the same
/// greedy text as each run alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_match_their_solo_runs() {
    let Some(path) = model("tiny.gguf") else {
        return;
    };
    let new_router = |slots: usize| {
        let (frontend, backend, n_ctx) =
            mote_server::model_engine::load(&path, 1, slots, 128).unwrap();
        let server = Server::new(
            frontend,
            Box::new(backend),
            ServerConfig {
                api_key: None,
                n_ctx,
                n_slots: slots,
                max_queue: 8,
                body_limit: 1 << 20,
                sampling: SamplerConfig::default(),
                seed: Some(3),
                max_tokens: Some(10),
                ignore_eos: false,
                context: Default::default(),
                slot_save_path: None,
            },
        );
        let router = server.router();
        (server, router)
    };
    let prompts: Vec<String> = [1usize, 9, 3, 25, 6, 14]
        .iter()
        .enumerate()
        .map(|(i, &n)| {
            format!(
                "{} {}",
                ["Once", "The sky", "A cat"][i % 3],
                "and then ".repeat(n)
            )
        })
        .collect();
    let text = |t: &str| -> String {
        let v: Value = serde_json::from_str(t).unwrap();
        v["choices"][0]["text"].as_str().unwrap().to_string()
    };
    let body = |p: &str| json!({"prompt": p, "temperature": 0.0, "max_tokens": 10});

    let mut solo = Vec::new();
    for p in &prompts {
        // A fresh one-slot server per prompt: nothing cached, nothing shared.
        let (server, router) = new_router(1);
        let (status, t) = send(&router, "/v1/completions", body(p)).await;
        assert_eq!(status, StatusCode::OK, "{t}");
        solo.push(text(&t));
        server.state.scheduler.shutdown();
    }

    let (server, router) = new_router(3);
    let tasks: Vec<_> = prompts
        .iter()
        .map(|p| {
            let router = router.clone();
            let req = body(p);
            tokio::spawn(async move { send(&router, "/v1/completions", req).await })
        })
        .collect();
    for (i, task) in tasks.into_iter().enumerate() {
        let (status, t) = task.await.unwrap();
        assert_eq!(status, StatusCode::OK, "{t}");
        assert_eq!(text(&t), solo[i], "prompt {i}: {:?}", prompts[i]);
    }
    server.state.scheduler.shutdown();
}
