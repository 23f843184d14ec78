//! `--format safetensors`: a Hugging Face folder (`config.json`, `model.safetensors`,
//! `generation_config.json`, `tokenizer.json`, `tokenizer_config.json`) that transformers
//! loads with `AutoModelForCausalLM` / `AutoTokenizer`, weights dequantized to F32, F16 or
//! BF16. The safetensors file is written tensor by tensor: the header first (every size
//! is known from the shapes), then each tensor's data as it is converted.

use std::fs::File;
use std::io::{BufWriter, Write};

use serde_json::{json, Map, Value};

use super::model::ExportModel;
use super::names::{hf_tensor, to_hf_values, HfTensor};
use super::staging::StagedDir;
use super::{hf_files, tokenizer_json, ExportSummary, FloatType, Progress};
use crate::error::{ConvertError, Result};

/// The safetensors header for `tensors` in this order, padded to 8 bytes.
fn header(tensors: &[HfTensor], dtype: FloatType) -> Result<Vec<u8>> {
    let size = match dtype {
        FloatType::F32 => 4,
        FloatType::F16 | FloatType::Bf16 => 2,
    };
    let mut map = Map::new();
    map.insert("__metadata__".into(), json!({ "format": "pt" }));
    let mut offset = 0u64;
    for t in tensors {
        let bytes = t.shape.iter().product::<u64>() * size;
        map.insert(
            t.name.clone(),
            json!({
                "dtype": dtype.name(),
                "shape": t.shape,
                "data_offsets": [offset, offset + bytes],
            }),
        );
        offset += bytes;
    }
    let mut text = serde_json::to_vec(&Value::Object(map))
        .map_err(|e| ConvertError::Invalid(format!("safetensors header: {e}")))?;
    while text.len() % 8 != 0 {
        text.push(b' ');
    }
    Ok(text)
}

pub fn export_hf(
    model: &ExportModel,
    stage: &StagedDir,
    dtype: FloatType,
    summary: &mut ExportSummary,
    check: &dyn Fn() -> Result<()>,
    progress: &mut Progress,
) -> Result<()> {
    let infos = model.file.tensors();
    let mut tensors = infos
        .iter()
        .map(|i| hf_tensor(model, i))
        .collect::<Result<Vec<_>>>()?;
    // Sorted by name, as Hugging Face's own writer does; the data follows the same order.
    let mut order: Vec<usize> = (0..tensors.len()).collect();
    order.sort_by(|&a, &b| tensors[a].name.cmp(&tensors[b].name));
    tensors = order.iter().map(|&i| tensors[i].clone()).collect();

    let path = stage.path("model.safetensors");
    let werr = |source| ConvertError::Write {
        path: path.clone(),
        source,
    };
    let mut out = BufWriter::new(File::create(&path).map_err(werr)?);
    let head = header(&tensors, dtype)?;
    out.write_all(&(head.len() as u64).to_le_bytes())
        .map_err(werr)?;
    out.write_all(&head).map_err(werr)?;
    for (done, (&i, t)) in order.iter().zip(&tensors).enumerate() {
        check()?;
        progress(done, tensors.len(), &t.name);
        let values = to_hf_values(t, model.f32_values(&infos[i])?);
        out.write_all(&dtype.encode(&values)).map_err(werr)?;
        *summary
            .tensor_types
            .entry(dtype.name().to_string())
            .or_default() += 1;
    }
    out.into_inner()
        .map_err(|e| werr(e.into_error()))?
        .sync_all()
        .map_err(werr)?;
    progress(tensors.len(), tensors.len(), "");

    stage.write_json("config.json", &hf_files::config_json(model, dtype)?)?;
    stage.write_json(
        "generation_config.json",
        &hf_files::generation_config(model),
    )?;
    tokenizer_json::write_tokenizer_files(model, stage)?;
    Ok(())
}
