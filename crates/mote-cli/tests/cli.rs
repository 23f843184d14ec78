//! The `mote` binary end to end: help, inspect, run and chat on the small model files,
//! `--prompt-cache` and `mote chat --session`.

use std::path::{Path, PathBuf};

use assert_cmd::Command;

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

fn mote() -> Command {
    let mut c = Command::cargo_bin("mote").unwrap();
    c.env_remove("RUST_LOG");
    c
}

fn stdout_of(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn help_explains_every_flag() {
    let top = stdout_of(mote().arg("--help"));
    for cmd in ["run", "chat", "inspect"] {
        assert!(top.contains(cmd), "{top}");
    }
    let run = stdout_of(mote().args(["run", "--help"]));
    for flag in [
        "--model",
        "--prompt",
        "--file",
        "--n-predict",
        "--threads",
        "--ctx-size",
        "--temp",
        "--top-k",
        "--top-p",
        "--min-p",
        "--repeat-penalty",
        "--repeat-last-n",
        "--presence-penalty",
        "--frequency-penalty",
        "--seed",
        "--ignore-eos",
        "--reverse-prompt",
        "--json",
    ] {
        assert!(run.contains(flag), "run --help lacks {flag}:\n{run}");
    }
    let chat = stdout_of(mote().args(["chat", "--help"]));
    assert!(chat.contains("--system-prompt") && chat.contains("--chat-template"));
    let inspect = stdout_of(mote().args(["inspect", "--help"]));
    assert!(inspect.contains("--json"));
}

#[test]
fn missing_model_is_one_clear_line() {
    let out = mote()
        .args(["inspect", "/nonexistent/model.gguf"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("error: ") && err.contains("does not exist"),
        "{err}"
    );
}

#[test]
fn not_a_gguf_file_is_an_error() {
    let path = std::env::temp_dir().join(format!("mote-cli-test-{}.gguf", std::process::id()));
    std::fs::write(&path, b"definitely not a model").unwrap();
    let out = mote().arg("inspect").arg(&path).output().unwrap();
    let _ = std::fs::remove_file(&path);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not a GGUF file"), "{err}");
}

#[test]
fn inspect_tiny_tables_and_json() {
    let Some(tiny) = model("tiny.gguf") else {
        return;
    };
    let text = stdout_of(mote().arg("inspect").arg(&tiny));
    assert!(text.contains("general.architecture"));
    assert!(text.contains("(32000 items)"), "long arrays are summarised");
    assert!(text.contains("token_embd.weight"));
    assert!(text.contains("parameters: 1,032,272"));
    assert!(text.contains("16.00 bits per weight"));

    let json = stdout_of(mote().arg("inspect").arg(&tiny).arg("--json"));
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["metadata"]["general.architecture"], "llama");
    assert_eq!(v["metadata"]["tokenizer.ggml.tokens"]["len"], 32000);
    assert_eq!(v["parameters"], 1_032_272);
    assert_eq!(v["tensors"].as_array().unwrap().len(), 21);
    assert_eq!(v["types"]["F16"]["tensors"], 16);
}

#[test]
fn run_tiny_is_reproducible_and_reports_json() {
    let Some(tiny) = model("tiny.gguf") else {
        return;
    };
    let args = ["-p", "Once upon a time", "-n", "8", "--seed", "7", "--json"];
    let a = stdout_of(mote().arg("run").arg(&tiny).args(args));
    let b = stdout_of(mote().arg("run").arg("-m").arg(&tiny).args(args));
    let va: serde_json::Value = serde_json::from_str(&a).unwrap();
    let vb: serde_json::Value = serde_json::from_str(&b).unwrap();
    assert_eq!(va["tokens"], vb["tokens"], "same seed, same tokens");
    assert_eq!(va["generated_tokens"], 8);
    assert_eq!(va["finish_reason"], "length");
    assert!(va["timings"]["decode_tokens_per_s"].as_f64().unwrap() > 0.0);
    assert!(va["text"].is_string());

    // Streaming mode prints just the text (plus a final newline) on stdout.
    let streamed = stdout_of(mote().arg("run").arg(&tiny).args(&args[..6]));
    assert_eq!(
        streamed.trim_end_matches('\n'),
        va["text"].as_str().unwrap().trim_end_matches('\n')
    );
}

#[test]
fn run_tiny_context_limits() {
    let Some(tiny) = model("tiny.gguf") else {
        return;
    };
    let v: serde_json::Value =
        serde_json::from_str(&stdout_of(mote().arg("run").arg(&tiny).args([
            "-p",
            "Hello",
            "-c",
            "8",
            "-n",
            "-1",
            "--ignore-eos",
            "--json",
        ])))
        .unwrap();
    assert_eq!(v["finish_reason"], "context");

    let out = mote()
        .arg("run")
        .arg(&tiny)
        .args(["-p", "this prompt is longer than four tokens", "-c", "4"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--ctx-size"), "{err}");
}

#[test]
fn run_reads_prompt_from_stdin_and_file() {
    let Some(tiny) = model("tiny.gguf") else {
        return;
    };
    let args = ["-n", "4", "--temp", "0", "--json"];
    let from_stdin = stdout_of(
        mote()
            .arg("run")
            .arg(&tiny)
            .args(args)
            .write_stdin("Hello world"),
    );
    let path = std::env::temp_dir().join(format!("mote-cli-prompt-{}.txt", std::process::id()));
    std::fs::write(&path, "Hello world").unwrap();
    let from_file = stdout_of(mote().arg("run").arg(&tiny).args(args).arg("-f").arg(&path));
    let _ = std::fs::remove_file(&path);
    let a: serde_json::Value = serde_json::from_str(&from_stdin).unwrap();
    let b: serde_json::Value = serde_json::from_str(&from_file).unwrap();
    assert_eq!(a["tokens"], b["tokens"]);
}

#[test]
fn chat_is_scriptable() {
    let Some(tiny) = model("tiny.gguf") else {
        return;
    };
    let out = stdout_of(
        mote()
            .arg("chat")
            .arg(&tiny)
            .args(["--temp", "0", "-n", "4", "-sys", "Be brief."])
            .write_stdin("hi\n/reset\nhello again\n/exit\nnot read\n"),
    );
    // Two replies, one line each (tiny's replies are noise, but they end with a newline).
    assert_eq!(out.matches('\n').count(), 2, "{out:?}");
}

#[test]
fn bad_flag_values_fail_cleanly() {
    let Some(tiny) = model("tiny.gguf") else {
        return;
    };
    let out = mote()
        .arg("run")
        .arg(&tiny)
        .args(["-p", "x", "--repeat-penalty", "0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("repeat-penalty"));
}

#[test]
fn cache_type_flags_take_llama_cpp_spellings() {
    let Some(tiny) = model("tiny.gguf") else {
        return;
    };
    for (k, v) in [("f32", "f32"), ("q8_0", "f16"), ("f16", "q8_0")] {
        let out = stdout_of(mote().arg("run").arg(&tiny).args([
            "-p", "Once", "-n", "3", "--seed", "1", "--json", "-ctk", k, "-ctv", v,
        ]));
        let j: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(j["generated_tokens"], 3, "{k}/{v}");
    }
    let bench = stdout_of(mote().arg("bench").arg(&tiny).args([
        "-p",
        "8",
        "-n",
        "2",
        "-r",
        "1",
        "-o",
        "jsonl",
        "--cache-type-k",
        "q8_0",
    ]));
    assert!(bench.contains("\"type_k\":\"q8_0\""), "{bench}");
    // Depth: the tests run after that many tokens in the cache and say so.
    let deep = stdout_of(mote().arg("bench").arg(&tiny).args([
        "-p", "4", "-n", "2", "-d", "6", "--npl", "2", "-r", "1", "-o", "jsonl",
    ]));
    let objs: Vec<serde_json::Value> = deep
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(objs[0]["test"], "pp4@d6", "{deep}");
    assert_eq!(objs[1]["test"], "tg2x2@d6", "{deep}");
    assert_eq!(
        (&objs[1]["n_depth"], &objs[1]["npl"]),
        (&6.into(), &2.into())
    );
    let out = mote()
        .arg("run")
        .arg(&tiny)
        .args(["-p", "x", "-ctk", "q4_0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("q4_0"));
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("mote-cache-files-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `mote run --json` with a prompt cache; returns the JSON and stderr.
fn run_cached(
    tiny: &Path,
    prompt: &str,
    cache: &Path,
    extra: &[&str],
) -> (serde_json::Value, String) {
    let out = mote()
        .arg("run")
        .arg(tiny)
        .args([
            "-p",
            prompt,
            "-n",
            "6",
            "--temp",
            "0",
            "--json",
            "--prompt-cache",
        ])
        .arg(cache)
        .args(extra)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    (serde_json::from_slice(&out.stdout).unwrap(), stderr)
}

#[test]
fn prompt_cache_is_reused_across_runs() {
    let Some(tiny) = model("tiny.gguf") else {
        return;
    };
    let dir = scratch("prompt");
    let cache = dir.join("prompt.bin");
    let prompt = "A long document that every run starts with, then a question.";
    let (first, _) = run_cached(&tiny, prompt, &cache, &[]);
    assert_eq!(first["reused_tokens"], 0);
    let saved = std::fs::read(&cache).unwrap();

    // Same prompt: everything but the last token comes from the file; same output.
    let (second, _) = run_cached(&tiny, prompt, &cache, &[]);
    let n = second["prompt_tokens"].as_u64().unwrap();
    assert_eq!(second["reused_tokens"].as_u64(), Some(n - 1));
    assert_eq!(second["tokens"], first["tokens"]);
    assert_eq!(std::fs::read(&cache).unwrap(), saved, "nothing new to save");

    // A longer prompt reuses the shared part; read-only leaves the file alone.
    let longer = format!("{prompt} And another one?");
    let (third, _) = run_cached(&tiny, &longer, &cache, &["--prompt-cache-ro"]);
    assert!(third["reused_tokens"].as_u64().unwrap() >= n - 2, "{third}");
    assert_eq!(std::fs::read(&cache).unwrap(), saved);
    run_cached(&tiny, &longer, &cache, &[]);
    assert!(std::fs::read(&cache).unwrap().len() > saved.len());

    // A damaged or foreign file is reported and replaced, the run still works.
    std::fs::write(&cache, &saved[..saved.len() / 2]).unwrap();
    let (fourth, stderr) = run_cached(&tiny, prompt, &cache, &[]);
    assert!(stderr.contains("ignoring the prompt cache"), "{stderr}");
    assert_eq!(fourth["reused_tokens"], 0);
    assert_eq!(fourth["tokens"], first["tokens"]);
    assert_eq!(std::fs::read(&cache).unwrap(), saved);
    let _ = std::fs::remove_dir_all(&dir);
}

fn chat(tiny: &Path, session: &Path, input: &str, extra: &[&str]) -> std::process::Output {
    mote()
        .env("RUST_LOG", "info")
        .arg("chat")
        .arg(tiny)
        .args(["--temp", "0", "-n", "4", "--session"])
        .arg(session)
        .args(extra)
        .write_stdin(input)
        .output()
        .unwrap()
}

#[test]
fn chat_session_resumes_the_conversation() {
    let Some(tiny) = model("tiny.gguf") else {
        return;
    };
    let dir = scratch("session");
    let session = dir.join("talk.session");
    let out = chat(&tiny, &session, "Hello there\n", &["-sys", "Be brief."]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let saved = std::fs::read(&session).unwrap();

    let out = chat(&tiny, &session, "And now?\n", &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("(resumed 3 messages"), "{stderr}");
    // The resumed turn reused the conversation's cache: "[N prompt tokens (M reused)".
    let reused: u64 = stderr
        .split(" reused)")
        .next()
        .and_then(|s| s.rsplit('(').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    assert!(reused > 10, "{stderr}");
    assert!(std::fs::read(&session).unwrap().len() > saved.len());

    // Another cache type: refused, and the file is left as it was.
    let before = std::fs::read(&session).unwrap();
    let out = chat(&tiny, &session, "Third\n", &["-ctk", "f32", "-ctv", "f32"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("cannot resume the chat session"),
        "{stderr}"
    );
    assert_eq!(std::fs::read(&session).unwrap(), before);
    let _ = std::fs::remove_dir_all(&dir);
}
