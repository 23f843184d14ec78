//! `mote finetune` and `mote distill`: flags (llama.cpp's names where they exist), the
//! trainable-tensor selection, the progress bar and Ctrl-C.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use mote_model::{LoadOptions, Model};
use mote_tensor::DType;
use mote_tokenizer::Tokenizer;
use serde::Serialize;

use crate::adamw::AdamConfig;
use crate::data::TokenData;
use crate::export::write_gguf;
use crate::model::{layer_tensors, Network};
use crate::params::Params;
use crate::trainer::{peak_rss_bytes, EvalResult, TrainOptions, Trainer};
use crate::TrainError;

/// Flags shared by `finetune` and `distill`.
#[derive(Args, Debug, Clone)]
pub struct TrainArgs {
    /// Training text.
    #[arg(short = 'f', long = "file")]
    pub file: PathBuf,
    /// Output GGUF (the trained model).
    #[arg(short = 'o', long = "output")]
    pub output: PathBuf,
    /// Window length in tokens (each sequence of a batch).
    #[arg(short = 'c', long = "ctx-size", default_value_t = 128)]
    pub ctx_size: usize,
    /// Sequences per micro-batch.
    #[arg(short = 'b', long = "batch-size", default_value_t = 4)]
    pub batch_size: usize,
    /// Micro-batches whose gradients are summed before each update.
    #[arg(long = "grad-acc", default_value_t = 1)]
    pub grad_acc: usize,
    /// Optimizer steps (overridden by --epochs).
    #[arg(long, default_value_t = 100)]
    pub steps: usize,
    /// Passes over the training text (in windows drawn at random).
    #[arg(long)]
    pub epochs: Option<f64>,
    /// Peak learning rate (AdamW).
    #[arg(long, default_value_t = 1e-4)]
    pub lr: f32,
    /// Linear warm-up steps, then a cosine decay to --lr-min-ratio · lr.
    #[arg(long, default_value_t = 10)]
    pub warmup: usize,
    #[arg(long = "lr-min-ratio", default_value_t = 0.1)]
    pub lr_min_ratio: f32,
    /// Decoupled weight decay of the matrices.
    #[arg(long = "weight-decay", default_value_t = 0.0)]
    pub weight_decay: f32,
    /// Global gradient-norm clipping (0: off).
    #[arg(long = "grad-clip", default_value_t = 1.0)]
    pub grad_clip: f32,
    /// Worker threads (0: one per core).
    #[arg(short = 't', long = "threads", default_value_t = 0)]
    pub threads: usize,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Resume from this checkpoint (weights, optimizer, generator, step).
    #[arg(long = "checkpoint-in")]
    pub checkpoint_in: Option<PathBuf>,
    /// Write a checkpoint here at the end, on Ctrl-C, and every --checkpoint-every steps
    /// [default: OUTPUT.ckpt].
    #[arg(long = "checkpoint-out")]
    pub checkpoint_out: Option<PathBuf>,
    #[arg(long = "checkpoint-every", default_value_t = 0)]
    pub checkpoint_every: usize,
    /// Held-out text: perplexity (and KL to the teacher) before, every --eval-every
    /// steps, and at the end.
    #[arg(long = "eval-file")]
    pub eval_file: Option<PathBuf>,
    #[arg(long = "eval-every", default_value_t = 0)]
    pub eval_every: usize,
    /// Held-out windows per evaluation (0: the whole file).
    #[arg(long = "eval-chunks", default_value_t = 16)]
    pub eval_chunks: usize,
    /// Blocks that train: `all`, a range `A-B` (inclusive), or `norms` (norm weights
    /// only). The final norm and an untied output matrix train with any selection.
    #[arg(long = "train-layers", default_value = "all")]
    pub train_layers: String,
    /// Also train the token embedding (frozen by default; tied models' output with it).
    #[arg(long = "train-embeddings")]
    pub train_embeddings: bool,
    /// Type of the written matrices: f32 or f16.
    #[arg(long = "outtype", default_value = "f32")]
    pub outtype: String,
    /// Print the run's report as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

/// Fine-tune a model on a text file (next-token cross-entropy).
#[derive(Args, Debug, Clone)]
pub struct FinetuneArgs {
    /// The model (GGUF; quantized weights are dequantized to F32 for training).
    pub model: PathBuf,
    #[command(flatten)]
    pub train: TrainArgs,
}

/// Distil a teacher into a student of the same vocabulary (forward KL at a temperature,
/// optionally mixed with the hard labels).
#[derive(Args, Debug, Clone)]
pub struct DistillArgs {
    #[arg(long)]
    pub teacher: PathBuf,
    #[arg(long)]
    pub student: PathBuf,
    /// Softmax temperature of the KL term (scaled by τ²).
    #[arg(long, default_value_t = 2.0)]
    pub temperature: f32,
    /// Weight of the hard-label cross-entropy: loss = α·CE + (1−α)·τ²·KL.
    #[arg(long, default_value_t = 0.0)]
    pub alpha: f32,
    #[command(flatten)]
    pub train: TrainArgs,
}

#[derive(Serialize)]
struct JsonReport {
    steps: usize,
    seconds: f64,
    tokens_per_s: f64,
    first_loss: Option<f64>,
    last_loss: Option<f64>,
    evals: Vec<(usize, f64, Option<f64>)>,
    peak_rss_mib: f64,
    activation_mib: f64,
    trainable_params: usize,
    stopped: bool,
}

/// Which tensors train, from `--train-layers` and `--train-embeddings`.
pub fn select_trainable(
    p: &Params,
    layers: &str,
    embeddings: bool,
) -> Result<Vec<bool>, TrainError> {
    let n = p.layers.len();
    let mut on = vec![false; p.tensors.len()];
    let bad = || {
        TrainError::Invalid(format!(
            "--train-layers {layers:?}: expected all, norms, or A-B with A ≤ B < {n}"
        ))
    };
    let (range, norms_only) = match layers {
        "all" => (0..n, false),
        "norms" => (0..n, true),
        r => {
            let (a, b) = r.split_once('-').ok_or_else(bad)?;
            let (a, b): (usize, usize) = (
                a.trim().parse().map_err(|_| bad())?,
                b.trim().parse().map_err(|_| bad())?,
            );
            if a > b || b >= n {
                return Err(bad());
            }
            (a..b + 1, false)
        }
    };
    for il in range {
        for i in layer_tensors(&p.layers[il]) {
            on[i] = !norms_only || p.tensors[i].name.contains("norm");
        }
    }
    on[p.output_norm] = true;
    if !p.tied() {
        on[p.output] = true;
    }
    if let Some(b) = p.output_bias {
        on[b] = true;
    }
    if embeddings {
        on[p.token_embd] = true;
    }
    Ok(on)
}

fn stop_flag() -> Arc<AtomicBool> {
    let flag = Arc::new(AtomicBool::new(false));
    let f = flag.clone();
    // Fails if the binary already installed a handler; Ctrl-C then ends the process.
    let _ = ctrlc::set_handler(move || f.store(true, Ordering::SeqCst));
    flag
}

fn load(path: &Path, threads: usize) -> Result<Model, TrainError> {
    let opts = LoadOptions {
        threads,
        ..LoadOptions::default()
    };
    Ok(Model::load(path, &opts)?)
}

pub fn run_finetune(a: &FinetuneArgs) -> Result<(), TrainError> {
    train(&a.model, None, &a.train, 1.0, 1.0)
}

pub fn run_distill(a: &DistillArgs) -> Result<(), TrainError> {
    if !(0.0..=1.0).contains(&a.alpha) || a.temperature.is_nan() || a.temperature <= 0.0 {
        return Err(TrainError::Invalid(
            "--alpha must be in [0, 1] and --temperature > 0".into(),
        ));
    }
    train(
        &a.student,
        Some(&a.teacher),
        &a.train,
        a.alpha,
        a.temperature,
    )
}

fn train(
    model_path: &Path,
    teacher_path: Option<&PathBuf>,
    a: &TrainArgs,
    alpha: f32,
    temperature: f32,
) -> Result<(), TrainError> {
    if a.threads > 0 {
        mote_tensor::parallel::set_threads(a.threads);
    }
    let outtype = match a.outtype.to_ascii_lowercase().as_str() {
        "f32" => DType::F32,
        "f16" => DType::F16,
        o => return Err(TrainError::Invalid(format!("--outtype {o:?}: f32 or f16"))),
    };
    if a.batch_size == 0 || a.grad_acc == 0 {
        return Err(TrainError::Invalid(
            "-b and --grad-acc must be at least 1".into(),
        ));
    }
    let model = load(model_path, a.threads)?;
    let teacher = teacher_path.map(|p| load(p, a.threads)).transpose()?;
    let tok = Tokenizer::from_gguf(model.gguf())
        .map_err(|e| TrainError::Invalid(format!("{}: tokenizer: {e}", model_path.display())))?;
    let data = TokenData::from_file(&a.file, &tok, a.ctx_size)?;
    let eval = match &a.eval_file {
        Some(p) => Some(TokenData::from_file(p, &tok, a.ctx_size)?.eval_windows(a.eval_chunks)),
        None => None,
    };
    let params = Params::from_model(&model)?;
    let trainable = select_trainable(&params, &a.train_layers, a.train_embeddings)?;
    let n_train: usize = params
        .tensors
        .iter()
        .zip(&trainable)
        .filter(|(_, &on)| on)
        .map(|(t, _)| t.data.len())
        .sum();
    let per_step = a.batch_size * a.grad_acc;
    let steps = match a.epochs {
        Some(e) if e > 0.0 => {
            ((data.windows_per_epoch() as f64 * e) / per_step as f64).ceil() as usize
        }
        _ => a.steps,
    };
    let ckpt = a
        .checkpoint_out
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("{}.ckpt", a.output.display())));
    let opts = TrainOptions {
        batch: a.batch_size,
        accumulate: a.grad_acc,
        steps,
        adam: AdamConfig {
            lr: a.lr,
            weight_decay: a.weight_decay,
            clip: a.grad_clip,
            warmup: a.warmup,
            total_steps: steps,
            min_lr_ratio: a.lr_min_ratio,
            ..AdamConfig::default()
        },
        seed: a.seed,
        alpha,
        temperature,
        eval_every: a.eval_every,
        eval_windows: a.eval_chunks,
        checkpoint_out: Some(ckpt.clone()),
        checkpoint_every: a.checkpoint_every,
    };
    let net = Network::new(&model, a.ctx_size)?;
    let mut t = Trainer::new(net, params, trainable, teacher.as_ref(), opts)?;
    if let Some(ck) = &a.checkpoint_in {
        t.resume(ck)?;
    }
    eprintln!(
        "mote: training {n_train} of {} parameters, {} tokens of text, {steps} steps of {} tokens{}",
        t.params.count(),
        data.tokens.len(),
        per_step * a.ctx_size,
        if teacher.is_some() { " (distillation)" } else { "" }
    );
    let pb = ProgressBar::new(steps as u64);
    if let Ok(style) = ProgressStyle::with_template(
        "{bar:30} {pos}/{len} {msg} [{elapsed_precise} < {eta_precise}]",
    ) {
        pb.set_style(style);
    }
    pb.set_position(t.step as u64);
    let stop = stop_flag();
    let report = t.run(&data, eval.as_deref(), &stop, &mut |step,
                                                             loss,
                                                             tps,
                                                             ev: Option<
        &EvalResult,
    >| {
        pb.set_position(step as u64);
        pb.set_message(format!("loss {loss:.4} {tps:.0} tok/s"));
        if let Some(e) = ev {
            pb.println(eval_line(e));
        }
    })?;
    pb.finish_and_clear();
    if let Some(e) = report.evals.first() {
        eprintln!("before: {}", eval_line(e));
    }
    if let Some(e) = report.evals.last().filter(|_| report.evals.len() > 1) {
        eprintln!("after:  {}", eval_line(e));
    }
    write_gguf(model.gguf(), &t.params, &a.output, outtype)?;
    let rss = peak_rss_bytes() as f64 / (1 << 20) as f64;
    eprintln!(
        "mote: {} steps in {:.1} s, {:.1} tokens/s, peak RSS {rss:.0} MiB; wrote {} and {}{}",
        report.steps_done,
        report.seconds,
        report.tokens_per_s,
        a.output.display(),
        ckpt.display(),
        if report.stopped {
            " (stopped by Ctrl-C)"
        } else {
            ""
        }
    );
    if a.json {
        let j = JsonReport {
            steps: report.steps_done,
            seconds: report.seconds,
            tokens_per_s: report.tokens_per_s,
            first_loss: report.losses.first().copied(),
            last_loss: report.losses.last().copied(),
            evals: report.evals.iter().map(|e| (e.step, e.ppl, e.kl)).collect(),
            peak_rss_mib: rss,
            activation_mib: report.activation_bytes as f64 / (1 << 20) as f64,
            trainable_params: n_train,
            stopped: report.stopped,
        };
        println!("{}", serde_json::to_string(&j).unwrap_or_default());
    }
    Ok(())
}

fn eval_line(e: &EvalResult) -> String {
    match e.kl {
        Some(kl) => format!(
            "step {}: held-out PPL {:.3}, KL to teacher {kl:.4}",
            e.step, e.ppl
        ),
        None => format!("step {}: held-out PPL {:.3}", e.step, e.ppl),
    }
}
