//! Memory bandwidth and the token-generation bound it implies.
//!
//! `cargo run --release -p mote-model --example membw -- [MODEL.gguf ...]`
//!
//! Reads a 512 MiB array (well past any cache) with 1 and 2 threads, and prints the best
//! of several passes in GB/s. For each model it prints the bytes one generated token
//! must read (every weight matrix once, the unembedding included, plus one embedding
//! row) and the tokens/s that bandwidth would allow if nothing else took time.

use std::path::Path;
use std::time::Instant;

use mote_model::{LoadOptions, Model};

/// Sums `data` with independent accumulators so the loop is bound by loads, not adds.
fn sum(data: &[u64]) -> u64 {
    let mut acc = [0u64; 8];
    for c in data.chunks_exact(8) {
        for i in 0..8 {
            acc[i] = acc[i].wrapping_add(c[i]);
        }
    }
    acc.iter().fold(0, |a, &b| a.wrapping_add(b))
}

/// Best read bandwidth in bytes/s over `passes` passes with `threads` threads.
fn bandwidth(data: &[u64], threads: usize, passes: usize) -> f64 {
    let mut best = 0f64;
    let part = data.len().div_ceil(threads);
    for _ in 0..passes {
        let t = Instant::now();
        let total = std::thread::scope(|s| {
            let handles: Vec<_> = data.chunks(part).map(|c| s.spawn(move || sum(c))).collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or(0))
                .fold(0u64, u64::wrapping_add)
        });
        std::hint::black_box(total);
        best = best.max(std::mem::size_of_val(data) as f64 / t.elapsed().as_secs_f64());
    }
    best
}

fn main() {
    let n = 512 << 20 >> 3;
    let data: Vec<u64> = (0..n as u64).collect();
    let mut bws = Vec::new();
    for threads in [1, 2] {
        let bw = bandwidth(&data, threads, 8);
        println!("read bandwidth, {threads} thread(s): {:.1} GB/s", bw / 1e9);
        bws.push(bw);
    }
    for path in std::env::args().skip(1) {
        let model = match Model::load(Path::new(&path), &LoadOptions::default()) {
            Ok(m) => m,
            Err(e) => {
                eprintln!("{path}: {e}");
                continue;
            }
        };
        let file = model.gguf();
        let mut bytes: u64 = 0;
        let mut embd_row = 0u64;
        let mut has_output = false;
        for t in file.tensors() {
            let size = file.tensor_bytes(t).len() as u64;
            if t.name == "token_embd.weight" {
                embd_row = size / model.config().vocab_size as u64;
                bytes += size; // read whole only when it doubles as the unembedding
            } else {
                has_output |= t.name == "output.weight";
                bytes += size;
            }
        }
        if has_output {
            // Separate unembedding: the embedding table is read one row per token.
            let embd: u64 = file
                .tensors()
                .iter()
                .filter(|t| t.name == "token_embd.weight")
                .map(|t| file.tensor_bytes(t).len() as u64)
                .sum();
            bytes = bytes - embd + embd_row;
        } else {
            bytes += embd_row;
        }
        print!("{path}: {:.1} MB read per token", bytes as f64 / 1e6);
        for (i, bw) in bws.iter().enumerate() {
            print!(
                ", {} thread(s): at most {:.0} tokens/s",
                i + 1,
                bw / bytes as f64
            );
        }
        println!();
    }
}
