//! The model being exported: its GGUF file, architecture spec and hyper-parameters, and
//! each tensor's values on demand.

use mote_file::{GgufFile, TensorInfo};
use mote_model::{ArchSpec, ModelConfig};
use mote_tensor::quant::dequantize_row;

use crate::error::{ConvertError, Result};

pub struct ExportModel<'f> {
    pub file: &'f GgufFile,
    pub spec: &'static ArchSpec,
    pub cfg: ModelConfig,
    /// No `output.weight`: the token embedding is also the unembedding.
    pub tied: bool,
}

impl<'f> ExportModel<'f> {
    pub fn new(file: &'f GgufFile) -> Result<ExportModel<'f>> {
        let invalid = |e: String| ConvertError::Invalid(e);
        let arch = file.architecture().map_err(|e| invalid(e.to_string()))?;
        let spec = ArchSpec::lookup(arch).ok_or_else(|| {
            invalid(format!(
                "architecture {arch:?} cannot be exported (supported: {})",
                ArchSpec::supported().collect::<Vec<_>>().join(", ")
            ))
        })?;
        let embd = file
            .tensor("token_embd.weight")
            .ok_or_else(|| invalid("the file has no token_embd.weight".into()))?;
        let vocab = match embd.dims.as_slice() {
            [_, v] => usize::try_from(*v).map_err(|e| invalid(e.to_string()))?,
            d => return Err(invalid(format!("token_embd.weight has dims {d:?}"))),
        };
        let cfg = ModelConfig::from_gguf(file, spec, vocab).map_err(|e| invalid(e.to_string()))?;
        if cfg.n_rot != cfg.head_dim_k || cfg.head_dim_k != cfg.head_dim_v {
            return Err(invalid(format!(
                "partial rotary embeddings or unequal key/value head sizes (rope {} of {}, \
                 value {}) cannot be exported yet",
                cfg.n_rot, cfg.head_dim_k, cfg.head_dim_v
            )));
        }
        let tied = file.tensor("output.weight").is_none();
        Ok(ExportModel {
            file,
            spec,
            cfg,
            tied,
        })
    }

    pub fn tensor(&self, name: &str) -> Result<&'f TensorInfo> {
        self.file
            .tensor(name)
            .ok_or_else(|| ConvertError::Invalid(format!("tensor {name:?} is missing")))
    }

    /// A tensor's values as f32, decoded as mote's own dequantization does (exact for
    /// the float types and the one-scale blocks Q4_0, Q5_0, Q8_0).
    pub fn f32_values(&self, info: &TensorInfo) -> Result<Vec<f32>> {
        let n = usize::try_from(info.elements())
            .map_err(|e| ConvertError::Invalid(format!("{}: {e}", info.name)))?;
        let mut out = vec![0f32; n];
        dequantize_row(
            info.dtype,
            self.file.tensor_bytes(info).as_slice(),
            &mut out,
        )
        .map_err(|source| ConvertError::Quant {
            tensor: info.name.clone(),
            source,
        })?;
        Ok(out)
    }

    /// Token ids from `tokenizer.ggml.<key>`.
    pub fn token_id(&self, key: &str) -> Option<u32> {
        self.file
            .get_u32(&format!("tokenizer.ggml.{key}"))
            .ok()
            .flatten()
    }

    pub fn meta_str(&self, key: &str) -> Option<&'f str> {
        self.file.get_str(key).ok().flatten()
    }

    pub fn meta_bool(&self, key: &str) -> Option<bool> {
        self.file.get_bool(key).ok().flatten()
    }
}
