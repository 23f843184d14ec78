//! Checks `mote_tensor::quant` against gguf-py and ggml, using the fixtures written by
//! scripts/fixtures/quant_fixtures.py (see that script for what each file holds).

use std::fs;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use mote_tensor::quant::{dequantize_row, quantize_row, quantize_row_weighted, uses_importance};
use mote_tensor::DType;
use serde_json::Value;

fn fixture_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/quant")
}

struct Fixtures {
    index: Value,
    rows: usize,
    cols: usize,
    input: Vec<f32>,
    importance: Vec<f32>,
}

fn read(name: &str) -> Vec<u8> {
    let p = fixture_dir().join(name);
    fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn f32s(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

fn load() -> Fixtures {
    let index: Value = serde_json::from_slice(&read("index.json")).expect("index.json parses");
    let rows = index["rows"].as_u64().expect("rows") as usize;
    let cols = index["cols"].as_u64().expect("cols") as usize;
    let input = f32s(&read(index["input"].as_str().expect("input")));
    let importance = f32s(&read(index["importance"].as_str().expect("importance")));
    assert_eq!(input.len(), rows * cols);
    assert_eq!(importance.len(), cols);
    Fixtures {
        index,
        rows,
        cols,
        input,
        importance,
    }
}

impl Fixtures {
    /// (dtype, fixture entry) for every type in the index.
    fn types(&self) -> Vec<(DType, &Value)> {
        let map = self.index["types"].as_object().expect("types");
        map.iter()
            .map(|(name, entry)| (DType::from_name(name).expect("known type"), entry))
            .collect()
    }

    fn row(&self, r: usize) -> &[f32] {
        &self.input[r * self.cols..(r + 1) * self.cols]
    }

    fn row_bytes(&self, dtype: DType) -> usize {
        self.cols / dtype.block_len() * dtype.block_bytes()
    }
}

/// Compares byte strings block by block; returns a description of the first
/// mismatching block, if any.
fn first_block_mismatch(dtype: DType, ours: &[u8], want: &[u8]) -> Option<String> {
    let bb = dtype.block_bytes();
    let (i, (a, b)) = ours
        .chunks(bb)
        .zip(want.chunks(bb))
        .enumerate()
        .find(|(_, (a, b))| a != b)?;
    Some(format!("block {i}:\n ours {a:02x?}\n want {b:02x?}"))
}

#[test]
fn dequantize_is_bit_exact_with_reference() {
    let fx = load();
    let mut checked = 0;
    for (dtype, entry) in fx.types() {
        let Some(deq) = entry["dequantized"].as_str() else {
            continue;
        };
        let q = read(entry["quantized"].as_str().expect("quantized"));
        let want = f32s(&read(deq));
        let rb = fx.row_bytes(dtype);
        let mut out = vec![0f32; fx.cols];
        for r in 0..fx.rows {
            dequantize_row(dtype, &q[r * rb..(r + 1) * rb], &mut out).expect("dequantize");
            for (c, (a, b)) in out.iter().zip(&want[r * fx.cols..]).enumerate() {
                assert!(
                    a.to_bits() == b.to_bits(),
                    "{dtype} row {r} col {c}: ours {a:e}, reference {b:e}"
                );
            }
        }
        checked += 1;
    }
    assert!(
        checked >= 13,
        "only {checked} types had dequantized fixtures"
    );
}

#[test]
fn quantize_is_byte_exact_with_reference() {
    let fx = load();
    for (dtype, entry) in fx.types() {
        let want = read(entry["quantized"].as_str().expect("quantized"));
        let rb = fx.row_bytes(dtype);
        let mut ours = vec![0xa5u8; rb];
        for r in 0..fx.rows {
            quantize_row(dtype, fx.row(r), &mut ours).expect("quantize");
            let by = entry["quantized_by"].as_str().unwrap_or("?");
            if let Some(m) = first_block_mismatch(dtype, &ours, &want[r * rb..(r + 1) * rb]) {
                panic!("{dtype} row {r} differs from {by}'s quantization, {m}");
            }
        }
    }
}

#[test]
fn weighted_quantize_is_byte_exact_with_ggml() {
    let fx = load();
    let mut checked = 0;
    for (dtype, entry) in fx.types() {
        let Some(file) = entry["imatrix_quantized"].as_str() else {
            assert!(!uses_importance(dtype), "{dtype} has no imatrix fixture");
            continue;
        };
        assert!(
            uses_importance(dtype),
            "{dtype} ignores importance but ggml uses it"
        );
        let want = read(file);
        let rb = fx.row_bytes(dtype);
        let mut ours = vec![0u8; rb];
        for r in 0..fx.rows {
            quantize_row_weighted(dtype, fx.row(r), Some(&fx.importance), &mut ours)
                .expect("quantize");
            if let Some(m) = first_block_mismatch(dtype, &ours, &want[r * rb..(r + 1) * rb]) {
                panic!("{dtype} row {r} differs from ggml's imatrix quantization, {m}");
            }
        }
        checked += 1;
    }
    assert_eq!(checked, 9);
}

#[test]
fn weighted_quantize_without_importance_is_plain() {
    let fx = load();
    for (dtype, _) in fx.types() {
        let rb = fx.row_bytes(dtype);
        let (mut a, mut b) = (vec![0u8; rb], vec![0u8; rb]);
        quantize_row(dtype, fx.row(0), &mut a).expect("quantize");
        quantize_row_weighted(dtype, fx.row(0), None, &mut b).expect("quantize");
        assert_eq!(a, b, "{dtype}");
    }
}

/// RMS reconstruction error relative to the row's RMS, optionally importance-weighted.
fn relative_rmse(x: &[f32], y: &[f32], w: Option<&[f32]>) -> f64 {
    let (mut err, mut norm) = (0f64, 0f64);
    for i in 0..x.len() {
        let wi = w.map_or(1.0, |w| f64::from(w[i]));
        err += wi * f64::from(x[i] - y[i]).powi(2);
        norm += wi * f64::from(x[i]).powi(2);
    }
    (err / norm).sqrt()
}

fn round_trip(dtype: DType, x: &[f32], w: Option<&[f32]>) -> Vec<f32> {
    let mut q = vec![0u8; x.len() / dtype.block_len() * dtype.block_bytes()];
    quantize_row_weighted(dtype, x, w, &mut q).expect("quantize");
    let mut y = vec![0f32; x.len()];
    dequantize_row(dtype, &q, &mut y).expect("dequantize");
    y
}

/// Fixture rows that look like model weights: gaussian (0, 9) and heavy-tailed (8).
const GAUSSIAN_ROWS: [usize; 2] = [0, 9];
const HEAVY_TAILED_ROW: usize = 8;
const WEIGHT_LIKE_ROWS: [usize; 3] = [0, 8, 9];

#[test]
fn round_trip_error_is_within_bounds() {
    let fx = load();
    // (type, bound on gaussian rows, bound on the heavy-tailed row): relative RMSE of
    // ggml's own reference quantizers (ours are byte-identical), measured worst case
    // with ~10-20% headroom. Measured: gaussian / heavy-tailed
    //   F16 2.2e-4 / 2.2e-4   BF16 1.7e-3 / 1.4e-3   Q8_0, Q8_1 5.5e-3 / 9.4e-3
    //   Q8_K 6.5e-3 / 2.1e-2  Q6_K 1.8e-2 / 2.9e-2   Q5_0 4.4e-2 / 7.3e-2
    //   Q5_1 3.8e-2 / 5.0e-2  Q5_K 3.6e-2 / 5.0e-2   Q4_0 9.1e-2 / 0.146
    //   Q4_1 7.5e-2 / 0.102   Q4_K 7.0e-2 / 9.5e-2   Q3_K 0.151 / 0.189
    //   Q2_K 0.291 / 0.386
    let bounds = [
        (DType::F16, 3e-4, 3e-4),
        (DType::BF16, 2e-3, 2e-3),
        (DType::Q8_0, 0.007, 0.011),
        (DType::Q8_1, 0.007, 0.011),
        (DType::Q8_K, 0.008, 0.025),
        (DType::Q6_K, 0.02, 0.035),
        (DType::Q5_0, 0.05, 0.085),
        (DType::Q5_1, 0.045, 0.06),
        (DType::Q5_K, 0.04, 0.06),
        (DType::Q4_0, 0.1, 0.17),
        (DType::Q4_1, 0.085, 0.12),
        (DType::Q4_K, 0.08, 0.11),
        (DType::Q3_K, 0.17, 0.22),
        (DType::Q2_K, 0.32, 0.43),
    ];
    for (dtype, gaussian_bound, heavy_bound) in bounds {
        let error = |r: usize| {
            let x = fx.row(r);
            relative_rmse(x, &round_trip(dtype, x, None), None)
        };
        let gaussian = GAUSSIAN_ROWS.map(error).into_iter().fold(0f64, f64::max);
        let heavy = error(HEAVY_TAILED_ROW);
        eprintln!("{dtype:5} relative RMSE: gaussian {gaussian:.2e}, heavy-tailed {heavy:.2e}");
        assert!(
            gaussian < gaussian_bound,
            "{dtype}: gaussian {gaussian} ≥ {gaussian_bound}"
        );
        assert!(
            heavy < heavy_bound,
            "{dtype}: heavy-tailed {heavy} ≥ {heavy_bound}"
        );
    }
}

#[test]
fn importance_lowers_weighted_error() {
    let fx = load();
    let w = &fx.importance;
    for (dtype, _) in fx.types() {
        if !uses_importance(dtype) {
            continue;
        }
        let (mut plain, mut weighted) = (0f64, 0f64);
        for r in WEIGHT_LIKE_ROWS {
            let x = fx.row(r);
            plain += relative_rmse(x, &round_trip(dtype, x, None), Some(w)) / 3.0;
            weighted += relative_rmse(x, &round_trip(dtype, x, Some(w)), Some(w)) / 3.0;
        }
        eprintln!("{dtype:5} importance-weighted RMSE: plain {plain:.3e}, imatrix {weighted:.3e}");
        assert!(weighted < plain, "{dtype}: importance did not help");
    }
}

#[test]
fn degenerate_rows_decode_to_themselves() {
    // All-zero and constant rows: every type must give finite values, zeros exactly.
    let fx = load();
    for (dtype, _) in fx.types() {
        let y = round_trip(dtype, fx.row(1), None);
        assert!(y.iter().all(|v| *v == 0.0), "{dtype} zeros");
        let y = round_trip(dtype, fx.row(2), None);
        let worst = y.iter().map(|v| (v - 0.37).abs()).fold(0f32, f32::max);
        assert!(worst < 0.37 * 0.06, "{dtype} constant row off by {worst}");
    }
}

#[test]
fn non_finite_input_does_not_panic() {
    // Garbage in, garbage out — but never a panic or an overflow.
    let mut x: Vec<f32> = (0..512).map(|i| (i as f32 * 0.37).sin()).collect();
    x[3] = f32::NAN;
    x[40] = f32::INFINITY;
    x[300] = f32::NEG_INFINITY;
    x[301] = f32::MAX;
    x[302] = f32::MIN_POSITIVE / 4.0;
    let w: Vec<f32> = (0..512)
        .map(|i| if i % 7 == 0 { f32::NAN } else { 1.0 })
        .collect();
    let fx = load();
    for (dtype, _) in fx.types() {
        let _ = round_trip(dtype, &x, None);
        let _ = round_trip(dtype, &x, Some(&w));
        let _ = round_trip(dtype, fx.row(1), Some(&w));
    }
}

// ---------------------------------------------------------------- real model tensors

fn models_dir() -> PathBuf {
    std::env::var_os("MOTE_MODELS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models"))
}

fn model(name: &str) -> Option<PathBuf> {
    let p = models_dir().join(name);
    if p.exists() {
        Some(p)
    } else {
        assert!(
            std::env::var_os("MOTE_REQUIRE_MODELS").is_none(),
            "{name} missing: run scripts/fetch-models.sh all"
        );
        eprintln!("skipping: {} not found", p.display());
        None
    }
}

fn fnv1a64(bytes: &[u8]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{h:016x}")
}

fn read_at(path: &Path, offset: u64, len: usize) -> Vec<u8> {
    let mut f = fs::File::open(path).expect("open model");
    f.seek(SeekFrom::Start(offset)).expect("seek");
    let mut buf = vec![0u8; len];
    f.read_exact(&mut buf).expect("read tensor row");
    buf
}

#[test]
fn real_tensor_rows_match_gguf_py() {
    let fx = load();
    let samples = fx.index["real_tensors"].as_array().expect("real_tensors");
    let mut checked = std::collections::BTreeSet::new();
    for s in samples {
        let file = s["file"].as_str().expect("file");
        let Some(path) = model(file) else { continue };
        let dtype = DType::from_name(s["dtype"].as_str().expect("dtype")).expect("dtype");
        let what = format!("{file} {} row {}", s["tensor"], s["row"]);
        let bytes = read_at(
            &path,
            s["offset"].as_u64().expect("offset"),
            s["bytes"].as_u64().expect("bytes") as usize,
        );
        assert_eq!(
            fnv1a64(&bytes),
            s["bytes_fnv1a64"],
            "{what}: raw bytes differ"
        );
        let mut out = vec![0f32; s["cols"].as_u64().expect("cols") as usize];
        dequantize_row(dtype, &bytes, &mut out).expect("dequantize");
        let first: Vec<f32> = s["first_values"]
            .as_array()
            .expect("first_values")
            .iter()
            .map(|v| v.as_f64().expect("number") as f32)
            .collect();
        assert_eq!(&out[..first.len()], &first[..], "{what}: first values");
        let ours: Vec<u8> = out.iter().flat_map(|v| v.to_le_bytes()).collect();
        assert_eq!(fnv1a64(&ours), s["values_fnv1a64"], "{what}: values differ");
        checked.insert(dtype);
    }
    eprintln!("real tensor rows checked for {checked:?}");
}
