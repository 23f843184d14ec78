//! `mote export`'s command-line front end (flags, progress bar, Ctrl-C, summary).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};

use crate::error::{ConvertError, Result};
use crate::export::{export, ExportOptions, ExportSummary, FloatType, Format};

/// Export a GGUF model for another runtime: a Hugging Face folder (safetensors) or an
/// ONNX Runtime folder (Optimum's decoder-with-past graph).
#[derive(Args, Debug, Clone)]
pub struct ExportArgs {
    /// Input GGUF model.
    pub input: PathBuf,
    /// Output folder (built under a hidden temporary name, renamed when complete; an
    /// earlier export there is replaced).
    pub output: PathBuf,
    /// onnx, or safetensors (a Hugging Face folder for transformers).
    #[arg(long, default_value = "safetensors")]
    pub format: String,
    /// Float type of the exported weights: f32, f16, bf16 (safetensors: default f32).
    #[arg(long)]
    pub dtype: Option<String>,
    /// ONNX: dequantize weights whose GGUF type has no exact MatMulNBits form (Q4_0 and
    /// Q8_0 have one) to --dtype instead of refusing.
    #[arg(long)]
    pub dequantize: bool,
    /// ONNX: also write genai_config.json and the tokenizer files for onnxruntime-genai.
    #[arg(long = "ort-genai")]
    pub ort_genai: bool,
    /// ONNX: MatMulNBits accuracy_level (ONNX Runtime's name). 4: activations rounded
    /// to int8 in blocks of 32 (scale max|x|/127), the arithmetic of llama.cpp and mote
    /// for Q4_0/Q8_0; 0: products in f32.
    #[arg(long = "accuracy-level", default_value_t = 4, value_parser = clap::value_parser!(i64).range(0..=4))]
    pub accuracy_level: i64,
    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,
}

fn cancel_flag() -> Arc<AtomicBool> {
    let flag = Arc::new(AtomicBool::new(false));
    let f = flag.clone();
    // If the binary already installed a handler this fails; Ctrl-C then ends the process
    // the default way (the temporary folder is left behind, never the destination).
    let _ = ctrlc::set_handler(move || f.store(true, Ordering::SeqCst));
    flag
}

/// `mote export`.
pub fn run_export(args: &ExportArgs) -> Result<()> {
    let opts = ExportOptions {
        format: Format::parse(&args.format)?,
        dtype: args.dtype.as_deref().map(FloatType::parse).transpose()?,
        dequantize: args.dequantize,
        ort_genai: args.ort_genai,
        accuracy_level: args.accuracy_level,
    };
    let cancel = cancel_flag();
    let pb = ProgressBar::new(0);
    if let Ok(style) = ProgressStyle::with_template(
        "{spinner} export [{bar:30}] {pos}/{len} {elapsed_precise} {msg}",
    ) {
        pb.set_style(style);
    }
    let summary = export(
        &args.input,
        &args.output,
        &opts,
        &cancel,
        &mut |done, total, name| {
            pb.set_length(total as u64);
            pb.set_position(done as u64);
            pb.set_message(name.to_string());
        },
    );
    pb.finish_and_clear();
    let summary = summary?;
    if args.json {
        let text = serde_json::to_string_pretty(&summary)
            .map_err(|e| ConvertError::Invalid(e.to_string()))?;
        println!("{text}");
    } else {
        print_summary(&summary);
    }
    Ok(())
}

fn print_summary(s: &ExportSummary) {
    let mib = |b: u64| b as f64 / (1 << 20) as f64;
    println!("{}", s.output.display());
    for f in &s.files {
        println!("  {:<28} {:>10.2} MiB", f.name, mib(f.bytes));
    }
    let total: u64 = s.files.iter().map(|f| f.bytes).sum();
    println!("  {:<28} {:>10.2} MiB", "total", mib(total));
    let types: Vec<String> = s
        .tensor_types
        .iter()
        .map(|(t, n)| format!("{n} {t}"))
        .collect();
    println!("weights: {}", types.join(", "));
}
