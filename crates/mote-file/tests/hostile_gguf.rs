//! Hostile and broken GGUF files, built byte by byte below so each case reads as what it
//! is. Every one must fail with its specific error and never panic. Files in
//! `tests/broken/` (inputs the fuzzer once crashed on) are replayed too.
//!
//! `MOTE_WRITE_BROKEN=<dir> cargo test -p mote-file --test hostile_gguf` also writes the
//! built cases to `<dir>`, e.g. to seed the fuzzer.

use std::path::PathBuf;

use mote_file::gguf::encode_to_vec;
use mote_file::{GgufError, GgufFile, MetaValue, TensorProblem, TensorSpec};
use mote_tensor::DType;

/// Value type ids as GGUF numbers them.
const T_U32: u32 = 4;
const T_F32: u32 = 6;
const T_STRING: u32 = 8;
const T_ARRAY: u32 = 9;
/// ggml tensor type ids.
const F32: u32 = 0;
const Q4_0: u32 = 2;

/// Little-endian byte builder for hand-made files.
#[derive(Clone, Default)]
struct B(Vec<u8>);

impl B {
    /// Magic, version, tensor count, metadata count.
    fn header(version: u32, n_tensors: u64, n_kv: u64) -> B {
        B::default()
            .raw(b"GGUF")
            .u32(version)
            .u64(n_tensors)
            .u64(n_kv)
    }
    fn raw(mut self, b: &[u8]) -> B {
        self.0.extend_from_slice(b);
        self
    }
    fn u32(self, x: u32) -> B {
        self.raw(&x.to_le_bytes())
    }
    fn u64(self, x: u64) -> B {
        self.raw(&x.to_le_bytes())
    }
    fn str(self, s: &str) -> B {
        self.u64(s.len() as u64).raw(s.as_bytes())
    }
    fn kv_u32(self, key: &str, v: u32) -> B {
        self.str(key).u32(T_U32).u32(v)
    }
    fn kv_str(self, key: &str, v: &str) -> B {
        self.str(key).u32(T_STRING).str(v)
    }
    /// A tensor table entry.
    fn tensor(self, name: &str, dims: &[u64], ty: u32, offset: u64) -> B {
        let mut b = self.str(name).u32(dims.len() as u32);
        for &d in dims {
            b = b.u64(d);
        }
        b.u32(ty).u64(offset)
    }
    /// Zero padding up to the next multiple of `align`, then `n` data bytes.
    fn data(mut self, align: usize, n: usize) -> B {
        self.0.resize(self.0.len().next_multiple_of(align), 0);
        self.0.resize(self.0.len() + n, 0xAB);
        self
    }
    fn parse(self) -> Result<GgufFile, GgufError> {
        GgufFile::from_bytes(self.0)
    }
}

fn one_tensor(dims: &[u64], ty: u32, offset: u64, data: usize) -> B {
    B::header(3, 1, 0)
        .tensor("t", dims, ty, offset)
        .data(32, data)
}

fn problem(r: Result<GgufFile, GgufError>) -> TensorProblem {
    match r {
        Err(GgufError::BadTensor { name, problem }) => {
            assert_eq!(name, "t");
            problem
        }
        other => panic!("expected BadTensor, got {other:?}"),
    }
}

/// A valid file with metadata of several kinds and two tensors, for truncation.
fn valid() -> Vec<u8> {
    let s = |x: &str| x.to_string();
    let meta = vec![
        (s("general.architecture"), MetaValue::String(s("llama"))),
        (s("n"), MetaValue::U32(3)),
        (
            s("tokens"),
            MetaValue::Array(mote_file::MetaArray::String(vec![s("a"), s("bc")])),
        ),
    ];
    let a = TensorSpec {
        name: s("a"),
        dims: vec![4],
        dtype: DType::F32,
    };
    let b = TensorSpec {
        name: s("b"),
        dims: vec![32],
        dtype: DType::Q8_0,
    };
    encode_to_vec(&meta, &[(a, &[1; 16][..]), (b, &[2; 34][..])]).unwrap()
}

#[test]
fn valid_file_parses() {
    let f = GgufFile::from_bytes(valid()).unwrap();
    assert_eq!(f.tensors().len(), 2);
    assert_eq!(f.tensor_bytes(&f.tensors()[1]).as_slice(), &[2; 34][..]);
}

#[test]
fn bad_magic() {
    let r = B::default().raw(b"GGML").u32(3).u64(0).u64(0).parse();
    assert!(
        matches!(r, Err(GgufError::BadMagic(m)) if &m == b"GGML"),
        "{r:?}"
    );
    assert!(matches!(
        B::default().parse(),
        Err(GgufError::Truncated { .. })
    ));
}

#[test]
fn unsupported_versions() {
    for v in [0, 1, 4, 99, u32::MAX] {
        let r = B::header(v, 0, 0).parse();
        assert!(
            matches!(r, Err(GgufError::UnsupportedVersion(x)) if x == v),
            "{r:?}"
        );
    }
}

#[test]
fn big_endian() {
    let r = B::default()
        .raw(b"GGUF")
        .raw(&3u32.to_be_bytes())
        .raw(&[0; 16])
        .parse();
    assert!(matches!(r, Err(GgufError::BigEndian(0x0300_0000))), "{r:?}");
}

#[test]
fn truncated_anywhere() {
    let full = valid();
    let f = GgufFile::from_bytes(full.clone()).unwrap();
    let data_offset = f.data_offset() as usize;
    let data_end = f
        .tensors()
        .iter()
        .map(|t| t.offset + t.size_bytes)
        .max()
        .unwrap();
    // Only the padding after the last tensor may be cut without harm.
    let needed = data_offset + data_end as usize;
    for len in 0..full.len() {
        let r = GgufFile::from_bytes(full[..len].to_vec());
        match r {
            Ok(_) => assert!(len >= needed, "cut at {len} parsed"),
            Err(GgufError::Truncated { .. } | GgufError::ImpossibleCount { .. }) => {
                assert!(len < data_offset, "cut at {len}")
            }
            Err(GgufError::BadTensor {
                problem: TensorProblem::PastEnd { .. },
                ..
            }) => {}
            other => panic!("cut at {len}: expected a truncation error, got {other:?}"),
        }
    }
    // Section boundaries: after magic, version, tensor count, metadata count.
    for len in [4, 8, 16] {
        let r = GgufFile::from_bytes(full[..len].to_vec());
        assert!(
            matches!(r, Err(GgufError::Truncated { .. })),
            "cut at {len}: {r:?}"
        );
    }
    let r = GgufFile::from_bytes(full[..24].to_vec());
    assert!(matches!(r, Err(GgufError::ImpossibleCount { .. })), "{r:?}");
}

#[test]
fn huge_counts_are_refused_before_allocating() {
    let r = B::header(3, 1 << 63, 0).parse();
    assert!(
        matches!(r, Err(GgufError::ImpossibleCount { count, .. }) if count == 1 << 63),
        "{r:?}"
    );
    let r = B::header(3, u64::MAX, 0).parse();
    assert!(matches!(r, Err(GgufError::ImpossibleCount { .. })), "{r:?}");
    let r = B::header(3, 0, u64::MAX / 2).kv_u32("a", 1).parse();
    assert!(matches!(r, Err(GgufError::ImpossibleCount { .. })), "{r:?}");
}

#[test]
fn huge_string_length() {
    let r = B::header(3, 0, 1).u64(u64::MAX).raw(&[b'k'; 16]).parse();
    assert!(
        matches!(
            r,
            Err(GgufError::Truncated {
                needed: u64::MAX,
                ..
            })
        ),
        "{r:?}"
    );
    let r = B::header(3, 0, 1)
        .str("k")
        .u32(T_STRING)
        .u64(1 << 62)
        .raw(b"v")
        .parse();
    assert!(matches!(r, Err(GgufError::Truncated { .. })), "{r:?}");
}

#[test]
fn huge_array_count() {
    for (ty, count) in [
        (T_U32, u64::MAX),
        (T_STRING, 1 << 60),
        (T_ARRAY, 1 << 40),
        (0, 1000),
    ] {
        let r = B::header(3, 0, 1)
            .str("k")
            .u32(T_ARRAY)
            .u32(ty)
            .u64(count)
            .raw(&[0; 64])
            .parse();
        assert!(
            matches!(r, Err(GgufError::ImpossibleCount { .. })),
            "type {ty}: {r:?}"
        );
    }
}

#[test]
fn arrays_nested_too_deep() {
    let mut b = B::header(3, 0, 1).str("deep").u32(T_ARRAY);
    for _ in 0..64 {
        b = b.u32(T_ARRAY).u64(1);
    }
    let r = b.u32(T_U32).u64(0).parse();
    assert!(
        matches!(r, Err(GgufError::NestingTooDeep { max: 4, .. })),
        "{r:?}"
    );
}

/// A long key with many small nested arrays once cost key-length work per element.
#[test]
fn long_key_with_many_nested_arrays_is_linear() {
    let n = 200_000;
    let mut b = B::header(3, 0, 1)
        .str(&"k".repeat(1 << 16))
        .u32(T_ARRAY)
        .u32(T_ARRAY)
        .u64(n);
    for _ in 0..n {
        b = b.u32(T_U32).u64(0);
    }
    let start = std::time::Instant::now();
    let f = b.parse().unwrap();
    assert_eq!(f.metadata()[0].1.type_name(), format!("array of {n} array"));
    assert!(start.elapsed().as_secs() < 5, "took {:?}", start.elapsed());
}

#[test]
fn unknown_value_types() {
    let r = B::header(3, 0, 1).str("k").u32(13).u32(0).parse();
    assert!(
        matches!(r, Err(GgufError::BadValueType { ty: 13, .. })),
        "{r:?}"
    );
    let r = B::header(3, 0, 1)
        .str("k")
        .u32(T_ARRAY)
        .u32(u32::MAX)
        .u64(0)
        .parse();
    assert!(
        matches!(r, Err(GgufError::BadValueType { ty: u32::MAX, .. })),
        "{r:?}"
    );
}

#[test]
fn unknown_tensor_types() {
    for ty in [4, 5, 31, 36, u32::MAX] {
        assert_eq!(
            problem(one_tensor(&[32], ty, 0, 64).parse()),
            TensorProblem::UnknownType(ty)
        );
    }
}

#[test]
fn bad_dimension_counts() {
    assert_eq!(
        problem(one_tensor(&[], F32, 0, 64).parse()),
        TensorProblem::DimCount(0)
    );
    assert_eq!(
        problem(one_tensor(&[1; 5], F32, 0, 64).parse()),
        TensorProblem::DimCount(5)
    );
    let r = B::header(3, 1, 0)
        .str("t")
        .u32(u32::MAX)
        .raw(&[0; 32])
        .parse();
    assert_eq!(problem(r), TensorProblem::DimCount(u32::MAX));
}

#[test]
fn dimensions_that_overflow() {
    let big = 1u64 << 32;
    let p = problem(one_tensor(&[big, big, 2], F32, 0, 64).parse());
    assert!(matches!(p, TensorProblem::DimsOverflow(_)), "{p:?}");
    // A zero dimension hides the overflow from the element count but not from rows.
    let p = problem(one_tensor(&[0, big, big], F32, 0, 64).parse());
    assert!(matches!(p, TensorProblem::DimsOverflow(_)), "{p:?}");
    let p = problem(one_tensor(&[1, u64::MAX], F32, 0, 64).parse());
    assert_eq!(
        p,
        TensorProblem::DimTooLarge {
            index: 1,
            value: u64::MAX
        }
    );
    // Elements fit, bytes do not.
    let p = problem(one_tensor(&[1 << 62], F32, 0, 64).parse());
    assert!(matches!(p, TensorProblem::SizeOverflow { .. }), "{p:?}");
}

#[test]
fn ragged_rows() {
    let p = problem(one_tensor(&[33, 2], Q4_0, 0, 64).parse());
    assert!(
        matches!(
            p,
            TensorProblem::RaggedRow {
                row_len: 33,
                block_len: 32,
                ..
            }
        ),
        "{p:?}"
    );
}

#[test]
fn bad_offsets() {
    let p = problem(one_tensor(&[4], F32, 8, 64).parse());
    assert_eq!(
        p,
        TensorProblem::Unaligned {
            offset: 8,
            alignment: 32
        }
    );
    let p = problem(one_tensor(&[4], F32, 64, 64).parse());
    assert!(
        matches!(
            p,
            TensorProblem::PastEnd {
                start: 64,
                end: 80,
                data_len: 64
            }
        ),
        "{p:?}"
    );
    let p = problem(one_tensor(&[4], F32, 1 << 40, 64).parse());
    assert!(matches!(p, TensorProblem::PastEnd { .. }), "{p:?}");
    let last_aligned = u64::MAX - 31;
    let p = problem(one_tensor(&[64], F32, last_aligned, 64).parse());
    assert!(matches!(p, TensorProblem::OffsetOverflow { .. }), "{p:?}");
}

#[test]
fn duplicates() {
    let r = B::header(3, 0, 2).kv_u32("a", 1).kv_str("a", "x").parse();
    assert!(
        matches!(r, Err(GgufError::DuplicateKey(ref k)) if k == "a"),
        "{r:?}"
    );
    let r = B::header(3, 2, 0)
        .tensor("w", &[4], F32, 0)
        .tensor("w", &[4], F32, 32)
        .data(32, 64)
        .parse();
    assert!(
        matches!(r, Err(GgufError::DuplicateTensor(ref k)) if k == "w"),
        "{r:?}"
    );
}

#[test]
fn bad_alignment() {
    for a in [0, 3, 48, 1 << 21] {
        let r = B::header(3, 0, 1).kv_u32("general.alignment", a).parse();
        assert!(
            matches!(r, Err(GgufError::BadAlignment(x)) if x == a as u64),
            "{a}: {r:?}"
        );
    }
    let r = B::header(3, 0, 1).kv_str("general.alignment", "32").parse();
    assert!(matches!(r, Err(GgufError::WrongType { .. })), "{r:?}");
    let r = B::header(3, 0, 1)
        .str("general.alignment")
        .u32(T_F32)
        .raw(&32f32.to_le_bytes())
        .parse();
    assert!(matches!(r, Err(GgufError::WrongType { .. })), "{r:?}");
    // A valid non-default alignment moves the data section.
    let f = B::header(3, 1, 1)
        .kv_u32("general.alignment", 64)
        .tensor("t", &[4], F32, 0)
        .data(64, 16)
        .parse()
        .unwrap();
    assert_eq!(f.data_offset() % 64, 0);
}

/// Inputs that once crashed the fuzzer (or are worth keeping): must not panic.
#[test]
fn replay_broken_corpus() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/broken");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "md") {
            continue;
        }
        let bytes = std::fs::read(&path).unwrap();
        if let Ok(f) = GgufFile::from_bytes(bytes) {
            for t in f.tensors() {
                assert_eq!(f.tensor_bytes(t).len() as u64, t.size_bytes);
                let _ = t.rows_cols();
            }
        }
        n += 1;
    }
    eprintln!("replayed {n} files from {}", dir.display());
}

/// Writes every hand-built case to $MOTE_WRITE_BROKEN for seeding the fuzzer.
#[test]
fn write_cases_for_fuzzing() {
    let Some(dir) = std::env::var_os("MOTE_WRITE_BROKEN") else {
        return;
    };
    let dir = PathBuf::from(dir);
    std::fs::create_dir_all(&dir).unwrap();
    let big = 1u64 << 32;
    let cases = [
        ("nested", {
            let mut b = B::header(3, 0, 1).str("deep").u32(T_ARRAY);
            for _ in 0..5 {
                b = b.u32(T_ARRAY).u64(1);
            }
            b.u32(T_U32).u64(0)
        }),
        ("zero_dim_overflow", one_tensor(&[0, big, big], F32, 0, 64)),
        ("offset_overflow", one_tensor(&[64], F32, u64::MAX - 31, 64)),
        ("ragged", one_tensor(&[33, 2], Q4_0, 0, 64)),
        (
            "align64",
            B::header(3, 1, 1)
                .kv_u32("general.alignment", 64)
                .tensor("t", &[4], F32, 0)
                .data(64, 16),
        ),
        (
            "dup_tensor",
            B::header(3, 2, 0)
                .tensor("w", &[4], F32, 0)
                .tensor("w", &[4], F32, 32)
                .data(32, 64),
        ),
    ];
    for (name, b) in cases {
        std::fs::write(dir.join(format!("hostile_{name}.gguf")), &b.0).unwrap();
    }
}
