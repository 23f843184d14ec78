//! Command-line flags. Names follow llama.cpp's so that switching tools is painless.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use mote_model::KvPrecision;

#[derive(Parser, Debug)]
#[command(
    name = "mote",
    version,
    about = "Run small language models (GGUF files) on the CPU",
    long_about = "Run small language models (GGUF files) on the CPU.\n\n\
        Generated text goes to stdout; logs and statistics go to stderr.\n\
        When MODEL is omitted, models/SmolLM2-135M-Instruct.Q4_1.gguf is used \
        (looked up in $MOTE_MODELS, then ./models); scripts/fetch-models.sh downloads it."
)]
pub struct Cli {
    /// More log output on stderr (-v info, -vv debug, -vvv trace); RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Complete a prompt (raw text, no chat template); tokens stream to stdout.
    Run(RunArgs),
    /// Chat with the model's template, one user message per stdin line (/reset, /exit).
    Chat(ChatArgs),
    /// Show a model file's metadata, tensors, sizes and parameter count.
    Inspect(InspectArgs),
    /// Measure prompt processing (pp) and generation (tg) speed, like llama-bench.
    Bench(crate::bench::BenchArgs),
    /// Serve the model over HTTP: POST /chat, an OpenAI-compatible API and a web chat page.
    Serve(mote_server::ServeArgs),
    /// Perplexity on a text file (llama-perplexity's method); KL divergence against a
    /// reference run with --kl-base.
    Perplexity(mote_compress::cli::PerplexityArgs),
    /// Quantize a GGUF model (F16, Q8_0, Q4_0, ..., Q4_K_M and the other presets).
    Quantize(mote_compress::cli::QuantizeArgs),
    /// Collect an importance matrix from calibration text (llama.cpp's imatrix format).
    Imatrix(mote_compress::cli::ImatrixArgs),
    /// Prune a model: zero weights (magnitude, random, N:M) or drop whole blocks.
    Prune(mote_compress::cli::PruneArgs),
    /// Fine-tune a model on a text file (AdamW, next-token cross-entropy; all or some
    /// blocks, embeddings frozen by default); writes an F32/F16 GGUF.
    Finetune(mote_train::cli::FinetuneArgs),
    /// Distil a teacher into a student of the same vocabulary (forward KL at a
    /// temperature, --alpha mixes in the hard labels); writes an F32/F16 GGUF.
    Distill(mote_train::cli::DistillArgs),
    /// Export a model for another runtime: ONNX (ONNX Runtime, Optimum's decoder with
    /// past) or safetensors (a Hugging Face folder for transformers).
    Export(mote_convert::cli::ExportArgs),
    /// The IoT gateway: sensor simulator, MQTT ingest into SQLite, questions answered
    /// by a tool-calling model from the stored readings.
    Gateway(mote_gateway::GatewayArgs),
}

/// Prints what `--quantize` did (one line on stderr).
pub fn report_load_quantization(model: &mote_model::Model) {
    if let Some(q) = model.load_quantization() {
        eprintln!("mote: {}", q.summary());
    }
}

/// Which model file to use: positional or -m, defaulting to SmolLM2.
#[derive(Args, Debug, Clone)]
pub struct ModelArg {
    /// Model file (GGUF). Same as -m.
    #[arg(value_name = "MODEL")]
    pub model_pos: Option<PathBuf>,

    /// Model file (GGUF). Default: models/SmolLM2-135M-Instruct.Q4_1.gguf.
    #[arg(
        short = 'm',
        long = "model",
        value_name = "FILE",
        conflicts_with = "model_pos"
    )]
    pub model: Option<PathBuf>,
}

impl ModelArg {
    pub fn given(&self) -> Option<&PathBuf> {
        self.model.as_ref().or(self.model_pos.as_ref())
    }
}

/// Model loading, context and sampling settings shared by `run` and `chat`.
#[derive(Args, Debug, Clone)]
pub struct GenArgs {
    /// Tokens to generate at most (per reply in chat); -1 = until end-of-text or a full context.
    #[arg(
        short = 'n',
        long = "n-predict",
        default_value_t = 256,
        allow_negative_numbers = true,
        value_name = "N"
    )]
    pub n_predict: i64,

    /// Worker threads for the kernels; 0 = one per physical core.
    #[arg(short = 't', long = "threads", default_value_t = 0, value_name = "N")]
    pub threads: usize,

    /// Context size in tokens (prompt + output); 0 = min(4096, the model's trained context).
    #[arg(short = 'c', long = "ctx-size", default_value_t = 0, value_name = "N")]
    pub ctx_size: usize,

    /// KV cache type for keys: f16 (default, as llama.cpp), f32 or q8_0. Also -ctk.
    #[arg(long = "cache-type-k", default_value_t = KvPrecision::F16, value_name = "TYPE")]
    pub cache_type_k: KvPrecision,

    /// KV cache type for values: f16 (default), f32 or q8_0. Also -ctv.
    #[arg(long = "cache-type-v", default_value_t = KvPrecision::F16, value_name = "TYPE")]
    pub cache_type_v: KvPrecision,

    /// Quantize a float (F32/F16/BF16) model's weight matrices to TYPE while loading
    /// (q8_0, q4_0, q4_k, ...; rows that do not fit fall back as in llama-quantize).
    #[arg(long = "quantize", value_name = "TYPE", value_parser = mote_model::parse_quantize_type)]
    pub quantize: Option<mote_tensor::DType>,

    /// Sampling temperature; 0 or less = greedy (always the most likely token).
    #[arg(
        long = "temp",
        default_value_t = 0.8,
        allow_negative_numbers = true,
        value_name = "T"
    )]
    pub temp: f32,

    /// Keep only the K most likely tokens; 0 = no limit.
    #[arg(
        long = "top-k",
        default_value_t = 40,
        allow_negative_numbers = true,
        value_name = "K"
    )]
    pub top_k: i32,

    /// Keep the most likely tokens whose probabilities add up to P; 1.0 = off.
    #[arg(long = "top-p", default_value_t = 0.95, value_name = "P")]
    pub top_p: f32,

    /// Drop tokens less likely than P times the most likely one; 0.0 = off.
    #[arg(long = "min-p", default_value_t = 0.05, value_name = "P")]
    pub min_p: f32,

    /// Penalise tokens seen in the last --repeat-last-n tokens; 1.0 = off.
    #[arg(long = "repeat-penalty", default_value_t = 1.0, value_name = "X")]
    pub repeat_penalty: f32,

    /// How many recent tokens the penalties look at; 0 = off, -1 = the whole context.
    #[arg(
        long = "repeat-last-n",
        default_value_t = 64,
        allow_negative_numbers = true,
        value_name = "N"
    )]
    pub repeat_last_n: i32,

    /// Subtract X from the logit of every token already seen; 0.0 = off.
    #[arg(
        long = "presence-penalty",
        default_value_t = 0.0,
        allow_negative_numbers = true,
        value_name = "X"
    )]
    pub presence_penalty: f32,

    /// Subtract X times its count from the logit of every token already seen; 0.0 = off.
    #[arg(
        long = "frequency-penalty",
        default_value_t = 0.0,
        allow_negative_numbers = true,
        value_name = "X"
    )]
    pub frequency_penalty: f32,

    /// Random seed for sampling; the same seed gives the same output. Default: random.
    #[arg(short = 's', long = "seed", value_name = "N")]
    pub seed: Option<u64>,

    /// Keep generating past end-of-text tokens (they are never sampled).
    #[arg(long = "ignore-eos")]
    pub ignore_eos: bool,

    /// Stop when this text appears (it is not printed); can be given several times.
    #[arg(short = 'r', long = "reverse-prompt", value_name = "TEXT")]
    pub reverse_prompt: Vec<String>,

    #[command(flatten)]
    pub dry: mote_server::flags::DryArgs,

    #[command(flatten)]
    pub context: mote_server::flags::ContextArgs,
    /// Keep the prompt's KV cache in FILE (llama.cpp's flag): a later run whose prompt
    /// starts with the same tokens restores it and processes only the rest. Saved after
    /// the run (the prompt's positions only; written to a temporary name and renamed)
    /// unless FILE already held this prompt. In chat, the first turn's prompt is kept.
    /// A file from another model or cache type is ignored with a warning, and replaced.
    #[arg(long = "prompt-cache", value_name = "FILE")]
    pub prompt_cache: Option<PathBuf>,

    /// Use --prompt-cache FILE without ever writing it.
    #[arg(long = "prompt-cache-ro", requires = "prompt_cache")]
    pub prompt_cache_ro: bool,
}

#[derive(Args, Debug)]
pub struct RunArgs {
    #[command(flatten)]
    pub model: ModelArg,

    /// The prompt to complete.
    #[arg(
        short = 'p',
        long = "prompt",
        value_name = "TEXT",
        conflicts_with = "file"
    )]
    pub prompt: Option<String>,

    /// Read the prompt from a file (without -p or -f, the prompt is read from stdin).
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: Option<PathBuf>,

    /// Print one JSON object (text, tokens, timings, finish_reason) instead of streaming text.
    #[arg(long = "json")]
    pub json: bool,

    #[command(flatten)]
    pub gen: GenArgs,
}

#[derive(Args, Debug)]
pub struct ChatArgs {
    #[command(flatten)]
    pub model: ModelArg,

    /// System prompt that starts the conversation (also -sys).
    #[arg(long = "system-prompt", value_name = "TEXT")]
    pub system_prompt: Option<String>,

    /// Prompt format: gemma, chatml, llama2, plain, or Jinja template text. Default: the
    /// file's own template, else one chosen from the architecture and vocabulary.
    #[arg(long = "chat-template", value_name = "NAME|JINJA")]
    pub chat_template: Option<String>,

    /// Save the conversation (messages and KV cache) to FILE after every turn, and resume
    /// it from FILE at start when it exists: the next turn only processes the new message.
    /// The file is written to a temporary name and renamed; one saved by another model or
    /// with other cache types is refused (the command stops and leaves it alone).
    #[arg(long = "session", value_name = "FILE", conflicts_with = "prompt_cache")]
    pub session: Option<PathBuf>,

    #[command(flatten)]
    pub gen: GenArgs,
}

#[derive(Args, Debug)]
pub struct InspectArgs {
    #[command(flatten)]
    pub model: ModelArg,

    /// Print one JSON object instead of tables.
    #[arg(long = "json")]
    pub json: bool,
}

/// llama.cpp spells some flags with one dash and several letters (`-sys`); clap cannot,
/// so they are rewritten to their long forms before parsing.
pub fn normalize_args(
    args: impl IntoIterator<Item = std::ffi::OsString>,
) -> Vec<std::ffi::OsString> {
    args.into_iter()
        .map(|a| match a.to_str() {
            Some("-sys") => "--system-prompt".into(),
            Some("-ctk") => "--cache-type-k".into(),
            Some("-ctv") => "--cache-type-v".into(),
            _ => a,
        })
        .collect()
}
