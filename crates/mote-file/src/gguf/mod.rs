//! GGUF, llama.cpp's model file: a header, typed key/value metadata, a table of tensors,
//! then the aligned tensor data.
//!
//! The reader trusts nothing in the file: every count, length, offset and size is checked
//! against the bytes actually present before it is used, so a truncated or hostile file
//! yields a [`GgufError`] rather than a panic, an out-of-bounds read, or a huge allocation.

mod reader;
mod value;
mod writer;

use std::collections::HashMap;
use std::path::Path;

use mote_tensor::{Bytes, DType};

pub use value::{MetaArray, MetaValue, MetaValueType};
pub use writer::{encode_to_vec, set_metadata, GgufStream, GgufWriteError, GgufWriter, TensorSpec};

/// "GGUF" read as a little-endian u32.
pub const GGUF_MAGIC: u32 = 0x4655_4747;
pub const DEFAULT_ALIGNMENT: u64 = 32;
/// ggml tensors have at most four dimensions.
pub const MAX_DIMS: usize = 4;

#[derive(Debug, thiserror::Error)]
pub enum GgufError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("not a GGUF file (magic bytes {0:02x?}, expected \"GGUF\")")]
    BadMagic([u8; 4]),
    #[error("unsupported GGUF version {0} (mote reads versions 2 and 3)")]
    UnsupportedVersion(u32),
    #[error(
        "big-endian GGUF file (version {0} byte-swapped); mote reads little-endian files only"
    )]
    BigEndian(u32),
    #[error("file is truncated: needed {needed} bytes at offset {offset} while reading {what}, but the file has {len}")]
    Truncated {
        what: String,
        offset: u64,
        needed: u64,
        len: u64,
    },
    #[error("{what} count {count} is impossible for a file of {len} bytes")]
    ImpossibleCount { what: String, count: u64, len: u64 },
    #[error("metadata key {key:?}: unknown value type {ty}")]
    BadValueType { key: String, ty: u32 },
    #[error("metadata key {key:?}: arrays nested deeper than {max} levels")]
    NestingTooDeep { key: String, max: usize },
    #[error("metadata key {0:?} appears twice")]
    DuplicateKey(String),
    #[error("tensor {0:?} appears twice")]
    DuplicateTensor(String),
    #[error("metadata key {key:?} has type {found}, expected {expected}")]
    WrongType {
        key: String,
        found: String,
        expected: &'static str,
    },
    #[error("metadata key {0:?} is missing")]
    MissingKey(String),
    #[error("general.alignment {0} is not a power of two between 1 and 2^20")]
    BadAlignment(u64),
    #[error("tensor {name:?}: {problem}")]
    BadTensor {
        name: String,
        problem: TensorProblem,
    },
}

/// What is wrong with one entry of the tensor table.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TensorProblem {
    #[error("{0} dimensions (must be 1..={MAX_DIMS})")]
    DimCount(u32),
    #[error("dimension {index} is {value}, larger than ggml's limit of 2^63-1")]
    DimTooLarge { index: usize, value: u64 },
    #[error("dimensions {0:?} multiply to more elements than can be addressed")]
    DimsOverflow(Vec<u64>),
    #[error("unknown ggml tensor type id {0}")]
    UnknownType(u32),
    #[error("row length {row_len} is not a multiple of the {dtype} block length {block_len}")]
    RaggedRow {
        row_len: u64,
        dtype: DType,
        block_len: usize,
    },
    #[error("byte size of {elements} {dtype} values overflows")]
    SizeOverflow { elements: u64, dtype: DType },
    #[error("data offset {offset} is not aligned to {alignment}")]
    Unaligned { offset: u64, alignment: u64 },
    #[error("data offset {offset} + size {size} overflows")]
    OffsetOverflow { offset: u64, size: u64 },
    #[error("data [{start}, {end}) lies past the end of the data section ({data_len} bytes); the file is truncated or corrupt")]
    PastEnd { start: u64, end: u64, data_len: u64 },
}

pub type Result<T> = std::result::Result<T, GgufError>;

/// One entry of the tensor table.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorInfo {
    pub name: String,
    /// ggml order: `dims[0]` is the innermost (row) length.
    pub dims: Vec<u64>,
    pub dtype: DType,
    /// Offset from the start of the data section.
    pub offset: u64,
    pub size_bytes: u64,
}

impl TensorInfo {
    pub fn elements(&self) -> u64 {
        self.dims
            .iter()
            .try_fold(1u64, |acc, &d| acc.checked_mul(d))
            .unwrap_or(u64::MAX)
    }

    /// Row length and number of rows, viewing the tensor as a 2-D matrix.
    ///
    /// The parser guarantees the product of the non-zero dimensions fits in `usize`, so
    /// this cannot overflow for tensors read from a file; hand-made infos saturate.
    pub fn rows_cols(&self) -> (usize, usize) {
        let to_usize = |x: u64| usize::try_from(x).unwrap_or(usize::MAX);
        let cols = to_usize(self.dims.first().copied().unwrap_or(1));
        let rows = self
            .dims
            .iter()
            .skip(1)
            .try_fold(1u64, |acc, &d| acc.checked_mul(d))
            .map_or(usize::MAX, to_usize);
        (rows, cols)
    }
}

/// A parsed GGUF file. Tensor data is not copied: [`GgufFile::tensor_bytes`] hands out
/// views into the mapped file.
pub struct GgufFile {
    pub version: u32,
    pub alignment: u64,
    metadata: Vec<(String, MetaValue)>,
    meta_index: HashMap<String, usize>,
    tensors: Vec<TensorInfo>,
    tensor_index: HashMap<String, usize>,
    data_offset: u64,
    bytes: Bytes,
}

impl GgufFile {
    /// Open and parse a file, memory-mapping it where possible.
    pub fn open(path: impl AsRef<Path>) -> Result<GgufFile> {
        let path = path.as_ref();
        let bytes = crate::storage::load(path).map_err(|source| GgufError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(bytes)
    }

    /// Parse a file held in memory.
    pub fn from_bytes(bytes: Vec<u8>) -> Result<GgufFile> {
        Self::parse(crate::storage::owned(bytes))
    }

    fn parse(bytes: Bytes) -> Result<GgufFile> {
        let parsed = reader::parse(bytes.as_slice())?;
        let mut meta_index = HashMap::with_capacity(parsed.metadata.len());
        for (i, (k, _)) in parsed.metadata.iter().enumerate() {
            if meta_index.insert(k.clone(), i).is_some() {
                return Err(GgufError::DuplicateKey(k.clone()));
            }
        }
        let mut tensor_index = HashMap::with_capacity(parsed.tensors.len());
        for (i, t) in parsed.tensors.iter().enumerate() {
            if tensor_index.insert(t.name.clone(), i).is_some() {
                return Err(GgufError::DuplicateTensor(t.name.clone()));
            }
        }
        Ok(GgufFile {
            version: parsed.version,
            alignment: parsed.alignment,
            metadata: parsed.metadata,
            meta_index,
            tensors: parsed.tensors,
            tensor_index,
            data_offset: parsed.data_offset,
            bytes,
        })
    }

    pub fn metadata(&self) -> &[(String, MetaValue)] {
        &self.metadata
    }

    pub fn get(&self, key: &str) -> Option<&MetaValue> {
        self.meta_index.get(key).map(|&i| &self.metadata[i].1)
    }

    pub fn tensors(&self) -> &[TensorInfo] {
        &self.tensors
    }

    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensor_index.get(name).map(|&i| &self.tensors[i])
    }

    /// Offset of the data section from the start of the file.
    pub fn data_offset(&self) -> u64 {
        self.data_offset
    }

    /// Size of the whole file in bytes.
    pub fn file_len(&self) -> u64 {
        self.bytes.len() as u64
    }

    /// The bytes before the tensor data: header, metadata and the tensor table (names,
    /// types, shapes, offsets). A zero-copy view.
    pub fn header_bytes(&self) -> Bytes {
        usize::try_from(self.data_offset)
            .ok()
            .and_then(|end| self.bytes.slice(0..end.min(self.bytes.len())))
            .unwrap_or_else(|| Bytes::from_vec(Vec::new()))
    }

    /// A zero-copy view of a tensor's data (bounds were checked when the file was parsed).
    pub fn tensor_bytes(&self, info: &TensorInfo) -> Bytes {
        // The parser verified start..end lies inside the file for its own tensors; a
        // TensorInfo from another file may not, so check again and fall back to an empty
        // view rather than panic or wrap.
        let range = self
            .data_offset
            .checked_add(info.offset)
            .and_then(|start| Some((start, start.checked_add(info.size_bytes)?)))
            .and_then(|(s, e)| Some(usize::try_from(s).ok()?..usize::try_from(e).ok()?));
        range
            .and_then(|r| self.bytes.slice(r))
            .unwrap_or_else(|| Bytes::from_vec(Vec::new()))
    }

    /// A copy of all metadata in file order, e.g. to start a [`GgufWriter`]'s metadata
    /// from an existing model.
    pub fn metadata_owned(&self) -> Vec<(String, MetaValue)> {
        self.metadata.clone()
    }

    /// `general.architecture`, which names the model family (`llama`, `gemma3`, ...).
    pub fn architecture(&self) -> Result<&str> {
        self.require_str("general.architecture")
    }

    fn wrong(&self, key: &str, v: &MetaValue, expected: &'static str) -> GgufError {
        GgufError::WrongType {
            key: key.to_string(),
            found: v.type_name(),
            expected,
        }
    }

    /// An unsigned integer of any width (also a non-negative signed one).
    pub fn get_u64(&self, key: &str) -> Result<Option<u64>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_u64()
                .map(Some)
                .ok_or_else(|| self.wrong(key, v, "unsigned integer")),
        }
    }

    pub fn get_u32(&self, key: &str) -> Result<Option<u32>> {
        match self.get_u64(key)? {
            None => Ok(None),
            Some(x) => u32::try_from(x)
                .map(Some)
                .map_err(|_| GgufError::WrongType {
                    key: key.to_string(),
                    found: format!("integer {x}"),
                    expected: "u32",
                }),
        }
    }

    pub fn get_f32(&self, key: &str) -> Result<Option<f32>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_f64()
                .map(|x| Some(x as f32))
                .ok_or_else(|| self.wrong(key, v, "number")),
        }
    }

    pub fn get_bool(&self, key: &str) -> Result<Option<bool>> {
        match self.get(key) {
            None => Ok(None),
            Some(MetaValue::Bool(b)) => Ok(Some(*b)),
            Some(v) => Err(self.wrong(key, v, "bool")),
        }
    }

    pub fn get_str(&self, key: &str) -> Result<Option<&str>> {
        match self.get(key) {
            None => Ok(None),
            Some(MetaValue::String(s)) => Ok(Some(s)),
            Some(v) => Err(self.wrong(key, v, "string")),
        }
    }

    pub fn get_array(&self, key: &str) -> Result<Option<&MetaArray>> {
        match self.get(key) {
            None => Ok(None),
            Some(MetaValue::Array(a)) => Ok(Some(a)),
            Some(v) => Err(self.wrong(key, v, "array")),
        }
    }

    pub fn require_u32(&self, key: &str) -> Result<u32> {
        self.get_u32(key)?
            .ok_or_else(|| GgufError::MissingKey(key.to_string()))
    }

    pub fn require_f32(&self, key: &str) -> Result<f32> {
        self.get_f32(key)?
            .ok_or_else(|| GgufError::MissingKey(key.to_string()))
    }

    pub fn require_str(&self, key: &str) -> Result<&str> {
        self.get_str(key)?
            .ok_or_else(|| GgufError::MissingKey(key.to_string()))
    }
}

impl std::fmt::Debug for GgufFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GgufFile")
            .field("version", &self.version)
            .field("metadata", &self.metadata.len())
            .field("tensors", &self.tensors.len())
            .finish()
    }
}
