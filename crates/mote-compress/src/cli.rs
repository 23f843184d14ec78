//! Command-line front ends. The `mote` binary mounts each `*Args` as a subcommand and
//! calls the matching `run_*`; progress goes to stderr, results to stdout.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use mote_model::{LoadOptions, Model};
use mote_tokenizer::Tokenizer;

use crate::calibrate::{run_calibration, CalibrationOptions};
use crate::error::{CompressError, Result};
use crate::gptq::{CalibrationKey, HessianCollector, ModelIdentity};
use crate::imatrix::{Imatrix, ImatrixCollector};
use crate::kl::{KlReader, KlWriter, DEFAULT_TOP_K};
use crate::perplexity::{evaluate, tokenize_text, KlMode, PerplexityOptions, PerplexityReport};
use crate::prune::{
    least_influential, parse_nm, parse_structured, prune_file, BlockInfluence, PruneMethod,
    PruneReport, PruneScope, PruneSpec,
};
use crate::quantize::{parse_override, quantize_file, Preset, QuantizeOptions, QuantizeSummary};

/// Measure perplexity on a text file (llama-perplexity's method), optionally against
/// a reference model's stored distributions (KL divergence, top-1 agreement, ΔPPL).
#[derive(Args, Debug, Clone)]
pub struct PerplexityArgs {
    /// GGUF model.
    pub model: PathBuf,
    /// Text to score.
    #[arg(short = 'f', long = "file")]
    pub file: PathBuf,
    /// Tokens per window [default: 512, or the reference file's].
    #[arg(short = 'c', long = "ctx-size")]
    pub ctx_size: Option<usize>,
    /// Score at most this many windows [default: all, or the reference file's].
    #[arg(long)]
    pub chunks: Option<usize>,
    /// Reference-distribution file: compared against, or written with --kl-base-write.
    #[arg(long = "kl-base")]
    pub kl_base: Option<PathBuf>,
    /// Write this model's distributions to --kl-base instead of comparing.
    #[arg(long = "kl-base-write", requires = "kl_base")]
    pub kl_base_write: bool,
    /// Reference log-probs kept per position when writing (the vocabulary size keeps
    /// all of them).
    #[arg(long = "kl-top-k", default_value_t = DEFAULT_TOP_K)]
    pub kl_top_k: usize,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
    /// Worker threads (0: one per core).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Quantize a float model's weight matrices to TYPE while loading (q8_0, q4_0,
    /// q4_k, ...), to measure a type without writing a file.
    #[arg(long = "quantize", value_name = "TYPE", value_parser = mote_model::parse_quantize_type)]
    pub quantize: Option<mote_tensor::DType>,
    /// Score the whole text (or --chunks × --ctx-size tokens of it) through a cache of
    /// --ctx-size positions, token by token: `sinks` (4 attention sinks + a rolling
    /// window, shifted in place), `window` (rolling window only) or `strided` (windows
    /// recomputed every --stride tokens). Scores tokens ctx.. in all three.
    #[arg(long = "kv-window", value_name = "MODE")]
    pub kv_window: Option<crate::streaming::KvWindow>,
    /// --kv-window sinks/window: tokens dropped each time the cache is full.
    #[arg(long, default_value_t = 1)]
    pub evict: usize,
    /// --kv-window strided: tokens scored per recomputed window [default: ctx/4].
    #[arg(long)]
    pub stride: Option<usize>,
}

/// Prints `value` as pretty JSON on stdout.
fn print_json(value: &impl serde::Serialize) -> Result<()> {
    let text =
        serde_json::to_string_pretty(value).map_err(|e| CompressError::Invalid(e.to_string()))?;
    println!("{text}");
    Ok(())
}

/// `mote perplexity --kv-window`: a long text through a small cache.
fn run_long(args: &PerplexityArgs, mode: crate::streaming::KvWindow) -> Result<()> {
    let (model, tokenizer) = load_model_quantized(&args.model, args.threads, args.quantize)?;
    let text = read_text(&args.file)?;
    let mut tokens = tokenize_text(&tokenizer, &text);
    let ctx = args.ctx_size.unwrap_or(256);
    if let Some(c) = args.chunks {
        tokens.truncate(c.saturating_mul(ctx));
    }
    let pb = bar(
        0,
        "{spinner} {msg} [{bar:30}] {pos}/{len} tokens {elapsed_precise}",
    );
    pb.set_message(format!("{mode:?}"));
    let report = crate::streaming::evaluate_long(
        &model,
        &tokens,
        ctx,
        mode,
        args.evict,
        args.stride.unwrap_or(ctx / 4),
        &mut |done, total| {
            pb.set_length(total as u64);
            pb.set_position(done as u64);
        },
    );
    pb.finish_and_clear();
    let report = report?;
    if args.json {
        return print_json(&report);
    }
    println!(
        "{:?}: cache {} positions ({} KiB at most), {} of {} tokens scored, {} positions run, {:.1} s",
        report.mode,
        report.ctx,
        report.max_cache_bytes / 1024,
        report.scored_tokens,
        report.tokens_in_text,
        report.positions_run,
        report.seconds
    );
    println!("PPL = {:.4} +/- {:.5}", report.ppl, report.ppl_error);
    Ok(())
}

fn bar(total: u64, template: &str) -> ProgressBar {
    let pb = ProgressBar::new(total);
    if let Ok(style) = ProgressStyle::with_template(template) {
        pb.set_style(style);
    }
    pb
}

fn read_text(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|source| CompressError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// Loads a model and its tokenizer.
pub fn load_model(path: &Path, threads: usize) -> Result<(Model, Tokenizer)> {
    load_model_quantized(path, threads, None)
}

/// [`load_model`], with the weight matrices quantized at load time to `quantize`.
pub fn load_model_quantized(
    path: &Path,
    threads: usize,
    quantize: Option<mote_tensor::DType>,
) -> Result<(Model, Tokenizer)> {
    if threads > 0 {
        mote_tensor::parallel::set_threads(threads);
    }
    let model = Model::load(
        path,
        &LoadOptions {
            threads,
            quantize,
            ..Default::default()
        },
    )?;
    if let Some(q) = model.load_quantization() {
        eprintln!("mote: {}", q.summary());
    }
    let tokenizer = Tokenizer::from_gguf(model.gguf())?;
    Ok((model, tokenizer))
}

/// Computes perplexity (and KL statistics) without printing.
pub fn perplexity(args: &PerplexityArgs) -> Result<PerplexityReport> {
    let (model, tokenizer) = load_model_quantized(&args.model, args.threads, args.quantize)?;
    let text = read_text(&args.file)?;
    let tokens = tokenize_text(&tokenizer, &text);

    let mut writer = None;
    let mut reader = None;
    if let Some(path) = &args.kl_base {
        if args.kl_base_write {
            writer = Some(KlWriter::create(path, args.kl_top_k)?);
        } else {
            reader = Some(KlReader::open(path)?);
        }
    }
    let opts = PerplexityOptions {
        ctx: args
            .ctx_size
            .or(reader.as_ref().map(KlReader::ctx))
            .unwrap_or(512),
        chunks: args.chunks.or(reader.as_ref().map(KlReader::chunks)),
    };
    let mode = match (&mut writer, &mut reader) {
        (Some(w), _) => KlMode::Write(w),
        (_, Some(r)) => KlMode::Compare(r),
        _ => KlMode::None,
    };
    let pb = bar(
        0,
        "{spinner} perplexity [{bar:30}] {pos}/{len} windows {elapsed_precise} (eta {eta})",
    );
    let report = evaluate(
        &model,
        &tokenizer,
        &tokens,
        &opts,
        mode,
        &mut |done, total| {
            pb.set_length(total as u64);
            pb.set_position(done as u64);
        },
    );
    pb.finish_and_clear();
    report
}

/// `mote perplexity`.
pub fn run_perplexity(args: &PerplexityArgs) -> Result<()> {
    if let Some(mode) = args.kv_window {
        return run_long(args, mode);
    }
    let report = perplexity(args)?;
    if args.json {
        return print_json(&report);
    }
    println!(
        "{} windows of {} tokens, {} tokens scored, {:.1} s",
        report.chunks, report.ctx, report.scored_tokens, report.seconds
    );
    if let Some(path) = args.kl_base.as_ref().filter(|_| args.kl_base_write) {
        println!("reference distributions written to {}", path.display());
    }
    if let Some(kl) = &report.kl {
        println!(
            "Mean KLD = {:.6} +/- {:.6}  (median {:.6}, p99 {:.6}, max {:.6})",
            kl.mean_kl, kl.kl_error, kl.median_kl, kl.p99_kl, kl.max_kl
        );
        println!("Same top token = {:.2}%", kl.top1_agreement * 100.0);
        println!(
            "Base PPL = {:.4} +/- {:.5}, ΔPPL = {:+.4} ({:+.3}%)",
            kl.base_ppl,
            kl.base_ppl_error,
            kl.delta_ppl,
            100.0 * kl.delta_ppl / kl.base_ppl
        );
    }
    println!("PPL = {:.4} +/- {:.5}", report.ppl, report.ppl_error);
    Ok(())
}

/// Quantize a GGUF model to another type or one of llama.cpp's mixed presets.
#[derive(Args, Debug, Clone)]
pub struct QuantizeArgs {
    /// Input GGUF model, or a Hugging Face model folder (config.json, tokenizer.json,
    /// model.safetensors or shards with model.safetensors.index.json).
    pub input: PathBuf,
    /// Output GGUF file (written to a temporary name, renamed when complete).
    pub output: PathBuf,
    /// Target: F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q2_K, Q3_K_S, Q3_K_M,
    /// Q3_K_L, Q4_K_S, Q4_K_M, Q5_K_S, Q5_K_M, Q6_K (Q3_K/Q4_K/Q5_K mean the _M presets).
    #[arg(long = "type")]
    pub ty: String,
    /// Per-tensor override PATTERN=TYPE (regex on the tensor name, first match wins);
    /// repeatable.
    #[arg(long = "tensor-type")]
    pub tensor_type: Vec<String>,
    /// Dequantize tensors that are already quantized instead of refusing.
    #[arg(long = "allow-requantize")]
    pub allow_requantize: bool,
    /// Give every quantizable tensor the base type (no higher-precision exceptions).
    #[arg(long)]
    pub pure: bool,
    /// Plan and print the table without writing.
    #[arg(long = "dry-run")]
    pub dry_run: bool,
    /// List every tensor as it is written.
    #[arg(long = "show-tensors")]
    pub show_tensors: bool,
    /// Importance matrix (llama.cpp's imatrix GGUF, or `mote imatrix`'s): weights the
    /// rounding error of each input column by its mean squared activation.
    #[arg(long)]
    pub imatrix: Option<PathBuf>,
    /// `plain` (ggml's quantizers) or `gptq` (error compensation from calibration
    /// activations; Q4_0, Q4_1, Q5_0, Q5_1, Q8_0 targets; needs --calib-file).
    #[arg(long, default_value = "plain")]
    pub method: String,
    /// Calibration text for --method gptq.
    #[arg(long = "calib-file")]
    pub calib_file: Option<PathBuf>,
    /// Calibration window size in tokens.
    #[arg(long = "calib-ctx", default_value_t = 512)]
    pub calib_ctx: usize,
    /// Calibration windows to run [default: all].
    #[arg(long = "calib-chunks")]
    pub calib_chunks: Option<usize>,
    /// GPTQ dampening as a fraction of the mean Hessian diagonal.
    #[arg(long = "gptq-damp", default_value_t = 0.01)]
    pub gptq_damp: f64,
    /// GPTQ dampening added to each column's own Hessian diagonal, as a fraction of it
    /// (large values approach the importance-weighted rounding of --imatrix).
    #[arg(long = "gptq-damp-diag", default_value_t = 1.0)]
    pub gptq_damp_diag: f64,
    /// GPTQ refinement rounds: re-fit each row's block scales to its codes by least
    /// squares under the Hessian, then run GPTQ again on those grids (0: plain GPTQ).
    #[arg(long = "gptq-refits", default_value_t = 1)]
    pub gptq_refits: usize,
    /// GPTQ act-order (GPTQ's desc_act): quantize the columns in order of decreasing
    /// Hessian diagonal. Each 32-column block's scale is chosen first from the original
    /// weights ("static groups"), so the written tensors keep the GGUF layout.
    #[arg(long = "gptq-act-order")]
    pub gptq_act_order: bool,
    /// GPTQ calibration cache: read the Hessians from FILE when it exists, otherwise
    /// collect them from --calib-file and save them there. The file records the model
    /// (tensor names, shapes, types, file size), the calibration text, --calib-ctx and
    /// --calib-chunks; a file made for another model, or (when --calib-file is given)
    /// with other calibration settings, is refused with the setting that differs, never
    /// reused or overwritten silently: delete it to calibrate again. Without
    /// --calib-file the cached calibration is taken as it is.
    #[arg(long = "gptq-hessians", value_name = "FILE")]
    pub gptq_hessians: Option<PathBuf>,
    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,
    /// Worker threads (0: one per core).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
}

/// Set by Ctrl-C while a quantization runs.
fn cancel_flag() -> Arc<AtomicBool> {
    static FLAG: std::sync::OnceLock<Arc<AtomicBool>> = std::sync::OnceLock::new();
    FLAG.get_or_init(|| {
        let flag = Arc::new(AtomicBool::new(false));
        let f = flag.clone();
        // If the binary already installed a handler this fails; Ctrl-C then ends the
        // process the default way.
        let _ = ctrlc::set_handler(move || f.store(true, Ordering::SeqCst));
        flag
    })
    .clone()
}

/// Builds library options from the flags.
pub fn quantize_options(args: &QuantizeArgs) -> Result<QuantizeOptions> {
    let mut opts = QuantizeOptions::new(Preset::parse(&args.ty)?);
    opts.pure = args.pure;
    opts.allow_requantize = args.allow_requantize;
    opts.dry_run = args.dry_run;
    opts.threads = args.threads;
    opts.overrides = args
        .tensor_type
        .iter()
        .map(|s| parse_override(s))
        .collect::<Result<_>>()?;
    if let Some(path) = &args.imatrix {
        opts.importance = Some(Imatrix::read(path)?.importance());
    }
    opts.gptq_damp = args.gptq_damp;
    opts.gptq_damp_diag = args.gptq_damp_diag;
    opts.gptq_refits = args.gptq_refits;
    opts.gptq_act_order = args.gptq_act_order;
    match args.method.to_ascii_lowercase().as_str() {
        "plain" => {}
        "gptq" => {
            let model = ModelIdentity::of(&mote_file::GgufFile::open(&args.input)?);
            let text = args.calib_file.as_deref().map(read_text).transpose()?;
            let calib = text
                .as_deref()
                .map(|t| CalibrationKey::new(t, args.calib_ctx, args.calib_chunks));
            let cached = args.gptq_hessians.as_ref().filter(|p| p.exists());
            opts.gptq = Some(match (cached, text, calib) {
                (Some(path), _, calib) => crate::gptq::read_hessians(path, &model, calib.as_ref())?,
                (None, Some(text), Some(calib)) => {
                    let (hessians, chunks) = collect_hessians(args, &text)?;
                    if let Some(path) = &args.gptq_hessians {
                        crate::gptq::write_hessians(path, &hessians, chunks, &model, &calib)?;
                    }
                    hessians
                }
                (None, _, _) => return Err(CompressError::Invalid(
                    "--method gptq needs --calib-file TEXT (or an existing --gptq-hessians file)"
                        .into(),
                )),
            });
        }
        other => {
            return Err(CompressError::Invalid(format!(
                "--method {other:?}: expected plain or gptq"
            )))
        }
    }
    Ok(opts)
}

fn collect_hessians(args: &QuantizeArgs, text: &str) -> Result<(crate::gptq::Hessians, usize)> {
    let (model, tokenizer) = load_model(&args.input, args.threads)?;
    let collector = Arc::new(HessianCollector::new());
    let pb = bar(
        0,
        "{spinner} GPTQ calibration [{bar:30}] {pos}/{len} windows {elapsed_precise}",
    );
    let chunks = run_calibration(
        &model,
        &tokenizer,
        text,
        &CalibrationOptions {
            ctx: args.calib_ctx,
            chunks: args.calib_chunks,
        },
        collector.clone(),
        &mut |d, t| {
            pb.set_length(t as u64);
            pb.set_position(d as u64);
        },
    )?;
    pb.finish_and_clear();
    Ok((collector.hessians(), chunks))
}

/// `mote quantize`.
pub fn run_quantize(args: &QuantizeArgs) -> Result<()> {
    // A folder is a Hugging Face checkpoint (config.json, tokenizer.json, safetensors).
    let hf = if args.input.is_dir() {
        if args.method.eq_ignore_ascii_case("gptq") {
            return Err(CompressError::Invalid(format!(
                "{}: --method gptq needs a GGUF input (convert the folder with --type F16 first)",
                args.input.display()
            )));
        }
        Some(mote_convert::hf::HfModel::open(&args.input)?)
    } else {
        None
    };
    let opts = quantize_options(args)?;
    let cancel = cancel_flag();
    let pb = bar(
        0,
        "{spinner} quantize [{bar:30}] {percent}% {elapsed_precise} (eta {eta}) {msg}",
    );
    let mut report = |done: u64, total: u64, t: &crate::quantize::TensorReport| {
        pb.set_length(total);
        pb.set_position(done);
        pb.set_message(t.name.clone());
        if args.show_tensors {
            pb.println(format!(
                "{:<40} {:>18} {:>6} -> {:<6} {:>9.3} MiB",
                t.name,
                format!("{:?}", t.dims),
                t.from,
                t.to,
                t.bytes_out as f64 / (1 << 20) as f64
            ));
        }
    };
    let summary = match &hf {
        Some(model) => {
            crate::quantize::quantize_source(model, &args.output, &opts, &cancel, &mut report)
        }
        None => quantize_file(&args.input, &args.output, &opts, &cancel, &mut report),
    };
    pb.finish_and_clear();
    let summary = summary?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&summary)
                .map_err(|e| CompressError::Invalid(e.to_string()))?
        );
    } else {
        print_summary(&summary, args);
    }
    Ok(())
}

fn print_summary(s: &QuantizeSummary, args: &QuantizeArgs) {
    let mib = |b: u64| b as f64 / (1 << 20) as f64;
    println!(
        "{:<8} {:>8} {:>12} {:>10}",
        "type", "tensors", "params", "MiB"
    );
    for (ty, count) in &s.type_counts {
        let (params, bytes) = s
            .tensors
            .iter()
            .filter(|t| &t.to == ty)
            .fold((0u64, 0u64), |(p, b), t| {
                (p + t.dims.iter().product::<u64>(), b + t.bytes_out)
            });
        println!("{ty:<8} {count:>8} {params:>12} {:>10.2}", mib(bytes));
    }
    println!(
        "{} ({} = general.file_type {}): {:.2} MiB at {:.2} bpw -> {:.2} MiB at {:.2} bpw, {} params, {} fallbacks, {} overrides, {:.1} s",
        if args.dry_run { "plan" } else { "wrote" },
        s.preset,
        s.file_type,
        mib(s.bytes_in),
        s.bpw_in,
        mib(s.bytes_out),
        s.bpw_out,
        s.elements,
        s.fallbacks,
        s.overrides,
        s.seconds
    );
    if !args.dry_run {
        println!("output: {}", args.output.display());
    }
}

/// Collect an importance matrix (llama.cpp's imatrix GGUF format) from calibration text.
#[derive(Args, Debug, Clone)]
pub struct ImatrixArgs {
    /// GGUF model.
    pub model: PathBuf,
    /// Calibration text.
    #[arg(short = 'f', long = "file")]
    pub file: PathBuf,
    /// Output imatrix file.
    #[arg(short = 'o', long = "output", default_value = "imatrix.gguf")]
    pub output: PathBuf,
    /// Tokens per window.
    #[arg(short = 'c', long = "ctx-size", default_value_t = 512)]
    pub ctx_size: usize,
    /// Windows to run [default: all].
    #[arg(long)]
    pub chunks: Option<usize>,
    /// Also collect the output matrix (llama-imatrix's --process-output).
    #[arg(long = "process-output")]
    pub process_output: bool,
    /// Worker threads (0: one per core).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
}

/// Collects an importance matrix without writing it.
pub fn imatrix(args: &ImatrixArgs) -> Result<Imatrix> {
    let (model, tokenizer) = load_model(&args.model, args.threads)?;
    let text = read_text(&args.file)?;
    let collector = Arc::new(ImatrixCollector::new(args.process_output));
    let pb = bar(
        0,
        "{spinner} imatrix [{bar:30}] {pos}/{len} windows {elapsed_precise} (eta {eta})",
    );
    let chunks = run_calibration(
        &model,
        &tokenizer,
        &text,
        &CalibrationOptions {
            ctx: args.ctx_size,
            chunks: args.chunks,
        },
        collector.clone(),
        &mut |d, t| {
            pb.set_length(t as u64);
            pb.set_position(d as u64);
        },
    )?;
    pb.finish_and_clear();
    Ok(Imatrix {
        entries: collector.entries(),
        datasets: vec![args.file.display().to_string()],
        chunk_count: chunks as u32,
        chunk_size: args.ctx_size as u32,
    })
}

/// `mote imatrix`.
pub fn run_imatrix(args: &ImatrixArgs) -> Result<()> {
    let m = imatrix(args)?;
    m.write(&args.output)?;
    println!(
        "{} tensors, {} windows of {} tokens -> {}",
        m.entries.len(),
        m.chunk_count,
        m.chunk_size,
        args.output.display()
    );
    Ok(())
}

/// Prune a GGUF model: zero weights (unstructured, N:M) or drop whole blocks.
#[derive(Args, Debug, Clone)]
pub struct PruneArgs {
    /// Input GGUF model.
    pub input: PathBuf,
    /// Output GGUF file.
    pub output: PathBuf,
    /// Unstructured: `magnitude` (smallest |w|) or `random`.
    #[arg(long, default_value = "magnitude")]
    pub method: String,
    /// Unstructured: fraction of each block matrix to zero (0..1).
    #[arg(long)]
    pub amount: Option<f32>,
    /// Unstructured: `layer` (the fraction per tensor) or `global` (one threshold).
    #[arg(long, default_value = "layer")]
    pub scope: String,
    /// Semi-structured N:M, e.g. 2:4 (in every M consecutive weights of a row keep N).
    #[arg(long)]
    pub nm: Option<String>,
    /// Structured: `layers:K` drops the K blocks with the least influence on the
    /// residual stream, measured on --calib-file.
    #[arg(long)]
    pub structured: Option<String>,
    /// Calibration text for --structured.
    #[arg(short = 'f', long = "calib-file")]
    pub calib_file: Option<PathBuf>,
    /// Calibration window size in tokens.
    #[arg(short = 'c', long = "ctx-size", default_value_t = 512)]
    pub ctx_size: usize,
    /// Calibration windows [default: 8].
    #[arg(long, default_value_t = 8)]
    pub chunks: usize,
    /// Seed for --method random.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// Worker threads (0: one per core).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
}

fn prune_spec(args: &PruneArgs) -> Result<PruneSpec> {
    let chosen = [
        args.amount.is_some(),
        args.nm.is_some(),
        args.structured.is_some(),
    ];
    if chosen.iter().filter(|c| **c).count() != 1 {
        return Err(CompressError::Invalid(
            "give exactly one of --amount, --nm, --structured".into(),
        ));
    }
    if let Some(nm) = &args.nm {
        let (n, m) = parse_nm(nm)?;
        return Ok(PruneSpec::NofM { n, m });
    }
    if let Some(s) = &args.structured {
        let k = parse_structured(s)?;
        let calib = args.calib_file.as_ref().ok_or_else(|| {
            CompressError::Invalid("--structured needs --calib-file TEXT to score blocks".into())
        })?;
        let (model, tokenizer) = load_model(&args.input, args.threads)?;
        let n_blocks = model.config().n_layer;
        if k >= n_blocks {
            return Err(CompressError::Invalid(format!(
                "cannot drop {k} of {n_blocks} blocks"
            )));
        }
        let influence = BlockInfluence::new(BlockInfluence::gains_of(model.gguf(), n_blocks)?);
        run_calibration(
            &model,
            &tokenizer,
            &read_text(calib)?,
            &CalibrationOptions {
                ctx: args.ctx_size,
                chunks: Some(args.chunks),
            },
            influence.clone(),
            &mut |_, _| {},
        )?;
        let scores = influence.scores();
        for (b, s) in scores.iter().enumerate() {
            eprintln!("block {b:>3}: influence {s:.5}");
        }
        return Ok(PruneSpec::DropBlocks(least_influential(&scores, k)));
    }
    let amount = args.amount.unwrap_or(0.0);
    if !(0.0..1.0).contains(&amount) {
        return Err(CompressError::Invalid(format!(
            "--amount {amount}: expected a fraction in [0, 1)"
        )));
    }
    let method = match args.method.as_str() {
        "magnitude" => PruneMethod::Magnitude,
        "random" => PruneMethod::Random,
        m => {
            return Err(CompressError::Invalid(format!(
                "--method {m:?}: magnitude or random"
            )))
        }
    };
    let scope = match args.scope.as_str() {
        "layer" => PruneScope::Layer,
        "global" => PruneScope::Global,
        s => {
            return Err(CompressError::Invalid(format!(
                "--scope {s:?}: layer or global"
            )))
        }
    };
    Ok(PruneSpec::Unstructured {
        method,
        amount,
        scope,
        seed: args.seed,
    })
}

/// Prunes without printing.
pub fn prune(args: &PruneArgs) -> Result<PruneReport> {
    let spec = prune_spec(args)?;
    prune_file(&args.input, &args.output, &spec)
}

/// `mote prune`.
pub fn run_prune(args: &PruneArgs) -> Result<()> {
    let r = prune(args)?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&r).map_err(|e| CompressError::Invalid(e.to_string()))?
        );
        return Ok(());
    }
    for t in &r.tensors {
        println!(
            "{:<36} {:>6} {:>10} sparsity {:>6.2}%",
            t.name,
            t.dtype,
            t.elements,
            100.0 * t.sparsity
        );
    }
    if !r.dropped_blocks.is_empty() {
        println!(
            "dropped blocks {:?}: {} -> {} blocks",
            r.dropped_blocks, r.blocks_before, r.blocks_after
        );
    }
    println!(
        "params {} -> {} non-zero ({:.2}% removed); output: {}",
        r.params_before,
        r.params_after,
        100.0 * (1.0 - r.params_after as f64 / r.params_before.max(1) as f64),
        args.output.display()
    );
    Ok(())
}
