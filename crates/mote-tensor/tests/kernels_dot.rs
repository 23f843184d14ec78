//! Every SIMD dot kernel against its scalar twin, and the scalar kernels against the
//! decoders in `quant`.

mod kernels_support;

use kernels_support::*;
use mote_tensor::kernels::{
    quantize_q8, quantize_q8k, BlockQ8, BlockQ8K, Dot, Kernels, Plan, QK_K,
};
use mote_tensor::DType;

/// Block counts per row to try: one block, a few, and an odd count past the unroll.
const BLOCKS: [usize; 5] = [1, 2, 3, 7, 18];

/// With power-of-two scales and small activations every partial sum is exact, so the
/// SIMD integer sums must reproduce the scalar result bit for bit, whatever the order.
#[test]
fn simd_integer_paths_equal_scalar_exactly() {
    let mut rng = Rng::new(1);
    for k in tables().into_iter().skip(1) {
        for dtype in QUANT_TYPES {
            for nb in BLOCKS {
                for _ in 0..4 {
                    let w = random_weights(&mut rng, dtype, nb * dtype.block_len(), true);
                    check_pair(k, dtype, &w, nb, &mut rng, true);
                }
            }
        }
    }
}

/// Realistic scales: same result up to float rounding.
#[test]
fn simd_float_results_match_scalar() {
    let mut rng = Rng::new(2);
    for k in tables().into_iter().skip(1) {
        for dtype in QUANT_TYPES {
            for nb in BLOCKS {
                let w = random_weights(&mut rng, dtype, nb * dtype.block_len(), false);
                check_pair(k, dtype, &w, nb, &mut rng, false);
            }
        }
    }
}

fn check_pair(k: &Kernels, dtype: DType, w: &[u8], nb: usize, rng: &mut Rng, exact: bool) {
    let s = &mote_tensor::kernels::scalar::KERNELS;
    let cols = nb * dtype.block_len();
    let wf = dequantize_with_scalar(dtype, w, cols);
    let ctx = format!("{} {dtype} blocks={nb} exact={exact}", k.path);
    match (k.plan(dtype), s.plan(dtype)) {
        (Plan::Q8(fast), Plan::Q8(slow)) => {
            let rows: Vec<Vec<BlockQ8>> = (0..4).map(|_| random_q8(rng, nb, exact)).collect();
            let four = (fast.four)(w, [&rows[0], &rows[1], &rows[2], &rows[3]]);
            let two = (fast.two)(w, [&rows[1], &rows[3]]);
            for (b, a) in rows.iter().enumerate() {
                let want = (slow.one)(w, a);
                let (_, mag) = dot64(&wf, &dequantize_q8(a));
                let one = (fast.one)(w, a);
                compare(want, one, mag, exact, &ctx);
                compare(want, four[b], mag, exact, &ctx);
                // Every row form of a path computes a row the same way: batching slots
                // must not change their results.
                assert_eq!(one.to_bits(), four[b].to_bits(), "{ctx}: four vs one");
                if b % 2 == 1 {
                    assert_eq!(one.to_bits(), two[b / 2].to_bits(), "{ctx}: two vs one");
                }
            }
        }
        (Plan::Q8K(fast), Plan::Q8K(slow)) => {
            let rows: Vec<Vec<BlockQ8K>> = (0..4).map(|_| random_q8k(rng, nb, exact)).collect();
            let four = (fast.four)(w, [&rows[0], &rows[1], &rows[2], &rows[3]]);
            let two = (fast.two)(w, [&rows[1], &rows[3]]);
            for (b, a) in rows.iter().enumerate() {
                let want = (slow.one)(w, a);
                let (_, mag) = dot64(&wf, &dequantize_q8k(a));
                let one = (fast.one)(w, a);
                compare(want, one, mag, exact, &ctx);
                compare(want, four[b], mag, exact, &ctx);
                // Every row form of a path computes a row the same way: batching slots
                // must not change their results.
                assert_eq!(one.to_bits(), four[b].to_bits(), "{ctx}: four vs one");
                if b % 2 == 1 {
                    assert_eq!(one.to_bits(), two[b / 2].to_bits(), "{ctx}: two vs one");
                }
            }
        }
        _ => panic!("{ctx}: plans differ between tables"),
    }
}

/// Float tolerance: 1e-5 of `Σ |w·x|` (f32 rounding over sums of a few thousand terms).
fn compare(want: f32, got: f32, mag: f64, exact: bool, ctx: &str) {
    if exact {
        assert_eq!(want, got, "{ctx}: integer path differs");
    } else {
        let tol = 1e-5 * mag + 1e-30;
        assert!(
            ((want - got) as f64).abs() <= tol,
            "{ctx}: {want} vs {got} (tol {tol})"
        );
    }
}

#[test]
fn float_weight_kernels_match_scalar() {
    let mut rng = Rng::new(3);
    let s = &mote_tensor::kernels::scalar::KERNELS;
    for k in tables().into_iter().skip(1) {
        for dtype in FLOAT_TYPES {
            for len in [1, 7, 16, 33, 100, 576] {
                let w = random_weights(&mut rng, dtype, len, false);
                let xs: Vec<Vec<f32>> = (0..4)
                    .map(|_| (0..len).map(|_| rng.normal(1.0)).collect())
                    .collect();
                let (Plan::Float(fast), Plan::Float(slow)) = (k.plan(dtype), s.plan(dtype)) else {
                    panic!("{dtype}: not a float plan");
                };
                let wf = dequantize(dtype, &w, len);
                let four = (fast.four)(&w, [&xs[0], &xs[1], &xs[2], &xs[3]]);
                for (b, x) in xs.iter().enumerate() {
                    let (exact, mag) = dot64(&wf, x);
                    let ctx = format!("{} {dtype} len={len}", k.path);
                    compare((slow.one)(&w, x), (fast.one)(&w, x), mag, false, &ctx);
                    compare((slow.one)(&w, x), four[b], mag, false, &ctx);
                    compare(exact as f32, (slow.one)(&w, x), mag, false, &ctx);
                }
            }
        }
    }
}

/// The scalar kernels read each block format the same way as `quant::dequantize_row`
/// (which is checked against gguf-py); skipped per type until `quant` decodes it.
#[test]
fn scalar_kernels_read_blocks_like_dequantize() {
    let mut rng = Rng::new(4);
    for dtype in QUANT_TYPES {
        let cols = 2 * dtype.block_len().max(QK_K);
        let w = random_weights(&mut rng, dtype, cols, false);
        let mut want = vec![0f32; cols];
        if mote_tensor::quant::dequantize_row(dtype, &w, &mut want).is_err() {
            eprintln!("skipping {dtype}: quant::dequantize_row does not decode it yet");
            continue;
        }
        let got = dequantize_with_scalar(dtype, &w, cols);
        let max = want.iter().fold(0f32, |m, v| m.max(v.abs()));
        for (j, (a, b)) in want.iter().zip(&got).enumerate() {
            assert!(
                (a - b).abs() <= 1e-5 * max,
                "{dtype} value {j}: dequantize {a}, kernel {b}"
            );
        }
    }
}

#[test]
fn activation_quantization() {
    let mut rng = Rng::new(5);
    let x: Vec<f32> = (0..512).map(|_| rng.normal(2.0)).collect();
    let mut q8 = vec![BlockQ8::default(); 16];
    quantize_q8(&x, &mut q8);
    for (b, xs) in q8.iter().zip(x.chunks_exact(32)) {
        let sum: i32 = b.qs.iter().map(|&q| q as i32).sum();
        // s is d·Σq rounded to f16 (as ggml's block_q8_1), d itself unrounded.
        let rel = (b.s - b.d * sum as f32).abs() / (b.d * sum as f32).abs().max(1e-6);
        assert!(rel <= 2e-3, "s {} vs d·Σq {}", b.s, b.d * sum as f32);
        assert_eq!(b.s, half::f16::from_f32(b.s).to_f32());
        for (q, v) in b.qs.iter().zip(xs) {
            assert!(*q > -128);
            // d is rounded to f16, so allow a little over half a step.
            assert!(
                (*q as f32 * b.d - v).abs() <= 0.51 * b.d + 1e-3 * v.abs(),
                "{q} {v} {}",
                b.d
            );
        }
    }
    let mut q8k = vec![BlockQ8K::default(); 2];
    quantize_q8k(&x, &mut q8k);
    for (b, xs) in q8k.iter().zip(x.chunks_exact(256)) {
        for (g, s) in b.bsums.iter().enumerate() {
            assert_eq!(
                *s as i32,
                b.qs[16 * g..16 * g + 16]
                    .iter()
                    .map(|&q| q as i32)
                    .sum::<i32>()
            );
        }
        for (q, v) in b.qs.iter().zip(xs) {
            assert!(*q > -128);
            assert!(
                (*q as f32 * b.d - v).abs() <= 0.5001 * b.d.abs(),
                "{q} {v} {}",
                b.d
            );
        }
    }
    // All-zero input: zero scale, no NaN.
    quantize_q8(&[0.0; 32], &mut q8[..1]);
    assert_eq!((q8[0].d, q8[0].s), (0.0, 0.0));
    quantize_q8k(&[0.0; 256], &mut q8k[..1]);
    assert_eq!(q8k[0].d, 0.0);
}

#[test]
fn kernel_paths_are_named_and_forced_safely() {
    use mote_tensor::kernels::KernelPath;
    for p in KernelPath::ALL {
        assert_eq!(KernelPath::from_name(p.name()), Some(p));
    }
    assert_eq!(KernelPath::from_name("AVX2"), Some(KernelPath::Avx2));
    assert!(KernelPath::from_name("sse9").is_none());
    assert!(Kernels::for_path(KernelPath::Scalar).is_some());
    // The active table is one this CPU supports.
    assert!(Kernels::available()
        .iter()
        .any(|k| k.path == Kernels::active().path));
    eprintln!(
        "kernel paths here: {:?}; active: {}",
        Kernels::available()
            .iter()
            .map(|k| k.path.name())
            .collect::<Vec<_>>(),
        Kernels::active().path
    );
}

/// The batch kernels on unpacked weight rows (`Dot::gemm`): four weight rows × four
/// activation rows against the scalar twin (`scalar::gemm_q8`, exact with exact data)
/// and against the scalar one-row dot on the packed rows.
#[test]
fn gemm_kernels_match_scalar() {
    use mote_tensor::kernels::{scalar, Unpacked};
    let mut rng = Rng::new(6);
    let s = &scalar::KERNELS;
    for k in tables().into_iter().skip(1) {
        for dtype in [
            DType::Q4_0,
            DType::Q4_1,
            DType::Q5_0,
            DType::Q5_1,
            DType::Q8_0,
        ] {
            let (Plan::Q8(fast), Plan::Q8(slow)) = (k.plan(dtype), s.plan(dtype)) else {
                panic!("{dtype}: not a Q8 plan");
            };
            let Some(gemm) = fast.gemm else {
                continue;
            };
            for exact in [true, false] {
                for (rows, nb) in [(4, 1), (5, 3), (8, 7), (3, 20)] {
                    let cols = nb * dtype.block_len();
                    let rb = dtype.block_bytes() * nb;
                    let w = random_weights(&mut rng, dtype, rows * cols, exact);
                    let mut t = Unpacked::default();
                    assert!(t.fill(dtype, &w, rb, rows, nb));
                    let acts: Vec<Vec<BlockQ8>> =
                        (0..4).map(|_| random_q8(&mut rng, nb, exact)).collect();
                    let a4 = [&acts[0][..], &acts[1][..], &acts[2][..], &acts[3][..]];
                    let ctx = format!(
                        "{} {dtype} gemm rows={rows} blocks={nb} exact={exact}",
                        k.path
                    );
                    for g in 0..rows.div_ceil(4) {
                        let got = gemm(&t, g, a4);
                        let twin = scalar::gemm_q8(&t, g, a4);
                        for (r, (gr, tr)) in got.iter().zip(&twin).enumerate() {
                            let row = 4 * g + r;
                            for b in 0..4 {
                                if row >= rows {
                                    assert_eq!(gr[b], 0.0, "{ctx}: padding row {row}");
                                    continue;
                                }
                                let wr = &w[row * rb..(row + 1) * rb];
                                let want = (slow.one)(wr, a4[b]);
                                let wf = dequantize_with_scalar(dtype, wr, cols);
                                let (_, mag) = dot64(&wf, &dequantize_q8(a4[b]));
                                compare(want, tr[b], mag, exact, &ctx);
                                compare(tr[b], gr[b], mag, exact, &ctx);
                            }
                        }
                    }
                    // Shorter activation rows bound the blocks, as the dot kernels do.
                    if nb > 1 {
                        let short = [&acts[0][..1], a4[1], a4[2], a4[3]];
                        let got = gemm(&t, 0, short);
                        let twin = scalar::gemm_q8(&t, 0, short);
                        for (gr, tr) in got.iter().zip(&twin) {
                            for b in 0..4 {
                                compare(tr[b], gr[b], 1.0, exact, &ctx);
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The decoding kernels (`Dot::rows8`): eight weight rows × one to four activation rows
/// must have the bits of their definition (`scalar::rows8_row`, `rows8_row_k`) for
/// every row, whatever the number of rows and activation rows in the call, on realistic
/// (inexact) data too; against the one-row dot they agree exactly on exact data, to
/// rounding otherwise.
#[test]
fn rows8_kernels_match_their_definition_bit_for_bit() {
    use mote_tensor::kernels::scalar;
    let mut rng = Rng::new(8);
    let s = &scalar::KERNELS;
    let mut checked = 0;
    for k in tables().into_iter().skip(1) {
        for dtype in [
            DType::Q4_0,
            DType::Q4_1,
            DType::Q5_0,
            DType::Q5_1,
            DType::Q8_0,
            DType::Q4_K,
            DType::Q5_K,
        ] {
            checked += match (k.plan(dtype), s.plan(dtype)) {
                (Plan::Q8(fast), Plan::Q8(slow)) => check_rows8(
                    &format!("{} {dtype}", k.path),
                    (dtype, fast, slow),
                    scalar::rows8_row,
                    random_q8,
                    dequantize_q8,
                    &mut rng,
                ),
                (Plan::Q8K(fast), Plan::Q8K(slow)) => check_rows8(
                    &format!("{} {dtype}", k.path),
                    (dtype, fast, slow),
                    scalar::rows8_row_k,
                    random_q8k,
                    dequantize_q8k,
                    &mut rng,
                ),
                _ => panic!("{dtype}: plans differ between tables"),
            };
        }
    }
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        assert!(checked > 0, "no rows8 kernel was tested");
    }
    #[cfg(target_arch = "aarch64")]
    if std::arch::is_aarch64_feature_detected!("dotprod") {
        assert!(checked > 0, "no rows8 kernel was tested");
    }
    let _ = checked;
}

/// [`rows8_kernels_match_their_definition_bit_for_bit`] for one type and path; returns
/// how many results it checked (0 when the path has no such kernel).
fn check_rows8<A>(
    path: &str,
    (dtype, fast, slow): (DType, Dot<A>, Dot<A>),
    definition: impl Fn(DType, &[u8], &[A]) -> Option<f32>,
    mut random_acts: impl FnMut(&mut Rng, usize, bool) -> Vec<A>,
    dequantize: fn(&[A]) -> Vec<f32>,
    rng: &mut Rng,
) -> usize {
    let Some(rows8) = fast.rows8 else {
        return 0;
    };
    let mut checked = 0;
    let (len, size) = dtype.block();
    for exact in [true, false] {
        for (rows, nb, pad) in [(8, 1, 0), (5, 3, 1), (8, 7, 0), (3, 20, 2), (1, 2, 0)] {
            let cols = nb * len;
            let used = size * nb;
            // Rows `pad` blocks apart beyond their length: strided reads.
            let rb = used + pad * size;
            let w = random_weights(rng, dtype, rows * (cols + pad * len), exact);
            let acts: Vec<Vec<A>> = (0..4).map(|_| random_acts(rng, nb, exact)).collect();
            let a4 = [&acts[0][..], &acts[1][..], &acts[2][..], &acts[3][..]];
            for count in 1..=4 {
                let ctx =
                    format!("{path} rows8 rows={rows} blocks={nb} acts={count} exact={exact}");
                let got = rows8(&w, rb, rows, a4, count);
                for (b, gb) in got.iter().enumerate() {
                    for (r, &g) in gb.iter().enumerate() {
                        if b >= count {
                            assert_eq!(g, 0.0, "{ctx}: unused output {b} {r}");
                            continue;
                        }
                        if r >= rows {
                            continue;
                        }
                        let wr = &w[r * rb..r * rb + used];
                        let want = definition(dtype, wr, a4[b]).expect("a rows8 type");
                        assert_eq!(want.to_bits(), g.to_bits(), "{ctx}: row {r} act {b}");
                        let wf = dequantize_with_scalar(dtype, wr, cols);
                        let (_, mag) = dot64(&wf, &dequantize(a4[b]));
                        compare((slow.one)(wr, a4[b]), g, mag, exact, &ctx);
                        checked += 1;
                    }
                }
            }
            // Too short a weight slice gives zeros, not a read out of bounds.
            let got = rows8(&w[..rb * (rows - 1) + used - 1], rb, rows, a4, 4);
            assert!(
                got.iter().flatten().all(|&v| v == 0.0),
                "{path}: short slice"
            );
        }
    }
    checked
}

/// The k-quant batch kernels on unpacked weight rows (`Kernels::gemm_k`): eight weight
/// rows × four activation rows must have the same bits as the path's own one-row kernel
/// and as the scalar twin (`scalar::gemm_k`), with realistic (inexact) data too: they
/// keep the one-row kernels' float order. Against the scalar one-row dot (a different
/// float order) they agree exactly on exact data, to rounding otherwise.
#[test]
fn gemm_k_kernels_match_one_row_bit_for_bit() {
    use mote_tensor::kernels::{scalar, UnpackedK, KROWS};
    let mut rng = Rng::new(7);
    let s = &scalar::KERNELS;
    let mut checked = 0;
    for k in tables().into_iter().skip(1) {
        let Some(gemm) = k.gemm_k else {
            continue;
        };
        for dtype in [DType::Q4_K, DType::Q6_K] {
            let (Plan::Q8K(fast), Plan::Q8K(slow)) = (k.plan(dtype), s.plan(dtype)) else {
                panic!("{dtype}: not a Q8K plan");
            };
            for exact in [true, false] {
                for (rows, nb) in [(8, 1), (5, 2), (13, 3), (17, 4), (3, 8)] {
                    let cols = nb * QK_K;
                    let rb = dtype.block_bytes() * nb;
                    let w = random_weights(&mut rng, dtype, rows * cols, exact);
                    let mut t = UnpackedK::default();
                    assert!(t.fill(dtype, &w, rb, rows, nb));
                    let acts: Vec<Vec<BlockQ8K>> =
                        (0..4).map(|_| random_q8k(&mut rng, nb, exact)).collect();
                    let a4 = [&acts[0][..], &acts[1][..], &acts[2][..], &acts[3][..]];
                    let ctx = format!(
                        "{} {dtype} gemm_k rows={rows} blocks={nb} exact={exact}",
                        k.path
                    );
                    for g in 0..rows.div_ceil(KROWS) {
                        let got = gemm(&t, g, a4);
                        let twin = scalar::gemm_k(&t, g, a4);
                        for b in 0..4 {
                            for r in 0..KROWS {
                                let row = KROWS * g + r;
                                let (gv, tv) = (got[b][r], twin[b][r]);
                                assert_eq!(gv.to_bits(), tv.to_bits(), "{ctx}: twin, row {row}");
                                if row >= rows {
                                    assert_eq!(gv, 0.0, "{ctx}: padding row {row}");
                                    continue;
                                }
                                let wr = &w[row * rb..(row + 1) * rb];
                                let one = (fast.one)(wr, a4[b]);
                                assert_eq!(gv.to_bits(), one.to_bits(), "{ctx}: row {row}");
                                let wf = dequantize_with_scalar(dtype, wr, cols);
                                let (_, mag) = dot64(&wf, &dequantize_q8k(a4[b]));
                                compare((slow.one)(wr, a4[b]), gv, mag, exact, &ctx);
                                checked += 1;
                            }
                        }
                    }
                    // Shorter activation rows bound the super-blocks, as in the dot kernels.
                    if nb > 1 {
                        let short = [&acts[0][..1], a4[1], a4[2], a4[3]];
                        let got = gemm(&t, 0, short);
                        let twin = scalar::gemm_k(&t, 0, short);
                        for (gb, tb) in got.iter().zip(&twin) {
                            for (gv, tv) in gb.iter().zip(tb) {
                                assert_eq!(gv.to_bits(), tv.to_bits(), "{ctx}: short rows");
                            }
                        }
                        let one = (fast.one)(&w[..rb], short[0]);
                        assert_eq!(got[0][0].to_bits(), one.to_bits(), "{ctx}: short rows");
                    }
                    // Out-of-range groups give zeros, not a read past the tile.
                    assert_eq!(gemm(&t, t.groups, a4), [[0.0; KROWS]; 4], "{ctx}");
                }
            }
        }
    }
    eprintln!("gemm_k: {checked} outputs checked");
}

/// Other types are not unpacked; an emptied tile gives zeros.
#[test]
fn unpacked_k_refuses_other_types_and_short_input() {
    use mote_tensor::kernels::{scalar, UnpackedK};
    let mut t = UnpackedK::default();
    assert!(t.fill(DType::Q4_K, &[0u8; 144], 144, 1, 1));
    assert!(!t.fill(DType::Q5_K, &[0u8; 176], 176, 1, 1));
    assert!(t.u.is_empty() && t.dtype.is_none());
    assert!(!t.fill(DType::Q6_K, &[0u8; 209], 210, 1, 1));
    assert!(!t.fill(DType::Q6_K, &[0u8; 420], 200, 2, 1));
    let a = vec![BlockQ8K::default(); 1];
    assert_eq!(scalar::gemm_k(&t, 0, [&a, &a, &a, &a]), [[0.0; 8]; 4]);
}
