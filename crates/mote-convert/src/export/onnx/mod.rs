//! `--format onnx`: `model.onnx` with Optimum's decoder-with-past interface (see
//! [`decoder`]), beside `config.json`, the tokenizer files and, with `--ort-genai`,
//! onnxruntime-genai's `genai_config.json`.
//!
//! The file is streamed: the graph (nodes, small constants, inputs, outputs) is built
//! first with every weight's size known from its shape, so each enclosing message's
//! length is written before the weights, which are then produced and written one at a
//! time. Weights go to `model.onnx.data` (ONNX external data, 4 KiB-aligned offsets)
//! when they would push the file past protobuf's 2 GiB limit.

mod decoder;
mod genai;
mod graph;
pub mod proto;
mod weights;

use std::fs::File;
use std::io::{BufWriter, Write};

use proto::{bytes_field, field_len, int_field, len_prefix, opset, Location, TensorHeader};

use super::model::ExportModel;
use super::staging::StagedDir;
use super::{hf_files, tokenizer_json, ExportOptions, ExportSummary, FloatType, Progress};
use crate::error::{ConvertError, Result};

/// ONNX IR version 8 goes with opset 17.
const IR_VERSION: i64 = 8;
const OPSET: i64 = 17;
/// Above this many weight bytes, weights go to external data.
const INLINE_LIMIT: u64 = 1 << 30 | 1 << 29;
const EXTERNAL_ALIGN: u64 = 4096;
pub const MODEL_FILE: &str = "model.onnx";
const DATA_FILE: &str = "model.onnx.data";

pub fn export_onnx(
    model: &ExportModel,
    stage: &StagedDir,
    opts: &ExportOptions,
    summary: &mut ExportSummary,
    check: &dyn Fn() -> Result<()>,
    progress: &mut Progress,
) -> Result<()> {
    let graph = decoder::build(model, opts)?;
    let weight_bytes: u64 = graph
        .b
        .weights
        .iter()
        .map(|w| w.dims.iter().product::<i64>() as u64 * w.elem.size())
        .sum();
    let external = weight_bytes > INLINE_LIMIT;
    let mut offset = 0u64;
    let headers: Vec<TensorHeader> = graph
        .b
        .weights
        .iter()
        .map(|w| {
            let location = if external {
                let here = offset;
                let len = w.dims.iter().product::<i64>() as u64 * w.elem.size();
                offset = (here + len).div_ceil(EXTERNAL_ALIGN) * EXTERNAL_ALIGN;
                Location::External {
                    file: DATA_FILE.into(),
                    offset: here,
                }
            } else {
                Location::Inline
            };
            TensorHeader {
                name: w.name.clone(),
                elem: w.elem,
                dims: w.dims.clone(),
                location,
            }
        })
        .collect();

    // GraphProto: node 1, name 2, initializer 5, input 11, output 12.
    let mut head = Vec::new();
    for n in &graph.b.nodes {
        bytes_field(&mut head, 1, &proto::node(n));
    }
    bytes_field(&mut head, 2, format!("mote-{}", model.spec.name).as_bytes());
    for t in &graph.b.consts {
        bytes_field(&mut head, 5, t);
    }
    let mut tail = Vec::new();
    for i in &graph.inputs {
        bytes_field(&mut tail, 11, i);
    }
    for o in &graph.outputs {
        bytes_field(&mut tail, 12, o);
    }
    let weights_len: u64 = headers.iter().map(|h| field_len(h.encoded_len())).sum();
    let graph_len = head.len() as u64 + weights_len + tail.len() as u64;

    // ModelProto: ir_version 1, producer_name 2, producer_version 3, graph 7, opset 8.
    let mut model_head = Vec::new();
    int_field(&mut model_head, 1, IR_VERSION);
    bytes_field(&mut model_head, 2, b"mote");
    bytes_field(&mut model_head, 3, env!("CARGO_PKG_VERSION").as_bytes());
    bytes_field(&mut model_head, 8, &opset("", OPSET));
    if graph.b.uses_ms {
        bytes_field(&mut model_head, 8, &opset("com.microsoft", 1));
    }
    len_prefix(&mut model_head, 7, graph_len);

    let path = stage.path(MODEL_FILE);
    let werr = |path: &std::path::Path| {
        let path = path.to_path_buf();
        move |source| ConvertError::Write { path, source }
    };
    let mut out = BufWriter::new(File::create(&path).map_err(werr(&path))?);
    out.write_all(&model_head).map_err(werr(&path))?;
    out.write_all(&head).map_err(werr(&path))?;
    let data_path = stage.path(DATA_FILE);
    let mut data = if external {
        Some(BufWriter::new(
            File::create(&data_path).map_err(werr(&data_path))?,
        ))
    } else {
        None
    };
    let mut data_pos = 0u64;
    let total = graph.b.weights.len();
    for (done, (w, h)) in graph.b.weights.iter().zip(&headers).enumerate() {
        check()?;
        progress(done, total, &w.name);
        let bytes = weights::produce(model, &w.source, w.elem)?;
        if bytes.len() as u64 != h.byte_len() {
            return Err(ConvertError::Invalid(format!(
                "{}: {} bytes made, {} expected",
                w.name,
                bytes.len(),
                h.byte_len()
            )));
        }
        let enc = h.encode_head();
        let mut key = Vec::new();
        len_prefix(&mut key, 5, h.encoded_len());
        out.write_all(&key).map_err(werr(&path))?;
        out.write_all(&enc).map_err(werr(&path))?;
        match (&mut data, &h.location) {
            (Some(d), Location::External { offset, .. }) => {
                let pad = (offset - data_pos) as usize;
                d.write_all(&vec![0u8; pad]).map_err(werr(&data_path))?;
                d.write_all(&bytes).map_err(werr(&data_path))?;
                data_pos = offset + bytes.len() as u64;
            }
            _ => out.write_all(&bytes).map_err(werr(&path))?,
        }
        let kind = match w.source.part {
            weights::Part::NBitsData => {
                format!("{} (MatMulNBits)", model.tensor(&w.source.tensor)?.dtype)
            }
            weights::Part::NBitsScales | weights::Part::NBitsZeros => continue,
            _ if w.elem == proto::ElemType::Float16 => "F16".into(),
            _ => "F32".into(),
        };
        *summary.tensor_types.entry(kind).or_default() += 1;
    }
    out.write_all(&tail).map_err(werr(&path))?;
    out.into_inner()
        .map_err(|e| werr(&path)(e.into_error()))?
        .sync_all()
        .map_err(werr(&path))?;
    if let Some(d) = data {
        d.into_inner()
            .map_err(|e| werr(&data_path)(e.into_error()))?
            .sync_all()
            .map_err(werr(&data_path))?;
    }
    progress(total, total, "");

    stage.write_json(
        "config.json",
        &hf_files::config_json(model, FloatType::F32)?,
    )?;
    stage.write_json(
        "generation_config.json",
        &hf_files::generation_config(model),
    )?;
    tokenizer_json::write_tokenizer_files(model, stage)?;
    if opts.ort_genai {
        stage.write_json("genai_config.json", &genai::genai_config(model))?;
    }
    Ok(())
}
