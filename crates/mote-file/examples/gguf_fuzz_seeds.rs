//! Writes small valid GGUF files to seed the `gguf_parse` fuzzer:
//! `cargo run -p mote-file --example gguf_fuzz_seeds -- fuzz/seeds/gguf_parse [models-dir]`.
//!
//! The fuzzer mutates these, so they should cover every metadata value type, nesting,
//! several tensor types and both versions while staying a few hundred bytes each.

use std::path::PathBuf;

use mote_file::gguf::{encode_to_vec, set_metadata, GgufFile, TensorSpec};
use mote_file::{MetaArray, MetaValue};
use mote_tensor::DType;

fn spec(name: &str, dims: &[u64], dtype: DType) -> TensorSpec {
    TensorSpec {
        name: name.into(),
        dims: dims.to_vec(),
        dtype,
    }
}

/// Deterministic filler bytes for a tensor of `spec`.
fn data(spec: &TensorSpec) -> Vec<u8> {
    let elements: u64 = spec.dims.iter().product();
    let bytes = spec.dtype.bytes_for(elements).unwrap_or(0);
    (0..bytes).map(|i| (i * 37 % 251) as u8).collect()
}

fn encode(
    meta: &[(String, MetaValue)],
    specs: &[TensorSpec],
) -> Result<Vec<u8>, Box<dyn std::error::Error>> {
    let datas: Vec<Vec<u8>> = specs.iter().map(data).collect();
    let tensors: Vec<(TensorSpec, &[u8])> = specs
        .iter()
        .cloned()
        .zip(datas.iter().map(|d| d.as_slice()))
        .collect();
    Ok(encode_to_vec(meta, &tensors)?)
}

fn all_types() -> Vec<(String, MetaValue)> {
    let s = |x: &str| x.to_string();
    vec![
        (s("general.architecture"), MetaValue::String(s("llama"))),
        (s("t.u8"), MetaValue::U8(7)),
        (s("t.i8"), MetaValue::I8(-7)),
        (s("t.u16"), MetaValue::U16(700)),
        (s("t.i16"), MetaValue::I16(-700)),
        (s("t.u32"), MetaValue::U32(70000)),
        (s("t.i32"), MetaValue::I32(-70000)),
        (s("t.f32"), MetaValue::F32(1.5)),
        (s("t.bool"), MetaValue::Bool(true)),
        (s("t.u64"), MetaValue::U64(1 << 40)),
        (s("t.i64"), MetaValue::I64(-(1 << 40))),
        (s("t.f64"), MetaValue::F64(-2.25)),
        (
            s("t.strs"),
            MetaValue::Array(MetaArray::String(vec![s("a"), s("<s>"), s("")])),
        ),
        (
            s("t.f32s"),
            MetaValue::Array(MetaArray::F32(vec![0.5, -1.0])),
        ),
        (s("t.i32s"), MetaValue::Array(MetaArray::I32(vec![1, 2, 3]))),
        (s("t.u8s"), MetaValue::Array(MetaArray::U8(vec![1, 2]))),
        (
            s("t.nested"),
            MetaValue::Array(MetaArray::Array(vec![
                MetaArray::U16(vec![1]),
                MetaArray::Array(vec![MetaArray::Bool(vec![true, false])]),
            ])),
        ),
    ]
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args_os().skip(1);
    let out = PathBuf::from(
        args.next()
            .ok_or("usage: gguf_fuzz_seeds OUT_DIR [MODELS_DIR]")?,
    );
    let models = args.next().map(PathBuf::from);
    std::fs::create_dir_all(&out)?;
    let mut seeds: Vec<(String, Vec<u8>)> = Vec::new();

    seeds.push(("empty.gguf".into(), encode(&[], &[])?));
    let tensors = [
        spec("f32", &[4, 2], DType::F32),
        spec("f16", &[8], DType::F16),
        spec("q4_0", &[32], DType::Q4_0),
        spec("q8_0", &[32, 2], DType::Q8_0),
        spec("q4_k", &[256], DType::Q4_K),
        spec("zero", &[0, 3], DType::F32),
    ];
    let all = encode(&all_types(), &tensors)?;
    let mut v2 = all.clone();
    v2[4] = 2;
    seeds.push(("all_types.gguf".into(), all));
    seeds.push(("all_types_v2.gguf".into(), v2));
    let mut aligned = vec![("general.alignment".to_string(), MetaValue::U32(64))];
    aligned.push(("general.name".into(), MetaValue::String("x".into())));
    seeds.push(("align64.gguf".into(), encode(&aligned, &tensors[..3])?));

    // Real key names from tiny.gguf, with long arrays cut to a few entries.
    if let Some(dir) = models {
        let f = GgufFile::open(dir.join("tiny.gguf"))?;
        let mut meta = f.metadata_owned();
        for (_, v) in meta.iter_mut() {
            if let MetaValue::Array(MetaArray::String(a)) = v {
                a.truncate(6);
            } else if let MetaValue::Array(MetaArray::F32(a)) = v {
                a.truncate(6);
            } else if let MetaValue::Array(MetaArray::I32(a)) = v {
                a.truncate(6);
            }
        }
        set_metadata(&mut meta, "general.name", MetaValue::String("seed".into()));
        let specs: Vec<TensorSpec> = f
            .tensors()
            .iter()
            .take(3)
            .map(|t| spec(&t.name, &[t.dtype.block_len() as u64, 2], t.dtype))
            .collect();
        seeds.push(("tiny_like.gguf".into(), encode(&meta, &specs)?));
    }

    for (name, bytes) in seeds {
        GgufFile::from_bytes(bytes.clone())?;
        println!("{name}: {} bytes", bytes.len());
        std::fs::write(out.join(name), bytes)?;
    }
    Ok(())
}
