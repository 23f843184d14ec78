//! The checked parser behind [`super::GgufFile`].

use std::fmt::Display;

use mote_tensor::DType;

use super::value::{MetaArray, MetaValue, MetaValueType};
use super::{
    GgufError, Result, TensorInfo, TensorProblem, DEFAULT_ALIGNMENT, GGUF_MAGIC, MAX_DIMS,
};

/// Nested arrays never occur in real files beyond one level; bound recursion anyway.
pub(super) const MAX_ARRAY_DEPTH: usize = 4;

pub(super) struct Parsed {
    pub version: u32,
    pub alignment: u64,
    pub metadata: Vec<(String, MetaValue)>,
    pub tensors: Vec<TensorInfo>,
    pub data_offset: u64,
}

/// Describes what is being read, for error messages. Formatting is deferred to the error
/// path: eagerly formatting a long key for every element of a big nested array would
/// make parsing quadratic in a hostile file.
struct Named<'k>(&'static str, &'k str);

impl Display for Named<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {:?}", self.0, self.1)
    }
}

/// A cursor that never reads past the end and names what it was reading when it fails.
struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn remaining(&self) -> u64 {
        (self.buf.len() - self.pos) as u64
    }

    fn take(&mut self, n: u64, what: &dyn Display) -> Result<&'a [u8]> {
        if n > self.remaining() {
            return Err(GgufError::Truncated {
                what: what.to_string(),
                offset: self.pos as u64,
                needed: n,
                len: self.buf.len() as u64,
            });
        }
        let n = n as usize;
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn array<const N: usize>(&mut self, what: &dyn Display) -> Result<[u8; N]> {
        let s = self.take(N as u64, what)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    fn u32(&mut self, what: &dyn Display) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    fn u64(&mut self, what: &dyn Display) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    /// Rejects a count of items that could not fit in what is left of the file.
    fn check_count(&self, count: u64, min_item: u64, what: &dyn Display) -> Result<usize> {
        let fits = count
            .checked_mul(min_item)
            .is_some_and(|b| b <= self.remaining());
        if !fits {
            return Err(GgufError::ImpossibleCount {
                what: what.to_string(),
                count,
                len: self.buf.len() as u64,
            });
        }
        usize::try_from(count).map_err(|_| GgufError::ImpossibleCount {
            what: what.to_string(),
            count,
            len: self.buf.len() as u64,
        })
    }

    fn string(&mut self, what: &dyn Display) -> Result<String> {
        let len = self.u64(what)?;
        let bytes = self.take(len, what)?;
        // Some vocabularies hold byte pieces that are not valid UTF-8 on their own.
        Ok(match std::str::from_utf8(bytes) {
            Ok(s) => s.to_string(),
            Err(_) => String::from_utf8_lossy(bytes).into_owned(),
        })
    }
}

pub(super) fn parse(buf: &[u8]) -> Result<Parsed> {
    let mut c = Cursor { buf, pos: 0 };
    let magic = c.array::<4>(&"magic")?;
    if u32::from_le_bytes(magic) != GGUF_MAGIC {
        return Err(GgufError::BadMagic(magic));
    }
    let version = c.u32(&"version")?;
    if !(2..=3).contains(&version) {
        // The magic is written byte by byte, but a big-endian writer swaps the version.
        if (1..=3).contains(&version.swap_bytes()) {
            return Err(GgufError::BigEndian(version));
        }
        return Err(GgufError::UnsupportedVersion(version));
    }
    let n_tensors = c.u64(&"tensor count")?;
    let n_kv = c.u64(&"metadata count")?;
    // A key/value pair takes at least 8 (key length) + 4 (type) + 1 bytes.
    let n_kv = c.check_count(n_kv, 13, &"metadata entry")?;
    let mut metadata = Vec::with_capacity(n_kv);
    for i in 0..n_kv {
        let key = c.string(&format_args!("metadata key #{i}"))?;
        let ty = c.u32(&Named("type of", &key))?;
        let value = read_value(&mut c, &key, ty, 0)?;
        metadata.push((key, value));
    }

    let mut alignment = DEFAULT_ALIGNMENT;
    if let Some((_, v)) = metadata.iter().find(|(k, _)| k == "general.alignment") {
        alignment = v.as_u64().ok_or_else(|| GgufError::WrongType {
            key: "general.alignment".into(),
            found: v.type_name(),
            expected: "unsigned integer",
        })?;
        if alignment == 0 || !alignment.is_power_of_two() || alignment > 1 << 20 {
            return Err(GgufError::BadAlignment(alignment));
        }
    }

    // A tensor entry takes at least 8 (name length) + 4 (dim count) + 8 (one dim)
    // + 4 (type) + 8 (offset) bytes.
    let n_tensors = c.check_count(n_tensors, 32, &"tensor")?;
    let mut raw = Vec::with_capacity(n_tensors);
    for i in 0..n_tensors {
        let name = c.string(&format_args!("name of tensor #{i}"))?;
        let n_dims = c.u32(&Named("dimension count of", &name))?;
        if n_dims == 0 || n_dims as usize > MAX_DIMS {
            return Err(bad(&name, TensorProblem::DimCount(n_dims)));
        }
        let n_dims = n_dims as usize;
        let mut dims = Vec::with_capacity(n_dims);
        for d in 0..n_dims {
            dims.push(c.u64(&format_args!("dimension {d} of {name:?}"))?);
        }
        let ty = c.u32(&Named("type of", &name))?;
        let offset = c.u64(&Named("offset of", &name))?;
        raw.push((name, dims, ty, offset));
    }

    let header_end = c.pos as u64;
    let data_offset = header_end
        .checked_next_multiple_of(alignment)
        .ok_or(GgufError::BadAlignment(alignment))?;
    let file_len = buf.len() as u64;
    // A file with no tensors may end right after its header.
    let data_len = file_len.saturating_sub(data_offset);

    let mut tensors = Vec::with_capacity(raw.len());
    for (name, dims, ty, offset) in raw {
        let dtype = DType::from_id(ty).map_err(|_| bad(&name, TensorProblem::UnknownType(ty)))?;
        let size_bytes = tensor_size(&dims, dtype).map_err(|p| bad(&name, p))?;
        if offset % alignment != 0 {
            return Err(bad(&name, TensorProblem::Unaligned { offset, alignment }));
        }
        let end = offset.checked_add(size_bytes).ok_or_else(|| {
            bad(
                &name,
                TensorProblem::OffsetOverflow {
                    offset,
                    size: size_bytes,
                },
            )
        })?;
        if end > data_len {
            return Err(bad(
                &name,
                TensorProblem::PastEnd {
                    start: offset,
                    end,
                    data_len,
                },
            ));
        }
        tensors.push(TensorInfo {
            name,
            dims,
            dtype,
            offset,
            size_bytes,
        });
    }

    Ok(Parsed {
        version,
        alignment,
        metadata,
        tensors,
        data_offset,
    })
}

fn bad(name: &str, problem: TensorProblem) -> GgufError {
    GgufError::BadTensor {
        name: name.to_string(),
        problem,
    }
}

/// Bytes taken by a tensor of this shape and type, rejecting impossible shapes. Shared
/// with the writer so that everything it writes, the reader accepts.
pub(super) fn tensor_size(dims: &[u64], dtype: DType) -> std::result::Result<u64, TensorProblem> {
    if dims.is_empty() || dims.len() > MAX_DIMS {
        return Err(TensorProblem::DimCount(dims.len() as u32));
    }
    let elements = checked_elements(dims)?;
    let block_len = dtype.block_len();
    if !dims[0].is_multiple_of(block_len as u64) {
        return Err(TensorProblem::RaggedRow {
            row_len: dims[0],
            dtype,
            block_len,
        });
    }
    dtype
        .bytes_for(elements)
        .map_err(|_| TensorProblem::SizeOverflow { elements, dtype })
}

/// The element count of a tensor, rejecting shapes no real tensor can have.
///
/// Each dimension must fit ggml's signed 64-bit sizes, and the product of the non-zero
/// dimensions must fit in `usize`: a zero dimension makes the element count 0, but
/// callers still multiply subsets (rows = dims[1] * dims[2] * ...), which must not wrap.
fn checked_elements(dims: &[u64]) -> std::result::Result<u64, TensorProblem> {
    let mut nonzero: u64 = 1;
    let mut has_zero = false;
    for (index, &value) in dims.iter().enumerate() {
        if value > i64::MAX as u64 {
            return Err(TensorProblem::DimTooLarge { index, value });
        }
        if value == 0 {
            has_zero = true;
            continue;
        }
        nonzero = nonzero
            .checked_mul(value)
            .filter(|&n| usize::try_from(n).is_ok() && n <= i64::MAX as u64)
            .ok_or_else(|| TensorProblem::DimsOverflow(dims.to_vec()))?;
    }
    Ok(if has_zero { 0 } else { nonzero })
}

fn read_value(c: &mut Cursor, key: &str, ty: u32, depth: usize) -> Result<MetaValue> {
    let t = MetaValueType::from_id(ty).ok_or_else(|| GgufError::BadValueType {
        key: key.to_string(),
        ty,
    })?;
    let what = Named("value of", key);
    Ok(match t {
        MetaValueType::U8 => MetaValue::U8(c.array::<1>(&what)?[0]),
        MetaValueType::I8 => MetaValue::I8(c.array::<1>(&what)?[0] as i8),
        MetaValueType::U16 => MetaValue::U16(u16::from_le_bytes(c.array(&what)?)),
        MetaValueType::I16 => MetaValue::I16(i16::from_le_bytes(c.array(&what)?)),
        MetaValueType::U32 => MetaValue::U32(c.u32(&what)?),
        MetaValueType::I32 => MetaValue::I32(i32::from_le_bytes(c.array(&what)?)),
        MetaValueType::F32 => MetaValue::F32(f32::from_le_bytes(c.array(&what)?)),
        MetaValueType::Bool => MetaValue::Bool(c.array::<1>(&what)?[0] != 0),
        MetaValueType::String => MetaValue::String(c.string(&what)?),
        MetaValueType::U64 => MetaValue::U64(c.u64(&what)?),
        MetaValueType::I64 => MetaValue::I64(i64::from_le_bytes(c.array(&what)?)),
        MetaValueType::F64 => MetaValue::F64(f64::from_le_bytes(c.array(&what)?)),
        MetaValueType::Array => MetaValue::Array(read_array(c, key, depth)?),
    })
}

fn read_array(c: &mut Cursor, key: &str, depth: usize) -> Result<MetaArray> {
    if depth >= MAX_ARRAY_DEPTH {
        return Err(GgufError::NestingTooDeep {
            key: key.to_string(),
            max: MAX_ARRAY_DEPTH,
        });
    }
    let what = Named("array", key);
    let ety_id = c.u32(&what)?;
    let ety = MetaValueType::from_id(ety_id).ok_or_else(|| GgufError::BadValueType {
        key: key.to_string(),
        ty: ety_id,
    })?;
    let count = c.u64(&what)?;
    let n = c.check_count(count, ety.min_size(), &Named("element of", key))?;

    macro_rules! fixed {
        ($variant:ident, $t:ty) => {{
            const W: usize = std::mem::size_of::<$t>();
            let raw = c.take((n * W) as u64, &what)?;
            MetaArray::$variant(
                raw.chunks_exact(W)
                    .map(|b| {
                        let mut a = [0u8; W];
                        a.copy_from_slice(b);
                        <$t>::from_le_bytes(a)
                    })
                    .collect(),
            )
        }};
    }

    Ok(match ety {
        MetaValueType::U8 => MetaArray::U8(c.take(n as u64, &what)?.to_vec()),
        MetaValueType::I8 => {
            MetaArray::I8(c.take(n as u64, &what)?.iter().map(|&b| b as i8).collect())
        }
        MetaValueType::Bool => {
            MetaArray::Bool(c.take(n as u64, &what)?.iter().map(|&b| b != 0).collect())
        }
        MetaValueType::U16 => fixed!(U16, u16),
        MetaValueType::I16 => fixed!(I16, i16),
        MetaValueType::U32 => fixed!(U32, u32),
        MetaValueType::I32 => fixed!(I32, i32),
        MetaValueType::F32 => fixed!(F32, f32),
        MetaValueType::U64 => fixed!(U64, u64),
        MetaValueType::I64 => fixed!(I64, i64),
        MetaValueType::F64 => fixed!(F64, f64),
        MetaValueType::String => {
            let mut v = Vec::with_capacity(n);
            for _ in 0..n {
                v.push(c.string(&what)?);
            }
            MetaArray::String(v)
        }
        MetaValueType::Array => {
            let mut v = Vec::with_capacity(n);
            for _ in 0..n {
                v.push(read_array(c, key, depth + 1)?);
            }
            MetaArray::Array(v)
        }
    })
}
