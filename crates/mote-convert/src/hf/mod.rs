//! A Hugging Face model folder (`config.json`, `tokenizer.json`, safetensors weights,
//! optionally sharded) as a [`TensorSource`] for `quantize`: every `--type`, preset,
//! override and imatrix then works on it, and the output is a GGUF that mote and
//! llama.cpp load.
//!
//! Nothing is converted up front: the safetensors files are memory-mapped and each GGUF
//! tensor is built when the writer asks for it (Q/K rows permuted for llama's RoPE
//! layout, 1-D tensors widened to F32), so peak memory is about one tensor.

mod config;
mod error;
mod json;
mod spm;
mod tensors;
mod vocab;

use std::collections::HashMap;
use std::path::Path;

use mote_file::{MetaValue, SafetensorsDir, TensorInfo};
use mote_tensor::quant::dequantize_row;
use mote_tensor::{Bytes, DType};

pub use config::{Arch, HfConfig, RopeScaling};
pub use error::HfError;
pub use tensors::permute_rows;
pub use vocab::detect_pre;

use crate::error::{ConvertError, Result};
use crate::source::TensorSource;

/// Where one output tensor's data comes from.
enum Origin {
    /// A checkpoint tensor, read as `from`.
    Checkpoint {
        name: String,
        from: DType,
        permute_heads: Option<usize>,
        add_one: bool,
    },
    /// Built by the conversion (Llama 3's `rope_freqs.weight`).
    Computed(Vec<f32>),
}

/// An opened Hugging Face folder, ready to be quantized.
pub struct HfModel {
    pub config: HfConfig,
    weights: SafetensorsDir,
    meta: Vec<(String, MetaValue)>,
    tensors: Vec<TensorInfo>,
    origins: HashMap<String, Origin>,
}

impl HfModel {
    /// Reads the folder's JSON files and checkpoint header(s) and checks every tensor's
    /// name and shape against `config.json`. No tensor data is read.
    pub fn open(dir: &Path) -> std::result::Result<HfModel, HfError> {
        let config_json = json::read_required(dir, "config.json")?;
        let config = HfConfig::parse(&config_json)?;
        let tokenizer = json::read_optional(dir, "tokenizer.json")?;
        // llama.cpp takes a Llama-family vocabulary from SentencePiece when it can.
        let spm_path = dir.join("tokenizer.model");
        let spm = if config.arch != Arch::Qwen2 && spm_path.is_file() {
            Some(std::fs::read(&spm_path).map_err(|source| HfError::Io {
                path: spm_path,
                source,
            })?)
        } else {
            None
        };
        let added_tokens_json = json::read_optional(dir, "added_tokens.json")?;
        let tokenizer_config = json::read_optional(dir, "tokenizer_config.json")?;
        let generation_config = json::read_optional(dir, "generation_config.json")?;
        let chat_template_file = read_text(dir, "chat_template.jinja")?;
        let weights = SafetensorsDir::open(dir)?;

        let tied = match config.tie_embeddings {
            Some(t) => t,
            None => weights.tensor("lm_head.weight").is_none(),
        };
        let mut tensors = Vec::new();
        let mut origins = HashMap::new();
        for t in weights.tensors() {
            let Some(m) = tensors::map_name(&t.name, &config, tied)? else {
                continue;
            };
            if t.shape != m.shape {
                return Err(HfError::BadShape {
                    tensor: t.name.clone(),
                    shape: t.shape.clone(),
                    expected: m.shape,
                });
            }
            let from = tensors::float_type(t.dtype).ok_or_else(|| HfError::UnsupportedDType {
                tensor: t.name.clone(),
                dtype: t.dtype.to_string(),
            })?;
            // Norms and biases are stored as F32, as llama.cpp's converter does.
            let dtype = if m.shape.len() == 1 { DType::F32 } else { from };
            let dims: Vec<u64> = m.shape.iter().rev().copied().collect();
            tensors.push(info(&m.gguf, dims, dtype)?);
            origins.insert(
                m.gguf,
                Origin::Checkpoint {
                    name: t.name.clone(),
                    from,
                    permute_heads: m.permute_heads,
                    add_one: m.add_one,
                },
            );
        }
        if let Some(name) = tensors::first_missing(&config, tied, |n| origins.contains_key(n)) {
            return Err(HfError::MissingTensor(name));
        }
        if let Some(factors) = config.rope_freq_factors() {
            let name = "rope_freqs.weight";
            tensors.push(info(name, vec![factors.len() as u64], DType::F32)?);
            origins.insert(name.into(), Origin::Computed(factors));
        }

        let name = dir
            .canonicalize()
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_else(|| "model".into());
        let mut meta = config.metadata(&name);
        let side = vocab::SideFiles {
            tokenizer_config: tokenizer_config.as_ref(),
            config: &config_json,
            generation_config: generation_config.as_ref(),
            chat_template_file,
        };
        meta.extend(match (&spm, &tokenizer) {
            (Some(bytes), _) => vocab::spm_tokenizer_metadata(
                bytes,
                tokenizer.as_ref(),
                added_tokens_json.as_ref(),
                &side,
                config.vocab_size,
            )?,
            (None, Some(t)) => vocab::tokenizer_metadata(t, &side, config.vocab_size)?,
            (None, None) => return Err(HfError::MissingFile(dir.to_path_buf(), "tokenizer.json")),
        });
        if config.arch == Arch::Gemma3 {
            // As llama.cpp: Gemma's SentencePiece adds no leading space.
            mote_file::gguf::set_metadata(
                &mut meta,
                "tokenizer.ggml.add_space_prefix",
                MetaValue::Bool(false),
            );
        }
        Ok(HfModel {
            config,
            weights,
            meta,
            tensors,
            origins,
        })
    }
}

fn read_text(dir: &Path, name: &str) -> std::result::Result<Option<String>, HfError> {
    let path = dir.join(name);
    if !path.is_file() {
        return Ok(None);
    }
    std::fs::read_to_string(&path)
        .map(Some)
        .map_err(|source| HfError::Io { path, source })
}

fn info(name: &str, dims: Vec<u64>, dtype: DType) -> std::result::Result<TensorInfo, HfError> {
    let elements = dims.iter().try_fold(1u64, |a, &d| a.checked_mul(d));
    let size_bytes = elements
        .and_then(|e| dtype.bytes_for(e).ok())
        .ok_or_else(|| HfError::BadShape {
            tensor: name.into(),
            shape: dims.iter().rev().copied().collect(),
            expected: Vec::new(),
        })?;
    Ok(TensorInfo {
        name: name.into(),
        dims,
        dtype,
        offset: 0,
        size_bytes,
    })
}

impl TensorSource for HfModel {
    fn metadata(&self) -> Vec<(String, MetaValue)> {
        self.meta.clone()
    }

    fn tensors(&self) -> &[TensorInfo] {
        &self.tensors
    }

    fn tensor_data(&self, info: &TensorInfo) -> Result<Bytes> {
        let bad = |m: String| ConvertError::Invalid(format!("tensor {:?}: {m}", info.name));
        let origin = self
            .origins
            .get(&info.name)
            .ok_or_else(|| bad("not in this model".into()))?;
        let (name, from, permute_heads, add_one) = match origin {
            Origin::Computed(v) => return Ok(Bytes::from_vec(f32_bytes(v))),
            Origin::Checkpoint {
                name,
                from,
                permute_heads,
                add_one,
            } => (name, *from, *permute_heads, *add_one),
        };
        let (_, data) = self
            .weights
            .tensor(name)
            .ok_or_else(|| bad(format!("{name:?} vanished from the checkpoint")))?;
        let mut data = if info.dtype != from || add_one {
            let n = usize::try_from(info.elements()).map_err(|e| bad(e.to_string()))?;
            let mut row = vec![0f32; n];
            dequantize_row(from, data.as_slice(), &mut row).map_err(|source| {
                ConvertError::Quant {
                    tensor: info.name.clone(),
                    source,
                }
            })?;
            if add_one {
                row.iter_mut().for_each(|x| *x += 1.0);
            }
            Bytes::from_vec(f32_bytes(&row))
        } else {
            data
        };
        if let Some(heads) = permute_heads {
            // Rows of a matrix; elements of a bias.
            let rows = match info.dims.as_slice() {
                [n] => *n,
                dims => dims.iter().skip(1).product(),
            };
            let row_bytes =
                usize::try_from(info.size_bytes / rows.max(1)).map_err(|e| bad(e.to_string()))?;
            data = Bytes::from_vec(tensors::permute_rows(data.as_slice(), heads, row_bytes));
        }
        if data.len() as u64 != info.size_bytes {
            return Err(bad(format!(
                "{} bytes, expected {}",
                data.len(),
                info.size_bytes
            )));
        }
        Ok(data)
    }
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}
