//! Writing GGUF files.
//!
//! The header and tensor table are written up front from the tensors' shapes and types,
//! then each tensor's bytes are streamed in table order, so a quantizer needs to hold only
//! one tensor in memory at a time. [`GgufWriter`] writes to a temporary file beside the
//! target and renames it into place on [`GgufWriter::finish`], so a crash or an error
//! never leaves a half-written model under the final name.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use mote_tensor::DType;

use super::reader::{tensor_size, MAX_ARRAY_DEPTH};
use super::value::{MetaArray, MetaValue, MetaValueType};
use super::{TensorInfo, TensorProblem, DEFAULT_ALIGNMENT, GGUF_MAGIC};

/// The version this writer produces.
const VERSION: u32 = 3;
/// Largest alignment the reader accepts.
const MAX_ALIGNMENT: u64 = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum GgufWriteError {
    #[error("cannot write {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("metadata key {0:?} given twice")]
    DuplicateKey(String),
    #[error("tensor {0:?} given twice")]
    DuplicateTensor(String),
    #[error("general.alignment must be a u32 power of two up to 2^20, got {0}")]
    BadAlignment(String),
    #[error("metadata key {key:?}: arrays nested deeper than {max} levels")]
    NestingTooDeep { key: String, max: usize },
    #[error("tensor {name:?}: {problem}")]
    BadTensor {
        name: String,
        problem: TensorProblem,
    },
    #[error("tensor {got:?} written out of order (expected {expected:?})")]
    OutOfOrder { expected: String, got: String },
    #[error("tensor {0:?} written after all tensors were written")]
    TooManyTensors(String),
    #[error("tensor {name:?} is {expected} bytes, but {got} were given")]
    WrongSize {
        name: String,
        expected: u64,
        got: u64,
    },
    #[error("only {written} of {total} tensors were written before finish()")]
    Incomplete { written: usize, total: usize },
}

pub type Result<T> = std::result::Result<T, GgufWriteError>;

/// A tensor to be written: everything but its data and offset.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorSpec {
    pub name: String,
    /// ggml order: `dims[0]` is the innermost (row) length.
    pub dims: Vec<u64>,
    pub dtype: DType,
}

impl From<&TensorInfo> for TensorSpec {
    fn from(t: &TensorInfo) -> TensorSpec {
        TensorSpec {
            name: t.name.clone(),
            dims: t.dims.clone(),
            dtype: t.dtype,
        }
    }
}

/// Sets `key` to `value`, replacing an existing entry in place (keeping its position) or
/// appending a new one. Handy when copying a model's metadata and changing a few keys.
pub fn set_metadata(metadata: &mut Vec<(String, MetaValue)>, key: &str, value: MetaValue) {
    match metadata.iter_mut().find(|(k, _)| k == key) {
        Some((_, v)) => *v = value,
        None => metadata.push((key.to_string(), value)),
    }
}

/// The header bytes and the tensor table with offsets, computed before anything is written.
struct Plan {
    header: Vec<u8>,
    tensors: Vec<TensorInfo>,
    alignment: u64,
}

fn plan(metadata: &[(String, MetaValue)], specs: Vec<TensorSpec>) -> Result<Plan> {
    let mut seen = std::collections::HashSet::new();
    for (k, _) in metadata {
        if !seen.insert(k.as_str()) {
            return Err(GgufWriteError::DuplicateKey(k.clone()));
        }
    }
    let alignment = match metadata.iter().find(|(k, _)| k == "general.alignment") {
        None => DEFAULT_ALIGNMENT,
        // llama.cpp insists on a u32 here, so the writer does too.
        Some((_, MetaValue::U32(a))) if a.is_power_of_two() && u64::from(*a) <= MAX_ALIGNMENT => {
            u64::from(*a)
        }
        Some((_, v)) => {
            return Err(GgufWriteError::BadAlignment(format!(
                "{} {}",
                v.type_name(),
                v.display_short(4)
            )))
        }
    };

    let mut names = std::collections::HashSet::new();
    let mut tensors = Vec::with_capacity(specs.len());
    let mut offset = 0u64;
    for spec in specs {
        let bad = |problem| GgufWriteError::BadTensor {
            name: spec.name.clone(),
            problem,
        };
        if !names.insert(spec.name.clone()) {
            return Err(GgufWriteError::DuplicateTensor(spec.name));
        }
        let size_bytes = tensor_size(&spec.dims, spec.dtype).map_err(bad)?;
        let overflow = || {
            bad(TensorProblem::OffsetOverflow {
                offset,
                size: size_bytes,
            })
        };
        let next = offset
            .checked_add(size_bytes)
            .and_then(|end| end.checked_next_multiple_of(alignment))
            .ok_or_else(overflow)?;
        tensors.push(TensorInfo {
            name: spec.name,
            dims: spec.dims,
            dtype: spec.dtype,
            offset,
            size_bytes,
        });
        offset = next;
    }

    let mut h = Vec::new();
    h.extend_from_slice(&GGUF_MAGIC.to_le_bytes());
    h.extend_from_slice(&VERSION.to_le_bytes());
    h.extend_from_slice(&(tensors.len() as u64).to_le_bytes());
    h.extend_from_slice(&(metadata.len() as u64).to_le_bytes());
    for (key, value) in metadata {
        put_str(&mut h, key);
        put_value(&mut h, key, value)?;
    }
    for t in &tensors {
        put_str(&mut h, &t.name);
        h.extend_from_slice(&(t.dims.len() as u32).to_le_bytes());
        for d in &t.dims {
            h.extend_from_slice(&d.to_le_bytes());
        }
        h.extend_from_slice(&(t.dtype as u32).to_le_bytes());
        h.extend_from_slice(&t.offset.to_le_bytes());
    }
    let padded = (h.len() as u64).next_multiple_of(alignment);
    h.resize(padded as usize, 0);
    Ok(Plan {
        header: h,
        tensors,
        alignment,
    })
}

fn put_str(h: &mut Vec<u8>, s: &str) {
    h.extend_from_slice(&(s.len() as u64).to_le_bytes());
    h.extend_from_slice(s.as_bytes());
}

fn value_type(v: &MetaValue) -> MetaValueType {
    match v {
        MetaValue::U8(_) => MetaValueType::U8,
        MetaValue::I8(_) => MetaValueType::I8,
        MetaValue::U16(_) => MetaValueType::U16,
        MetaValue::I16(_) => MetaValueType::I16,
        MetaValue::U32(_) => MetaValueType::U32,
        MetaValue::I32(_) => MetaValueType::I32,
        MetaValue::F32(_) => MetaValueType::F32,
        MetaValue::Bool(_) => MetaValueType::Bool,
        MetaValue::String(_) => MetaValueType::String,
        MetaValue::Array(_) => MetaValueType::Array,
        MetaValue::U64(_) => MetaValueType::U64,
        MetaValue::I64(_) => MetaValueType::I64,
        MetaValue::F64(_) => MetaValueType::F64,
    }
}

fn array_type(a: &MetaArray) -> MetaValueType {
    match a {
        MetaArray::U8(_) => MetaValueType::U8,
        MetaArray::I8(_) => MetaValueType::I8,
        MetaArray::U16(_) => MetaValueType::U16,
        MetaArray::I16(_) => MetaValueType::I16,
        MetaArray::U32(_) => MetaValueType::U32,
        MetaArray::I32(_) => MetaValueType::I32,
        MetaArray::F32(_) => MetaValueType::F32,
        MetaArray::Bool(_) => MetaValueType::Bool,
        MetaArray::String(_) => MetaValueType::String,
        MetaArray::Array(_) => MetaValueType::Array,
        MetaArray::U64(_) => MetaValueType::U64,
        MetaArray::I64(_) => MetaValueType::I64,
        MetaArray::F64(_) => MetaValueType::F64,
    }
}

fn put_value(h: &mut Vec<u8>, key: &str, v: &MetaValue) -> Result<()> {
    h.extend_from_slice(&(value_type(v) as u32).to_le_bytes());
    match v {
        MetaValue::U8(x) => h.push(*x),
        MetaValue::I8(x) => h.extend_from_slice(&x.to_le_bytes()),
        MetaValue::U16(x) => h.extend_from_slice(&x.to_le_bytes()),
        MetaValue::I16(x) => h.extend_from_slice(&x.to_le_bytes()),
        MetaValue::U32(x) => h.extend_from_slice(&x.to_le_bytes()),
        MetaValue::I32(x) => h.extend_from_slice(&x.to_le_bytes()),
        MetaValue::F32(x) => h.extend_from_slice(&x.to_le_bytes()),
        MetaValue::Bool(x) => h.push(u8::from(*x)),
        MetaValue::String(s) => put_str(h, s),
        MetaValue::Array(a) => put_array(h, key, a, 0)?,
        MetaValue::U64(x) => h.extend_from_slice(&x.to_le_bytes()),
        MetaValue::I64(x) => h.extend_from_slice(&x.to_le_bytes()),
        MetaValue::F64(x) => h.extend_from_slice(&x.to_le_bytes()),
    }
    Ok(())
}

/// Array body: element type, count, elements. Nesting is bounded like the reader's so
/// that whatever is written can be read back.
fn put_array(h: &mut Vec<u8>, key: &str, a: &MetaArray, depth: usize) -> Result<()> {
    if depth >= MAX_ARRAY_DEPTH {
        return Err(GgufWriteError::NestingTooDeep {
            key: key.to_string(),
            max: MAX_ARRAY_DEPTH,
        });
    }
    h.extend_from_slice(&(array_type(a) as u32).to_le_bytes());
    h.extend_from_slice(&(a.len() as u64).to_le_bytes());
    macro_rules! each {
        ($v:expr) => {
            for x in $v {
                h.extend_from_slice(&x.to_le_bytes());
            }
        };
    }
    match a {
        MetaArray::U8(v) => h.extend_from_slice(v),
        MetaArray::I8(v) => each!(v),
        MetaArray::U16(v) => each!(v),
        MetaArray::I16(v) => each!(v),
        MetaArray::U32(v) => each!(v),
        MetaArray::I32(v) => each!(v),
        MetaArray::F32(v) => each!(v),
        MetaArray::Bool(v) => h.extend(v.iter().map(|&b| u8::from(b))),
        MetaArray::String(v) => v.iter().for_each(|s| put_str(h, s)),
        MetaArray::Array(v) => {
            for inner in v {
                put_array(h, key, inner, depth + 1)?;
            }
        }
        MetaArray::U64(v) => each!(v),
        MetaArray::I64(v) => each!(v),
        MetaArray::F64(v) => each!(v),
    }
    Ok(())
}

/// Streams a GGUF file into any [`Write`]: the header is written by [`GgufStream::new`],
/// then one [`GgufStream::write_tensor`] call per tensor, in table order.
pub struct GgufStream<W: Write> {
    out: W,
    label: String,
    tensors: Vec<TensorInfo>,
    alignment: u64,
    next: usize,
    /// Bytes written so far into the data section.
    pos: u64,
}

impl<W: Write> GgufStream<W> {
    /// Validates the metadata and tensor table and writes the header.
    pub fn new(
        out: W,
        metadata: &[(String, MetaValue)],
        tensors: Vec<TensorSpec>,
    ) -> Result<GgufStream<W>> {
        Self::start(out, "output stream".into(), plan(metadata, tensors)?)
    }

    fn start(mut out: W, label: String, plan: Plan) -> Result<GgufStream<W>> {
        out.write_all(&plan.header)
            .map_err(|source| GgufWriteError::Io {
                path: label.clone(),
                source,
            })?;
        Ok(GgufStream {
            out,
            label,
            tensors: plan.tensors,
            alignment: plan.alignment,
            next: 0,
            pos: 0,
        })
    }

    /// The tensor table as written, offsets included.
    pub fn tensors(&self) -> &[TensorInfo] {
        &self.tensors
    }

    /// The tensor whose bytes [`GgufStream::write_tensor`] expects next.
    pub fn next_tensor(&self) -> Option<&TensorInfo> {
        self.tensors.get(self.next)
    }

    fn io(&self, source: std::io::Error) -> GgufWriteError {
        GgufWriteError::Io {
            path: self.label.clone(),
            source,
        }
    }

    fn pad_to(&mut self, target: u64) -> Result<()> {
        const ZEROS: [u8; 4096] = [0; 4096];
        while self.pos < target {
            let n = (target - self.pos).min(ZEROS.len() as u64) as usize;
            self.out.write_all(&ZEROS[..n]).map_err(|e| self.io(e))?;
            self.pos += n as u64;
        }
        Ok(())
    }

    /// Writes the data of the next tensor, which must be `name`, exactly
    /// `size_bytes` long.
    pub fn write_tensor(&mut self, name: &str, data: &[u8]) -> Result<()> {
        let Some(info) = self.tensors.get(self.next) else {
            return Err(GgufWriteError::TooManyTensors(name.to_string()));
        };
        if info.name != name {
            return Err(GgufWriteError::OutOfOrder {
                expected: info.name.clone(),
                got: name.to_string(),
            });
        }
        if data.len() as u64 != info.size_bytes {
            return Err(GgufWriteError::WrongSize {
                name: name.to_string(),
                expected: info.size_bytes,
                got: data.len() as u64,
            });
        }
        let offset = info.offset;
        self.pad_to(offset)?;
        self.out.write_all(data).map_err(|e| self.io(e))?;
        self.pos += data.len() as u64;
        self.next += 1;
        Ok(())
    }

    /// Checks every tensor was written, pads the data section to the alignment (as
    /// llama.cpp and gguf-py do) and flushes. Returns the underlying writer.
    pub fn finish(mut self) -> Result<W> {
        if self.next != self.tensors.len() {
            return Err(GgufWriteError::Incomplete {
                written: self.next,
                total: self.tensors.len(),
            });
        }
        let end = self.pos.next_multiple_of(self.alignment);
        self.pad_to(end)?;
        self.out.flush().map_err(|e| self.io(e))?;
        Ok(self.out)
    }
}

/// Writes a GGUF file atomically: data goes to `<path>.tmp-<pid>`, which `finish()`
/// renames to `path`; dropping the writer unfinished deletes the temporary file.
pub struct GgufWriter {
    /// None only once finish() has taken it.
    stream: Option<GgufStream<BufWriter<File>>>,
    tmp: PathBuf,
    path: PathBuf,
    renamed: bool,
}

impl GgufWriter {
    /// Validates the metadata and tensors, creates the temporary file and writes the
    /// header. Nothing is left on disk if any step fails.
    pub fn create(
        path: impl AsRef<Path>,
        metadata: &[(String, MetaValue)],
        tensors: Vec<TensorSpec>,
    ) -> Result<GgufWriter> {
        let path = path.as_ref().to_path_buf();
        let plan = plan(metadata, tensors)?;
        let mut tmp = path.clone().into_os_string();
        tmp.push(format!(".tmp-{}", std::process::id()));
        let tmp = PathBuf::from(tmp);
        let label = tmp.display().to_string();
        let file = File::create(&tmp).map_err(|source| GgufWriteError::Io {
            path: label.clone(),
            source,
        })?;
        let started = GgufStream::start(BufWriter::with_capacity(1 << 20, file), label, plan);
        match started {
            Ok(stream) => Ok(GgufWriter {
                stream: Some(stream),
                tmp,
                path,
                renamed: false,
            }),
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                Err(e)
            }
        }
    }

    /// The tensor table as written, offsets included.
    pub fn tensors(&self) -> &[TensorInfo] {
        self.stream.as_ref().map_or(&[], |s| s.tensors())
    }

    /// The tensor whose bytes [`GgufWriter::write_tensor`] expects next.
    pub fn next_tensor(&self) -> Option<&TensorInfo> {
        self.stream.as_ref().and_then(|s| s.next_tensor())
    }

    fn io_err(&self, source: std::io::Error) -> GgufWriteError {
        GgufWriteError::Io {
            path: self.tmp.display().to_string(),
            source,
        }
    }

    /// Writes the next tensor's data (see [`GgufStream::write_tensor`]).
    pub fn write_tensor(&mut self, name: &str, data: &[u8]) -> Result<()> {
        match self.stream.as_mut() {
            Some(s) => s.write_tensor(name, data),
            None => Err(self.io_err(std::io::Error::other("writer already finished"))),
        }
    }

    /// Completes the file, syncs it to disk and renames it to its final path, which it
    /// returns. On error the temporary file is removed.
    pub fn finish(mut self) -> Result<PathBuf> {
        let Some(stream) = self.stream.take() else {
            return Err(self.io_err(std::io::Error::other("writer already finished")));
        };
        let file = stream
            .finish()?
            .into_inner()
            .map_err(|e| self.io_err(e.into_error()))?;
        file.sync_all().map_err(|e| self.io_err(e))?;
        drop(file);
        std::fs::rename(&self.tmp, &self.path).map_err(|source| GgufWriteError::Io {
            path: self.path.display().to_string(),
            source,
        })?;
        self.renamed = true;
        Ok(self.path.clone())
    }
}

impl Drop for GgufWriter {
    fn drop(&mut self) {
        if !self.renamed {
            // Close the file before removing it (required on Windows).
            drop(self.stream.take());
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// Encodes a whole GGUF file in memory: handy for tests and small files.
pub fn encode_to_vec(
    metadata: &[(String, MetaValue)],
    tensors: &[(TensorSpec, &[u8])],
) -> Result<Vec<u8>> {
    let specs = tensors.iter().map(|(s, _)| s.clone()).collect();
    let mut stream = GgufStream::new(Vec::new(), metadata, specs)?;
    for (spec, data) in tensors {
        stream.write_tensor(&spec.name, data)?;
    }
    stream.finish()
}
