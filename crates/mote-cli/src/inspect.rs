//! `mote inspect`: what is inside a GGUF file.

use std::collections::BTreeMap;
use std::io::Write;

use anyhow::{Context, Result};
use mote_file::{GgufFile, MetaArray, MetaValue};
use serde_json::{json, Value};

use crate::args::InspectArgs;
use crate::model_path;

/// Arrays longer than this are summarised (vocabularies have 50k–260k entries).
const ARRAY_PREVIEW: usize = 6;

#[derive(Default)]
struct TypeTotal {
    tensors: usize,
    params: u64,
    bytes: u64,
}

pub fn inspect(args: InspectArgs) -> Result<()> {
    let path = model_path::resolve(&args.model)?;
    let file = GgufFile::open(&path).with_context(|| format!("cannot read {}", path.display()))?;

    let mut per_type: BTreeMap<&'static str, TypeTotal> = BTreeMap::new();
    for t in file.tensors() {
        let e = per_type.entry(t.dtype.name()).or_default();
        e.tensors += 1;
        e.params += t.elements();
        e.bytes += t.size_bytes;
    }
    let params: u64 = per_type.values().map(|t| t.params).sum();
    let bytes: u64 = per_type.values().map(|t| t.bytes).sum();
    let bpw = if params > 0 {
        bytes as f64 * 8.0 / params as f64
    } else {
        0.0
    };

    let out = if args.json {
        let v = json!({
            "file": path.display().to_string(),
            "file_size": file.file_len(),
            "gguf_version": file.version,
            "alignment": file.alignment,
            "metadata": file.metadata().iter().map(|(k, v)| (k.clone(), meta_json(v))).collect::<serde_json::Map<_, _>>(),
            "tensors": file.tensors().iter().map(|t| json!({
                "name": t.name,
                "type": t.dtype.name(),
                "shape": t.dims,
                "size_bytes": t.size_bytes,
            })).collect::<Vec<_>>(),
            "types": per_type.iter().map(|(name, t)| (name.to_string(), json!({
                "tensors": t.tensors, "parameters": t.params, "size_bytes": t.bytes,
            }))).collect::<serde_json::Map<_, _>>(),
            "parameters": params,
            "tensor_bytes": bytes,
            "bits_per_weight": bpw,
        });
        format!("{v}\n")
    } else {
        let mut s = String::new();
        s += &format!(
            "{}\n  GGUF v{}, {} metadata keys, {} tensors, file {}\n\n",
            path.display(),
            file.version,
            file.metadata().len(),
            file.tensors().len(),
            human_bytes(file.file_len())
        );
        s += "metadata:\n";
        let kw = file
            .metadata()
            .iter()
            .map(|(k, _)| k.len())
            .max()
            .unwrap_or(0);
        for (k, v) in file.metadata() {
            let ty = v.type_name();
            s += &format!(
                "  {k:kw$}  {ty:<22}  {}\n",
                one_line(&v.display_short(ARRAY_PREVIEW))
            );
        }
        s += "\ntensors:\n";
        let nw = file
            .tensors()
            .iter()
            .map(|t| t.name.len())
            .max()
            .unwrap_or(4)
            .max(4);
        s += &format!(
            "  {:nw$}  {:<6}  {:<22}  {:>10}\n",
            "name", "type", "shape", "size"
        );
        for t in file.tensors() {
            let shape = format!("{:?}", t.dims);
            s += &format!(
                "  {:nw$}  {:<6}  {:<22}  {:>10}\n",
                t.name,
                t.dtype.name(),
                shape,
                human_bytes(t.size_bytes)
            );
        }
        s += "\nby type:\n";
        for (name, t) in &per_type {
            s += &format!(
                "  {name:<6}  {:>4} tensors  {:>14} params  {:>10}\n",
                t.tensors,
                group_digits(t.params),
                human_bytes(t.bytes)
            );
        }
        s += &format!(
            "\nparameters: {} ({})\ntensor data: {}, {:.2} bits per weight\n",
            group_digits(params),
            short_count(params),
            human_bytes(bytes),
            bpw
        );
        s
    };
    let mut stdout = std::io::stdout().lock();
    // A closed pipe (`mote inspect M | head`) is not an error worth reporting.
    let _ = stdout.write_all(out.as_bytes());
    Ok(())
}

/// Metadata strings can hold newlines (chat templates); tables want one line per key.
fn one_line(s: &str) -> String {
    s.replace('\n', "\\n")
}

fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64;
    let mut unit = "B";
    for u in UNITS {
        if v < 1024.0 {
            break;
        }
        v /= 1024.0;
        unit = u;
    }
    format!("{v:.2} {unit}")
}

fn group_digits(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn short_count(n: u64) -> String {
    match n {
        n if n >= 1_000_000_000 => format!("{:.2}B", n as f64 / 1e9),
        n if n >= 1_000_000 => format!("{:.1}M", n as f64 / 1e6),
        n if n >= 1_000 => format!("{:.1}K", n as f64 / 1e3),
        n => n.to_string(),
    }
}

fn meta_json(v: &MetaValue) -> Value {
    match v {
        MetaValue::U8(x) => json!(x),
        MetaValue::I8(x) => json!(x),
        MetaValue::U16(x) => json!(x),
        MetaValue::I16(x) => json!(x),
        MetaValue::U32(x) => json!(x),
        MetaValue::I32(x) => json!(x),
        MetaValue::U64(x) => json!(x),
        MetaValue::I64(x) => json!(x),
        MetaValue::F32(x) => json!(x),
        MetaValue::F64(x) => json!(x),
        MetaValue::Bool(x) => json!(x),
        MetaValue::String(s) => json!(s),
        MetaValue::Array(a) => array_json(a),
    }
}

/// Short arrays in full; long ones as `{type, len, first}`.
fn array_json(a: &MetaArray) -> Value {
    fn items<T: serde::Serialize>(v: &[T], n: usize) -> Value {
        json!(v.iter().take(n).collect::<Vec<_>>())
    }
    let n = if a.len() > 16 { ARRAY_PREVIEW } else { a.len() };
    let head = match a {
        MetaArray::U8(v) => items(v, n),
        MetaArray::I8(v) => items(v, n),
        MetaArray::U16(v) => items(v, n),
        MetaArray::I16(v) => items(v, n),
        MetaArray::U32(v) => items(v, n),
        MetaArray::I32(v) => items(v, n),
        MetaArray::U64(v) => items(v, n),
        MetaArray::I64(v) => items(v, n),
        MetaArray::F32(v) => items(v, n),
        MetaArray::F64(v) => items(v, n),
        MetaArray::Bool(v) => items(v, n),
        MetaArray::String(v) => items(v, n),
        MetaArray::Array(v) => Value::Array(v.iter().take(n).map(array_json).collect()),
    };
    if n == a.len() {
        head
    } else {
        json!({ "type": a.elem_type_name(), "len": a.len(), "first": head })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn number_formatting() {
        assert_eq!(group_digits(134515008), "134,515,008");
        assert_eq!(group_digits(999), "999");
        assert_eq!(short_count(134_515_008), "134.5M");
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(98_362_432), "93.81 MiB");
    }
}
