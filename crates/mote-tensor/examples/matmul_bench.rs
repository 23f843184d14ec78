//! Matrix-product throughput per weight type, batch size, thread count and kernel path,
//! plus the thread pool's per-job overhead.
//!
//! `cargo run --release --example matmul_bench -p mote-tensor [-- quick]`
//! (`BENCH_PATHS=avx512,scalar` picks kernel paths, `BENCH_N=1,64,512` batch sizes,
//! `BENCH_SHAPES=49152x576` weight shapes)
//!
//! Each figure is the median of several timed samples (the machine may be shared).
//! GFLOP/s counts 2·rows·cols·n; GB/s counts the weight bytes, streamed once per call.

use std::time::{Duration, Instant};

use mote_tensor::kernels::{KernelPath, Kernels};
use mote_tensor::parallel::Pool;
use mote_tensor::{Bytes, DType, Matrix};

/// Weight bytes: random, with every f16 scale field set to a small sane value (speed
/// does not depend on the values, NaN scales would only make the output odd).
fn weights(dtype: DType, rows: usize, cols: usize, seed: &mut u64) -> Vec<u8> {
    let mut next = || {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        *seed
    };
    let (len, size) = dtype.block();
    let mut bytes: Vec<u8> = (0..rows * cols / len * size)
        .map(|_| next() as u8)
        .collect();
    let scales: &[usize] = match dtype {
        DType::Q4_0 | DType::Q5_0 | DType::Q8_0 => &[0],
        DType::Q4_1 | DType::Q5_1 | DType::Q4_K | DType::Q5_K => &[0, 2],
        DType::Q2_K => &[80, 82],
        DType::Q3_K => &[108],
        DType::Q6_K => &[208],
        _ => &[],
    };
    let small = half::f16::from_f32(0.01).to_le_bytes();
    if dtype.is_quantized() {
        for block in bytes.chunks_exact_mut(size) {
            for &at in scales {
                block[at..at + 2].copy_from_slice(&small);
            }
        }
    } else if dtype == DType::F32 {
        for v in bytes.chunks_exact_mut(4) {
            v.copy_from_slice(&0.01f32.to_le_bytes());
        }
    } else {
        for v in bytes.chunks_exact_mut(2) {
            v.copy_from_slice(&small);
        }
    }
    bytes
}

/// Nanoseconds the calling thread has run on a CPU (Linux schedstat), if readable. On a
/// shared machine this, unlike wall time, does not count time spent waiting for a core.
fn thread_cpu_ns() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    s.split_whitespace().next()?.parse().ok()
}

/// Median (wall, calling-thread CPU) seconds per call of `f` over `samples` samples of
/// at least `min_time` each.
fn time(samples: usize, min_time: Duration, mut f: impl FnMut()) -> (f64, f64) {
    f();
    let mut wall = Vec::with_capacity(samples);
    let mut cpu = Vec::with_capacity(samples);
    for _ in 0..samples {
        let start = Instant::now();
        let cpu0 = thread_cpu_ns();
        let mut calls = 0u32;
        while start.elapsed() < min_time || calls == 0 {
            f();
            calls += 1;
        }
        wall.push(start.elapsed().as_secs_f64() / calls as f64);
        if let (Some(a), Some(b)) = (cpu0, thread_cpu_ns()) {
            cpu.push((b - a) as f64 * 1e-9 / calls as f64);
        }
    }
    wall.sort_by(f64::total_cmp);
    cpu.sort_by(f64::total_cmp);
    (
        wall[samples / 2],
        cpu.get(cpu.len() / 2).copied().unwrap_or(f64::NAN),
    )
}

fn main() {
    let quick = std::env::args().any(|a| a == "quick");
    let samples = if quick { 3 } else { 7 };
    let min_time = Duration::from_millis(if quick { 30 } else { 60 });
    let max_threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(2);
    let pools: Vec<Pool> = (1..=max_threads).map(Pool::new).collect();

    println!("# pool overhead (empty job, tasks = threads)");
    for pool in &pools {
        let (t, _) = time(samples, min_time, || pool.run(pool.threads(), &|_| {}));
        println!("threads={} per-job {:.2} µs", pool.threads(), t * 1e6);
    }

    let paths: Vec<&Kernels> = match std::env::var("BENCH_PATHS") {
        Ok(list) => list
            .split(',')
            .filter_map(KernelPath::from_name)
            .filter_map(Kernels::for_path)
            .collect(),
        Err(_) => Kernels::available(),
    };
    // BENCH_N=1,64,512: the batch sizes (activation rows) to time.
    let batches: Vec<usize> = std::env::var("BENCH_N")
        .ok()
        .map(|v| v.split(',').filter_map(|n| n.trim().parse().ok()).collect())
        .filter(|v: &Vec<usize>| !v.is_empty())
        .unwrap_or_else(|| vec![1, 64]);
    let types = [
        DType::Q4_1,
        DType::Q8_0,
        DType::Q4_K,
        DType::Q5_0,
        DType::Q6_K,
        DType::F16,
    ];
    println!(
        "\n# matmul: path type rows x cols n threads | wall: µs/call GFLOP/s GB/s(weights) \
         | calling thread on-CPU: µs/call GFLOP/s"
    );
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    // BENCH_SHAPES=49152x576,1536x576: rows x cols to time (bigger than the caches shows
    // the memory-bound case).
    let shapes: Vec<(usize, usize)> = std::env::var("BENCH_SHAPES")
        .ok()
        .map(|v| {
            v.split(',')
                .filter_map(|s| s.split_once('x'))
                .filter_map(|(r, c)| Some((r.trim().parse().ok()?, c.trim().parse().ok()?)))
                .collect()
        })
        .filter(|v: &Vec<(usize, usize)>| !v.is_empty())
        .unwrap_or_else(|| vec![(576, 1536), (2048, 640), (640, 2048)]);
    for (rows, cols) in shapes {
        for dtype in types {
            // 640 columns are not whole 256-value k-quant blocks; the transposed shape
            // stands in for them.
            if cols % dtype.block_len() != 0
                || ((rows, cols) == (640, 2048) && dtype.block_len() != 256)
            {
                continue;
            }
            let data = weights(dtype, rows, cols, &mut seed);
            let bytes = data.len();
            let Ok(m) = Matrix::new(dtype, rows, cols, Bytes::from_vec(data)) else {
                eprintln!("{dtype} {rows}x{cols}: bad size");
                continue;
            };
            for &n in &batches {
                let x: Vec<f32> = (0..n * cols)
                    .map(|i| ((i % 17) as f32 - 8.0) * 0.1)
                    .collect();
                let mut y = vec![0f32; n * rows];
                for k in &paths {
                    for pool in &pools {
                        let (t, cpu) = time(samples, min_time, || {
                            if let Err(e) = m.matmul_using(pool, k, &x, n, &mut y) {
                                eprintln!("{e}");
                            }
                        });
                        let flops = 2.0 * (rows * cols * n) as f64;
                        println!(
                            "{:7} {:5} {rows:5} x {cols:5} n={n:3} t={} | {:10.1} {:8.2} {:7.2} | {:10.1} {:8.2}",
                            k.path.name(),
                            dtype.name(),
                            pool.threads(),
                            t * 1e6,
                            flops / t / 1e9,
                            bytes as f64 / t / 1e9,
                            cpu * 1e6,
                            flops / cpu / 1e9,
                        );
                    }
                }
            }
        }
    }
}
