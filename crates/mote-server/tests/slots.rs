//! Slot persistence on a real model (the tiny random llama): save a slot, restart, restore
//! it into another slot, and go on as if the server had never stopped; refused files and
//! names leave the slot usable and nothing outside the folder touched.

mod common;

use std::path::{Path, PathBuf};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use mote_model::{KvPrecision, LoadOptions};
use mote_server::routes::ServerConfig;
use mote_server::Server;
use mote_session::SamplerConfig;
use serde_json::{json, Value};
use tower::ServiceExt;

use common::model;

/// A fresh folder `<tmp>/mote-slots-<pid>-<name>/dir` (its parent shows what leaks out).
fn folder(name: &str) -> PathBuf {
    let root = std::env::temp_dir().join(format!("mote-slots-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let dir = root.join("dir");
    std::fs::create_dir_all(&dir).unwrap();
    dir.canonicalize().unwrap()
}

fn server(path: &Path, opts: &LoadOptions, dir: Option<&Path>) -> axum::Router {
    let (frontend, backend, n_ctx) =
        mote_server::model_engine::load_with(path, opts, 2, 128).unwrap();
    Server::new(
        frontend,
        Box::new(backend),
        ServerConfig {
            api_key: None,
            n_ctx,
            n_slots: 2,
            max_queue: 4,
            body_limit: 1 << 20,
            sampling: SamplerConfig::default(),
            seed: Some(1),
            max_tokens: Some(8),
            ignore_eos: true,
            slot_save_path: dir.map(Path::to_path_buf),
            context: Default::default(),
        },
    )
    .router()
}

async fn call(
    router: &axum::Router,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", "application/json")
        .body(body.map_or_else(Body::empty, |b| Body::from(b.to_string())))
        .unwrap();
    let resp = router.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (status, value)
}

async fn complete(router: &axum::Router, prompt: &str) -> Value {
    let (status, body) = call(
        router,
        "POST",
        "/v1/completions",
        Some(json!({"prompt": prompt, "max_tokens": 8, "temperature": 0})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

async fn slot_file(
    router: &axum::Router,
    slot: usize,
    action: &str,
    name: &str,
) -> (StatusCode, Value) {
    let path = format!("/slots/{slot}?action={action}");
    call(router, "POST", &path, Some(json!({"filename": name}))).await
}

/// The slot holding the most tokens, and how many.
async fn fullest_slot(router: &axum::Router) -> (usize, u64) {
    let (status, slots) = call(router, "GET", "/slots", None).await;
    assert_eq!(status, StatusCode::OK, "{slots}");
    slots
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["id"].as_u64().unwrap() as usize,
                s["n_cached"].as_u64().unwrap(),
            )
        })
        .max_by_key(|&(_, n)| n)
        .unwrap()
}

const PROMPT: &str = "The quick brown fox jumps over the lazy dog. Then it runs far away";
const SUFFIX: &str = " and the dog sleeps on.";

#[tokio::test]
async fn a_slot_survives_a_restart_in_another_slot() {
    let Some(tiny) = model("tiny.gguf") else {
        return;
    };
    let dir = folder("restart");
    let opts = LoadOptions::default();
    let first = server(&tiny, &opts, Some(&dir));
    complete(&first, PROMPT).await;
    let (used, n_cached) = fullest_slot(&first).await;
    let (status, saved) = slot_file(&first, used, "save", "conv.bin").await;
    assert_eq!(status, StatusCode::OK, "{saved}");
    assert_eq!(saved["n_saved"].as_u64(), Some(n_cached));
    let file = std::fs::read(dir.join("conv.bin")).unwrap();
    assert_eq!(saved["n_written"].as_u64(), Some(file.len() as u64));
    assert!(saved["timings"]["save_ms"].is_number());
    // The run that never stopped.
    let kept = complete(&first, &format!("{PROMPT}{SUFFIX}")).await;
    drop(first);

    let second = server(&tiny, &opts, Some(&dir));
    let other = 1 - used;
    let (status, restored) = slot_file(&second, other, "restore", "conv.bin").await;
    assert_eq!(status, StatusCode::OK, "{restored}");
    assert_eq!(restored["n_restored"].as_u64(), Some(n_cached));
    assert_eq!(restored["n_read"].as_u64(), Some(file.len() as u64));
    assert_eq!(restored["id_slot"].as_u64(), Some(other as u64));
    // Save -> restore -> save gives the same bytes.
    let (status, again) = slot_file(&second, other, "save", "again.bin").await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(std::fs::read(dir.join("again.bin")).unwrap(), file);

    let resumed = complete(&second, &format!("{PROMPT}{SUFFIX}")).await;
    assert_eq!(resumed["choices"][0]["text"], kept["choices"][0]["text"]);
    let cached = resumed["usage"]["prompt_tokens_details"]["cached_tokens"]
        .as_u64()
        .unwrap();
    let prompt_tokens = resumed["usage"]["prompt_tokens"].as_u64().unwrap();
    assert_eq!(
        cached,
        kept["usage"]["prompt_tokens_details"]["cached_tokens"]
            .as_u64()
            .unwrap()
    );
    assert!(cached >= 10 && cached < prompt_tokens, "{resumed}");
    // Only the suffix was processed.
    assert_eq!(resumed["timings"]["cache_n"].as_u64(), Some(cached));
    assert_eq!(
        resumed["timings"]["prompt_n"].as_u64(),
        Some(prompt_tokens - cached)
    );
    let _ = std::fs::remove_dir_all(dir.parent().unwrap());
}

/// Saves a slot file of `tiny` loaded with `opts` (another cache type or weights).
fn foreign_file(tiny: &Path, opts: &LoadOptions, path: &Path) {
    let model = mote_model::Model::load(tiny, opts).unwrap();
    let mut cache = model.new_cache(128);
    model.forward(&[1, 2, 3, 4], &mut cache, false).unwrap();
    mote_session::persist::save_cache_file(&model, &cache, &[1, 2, 3, 4], &[], path).unwrap();
}

#[tokio::test]
async fn bad_files_and_names_are_refused_and_the_slot_stays_usable() {
    let Some(tiny) = model("tiny.gguf") else {
        return;
    };
    let dir = folder("refuse");
    let outside = dir.parent().unwrap().to_path_buf();
    let router = server(&tiny, &LoadOptions::default(), Some(&dir));
    complete(&router, PROMPT).await;
    let (slot, n_cached) = fullest_slot(&router).await;
    let (status, _) = slot_file(&router, slot, "save", "good.bin").await;
    assert_eq!(status, StatusCode::OK);
    let good = std::fs::read(dir.join("good.bin")).unwrap();

    std::fs::write(dir.join("truncated.bin"), &good[..good.len() - 100]).unwrap();
    let mut bumped = good.clone();
    bumped[8] += 1;
    std::fs::write(dir.join("version.bin"), &bumped).unwrap();
    let mut flipped = good.clone();
    let mid = flipped.len() / 2;
    flipped[mid] ^= 0x40;
    std::fs::write(dir.join("flipped.bin"), &flipped).unwrap();
    std::fs::write(
        dir.join("garbage.bin"),
        b"not a slot file at all, just some text....................",
    )
    .unwrap();
    let q8 = LoadOptions {
        quantize: Some(mote_tensor::DType::Q8_0),
        ..Default::default()
    };
    foreign_file(&tiny, &q8, &dir.join("model.bin"));
    let f32s = LoadOptions {
        cache_type_k: KvPrecision::F32,
        cache_type_v: KvPrecision::F32,
        ..Default::default()
    };
    foreign_file(&tiny, &f32s, &dir.join("f32.bin"));

    for (name, says) in [
        ("truncated.bin", "truncated"),
        ("version.bin", "version 2"),
        ("flipped.bin", "checksum"),
        ("garbage.bin", "not a slot file"),
        ("model.bin", "another model"),
        ("f32.bin", "--cache-type-k f32"),
    ] {
        let (status, body) = slot_file(&router, slot, "restore", name).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{name}: {body}");
        let msg = body["error"]["message"].as_str().unwrap();
        assert!(msg.contains(says), "{name}: {msg}");
        assert!(
            !msg.contains(dir.to_str().unwrap()),
            "the server's folder leaks: {msg}"
        );
        assert_eq!(fullest_slot(&router).await, (slot, n_cached), "{name}");
    }

    // A symbolic link inside the folder to a file outside it.
    let target = outside.join("target.txt");
    std::fs::write(&target, "keep me").unwrap();
    #[cfg(unix)]
    std::os::unix::fs::symlink(&target, dir.join("link.bin")).unwrap();
    let absolute = outside.join("abs.bin").display().to_string();
    for name in [
        "../x.bin",
        "../dir/good.bin",
        "sub/x.bin",
        absolute.as_str(),
        "",
        ".hidden",
        "link.bin",
    ] {
        for action in ["save", "restore"] {
            let (status, body) = slot_file(&router, slot, action, name).await;
            if name == "link.bin" && cfg!(not(unix)) {
                continue;
            }
            assert_eq!(status, StatusCode::BAD_REQUEST, "{action} {name:?}: {body}");
            assert_eq!(body["error"]["code"], "invalid_filename", "{body}");
        }
    }
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep me");
    let mut leaked: Vec<_> = std::fs::read_dir(&outside)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    leaked.sort();
    assert_eq!(leaked, ["dir", "target.txt"]);

    let (status, body) = slot_file(&router, slot, "restore", "missing.bin").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (status, body) = slot_file(&router, 7, "save", "x.bin").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, body) = slot_file(&router, slot, "delete", "x.bin").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");

    // The slot still holds its tokens and answers; a good file still restores; erase.
    assert_eq!(fullest_slot(&router).await, (slot, n_cached));
    let (status, body) = slot_file(&router, 1 - slot, "restore", "good.bin").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let body = complete(&router, PROMPT).await;
    assert!(
        body["usage"]["prompt_tokens_details"]["cached_tokens"]
            .as_u64()
            .unwrap()
            > 0
    );
    let (status, body) = call(
        &router,
        "POST",
        &format!("/slots/{slot}?action=erase"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["id_slot"].as_u64(), Some(slot as u64));
    let _ = std::fs::remove_dir_all(&outside);
}

#[tokio::test]
async fn slot_actions_need_a_folder() {
    let Some(tiny) = model("tiny.gguf") else {
        return;
    };
    let router = server(&tiny, &LoadOptions::default(), None);
    let (status, body) = slot_file(&router, 0, "save", "x.bin").await;
    assert_eq!(status, StatusCode::NOT_IMPLEMENTED, "{body}");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("--slot-save-path"));
    let (status, body) = call(&router, "GET", "/slots", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body.as_array().unwrap().len(), 2);
}
