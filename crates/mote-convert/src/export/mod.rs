//! `mote export`: a GGUF model written out in another runtime's format, tensor by
//! tensor. `safetensors` writes a Hugging Face folder that transformers loads; `onnx`
//! writes Optimum's decoder-with-past graph for ONNX Runtime.
//!
//! Every export goes to a hidden temporary folder next to the destination that is renamed
//! into place only when complete, so an interrupted or failed export leaves nothing at
//! the destination. The output depends only on the input: two exports are byte-identical.

mod hf_files;
mod model;
mod names;
pub mod onnx;
mod safetensors;
mod spm_model;
mod staging;
mod tokenizer_json;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use mote_file::GgufFile;

pub use model::ExportModel;
pub use names::hf_tensor;

use crate::error::{ConvertError, Result};

/// The formats `mote export` writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Onnx,
    Safetensors,
}

impl Format {
    pub fn parse(s: &str) -> Result<Format> {
        match s.to_ascii_lowercase().as_str() {
            "onnx" => Ok(Format::Onnx),
            "safetensors" | "hf" => Ok(Format::Safetensors),
            "tflite" | "litert" => Err(ConvertError::Invalid(
                "--format tflite is not implemented yet (formats: onnx, safetensors)".into(),
            )),
            _ => Err(ConvertError::Invalid(format!(
                "unknown --format {s:?} (formats: onnx, safetensors)"
            ))),
        }
    }
}

/// The float type of the exported weights.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FloatType {
    F32,
    F16,
    Bf16,
}

impl FloatType {
    pub fn parse(s: &str) -> Result<FloatType> {
        match s.to_ascii_lowercase().as_str() {
            "f32" | "float32" => Ok(FloatType::F32),
            "f16" | "float16" => Ok(FloatType::F16),
            "bf16" | "bfloat16" => Ok(FloatType::Bf16),
            _ => Err(ConvertError::Invalid(format!(
                "unknown --dtype {s:?} (f32, f16, bf16)"
            ))),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            FloatType::F32 => "F32",
            FloatType::F16 => "F16",
            FloatType::Bf16 => "BF16",
        }
    }

    /// Encodes f32 values in this type (round to nearest even).
    pub fn encode(self, values: &[f32]) -> Vec<u8> {
        match self {
            FloatType::F32 => values.iter().flat_map(|v| v.to_le_bytes()).collect(),
            FloatType::F16 => values
                .iter()
                .flat_map(|&v| half::f16::from_f32(v).to_le_bytes())
                .collect(),
            FloatType::Bf16 => values
                .iter()
                .flat_map(|&v| half::bf16::from_f32(v).to_le_bytes())
                .collect(),
        }
    }
}

/// What `mote export` was asked for.
#[derive(Clone, Debug)]
pub struct ExportOptions {
    pub format: Format,
    /// Float weights' type; `None`: F32 for safetensors, the source's own for ONNX.
    pub dtype: Option<FloatType>,
    /// ONNX: dequantize weight types that MatMulNBits cannot hold exactly.
    pub dequantize: bool,
    /// ONNX: also write onnxruntime-genai's `genai_config.json` and tokenizer files.
    pub ort_genai: bool,
    /// ONNX: MatMulNBits' `accuracy_level`: 4 quantizes activations to int8 in blocks of
    /// 32 with scale max|x|/127, as llama.cpp and mote compute Q4_0/Q8_0 products; 0
    /// multiplies in f32.
    pub accuracy_level: i64,
}

/// One written file.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ExportedFile {
    pub name: String,
    pub bytes: u64,
}

/// What an export wrote.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct ExportSummary {
    pub output: PathBuf,
    pub files: Vec<ExportedFile>,
    /// Weight type in the output → number of tensors.
    pub tensor_types: BTreeMap<String, usize>,
}

/// Progress callback: tensors done, tensors in all, the tensor being written.
pub type Progress<'a> = dyn FnMut(usize, usize, &str) + 'a;

/// Exports the GGUF model at `input` to the folder `output`.
pub fn export(
    input: &Path,
    output: &Path,
    opts: &ExportOptions,
    cancel: &AtomicBool,
    progress: &mut Progress,
) -> Result<ExportSummary> {
    if input.is_dir() {
        return Err(ConvertError::Invalid(format!(
            "{}: export reads a GGUF file (a Hugging Face folder is converted with \
             `mote quantize FOLDER OUT.gguf --type F32` first)",
            input.display()
        )));
    }
    let file = GgufFile::open(input).map_err(|e| ConvertError::Invalid(e.to_string()))?;
    let model = ExportModel::new(&file)?;
    let stage = staging::StagedDir::new(output)?;
    let mut summary = ExportSummary {
        output: output.to_path_buf(),
        ..Default::default()
    };
    let check = || -> Result<()> {
        if cancel.load(Ordering::Relaxed) {
            Err(ConvertError::Interrupted)
        } else {
            Ok(())
        }
    };
    match opts.format {
        Format::Safetensors => {
            let dtype = opts.dtype.unwrap_or(FloatType::F32);
            safetensors::export_hf(&model, &stage, dtype, &mut summary, &check, progress)?
        }
        Format::Onnx => onnx::export_onnx(&model, &stage, opts, &mut summary, &check, progress)?,
    }
    check()?;
    summary.files = stage.files()?;
    stage.commit()?;
    Ok(summary)
}
