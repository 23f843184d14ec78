//! Writing the trained model: the source file's metadata and tensor list, trained
//! tensors in F32 or F16 (vectors stay F32, as llama.cpp's converters keep them), the
//! others copied as they were. Written to a temporary name and renamed.

use std::path::Path;

use mote_file::gguf::set_metadata;
use mote_file::{GgufFile, GgufWriter, MetaValue, TensorSpec};
use mote_tensor::DType;

use crate::params::Params;
use crate::TrainError;

fn write_err(e: impl std::fmt::Display) -> TrainError {
    TrainError::Invalid(format!("writing the output GGUF: {e}"))
}

/// Writes `p` over the tensors of `src` to `out` with matrices in `dtype` (F32 or F16).
pub fn write_gguf(src: &GgufFile, p: &Params, out: &Path, dtype: DType) -> Result<(), TrainError> {
    if !matches!(dtype, DType::F32 | DType::F16) {
        return Err(TrainError::Invalid(format!(
            "output type {dtype:?}: F32 or F16 only"
        )));
    }
    let mut meta = src.metadata_owned();
    let file_type = if dtype == DType::F16 { 1 } else { 0 };
    set_metadata(&mut meta, "general.file_type", MetaValue::U32(file_type));
    let mut specs = Vec::new();
    for info in src.tensors() {
        let mut spec = TensorSpec::from(info);
        if let Some(i) = p.find(&info.name) {
            spec.dtype = if p.tensors[i].rows > 1 {
                dtype
            } else {
                DType::F32
            };
        }
        specs.push(spec);
    }
    let mut w = GgufWriter::create(out, &meta, specs.clone()).map_err(write_err)?;
    for (info, spec) in src.tensors().iter().zip(&specs) {
        match p.find(&info.name) {
            Some(i) => {
                let data = &p.tensors[i].data;
                let bytes: Vec<u8> = if spec.dtype == DType::F16 {
                    data.iter()
                        .flat_map(|&v| half::f16::from_f32(v).to_le_bytes())
                        .collect()
                } else {
                    data.iter().flat_map(|v| v.to_le_bytes()).collect()
                };
                w.write_tensor(&info.name, &bytes).map_err(write_err)?;
            }
            None => w
                .write_tensor(&info.name, src.tensor_bytes(info).as_slice())
                .map_err(write_err)?,
        }
    }
    w.finish().map_err(write_err)?;
    Ok(())
}
