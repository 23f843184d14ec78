//! Safetensors, Hugging Face's weight file: an 8-byte little-endian header length, a JSON
//! header naming each tensor's dtype, shape and byte range, then the raw data.
//!
//! Like the GGUF reader this trusts nothing: the header length is bounded by the file,
//! every tensor's byte range must match its shape and lie inside the data section, and no
//! two tensors may overlap. Tensor data is handed out as zero-copy [`Bytes`] views.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use mote_tensor::{Bytes, DType};
use serde::de::{Deserializer, MapAccess, Visitor};
use serde::Deserialize;

/// Headers beyond this are refused before being parsed (the reference implementation
/// uses the same bound); real headers are kilobytes.
pub const MAX_HEADER_LEN: u64 = 100 << 20;
/// The file holding the tensor-to-shard map of a sharded checkpoint.
pub const INDEX_FILE: &str = "model.safetensors.index.json";
/// The single-file checkpoint name looked for in a folder without an index.
pub const SINGLE_FILE: &str = "model.safetensors";

#[derive(Debug, thiserror::Error)]
pub enum SafetensorsError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("file of {0} bytes is too short for the 8-byte header length")]
    TooShort(u64),
    #[error("header length {header_len} exceeds the file ({file_len} bytes) or the {MAX_HEADER_LEN}-byte limit")]
    HeaderTooLong { header_len: u64, file_len: u64 },
    #[error("header is not valid JSON of the expected shape: {0}")]
    BadHeader(String),
    #[error("tensor {0:?} appears twice in the header")]
    DuplicateTensor(String),
    #[error("tensor {name:?}: unknown dtype {dtype:?}")]
    UnknownDType { name: String, dtype: String },
    #[error("tensor {name:?}: shape {shape:?} overflows")]
    ShapeOverflow { name: String, shape: Vec<u64> },
    #[error("tensor {name:?}: data_offsets [{start}, {end}) is backwards")]
    BackwardsRange { name: String, start: u64, end: u64 },
    #[error("tensor {name:?}: shape {shape:?} of {dtype} needs {expected} bytes, but data_offsets span {actual}")]
    SizeMismatch {
        name: String,
        shape: Vec<u64>,
        dtype: StDType,
        expected: u64,
        actual: u64,
    },
    #[error("tensor {name:?}: data [{start}, {end}) lies past the end of the data section ({data_len} bytes)")]
    PastEnd {
        name: String,
        start: u64,
        end: u64,
        data_len: u64,
    },
    #[error("tensors {first:?} and {second:?} overlap")]
    Overlap { first: String, second: String },
    #[error("{path}: {problem}")]
    BadIndex { path: String, problem: String },
    #[error("{0} holds neither {INDEX_FILE} nor {SINGLE_FILE}")]
    NoCheckpoint(String),
}

pub type Result<T> = std::result::Result<T, SafetensorsError>;

/// Element types safetensors names in its headers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[allow(non_camel_case_types)]
pub enum StDType {
    BOOL,
    U8,
    I8,
    F8_E5M2,
    F8_E4M3,
    I16,
    U16,
    F16,
    BF16,
    I32,
    U32,
    F32,
    F64,
    I64,
    U64,
}

impl StDType {
    const ALL: [StDType; 15] = [
        StDType::BOOL,
        StDType::U8,
        StDType::I8,
        StDType::F8_E5M2,
        StDType::F8_E4M3,
        StDType::I16,
        StDType::U16,
        StDType::F16,
        StDType::BF16,
        StDType::I32,
        StDType::U32,
        StDType::F32,
        StDType::F64,
        StDType::I64,
        StDType::U64,
    ];

    pub fn name(self) -> &'static str {
        match self {
            StDType::BOOL => "BOOL",
            StDType::U8 => "U8",
            StDType::I8 => "I8",
            StDType::F8_E5M2 => "F8_E5M2",
            StDType::F8_E4M3 => "F8_E4M3",
            StDType::I16 => "I16",
            StDType::U16 => "U16",
            StDType::F16 => "F16",
            StDType::BF16 => "BF16",
            StDType::I32 => "I32",
            StDType::U32 => "U32",
            StDType::F32 => "F32",
            StDType::F64 => "F64",
            StDType::I64 => "I64",
            StDType::U64 => "U64",
        }
    }

    pub fn from_name(name: &str) -> Option<StDType> {
        StDType::ALL.iter().copied().find(|t| t.name() == name)
    }

    pub fn size_bytes(self) -> u64 {
        match self {
            StDType::BOOL | StDType::U8 | StDType::I8 | StDType::F8_E5M2 | StDType::F8_E4M3 => 1,
            StDType::I16 | StDType::U16 | StDType::F16 | StDType::BF16 => 2,
            StDType::I32 | StDType::U32 | StDType::F32 => 4,
            StDType::F64 | StDType::I64 | StDType::U64 => 8,
        }
    }

    /// The ggml type with the same byte layout, where there is one.
    pub fn to_ggml(self) -> Option<DType> {
        Some(match self {
            StDType::F32 => DType::F32,
            StDType::F16 => DType::F16,
            StDType::BF16 => DType::BF16,
            StDType::F64 => DType::F64,
            StDType::I8 => DType::I8,
            StDType::I16 => DType::I16,
            StDType::I32 => DType::I32,
            StDType::I64 => DType::I64,
            _ => return None,
        })
    }
}

impl fmt::Display for StDType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One tensor of a safetensors file.
#[derive(Clone, Debug, PartialEq)]
pub struct StTensorInfo {
    pub name: String,
    pub dtype: StDType,
    /// Row-major (PyTorch) order: the last dimension is the innermost.
    pub shape: Vec<u64>,
    /// Byte range within the data section (which starts after the header).
    pub start: u64,
    pub end: u64,
}

impl StTensorInfo {
    pub fn size_bytes(&self) -> u64 {
        self.end - self.start
    }

    pub fn elements(&self) -> u64 {
        self.shape
            .iter()
            .try_fold(1u64, |acc, &d| acc.checked_mul(d))
            .unwrap_or(u64::MAX)
    }
}

/// A tensor entry exactly as the JSON header spells it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTensor {
    dtype: String,
    shape: Vec<u64>,
    data_offsets: [u64; 2],
}

/// The header's entries in file order. A custom visitor keeps the order and catches
/// duplicate names, which a map type would silently collapse.
struct RawHeader {
    metadata: Vec<(String, String)>,
    tensors: Vec<(String, RawTensor)>,
    duplicate: Option<String>,
}

impl<'de> Deserialize<'de> for RawHeader {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<RawHeader, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawHeader;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object of tensor entries")
            }
            fn visit_map<A: MapAccess<'de>>(
                self,
                mut map: A,
            ) -> std::result::Result<RawHeader, A::Error> {
                let mut h = RawHeader {
                    metadata: Vec::new(),
                    tensors: Vec::new(),
                    duplicate: None,
                };
                let mut seen = std::collections::HashSet::new();
                while let Some(key) = map.next_key::<String>()? {
                    if !seen.insert(key.clone()) && h.duplicate.is_none() {
                        h.duplicate = Some(key.clone());
                    }
                    if key == "__metadata__" {
                        let m: Vec<(String, String)> = map
                            .next_value::<std::collections::BTreeMap<String, String>>()?
                            .into_iter()
                            .collect();
                        h.metadata = m;
                    } else {
                        let t: RawTensor = map.next_value()?;
                        h.tensors.push((key, t));
                    }
                }
                Ok(h)
            }
        }
        d.deserialize_map(V)
    }
}

/// One parsed safetensors file.
pub struct SafetensorsFile {
    metadata: Vec<(String, String)>,
    tensors: Vec<StTensorInfo>,
    index: HashMap<String, usize>,
    /// The data section: everything after the header.
    data: Bytes,
}

impl SafetensorsFile {
    /// Open and parse a file, memory-mapping it where possible.
    pub fn open(path: impl AsRef<Path>) -> Result<SafetensorsFile> {
        let path = path.as_ref();
        let bytes = crate::storage::load(path).map_err(|source| SafetensorsError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(bytes)
    }

    /// Parse a file held in memory.
    pub fn from_bytes(bytes: Vec<u8>) -> Result<SafetensorsFile> {
        Self::parse(crate::storage::owned(bytes))
    }

    fn parse(bytes: Bytes) -> Result<SafetensorsFile> {
        let buf = bytes.as_slice();
        let file_len = buf.len() as u64;
        let Some(len_bytes) = buf.first_chunk::<8>() else {
            return Err(SafetensorsError::TooShort(file_len));
        };
        let header_len = u64::from_le_bytes(*len_bytes);
        if header_len > MAX_HEADER_LEN || header_len > file_len - 8 {
            return Err(SafetensorsError::HeaderTooLong {
                header_len,
                file_len,
            });
        }
        // Bounded by the file length above, so this fits in usize.
        let data_start = 8 + header_len as usize;
        let raw: RawHeader = serde_json::from_slice(&buf[8..data_start])
            .map_err(|e| SafetensorsError::BadHeader(e.to_string()))?;
        if let Some(name) = raw.duplicate {
            return Err(SafetensorsError::DuplicateTensor(name));
        }
        let data_len = file_len - data_start as u64;
        let mut tensors = Vec::with_capacity(raw.tensors.len());
        for (name, t) in raw.tensors {
            tensors.push(check_tensor(name, t, data_len)?);
        }
        // Sorting by start makes overlap a property of neighbours only.
        tensors.sort_by_key(|t| (t.start, t.end));
        for pair in tensors.windows(2) {
            // Empty tensors occupy no bytes and cannot overlap anything.
            if pair[0].end > pair[1].start && pair[1].start < pair[1].end {
                return Err(SafetensorsError::Overlap {
                    first: pair[0].name.clone(),
                    second: pair[1].name.clone(),
                });
            }
        }
        let index = tensors
            .iter()
            .enumerate()
            .map(|(i, t)| (t.name.clone(), i))
            .collect();
        let data = bytes
            .slice(data_start..buf.len())
            .unwrap_or_else(|| Bytes::from_vec(Vec::new()));
        Ok(SafetensorsFile {
            metadata: raw.metadata,
            tensors,
            index,
            data,
        })
    }

    /// The `__metadata__` string map, sorted by key.
    pub fn metadata(&self) -> &[(String, String)] {
        &self.metadata
    }

    /// Tensors in the order of their data.
    pub fn tensors(&self) -> &[StTensorInfo] {
        &self.tensors
    }

    pub fn tensor(&self, name: &str) -> Option<&StTensorInfo> {
        self.index.get(name).map(|&i| &self.tensors[i])
    }

    /// A zero-copy view of a tensor's data; empty for an info from another file whose
    /// range does not fit this one.
    pub fn tensor_bytes(&self, info: &StTensorInfo) -> Bytes {
        let range = usize::try_from(info.start)
            .ok()
            .zip(usize::try_from(info.end).ok());
        range
            .and_then(|(s, e)| self.data.slice(s..e))
            .unwrap_or_else(|| Bytes::from_vec(Vec::new()))
    }
}

impl fmt::Debug for SafetensorsFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SafetensorsFile")
            .field("metadata", &self.metadata.len())
            .field("tensors", &self.tensors.len())
            .finish()
    }
}

fn check_tensor(name: String, t: RawTensor, data_len: u64) -> Result<StTensorInfo> {
    let Some(dtype) = StDType::from_name(&t.dtype) else {
        return Err(SafetensorsError::UnknownDType {
            name,
            dtype: t.dtype,
        });
    };
    let [start, end] = t.data_offsets;
    if start > end {
        return Err(SafetensorsError::BackwardsRange { name, start, end });
    }
    let expected = t
        .shape
        .iter()
        .try_fold(dtype.size_bytes(), |acc, &d| acc.checked_mul(d));
    let Some(expected) = expected else {
        return Err(SafetensorsError::ShapeOverflow {
            name,
            shape: t.shape,
        });
    };
    if expected != end - start {
        return Err(SafetensorsError::SizeMismatch {
            name,
            shape: t.shape,
            dtype,
            expected,
            actual: end - start,
        });
    }
    if end > data_len {
        return Err(SafetensorsError::PastEnd {
            name,
            start,
            end,
            data_len,
        });
    }
    Ok(StTensorInfo {
        name,
        dtype,
        shape: t.shape,
        start,
        end,
    })
}

/// A checkpoint folder: one `model.safetensors`, or shards listed by
/// `model.safetensors.index.json`.
#[derive(Debug)]
pub struct SafetensorsDir {
    shards: Vec<(PathBuf, SafetensorsFile)>,
    /// Tensor name → (shard, tensor index within it).
    index: HashMap<String, (usize, usize)>,
    /// The index file's `metadata` (e.g. `total_size`), rendered as JSON text.
    pub index_metadata: Vec<(String, String)>,
}

#[derive(Deserialize)]
struct RawIndex {
    #[serde(default)]
    metadata: Option<serde_json::Map<String, serde_json::Value>>,
    weight_map: std::collections::BTreeMap<String, String>,
}

impl SafetensorsDir {
    /// Open a folder (or a single `.safetensors` file, treated as a one-shard folder).
    pub fn open(path: impl AsRef<Path>) -> Result<SafetensorsDir> {
        let path = path.as_ref();
        if path.is_file() {
            return Self::from_shards(vec![path.to_path_buf()], Vec::new(), None);
        }
        let index_path = path.join(INDEX_FILE);
        if index_path.is_file() {
            return Self::open_index(path, &index_path);
        }
        let single = path.join(SINGLE_FILE);
        if single.is_file() {
            return Self::from_shards(vec![single], Vec::new(), None);
        }
        Err(SafetensorsError::NoCheckpoint(path.display().to_string()))
    }

    fn open_index(dir: &Path, index_path: &Path) -> Result<SafetensorsDir> {
        let shown = index_path.display().to_string();
        let bad = |problem: String| SafetensorsError::BadIndex {
            path: shown.clone(),
            problem,
        };
        let text = std::fs::read(index_path).map_err(|source| SafetensorsError::Io {
            path: shown.clone(),
            source,
        })?;
        let raw: RawIndex = serde_json::from_slice(&text).map_err(|e| bad(e.to_string()))?;
        let mut shard_names: Vec<&String> = raw.weight_map.values().collect();
        shard_names.sort();
        shard_names.dedup();
        let mut shards = Vec::with_capacity(shard_names.len());
        for name in shard_names {
            // Shards must sit beside the index: refuse paths that climb out of the folder.
            let p = Path::new(name);
            let plain = p.components().count() == 1
                && matches!(p.components().next(), Some(std::path::Component::Normal(_)));
            if !plain {
                return Err(bad(format!("shard {name:?} is not a plain file name")));
            }
            shards.push(dir.join(p));
        }
        let metadata = raw
            .metadata
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, v.to_string()))
            .collect();
        let expected: Vec<(String, PathBuf)> = raw
            .weight_map
            .into_iter()
            .map(|(t, s)| (t, dir.join(s)))
            .collect();
        Self::from_shards(shards, metadata, Some((shown, expected)))
    }

    fn from_shards(
        paths: Vec<PathBuf>,
        index_metadata: Vec<(String, String)>,
        expected: Option<(String, Vec<(String, PathBuf)>)>,
    ) -> Result<SafetensorsDir> {
        let mut shards = Vec::with_capacity(paths.len());
        let mut index = HashMap::new();
        for (si, path) in paths.into_iter().enumerate() {
            let file = SafetensorsFile::open(&path)?;
            for (ti, t) in file.tensors().iter().enumerate() {
                if index.insert(t.name.clone(), (si, ti)).is_some() {
                    return Err(SafetensorsError::DuplicateTensor(t.name.clone()));
                }
            }
            shards.push((path, file));
        }
        if let Some((index_path, expected)) = expected {
            for (name, shard_path) in expected {
                let found = index.get(&name).map(|&(si, _)| &shards[si].0);
                if found != Some(&shard_path) {
                    return Err(SafetensorsError::BadIndex {
                        path: index_path,
                        problem: format!(
                            "tensor {name:?} is not in {} as the index says",
                            shard_path.display()
                        ),
                    });
                }
            }
        }
        Ok(SafetensorsDir {
            shards,
            index,
            index_metadata,
        })
    }

    /// Every tensor of every shard, shard by shard.
    pub fn tensors(&self) -> impl Iterator<Item = &StTensorInfo> {
        self.shards.iter().flat_map(|(_, f)| f.tensors())
    }

    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    pub fn shards(&self) -> impl Iterator<Item = (&Path, &SafetensorsFile)> {
        self.shards.iter().map(|(p, f)| (p.as_path(), f))
    }

    /// A tensor's info and a zero-copy view of its data.
    pub fn tensor(&self, name: &str) -> Option<(&StTensorInfo, Bytes)> {
        let &(si, ti) = self.index.get(name)?;
        let file = &self.shards.get(si)?.1;
        let info = file.tensors().get(ti)?;
        Some((info, file.tensor_bytes(info)))
    }
}
