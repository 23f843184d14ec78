//! The GGUF writer: write → read back gives identical metadata and bytes; the atomic
//! temporary-file protocol; misuse is reported, not written.

use std::path::PathBuf;

use mote_file::gguf::{encode_to_vec, set_metadata, GgufStream};
use mote_file::{GgufFile, GgufWriteError, GgufWriter, MetaArray, MetaValue, TensorSpec};
use mote_tensor::DType;

fn spec(name: &str, dims: &[u64], dtype: DType) -> TensorSpec {
    TensorSpec {
        name: name.into(),
        dims: dims.to_vec(),
        dtype,
    }
}

fn filler(spec: &TensorSpec, seed: u8) -> Vec<u8> {
    let n = spec.dtype.bytes_for(spec.dims.iter().product()).unwrap();
    (0..n)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

fn metadata() -> Vec<(String, MetaValue)> {
    let s = |x: &str| x.to_string();
    vec![
        (s("general.architecture"), MetaValue::String(s("llama"))),
        (s("z.first.in.order"), MetaValue::U8(1)),
        (s("a.i8"), MetaValue::I8(-2)),
        (s("a.u16"), MetaValue::U16(3)),
        (s("a.i16"), MetaValue::I16(-4)),
        (s("a.u32"), MetaValue::U32(5)),
        (s("a.i32"), MetaValue::I32(-6)),
        (s("a.f32"), MetaValue::F32(0.125)),
        (s("a.bool"), MetaValue::Bool(true)),
        (s("a.u64"), MetaValue::U64(u64::MAX)),
        (s("a.i64"), MetaValue::I64(i64::MIN)),
        (s("a.f64"), MetaValue::F64(1e300)),
        (s("a.utf8"), MetaValue::String(s("héllo ▁world 🦀"))),
        (
            s("a.strings"),
            MetaValue::Array(MetaArray::String(vec![s(""), s("<s>"), s("é")])),
        ),
        (
            s("a.f32s"),
            MetaValue::Array(MetaArray::F32(vec![1.0, -0.5])),
        ),
        (
            s("a.bools"),
            MetaValue::Array(MetaArray::Bool(vec![true, false])),
        ),
        (s("a.empty"), MetaValue::Array(MetaArray::I64(vec![]))),
        (
            s("a.nested"),
            MetaValue::Array(MetaArray::Array(vec![
                MetaArray::U32(vec![1, 2]),
                MetaArray::Array(vec![MetaArray::F64(vec![0.5])]),
            ])),
        ),
    ]
}

fn specs() -> Vec<TensorSpec> {
    vec![
        spec("token_embd.weight", &[64, 3], DType::Q8_0),
        spec("norm", &[5], DType::F32),
        spec("q4k", &[256, 2], DType::Q4_K),
        spec("half", &[3, 1, 1, 2], DType::F16),
        spec("empty", &[0], DType::F32),
    ]
}

fn tmp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("mote-file-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn check_round_trip(
    f: &GgufFile,
    meta: &[(String, MetaValue)],
    specs: &[TensorSpec],
    datas: &[Vec<u8>],
) {
    assert_eq!(f.version, 3);
    assert_eq!(f.metadata(), meta);
    assert_eq!(f.tensors().len(), specs.len());
    for ((t, s), d) in f.tensors().iter().zip(specs).zip(datas) {
        assert_eq!((&t.name, &t.dims, t.dtype), (&s.name, &s.dims, s.dtype));
        assert_eq!(t.offset % f.alignment, 0);
        assert_eq!(f.tensor_bytes(t).as_slice(), d.as_slice(), "{}", t.name);
    }
    assert_eq!(f.file_len() % f.alignment, 0, "data section is padded");
}

#[test]
fn file_round_trip() {
    let dir = tmp_dir("roundtrip");
    let path = dir.join("out.gguf");
    let meta = metadata();
    let specs = specs();
    let datas: Vec<Vec<u8>> = specs
        .iter()
        .enumerate()
        .map(|(i, s)| filler(s, i as u8))
        .collect();

    let mut w = GgufWriter::create(&path, &meta, specs.clone()).unwrap();
    assert_eq!(w.tensors().len(), specs.len());
    for (s, d) in specs.iter().zip(&datas) {
        assert_eq!(w.next_tensor().unwrap().name, s.name);
        w.write_tensor(&s.name, d).unwrap();
    }
    assert!(!path.exists(), "nothing at the final path before finish()");
    assert_eq!(w.finish().unwrap(), path);
    let leftovers: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
    assert_eq!(leftovers.len(), 1, "temporary file was renamed away");

    let f = GgufFile::open(&path).unwrap();
    check_round_trip(&f, &meta, &specs, &datas);

    // The in-memory encoder produces the very same bytes.
    let pairs: Vec<(TensorSpec, &[u8])> = specs
        .iter()
        .cloned()
        .zip(datas.iter().map(|d| d.as_slice()))
        .collect();
    assert_eq!(
        encode_to_vec(&meta, &pairs).unwrap(),
        std::fs::read(&path).unwrap()
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn custom_alignment_round_trip() {
    let mut meta = metadata();
    set_metadata(&mut meta, "general.alignment", MetaValue::U32(256));
    let specs = specs();
    let datas: Vec<Vec<u8>> = specs.iter().map(|s| filler(s, 9)).collect();
    let pairs: Vec<(TensorSpec, &[u8])> = specs
        .iter()
        .cloned()
        .zip(datas.iter().map(|d| d.as_slice()))
        .collect();
    let f = GgufFile::from_bytes(encode_to_vec(&meta, &pairs).unwrap()).unwrap();
    assert_eq!(f.alignment, 256);
    assert_eq!(f.data_offset() % 256, 0);
    check_round_trip(&f, &meta, &specs, &datas);
}

#[test]
fn copy_metadata_from_a_file_and_change_a_key() {
    let meta = metadata();
    let src = GgufFile::from_bytes(encode_to_vec(&meta, &[]).unwrap()).unwrap();
    let mut copied = src.metadata_owned();
    set_metadata(&mut copied, "a.u16", MetaValue::U16(99));
    set_metadata(&mut copied, "general.file_type", MetaValue::U32(7));
    let out = GgufFile::from_bytes(encode_to_vec(&copied, &[]).unwrap()).unwrap();
    assert_eq!(out.metadata().len(), meta.len() + 1);
    assert_eq!(out.metadata()[3], ("a.u16".to_string(), MetaValue::U16(99)));
    assert_eq!(out.require_u32("general.file_type").unwrap(), 7);
}

#[test]
fn drop_without_finish_removes_the_temporary_file() {
    let dir = tmp_dir("drop");
    let path = dir.join("out.gguf");
    let specs = specs();
    let mut w = GgufWriter::create(&path, &metadata(), specs.clone()).unwrap();
    w.write_tensor(&specs[0].name, &filler(&specs[0], 0))
        .unwrap();
    assert_eq!(
        std::fs::read_dir(&dir).unwrap().count(),
        1,
        "temporary file exists"
    );
    drop(w);
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);

    // An unfinished writer's finish() fails and cleans up too.
    let w = GgufWriter::create(&path, &metadata(), specs).unwrap();
    assert!(matches!(
        w.finish(),
        Err(GgufWriteError::Incomplete {
            written: 0,
            total: 5
        })
    ));
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn misuse_is_reported() {
    let specs = specs();
    let new = || GgufStream::new(Vec::new(), &metadata(), specs.clone()).unwrap();

    let mut w = new();
    let e = w.write_tensor("norm", &[0; 20]).unwrap_err();
    assert!(matches!(e, GgufWriteError::OutOfOrder { .. }), "{e}");
    let e = w.write_tensor(&specs[0].name, &[0; 3]).unwrap_err();
    assert!(
        matches!(
            e,
            GgufWriteError::WrongSize {
                expected: 204,
                got: 3,
                ..
            }
        ),
        "{e}"
    );

    let mut w = GgufStream::new(Vec::new(), &[], vec![]).unwrap();
    let e = w.write_tensor("x", &[]).unwrap_err();
    assert!(matches!(e, GgufWriteError::TooManyTensors(_)), "{e}");

    let dup = vec![spec("a", &[1], DType::F32), spec("a", &[1], DType::F32)];
    let e = GgufStream::new(Vec::new(), &[], dup).err().unwrap();
    assert!(matches!(e, GgufWriteError::DuplicateTensor(_)), "{e}");

    let mut meta = metadata();
    meta.push(meta[1].clone());
    let e = GgufStream::new(Vec::new(), &meta, vec![]).err().unwrap();
    assert!(matches!(e, GgufWriteError::DuplicateKey(_)), "{e}");

    for bad in [
        MetaValue::U64(32),
        MetaValue::U32(0),
        MetaValue::U32(48),
        MetaValue::String("32".into()),
    ] {
        let meta = vec![("general.alignment".to_string(), bad)];
        let e = GgufStream::new(Vec::new(), &meta, vec![]).err().unwrap();
        assert!(matches!(e, GgufWriteError::BadAlignment(_)), "{e}");
    }

    let ragged = vec![spec("r", &[33], DType::Q4_0)];
    let e = GgufStream::new(Vec::new(), &[], ragged).err().unwrap();
    assert!(matches!(e, GgufWriteError::BadTensor { .. }), "{e}");

    let deep = MetaArray::Array(vec![MetaArray::Array(vec![MetaArray::Array(vec![
        MetaArray::Array(vec![MetaArray::U8(vec![1])]),
    ])])]);
    let meta = vec![("deep".to_string(), MetaValue::Array(deep))];
    let e = GgufStream::new(Vec::new(), &meta, vec![]).err().unwrap();
    assert!(matches!(e, GgufWriteError::NestingTooDeep { .. }), "{e}");

    // Nothing is created when validation fails.
    let dir = tmp_dir("invalid");
    let e = GgufWriter::create(
        dir.join("x.gguf"),
        &[],
        vec![spec("r", &[0, 0, 0, 0, 0], DType::F32)],
    );
    assert!(e.is_err());
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Our output must match what gguf-py checks; scripts/fixtures/gguf_writer_check.py
/// verified this file once with the reference reader and recorded what it saw.
#[test]
fn committed_fixture_still_matches() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let pairs_owned: Vec<(TensorSpec, Vec<u8>)> = specs()
        .into_iter()
        .enumerate()
        .map(|(i, s)| {
            let d = filler(&s, i as u8);
            (s, d)
        })
        .collect();
    let pairs: Vec<(TensorSpec, &[u8])> = pairs_owned
        .iter()
        .map(|(s, d)| (s.clone(), d.as_slice()))
        .collect();
    let ours = encode_to_vec(&metadata(), &pairs).unwrap();
    if std::env::var_os("MOTE_UPDATE_FIXTURES").is_some() {
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("writer_sample.gguf"), &ours).unwrap();
    }
    let committed = std::fs::read(dir.join("writer_sample.gguf")).unwrap();
    assert_eq!(
        ours, committed,
        "writer output changed; re-run the fixture script"
    );
    let verdict = std::fs::read_to_string(dir.join("writer_sample.gguf-py.txt")).unwrap();
    assert!(verdict.starts_with("ok"), "{verdict}");
}
