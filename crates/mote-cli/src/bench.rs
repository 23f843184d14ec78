//! `mote bench`: prompt-processing and generation speed, the way llama-bench measures it.
//!
//! pp<N>: one batched forward of N prompt tokens on an empty cache.
//! tg<N>: N single-token forwards after a one-token warm-up.
//! tg<N>x<S> (`--npl S`, llama-batched-bench's term): S sequences, each with its own
//! cache, decode N tokens together, one token each per batched forward (what `mote serve
//! --parallel S` does at every step); reported as aggregate tokens/s over all sequences.
//! `-d D` (llama-bench's depth) runs every test after D tokens already in the cache
//! (filled untimed), e.g. `tg128@d2048`: generation deep into a long chat.
//! Each test runs `-r` times after one untimed warm-up run; we report mean ± sd tokens/s,
//! plus the model's load time and the process's peak resident memory.
//!
//! JSON (`-o json` / `jsonl`), one object per test: `engine` ("mote"), `model`,
//! `model_bytes`, `params`, `kernels`, `threads`, `test` (e.g. "tg128x4@d2048"),
//! `n_prompt`, `n_gen`, `n_depth`, `npl`, `tokens_per_s` (mean), `tokens_per_s_sd`,
//! `samples` (every timed run), `load_s`, `type_k`, `type_v`; then one object with
//! `test` "rss" and `peak_rss_mib`.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use mote_model::{BatchItem, KvPrecision, LoadOptions, Model};
use serde_json::json;

use crate::model_path;

#[derive(Args, Debug)]
pub struct BenchArgs {
    #[command(flatten)]
    pub model: crate::args::ModelArg,

    /// Thread counts to test, comma-separated (llama-bench's -t).
    #[arg(short = 't', long = "threads", value_delimiter = ',', default_values_t = [mote_tensor::parallel::default_threads()])]
    pub threads: Vec<usize>,

    /// Prompt lengths to test, comma-separated; 0 skips prompt processing.
    #[arg(short = 'p', long = "n-prompt", value_delimiter = ',', default_values_t = [512])]
    pub n_prompt: Vec<usize>,

    /// Generated-token counts to test, comma-separated; 0 skips generation.
    #[arg(short = 'n', long = "n-gen", value_delimiter = ',', default_values_t = [128])]
    pub n_gen: Vec<usize>,

    /// Tokens already in the cache before each test, comma-separated (llama-bench's -d):
    /// measures prompt processing and generation deep into a context.
    #[arg(short = 'd', long = "n-depth", value_delimiter = ',', default_values_t = [0])]
    pub n_depth: Vec<usize>,

    /// Parallel sequences for the generation tests, comma-separated (llama-batched-bench's
    /// -npl): each decodes -n tokens in one batched forward per step, all logits computed.
    #[arg(long = "npl", value_delimiter = ',', default_values_t = [1])]
    pub npl: Vec<usize>,

    /// Timed repetitions per test (after one warm-up).
    #[arg(short = 'r', long = "repetitions", default_value_t = 5)]
    pub repetitions: usize,

    /// KV cache type for keys: f16 (default, as llama.cpp), f32 or q8_0. Also -ctk.
    #[arg(long = "cache-type-k", default_value_t = KvPrecision::F16, value_name = "TYPE")]
    pub cache_type_k: KvPrecision,

    /// KV cache type for values: f16 (default), f32 or q8_0. Also -ctv.
    #[arg(long = "cache-type-v", default_value_t = KvPrecision::F16, value_name = "TYPE")]
    pub cache_type_v: KvPrecision,

    /// Quantize a float model's weight matrices to TYPE while loading (q8_0, q4_0, q4_k, ...).
    #[arg(long = "quantize", value_name = "TYPE", value_parser = mote_model::parse_quantize_type)]
    pub quantize: Option<mote_tensor::DType>,

    /// Output format: md (table), json (one array), jsonl (one object per line).
    #[arg(short = 'o', long = "output", value_enum, default_value_t = Format::Md)]
    pub output: Format,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Format {
    Md,
    Json,
    Jsonl,
}

struct Row {
    test: String,
    threads: usize,
    /// llama-bench's fields: prompt and generated tokens, cache depth, sequences.
    n_prompt: usize,
    n_gen: usize,
    n_depth: usize,
    npl: usize,
    samples: Vec<f64>,
}

impl Row {
    fn mean(&self) -> f64 {
        self.samples.iter().sum::<f64>() / self.samples.len().max(1) as f64
    }
    fn sd(&self) -> f64 {
        let n = self.samples.len();
        if n < 2 {
            return 0.0;
        }
        let m = self.mean();
        (self.samples.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt()
    }
}

pub fn bench(args: BenchArgs) -> Result<()> {
    let path: PathBuf = model_path::resolve(&args.model)?;
    if args.repetitions == 0 {
        bail!("-r/--repetitions must be at least 1");
    }
    let t0 = Instant::now();
    let opts = LoadOptions {
        cache_type_k: args.cache_type_k,
        cache_type_v: args.cache_type_v,
        quantize: args.quantize,
        ..LoadOptions::default()
    };
    let model =
        Model::load(&path, &opts).with_context(|| format!("cannot load {}", path.display()))?;
    crate::args::report_load_quantization(&model);
    let load_s = t0.elapsed().as_secs_f64();
    let vocab = model.config().vocab_size.max(1);
    let n_ctx_train = model.config().n_ctx_train;
    // Size of the model as it runs: quantizing at load changes the weights' bytes.
    let file_bytes = match model.load_quantization() {
        Some(q) => (model.gguf().file_len() + q.bytes_after).saturating_sub(q.bytes_before),
        None => model.gguf().file_len(),
    };
    let params: u64 = model.gguf().tensors().iter().map(|t| t.elements()).sum();

    let mut rows = Vec::new();
    for &threads in &args.threads {
        if threads == 0 {
            bail!("thread counts must be positive");
        }
        mote_tensor::parallel::set_threads(threads);
        for &depth in &args.n_depth {
            let at = |test: String| match depth {
                0 => test,
                d => format!("{test}@d{d}"),
            };
            let context = bench_tokens(depth, vocab);
            for &pp in &args.n_prompt {
                if pp == 0 {
                    continue;
                }
                if depth + pp > n_ctx_train {
                    bail!("-d {depth} -p {pp} exceeds the model's context of {n_ctx_train} tokens");
                }
                let prompt = bench_tokens(pp, vocab);
                let mut samples = Vec::new();
                for rep in 0..=args.repetitions {
                    let mut cache = model.new_cache(depth + pp);
                    if depth > 0 {
                        model.forward(&context, &mut cache, false)?;
                    }
                    let t = Instant::now();
                    model.forward(&prompt, &mut cache, false)?;
                    if rep > 0 {
                        samples.push(pp as f64 / t.elapsed().as_secs_f64());
                    }
                }
                rows.push(Row {
                    test: at(format!("pp{pp}")),
                    threads,
                    n_prompt: pp,
                    n_gen: 0,
                    n_depth: depth,
                    npl: 1,
                    samples,
                });
            }
            for &tg in &args.n_gen {
                if tg == 0 {
                    continue;
                }
                if depth + tg + 1 > n_ctx_train {
                    bail!("-d {depth} -n {tg} exceeds the model's context of {n_ctx_train} tokens");
                }
                for &npl in &args.npl {
                    if npl == 0 {
                        bail!("--npl values must be positive");
                    }
                    let mut samples = Vec::new();
                    for rep in 0..=args.repetitions {
                        let run = time_generation(&model, &context, tg, npl, vocab)?;
                        samples.extend(run.filter(|_| rep > 0));
                    }
                    let test = match npl {
                        1 => format!("tg{tg}"),
                        _ => format!("tg{tg}x{npl}"),
                    };
                    rows.push(Row {
                        test: at(test),
                        threads,
                        n_prompt: 0,
                        n_gen: tg,
                        n_depth: depth,
                        npl,
                        samples,
                    });
                }
            }
        }
    }
    let rss_mib = peak_rss_mib();
    let name = path
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let kernels = mote_tensor::kernels::Kernels::active().path.name();
    match args.output {
        Format::Md => {
            println!("| model | size | params | kernels | threads | test | t/s |");
            println!("| --- | ---: | ---: | --- | ---: | ---: | ---: |");
            for r in &rows {
                println!(
                    "| {name} | {:.2} MiB | {:.2} M | {kernels} | {} | {} | {:.2} ± {:.2} |",
                    file_bytes as f64 / (1 << 20) as f64,
                    params as f64 / 1e6,
                    r.threads,
                    r.test,
                    r.mean(),
                    r.sd()
                );
            }
            println!();
            println!(
                "load {:.0} ms, peak RSS {}",
                load_s * 1e3,
                rss_mib.map_or("n/a".into(), |m| format!("{m:.1} MiB"))
            );
        }
        Format::Json | Format::Jsonl => {
            let objs: Vec<_> = rows
                .iter()
                .map(|r| {
                    json!({
                        "engine": "mote", "model": name, "model_bytes": file_bytes,
                        "params": params, "kernels": kernels, "threads": r.threads,
                        "test": r.test, "n_prompt": r.n_prompt, "n_gen": r.n_gen,
                        "n_depth": r.n_depth, "npl": r.npl,
                        "tokens_per_s": r.mean(), "tokens_per_s_sd": r.sd(),
                        "samples": r.samples, "load_s": load_s,
                        "type_k": args.cache_type_k.name(), "type_v": args.cache_type_v.name(),
                    })
                })
                .collect();
            let rss =
                json!({"engine": "mote", "test": "rss", "peak_rss_mib": rss_mib, "load_s": load_s});
            if matches!(args.output, Format::Json) {
                let mut all = objs;
                all.push(rss);
                println!("{}", serde_json::to_string_pretty(&all)?);
            } else {
                for o in objs.iter().chain(std::iter::once(&rss)) {
                    println!("{o}");
                }
            }
        }
    }
    Ok(())
}

/// Aggregate tokens/s of `npl` sequences decoding `tg` tokens each, one batched forward
/// per step (every sequence's logits computed), after `context` (untimed, in every
/// sequence's cache) and one untimed warm-up token each.
fn time_generation(
    model: &Model,
    context: &[u32],
    tg: usize,
    npl: usize,
    vocab: usize,
) -> Result<Option<f64>> {
    let mut caches: Vec<_> = (0..npl)
        .map(|_| model.new_cache(context.len() + tg + 1))
        .collect();
    if !context.is_empty() {
        for cache in &mut caches {
            model.forward(context, cache, false)?;
        }
    }
    let mut t = Instant::now();
    for step in 0..=tg {
        if step == 1 {
            t = Instant::now();
        }
        let tokens: Vec<[u32; 1]> = (0..npl)
            .map(|s| [(((step + 1) * 31 + s * 7919 + 7) % vocab) as u32])
            .collect();
        let mut items: Vec<BatchItem> = caches
            .iter_mut()
            .zip(&tokens)
            .map(|(cache, tok)| BatchItem {
                tokens: tok,
                cache,
                all_logits: false,
            })
            .collect();
        model.forward_batch(&mut items)?;
    }
    Ok(Some((tg * npl) as f64 / t.elapsed().as_secs_f64()))
}

/// Deterministic token ids spread over the vocabulary (same pattern as
/// bench/llamacpp_bench.py, so both engines see the same input).
fn bench_tokens(n: usize, vocab: usize) -> Vec<u32> {
    (0..n).map(|i| ((i * 7919 + 13) % vocab) as u32).collect()
}

/// Peak resident set size (VmHWM) on Linux.
fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}
