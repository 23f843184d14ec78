//! The ONNX protobuf messages mote writes, encoded by hand (field numbers from ONNX's
//! `onnx.proto`): enough of `ModelProto`, `GraphProto`, `NodeProto`, `AttributeProto`,
//! `TensorProto`, `ValueInfoProto` and `OperatorSetIdProto` for an inference graph.
//!
//! Weights are streamed: a [`TensorHeader`] encodes everything of an initializer but its
//! bytes, and its encoded length is known up front, so the enclosing messages' lengths
//! can be written before any weight is read.

/// ONNX `TensorProto.DataType` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ElemType {
    Float = 1,
    Uint8 = 2,
    Int64 = 7,
    Bool = 9,
    Float16 = 10,
}

impl ElemType {
    pub fn size(self) -> u64 {
        match self {
            ElemType::Float => 4,
            ElemType::Uint8 | ElemType::Bool => 1,
            ElemType::Int64 => 8,
            ElemType::Float16 => 2,
        }
    }
}

pub fn varint(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push((v as u8) | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

pub fn varint_len(v: u64) -> u64 {
    let mut n = 1;
    let mut v = v >> 7;
    while v > 0 {
        n += 1;
        v >>= 7;
    }
    n
}

fn key(buf: &mut Vec<u8>, field: u32, wire: u8) {
    varint(buf, (u64::from(field) << 3) | u64::from(wire));
}

pub fn int_field(buf: &mut Vec<u8>, field: u32, v: i64) {
    key(buf, field, 0);
    varint(buf, v as u64);
}

pub fn bytes_field(buf: &mut Vec<u8>, field: u32, data: &[u8]) {
    key(buf, field, 2);
    varint(buf, data.len() as u64);
    buf.extend_from_slice(data);
}

/// The key and length of a length-delimited field whose body follows separately.
pub fn len_prefix(buf: &mut Vec<u8>, field: u32, len: u64) {
    key(buf, field, 2);
    varint(buf, len);
}

/// Bytes taken by a length-delimited field (key below 16) with a body of `len` bytes.
pub fn field_len(len: u64) -> u64 {
    1 + varint_len(len) + len
}

pub fn f32_field(buf: &mut Vec<u8>, field: u32, v: f32) {
    key(buf, field, 5);
    buf.extend_from_slice(&v.to_le_bytes());
}

/// An attribute value.
#[derive(Clone, Debug)]
pub enum Attr {
    Int(i64),
    Float(f32),
    Ints(Vec<i64>),
    Str(String),
}

/// `AttributeProto`: name 1, f 2, i 3, s 4, ints 8, type 20.
fn attribute(name: &str, value: &Attr) -> Vec<u8> {
    let mut b = Vec::new();
    bytes_field(&mut b, 1, name.as_bytes());
    let ty = match value {
        Attr::Float(f) => {
            f32_field(&mut b, 2, *f);
            1
        }
        Attr::Int(i) => {
            int_field(&mut b, 3, *i);
            2
        }
        Attr::Str(s) => {
            bytes_field(&mut b, 4, s.as_bytes());
            3
        }
        Attr::Ints(v) => {
            for i in v {
                int_field(&mut b, 8, *i);
            }
            7
        }
    };
    int_field(&mut b, 20, ty);
    b
}

/// One graph node.
#[derive(Clone, Debug)]
pub struct Node {
    pub op: &'static str,
    pub domain: &'static str,
    pub name: String,
    pub inputs: Vec<String>,
    pub outputs: Vec<String>,
    pub attrs: Vec<(&'static str, Attr)>,
}

/// `NodeProto`: input 1, output 2, name 3, op_type 4, attribute 5, domain 7.
pub fn node(n: &Node) -> Vec<u8> {
    let mut b = Vec::new();
    for i in &n.inputs {
        bytes_field(&mut b, 1, i.as_bytes());
    }
    for o in &n.outputs {
        bytes_field(&mut b, 2, o.as_bytes());
    }
    bytes_field(&mut b, 3, n.name.as_bytes());
    bytes_field(&mut b, 4, n.op.as_bytes());
    for (name, value) in &n.attrs {
        bytes_field(&mut b, 5, &attribute(name, value));
    }
    if !n.domain.is_empty() {
        bytes_field(&mut b, 7, n.domain.as_bytes());
    }
    b
}

/// A dimension of a graph input or output: fixed or named.
#[derive(Clone, Debug)]
pub enum Dim {
    Fixed(i64),
    Named(&'static str),
}

/// `ValueInfoProto` (name 1, type 2) of a tensor: `TypeProto.tensor_type` 1 →
/// `Tensor` (elem_type 1, shape 2) → `TensorShapeProto.dim` 1 → `Dimension` (dim_value 1,
/// dim_param 2).
pub fn value_info(name: &str, elem: ElemType, dims: &[Dim]) -> Vec<u8> {
    let mut shape = Vec::new();
    for d in dims {
        let mut dim = Vec::new();
        match d {
            Dim::Fixed(v) => int_field(&mut dim, 1, *v),
            Dim::Named(p) => bytes_field(&mut dim, 2, p.as_bytes()),
        }
        bytes_field(&mut shape, 1, &dim);
    }
    let mut tensor = Vec::new();
    int_field(&mut tensor, 1, elem as i64);
    bytes_field(&mut tensor, 2, &shape);
    let mut ty = Vec::new();
    bytes_field(&mut ty, 1, &tensor);
    let mut b = Vec::new();
    bytes_field(&mut b, 1, name.as_bytes());
    bytes_field(&mut b, 2, &ty);
    b
}

/// Where an initializer's bytes live.
#[derive(Clone, Debug)]
pub enum Location {
    /// In the message (`raw_data`, field 9).
    Inline,
    /// In `file` at `offset` (`data_location` 14 = EXTERNAL, `external_data` 13 entries).
    External { file: String, offset: u64 },
}

/// Everything of an initializer `TensorProto` except its bytes: dims 1, data_type 2,
/// name 8, then raw_data 9 (inline) or the external-data entries.
#[derive(Clone, Debug)]
pub struct TensorHeader {
    pub name: String,
    pub elem: ElemType,
    pub dims: Vec<i64>,
    pub location: Location,
}

impl TensorHeader {
    pub fn byte_len(&self) -> u64 {
        self.dims.iter().map(|&d| d as u64).product::<u64>() * self.elem.size()
    }

    /// The encoded message up to (and including) the raw_data key and length; inline
    /// bytes follow it directly.
    pub fn encode_head(&self) -> Vec<u8> {
        let mut b = Vec::new();
        for d in &self.dims {
            int_field(&mut b, 1, *d);
        }
        int_field(&mut b, 2, self.elem as i64);
        bytes_field(&mut b, 8, self.name.as_bytes());
        match &self.location {
            Location::Inline => len_prefix(&mut b, 9, self.byte_len()),
            Location::External { file, offset } => {
                for (k, v) in [
                    ("location", file.clone()),
                    ("offset", offset.to_string()),
                    ("length", self.byte_len().to_string()),
                ] {
                    let mut entry = Vec::new();
                    bytes_field(&mut entry, 1, k.as_bytes());
                    bytes_field(&mut entry, 2, v.as_bytes());
                    bytes_field(&mut b, 13, &entry);
                }
                int_field(&mut b, 14, 1);
            }
        }
        b
    }

    /// Length of the whole encoded message.
    pub fn encoded_len(&self) -> u64 {
        let head = self.encode_head().len() as u64;
        match self.location {
            Location::Inline => head + self.byte_len(),
            Location::External { .. } => head,
        }
    }
}

/// A whole small tensor (constants of the graph), encoded inline.
pub fn small_tensor(name: &str, elem: ElemType, dims: &[i64], data: &[u8]) -> Vec<u8> {
    let h = TensorHeader {
        name: name.to_string(),
        elem,
        dims: dims.to_vec(),
        location: Location::Inline,
    };
    let mut b = h.encode_head();
    b.extend_from_slice(data);
    b
}

/// `OperatorSetIdProto`: domain 1, version 2.
pub fn opset(domain: &str, version: i64) -> Vec<u8> {
    let mut b = Vec::new();
    if !domain.is_empty() {
        bytes_field(&mut b, 1, domain.as_bytes());
    }
    int_field(&mut b, 2, version);
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_and_lengths() {
        for v in [0u64, 1, 127, 128, 300, 1 << 35, u64::MAX] {
            let mut b = Vec::new();
            varint(&mut b, v);
            assert_eq!(b.len() as u64, varint_len(v), "{v}");
        }
        let mut b = Vec::new();
        varint(&mut b, 300);
        assert_eq!(b, [0xac, 0x02]);
    }

    #[test]
    fn tensor_length_is_known_before_the_data() {
        let h = TensorHeader {
            name: "w".into(),
            elem: ElemType::Float,
            dims: vec![3, 50],
            location: Location::Inline,
        };
        let mut full = h.encode_head();
        full.extend(std::iter::repeat_n(0u8, 600));
        assert_eq!(full.len() as u64, h.encoded_len());
    }
}
