//! `Matrix::matmul` on every kernel path and thread count against a dequantize-then-dot
//! reference, plus the thread pool's contract.

mod kernels_support;

use std::sync::atomic::{AtomicUsize, Ordering};

use kernels_support::*;
use mote_tensor::kernels::{
    quantize_q8, quantize_q8k, scalar, BlockQ8, BlockQ8K, Kernels, Plan, Q8_BLOCK, QK_K,
};
use mote_tensor::matrix::GEMM_MIN_INPUTS;
use mote_tensor::parallel::Pool;
use mote_tensor::{Bytes, DType, Matrix};

/// The inputs as the kernels see them: quantized to 8 bits per block for quantized
/// weights, unchanged for float weights.
fn effective_input(k: &Kernels, dtype: DType, x: &[f32], cols: usize) -> Vec<f32> {
    match k.plan(dtype) {
        Plan::Q8(_) => {
            let mut a = vec![BlockQ8::default(); x.len() / Q8_BLOCK];
            for (xb, ab) in x
                .chunks_exact(cols)
                .zip(a.chunks_exact_mut(cols / Q8_BLOCK))
            {
                quantize_q8(xb, ab);
            }
            dequantize_q8(&a)
        }
        Plan::Q8K(_) => {
            let mut a = vec![BlockQ8K::default(); x.len() / QK_K];
            for (xb, ab) in x.chunks_exact(cols).zip(a.chunks_exact_mut(cols / QK_K)) {
                quantize_q8k(xb, ab);
            }
            dequantize_q8k(&a)
        }
        _ => x.to_vec(),
    }
}

fn check_matmul(
    pool: &Pool,
    k: &Kernels,
    dtype: DType,
    rows: usize,
    cols: usize,
    n: usize,
    rng: &mut Rng,
) {
    let data = random_weights(rng, dtype, rows * cols, false);
    let m = match Matrix::new(dtype, rows, cols, Bytes::from_vec(data.clone())) {
        Ok(m) => m,
        Err(e) => panic!("{dtype} {rows}x{cols}: {e}"),
    };
    let x: Vec<f32> = (0..n * cols).map(|_| rng.normal(1.0)).collect();
    let mut y = vec![f32::NAN; n * rows];
    let ctx = format!(
        "{} {dtype} {rows}x{cols} n={n} threads={}",
        k.path,
        pool.threads()
    );
    if let Err(e) = m.matmul_using(pool, k, &x, n, &mut y) {
        panic!("{ctx}: {e}");
    }
    let xq = effective_input(k, dtype, &x, cols);
    let rb = m.row_bytes();
    for r in 0..rows {
        let w = dequantize(dtype, &data[r * rb..(r + 1) * rb], cols);
        for b in 0..n {
            let (want, mag) = dot64(&w, &xq[b * cols..(b + 1) * cols]);
            let got = y[b * rows + r] as f64;
            // Q4_1/Q5_1 use the activation block's sum `s`, which (as ggml's block_q8_1)
            // is d·Σq rounded to f16: an error of up to 2^-11 of each block's offset term.
            let tol = if matches!(dtype, DType::Q4_1 | DType::Q5_1) {
                1e-3
            } else {
                2e-5
            };
            assert!(
                (want - got).abs() <= tol * mag + 1e-30,
                "{ctx} y[{b}][{r}] = {got}, want {want}"
            );
        }
    }
}

#[test]
fn matmul_matches_reference_on_every_path() {
    let mut rng = Rng::new(10);
    let pools = [Pool::new(1), Pool::new(3)];
    for k in tables() {
        for dtype in QUANT_TYPES.into_iter().chain(FLOAT_TYPES) {
            let cols = if dtype.block_len() == QK_K { 512 } else { 96 };
            for (rows, n) in [(1, 1), (5, 2), (17, 3), (33, 7), (70, 64), (130, 1)] {
                for pool in &pools {
                    check_matmul(pool, k, dtype, rows, cols, n, &mut rng);
                }
            }
        }
    }
}

/// Big enough that the pool really splits the rows (small products run on one thread).
#[test]
fn matmul_splits_large_products_over_threads() {
    let mut rng = Rng::new(11);
    let pool = Pool::new(3);
    let k = Kernels::active();
    for dtype in [DType::Q4_1, DType::Q4_K, DType::Q6_K, DType::F16] {
        check_matmul(&pool, k, dtype, 300, 512, 1, &mut rng);
        check_matmul(&pool, k, dtype, 257, 512, 9, &mut rng);
    }
}

#[test]
fn matmul_rejects_bad_shapes() {
    let m = match Matrix::new(DType::F32, 2, 3, Bytes::from_vec(vec![0; 24])) {
        Ok(m) => m,
        Err(e) => panic!("{e}"),
    };
    let mut y = vec![0f32; 2];
    assert!(m.matmul(&[0.0; 4], 1, &mut y).is_err());
    assert!(m.matmul(&[0.0; 3], 1, &mut [0f32; 3]).is_err());
    assert!(m.matmul(&[0.0; 3], usize::MAX, &mut y).is_err());
    assert!(m.matmul(&[], 0, &mut []).is_ok());
    assert!(m.matmul(&[1.0; 3], 1, &mut y).is_ok());
}

#[test]
fn default_matmul_uses_global_pool() {
    let mut rng = Rng::new(12);
    let data = random_weights(&mut rng, DType::Q8_0, 64 * 128, false);
    let m = match Matrix::new(DType::Q8_0, 64, 128, Bytes::from_vec(data)) {
        Ok(m) => m,
        Err(e) => panic!("{e}"),
    };
    let x: Vec<f32> = (0..2 * 128).map(|_| rng.normal(1.0)).collect();
    let (mut a, mut b) = (vec![0f32; 128], vec![0f32; 128]);
    assert!(m.matmul(&x, 2, &mut a).is_ok());
    assert!(m
        .matmul_using(&Pool::new(1), Kernels::active(), &x, 2, &mut b)
        .is_ok());
    // Same kernels, same per-row arithmetic: the split over threads changes nothing.
    assert_eq!(a, b);
}

#[test]
fn pool_runs_every_task_once() {
    for threads in [1, 2, 4] {
        let pool = Pool::new(threads);
        for tasks in [0, 1, 2, 3, 17, 100] {
            let hits: Vec<AtomicUsize> = (0..tasks).map(|_| AtomicUsize::new(0)).collect();
            for _ in 0..50 {
                pool.run(tasks, &|t| {
                    hits[t].fetch_add(1, Ordering::Relaxed);
                });
            }
            assert!(
                hits.iter().all(|h| h.load(Ordering::Relaxed) == 50),
                "threads={threads} tasks={tasks}"
            );
        }
    }
}

/// `for_rows` hands every row out exactly once, in whole rows, with its true index, on
/// one thread for small data and split for large.
#[test]
fn for_rows_covers_every_row_once() {
    for threads in [1, 2, 3] {
        let pool = Pool::new(threads);
        for (rows, row_len) in [(0, 7), (1, 7), (5, 3), (9000, 7), (513, 640)] {
            let mut data = vec![0f32; rows * row_len];
            mote_tensor::parallel::for_rows(&pool, &mut data, row_len, &|first, chunk| {
                assert_eq!(chunk.len() % row_len, 0);
                for (j, row) in chunk.chunks_exact_mut(row_len).enumerate() {
                    row.iter_mut().for_each(|v| *v += (first + j) as f32 + 1.0);
                }
            });
            for (r, row) in data.chunks_exact(row_len).enumerate() {
                assert!(
                    row.iter().all(|&v| v == r as f32 + 1.0),
                    "threads={threads} rows={rows} row {r}"
                );
            }
        }
    }
}

#[test]
fn pool_handles_nested_and_concurrent_jobs() {
    let pool = Pool::new(3);
    let total = AtomicUsize::new(0);
    // Nested: the inner job finds the pool busy and runs inline.
    pool.run(4, &|_| {
        pool.run(3, &|_| {
            total.fetch_add(1, Ordering::Relaxed);
        });
    });
    assert_eq!(total.load(Ordering::Relaxed), 12);
    // Concurrent callers: each job completes, whoever gets the workers.
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                for _ in 0..200 {
                    pool.run(5, &|_| {
                        total.fetch_add(1, Ordering::Relaxed);
                    });
                }
            });
        }
    });
    assert_eq!(total.load(Ordering::Relaxed), 12 + 4 * 200 * 5);
}

#[test]
fn pool_rethrows_task_panics() {
    let pool = Pool::new(2);
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        pool.run(8, &|t| {
            if t == 5 {
                panic!("task 5 fails");
            }
        })
    }));
    assert!(r.is_err());
    // The pool still works afterwards.
    let n = AtomicUsize::new(0);
    pool.run(8, &|_| {
        n.fetch_add(1, Ordering::Relaxed);
    });
    assert_eq!(n.load(Ordering::Relaxed), 8);
}

/// Batch products of Q4_K and Q6_K weights (which take the unpacked tile kernels from
/// 16 activation rows on) have, output by output, the bits of the path's one-row kernel:
/// odd row counts (not a multiple of the tiles), several super-blocks, batches that
/// leave a remainder of activation rows, one and several threads. Below that size the
/// types with a decoding kernel (`Dot::rows8`) have the bits of its definition instead.
#[test]
fn k_quant_batches_equal_one_row_kernel_bit_for_bit() {
    let mut rng = Rng::new(13);
    let pools = [Pool::new(1), Pool::new(3)];
    for k in tables() {
        for dtype in [DType::Q4_K, DType::Q6_K] {
            let Plan::Q8K(dot) = k.plan(dtype) else {
                panic!("{dtype}: not a Q8K plan");
            };
            for (rows, cols, n) in [(45, 768, 16), (70, 512, 17), (19, 1024, 33), (33, 256, 4)] {
                let data = random_weights(&mut rng, dtype, rows * cols, false);
                let m = match Matrix::new(dtype, rows, cols, Bytes::from_vec(data.clone())) {
                    Ok(m) => m,
                    Err(e) => panic!("{dtype} {rows}x{cols}: {e}"),
                };
                let x: Vec<f32> = (0..n * cols).map(|_| rng.normal(1.0)).collect();
                let mut acts = vec![BlockQ8K::default(); n * cols / QK_K];
                for (xb, ab) in x.chunks_exact(cols).zip(acts.chunks_exact_mut(cols / QK_K)) {
                    quantize_q8k(xb, ab);
                }
                let rb = m.row_bytes();
                for pool in &pools {
                    let mut y = vec![f32::NAN; n * rows];
                    if let Err(e) = m.matmul_using(pool, k, &x, n, &mut y) {
                        panic!("{dtype}: {e}");
                    }
                    for b in 0..n {
                        let a = &acts[b * cols / QK_K..(b + 1) * cols / QK_K];
                        for r in 0..rows {
                            let w = &data[r * rb..(r + 1) * rb];
                            let want = match dot.rows8 {
                                Some(_) if n < GEMM_MIN_INPUTS => {
                                    scalar::rows8_row_k(dtype, w, a).expect("a rows8 type")
                                }
                                _ => (dot.one)(w, a),
                            };
                            assert_eq!(
                                y[b * rows + r].to_bits(),
                                want.to_bits(),
                                "{} {dtype} {rows}x{cols} n={n} threads={} y[{b}][{r}]",
                                k.path,
                                pool.threads()
                            );
                        }
                    }
                }
            }
        }
    }
}
