//! The safetensors reader: the real MiniLM checkpoint, sharded folders, hostile headers.

use std::path::PathBuf;

use mote_file::{SafetensorsDir, SafetensorsError, SafetensorsFile, StDType};

fn models_dir() -> PathBuf {
    std::env::var_os("MOTE_MODELS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models"))
}

/// Builds a file from a JSON header and a data section.
fn file(header: &str, data_len: usize) -> Vec<u8> {
    let mut v = (header.len() as u64).to_le_bytes().to_vec();
    v.extend_from_slice(header.as_bytes());
    v.extend((0..data_len).map(|i| i as u8));
    v
}

fn parse(header: &str, data_len: usize) -> Result<SafetensorsFile, SafetensorsError> {
    SafetensorsFile::from_bytes(file(header, data_len))
}

#[test]
fn minilm_checkpoint() {
    let dir = models_dir().join("all-MiniLM-L6-v2");
    if !dir.join("model.safetensors").exists() {
        assert!(
            std::env::var_os("MOTE_REQUIRE_MODELS").is_none(),
            "MiniLM missing"
        );
        eprintln!("skipping: {} not found", dir.display());
        return;
    }
    let f = SafetensorsFile::open(dir.join("model.safetensors")).unwrap();
    assert_eq!(f.metadata(), &[("format".to_string(), "pt".to_string())]);
    assert_eq!(f.tensors().len(), 104);
    let emb = f.tensor("embeddings.word_embeddings.weight").unwrap();
    assert_eq!(
        (emb.dtype, emb.shape.as_slice()),
        (StDType::F32, &[30522, 384][..])
    );
    let ids = f.tensor("embeddings.position_ids").unwrap();
    assert_eq!(
        (ids.dtype, ids.shape.as_slice()),
        (StDType::I64, &[1, 512][..])
    );
    let pos: Vec<i64> = f
        .tensor_bytes(ids)
        .as_slice()
        .chunks_exact(8)
        .map(|b| i64::from_le_bytes(b.try_into().unwrap()))
        .collect();
    assert_eq!(pos, (0..512).collect::<Vec<i64>>());
    for t in f.tensors() {
        assert_eq!(f.tensor_bytes(t).len() as u64, t.size_bytes());
        assert_eq!(t.size_bytes(), t.elements() * t.dtype.size_bytes());
    }
    // The folder opens the same file.
    let d = SafetensorsDir::open(&dir).unwrap();
    assert_eq!(d.len(), 104);
    let (info, bytes) = d.tensor("encoder.layer.5.output.LayerNorm.weight").unwrap();
    assert_eq!(info.shape, vec![384]);
    assert_eq!(bytes.len(), 384 * 4);
}

#[test]
fn small_valid_file() {
    let h = r#"{"__metadata__":{"b":"2","a":"1"},
        "w":{"dtype":"BF16","shape":[2,3],"data_offsets":[16,28]},
        "x":{"dtype":"U8","shape":[],"data_offsets":[28,29]},
        "e":{"dtype":"F32","shape":[0,4],"data_offsets":[29,29]},
        "v":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}   "#;
    let f = parse(h, 29).unwrap();
    let names: Vec<&str> = f.tensors().iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["v", "w", "x", "e"], "sorted by data offset");
    assert_eq!(f.metadata()[0], ("a".to_string(), "1".to_string()));
    let w = f.tensor("w").unwrap();
    assert_eq!(
        f.tensor_bytes(w).as_slice(),
        &(16..28).collect::<Vec<u8>>()[..]
    );
    assert_eq!(w.dtype.to_ggml(), Some(mote_tensor::DType::BF16));
    assert_eq!(f.tensor_bytes(f.tensor("x").unwrap()).as_slice(), &[28]);
    assert!(f.tensor_bytes(f.tensor("e").unwrap()).is_empty());
}

#[test]
fn hostile_headers() {
    use SafetensorsError as E;
    let r = SafetensorsFile::from_bytes(vec![1, 2, 3]);
    assert!(matches!(r, Err(E::TooShort(3))), "{r:?}");
    let mut huge = u64::MAX.to_le_bytes().to_vec();
    huge.extend_from_slice(b"{}");
    let r = SafetensorsFile::from_bytes(huge);
    assert!(matches!(r, Err(E::HeaderTooLong { .. })), "{r:?}");
    let mut past = 100u64.to_le_bytes().to_vec();
    past.extend_from_slice(b"{}");
    let r = SafetensorsFile::from_bytes(past);
    assert!(
        matches!(
            r,
            Err(E::HeaderTooLong {
                header_len: 100,
                file_len: 10
            })
        ),
        "{r:?}"
    );

    type Case<'a> = (&'a str, usize, fn(&E) -> bool);
    let cases: &[Case] = &[
        ("not json", 0, |e| matches!(e, E::BadHeader(_))),
        ("[1,2]", 0, |e| matches!(e, E::BadHeader(_))),
        ("{\"a\":{\"dtype\":\"F32\",\"shape\":[1]", 0, |e| {
            matches!(e, E::BadHeader(_))
        }),
        (
            r#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4],"x":1}}"#,
            4,
            |e| matches!(e, E::BadHeader(_)),
        ),
        (
            r#"{"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}}"#,
            4,
            |e| matches!(e, E::BadHeader(_)),
        ),
        (r#"{"__metadata__":{"k":1}}"#, 0, |e| {
            matches!(e, E::BadHeader(_))
        }),
        (&"[".repeat(10_000), 0, |e| matches!(e, E::BadHeader(_))),
        (
            r#"{"a":{"dtype":"F33","shape":[1],"data_offsets":[0,4]}}"#,
            4,
            |e| matches!(e, E::UnknownDType { .. }),
        ),
        (
            r#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[8,4]}}"#,
            8,
            |e| matches!(e, E::BackwardsRange { .. }),
        ),
        (
            r#"{"a":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,4]}}"#,
            4,
            |e| matches!(e, E::ShapeOverflow { .. }),
        ),
        (
            r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}}"#,
            4,
            |e| {
                matches!(
                    e,
                    E::SizeMismatch {
                        expected: 8,
                        actual: 4,
                        ..
                    }
                )
            },
        ),
        (
            r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#,
            4,
            |e| matches!(e, E::PastEnd { .. }),
        ),
        (
            r#"{"a":{"dtype":"U8","shape":[1],"data_offsets":[18446744073709551614,18446744073709551615]}}"#,
            4,
            |e| matches!(e, E::PastEnd { .. }),
        ),
        (
            r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#,
            8,
            |e| matches!(e, E::Overlap { .. }),
        ),
        (
            r#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#,
            8,
            |e| matches!(e, E::DuplicateTensor(_)),
        ),
    ];
    for (header, data_len, want) in cases {
        let r = parse(header, *data_len);
        match r {
            Err(ref e) if want(e) => {}
            other => panic!("header {:.80}: unexpected {other:?}", header),
        }
    }
}

fn tmp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("mote-st-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn sharded_folder() {
    let dir = tmp_dir("sharded");
    let a = r#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#;
    let b = r#"{"b":{"dtype":"I32","shape":[2],"data_offsets":[0,8]}}"#;
    std::fs::write(dir.join("model-00001-of-00002.safetensors"), file(a, 4)).unwrap();
    std::fs::write(dir.join("model-00002-of-00002.safetensors"), file(b, 8)).unwrap();
    let index = r#"{"metadata":{"total_size":12},"weight_map":{
        "a":"model-00001-of-00002.safetensors","b":"model-00002-of-00002.safetensors"}}"#;
    std::fs::write(dir.join("model.safetensors.index.json"), index).unwrap();
    let d = SafetensorsDir::open(&dir).unwrap();
    assert_eq!(d.len(), 2);
    assert_eq!(d.shards().count(), 2);
    assert_eq!(
        d.index_metadata,
        vec![("total_size".to_string(), "12".to_string())]
    );
    let (info, bytes) = d.tensor("b").unwrap();
    assert_eq!(info.dtype, StDType::I32);
    assert_eq!(bytes.as_slice(), &[0, 1, 2, 3, 4, 5, 6, 7]);

    // The index names a tensor its shard lacks.
    let wrong = r#"{"weight_map":{"a":"model-00002-of-00002.safetensors"}}"#;
    std::fs::write(dir.join("model.safetensors.index.json"), wrong).unwrap();
    let r = SafetensorsDir::open(&dir);
    assert!(matches!(r, Err(SafetensorsError::BadIndex { .. })), "{r:?}");
    // Shard paths may not leave the folder.
    for shard in ["../x.safetensors", "/etc/passwd", "sub/x.safetensors", ".."] {
        let evil = format!(r#"{{"weight_map":{{"a":{shard:?}}}}}"#);
        std::fs::write(dir.join("model.safetensors.index.json"), evil).unwrap();
        let r = SafetensorsDir::open(&dir);
        assert!(
            matches!(r, Err(SafetensorsError::BadIndex { .. })),
            "{shard}: {r:?}"
        );
    }
    std::fs::write(dir.join("model.safetensors.index.json"), "{").unwrap();
    assert!(matches!(
        SafetensorsDir::open(&dir),
        Err(SafetensorsError::BadIndex { .. })
    ));
    // Missing shard file.
    let missing = r#"{"weight_map":{"a":"nope.safetensors"}}"#;
    std::fs::write(dir.join("model.safetensors.index.json"), missing).unwrap();
    assert!(matches!(
        SafetensorsDir::open(&dir),
        Err(SafetensorsError::Io { .. })
    ));
    // A folder with neither.
    let empty = tmp_dir("empty");
    assert!(matches!(
        SafetensorsDir::open(&empty),
        Err(SafetensorsError::NoCheckpoint(_))
    ));
    std::fs::remove_dir_all(&dir).unwrap();
    std::fs::remove_dir_all(&empty).unwrap();
}
