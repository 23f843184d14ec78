//! Times tokenizer construction and encoding: `cargo run --release --example tok_bench -- MODEL.gguf [TEXT]`.

use std::time::Instant;

/// CPU time this thread has used (Linux), so timings mean something on a loaded machine.
fn cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let Some(model) = args.get(1) else {
        eprintln!("usage: tok_bench MODEL.gguf [TEXT_FILE]");
        return Ok(());
    };
    let t = Instant::now();
    let file = mote_file::GgufFile::open(model)?;
    println!("open: {:?}", t.elapsed());
    let (t, c) = (Instant::now(), cpu_ns());
    let tok = mote_tokenizer::Tokenizer::from_gguf(&file)?;
    println!(
        "from_gguf: {:?} wall, {:.1} ms cpu ({} tokens)",
        t.elapsed(),
        (cpu_ns() - c) as f64 / 1e6,
        tok.vocab_size()
    );
    if let Some(text_file) = args.get(2) {
        let text = std::fs::read_to_string(text_file)?;
        let words: Vec<&str> = text.split_whitespace().take(10_000).collect();
        let end = words
            .last()
            .map(|w| w.as_ptr() as usize - text.as_ptr() as usize + w.len())
            .unwrap_or(0);
        let chunk = &text[..end];
        for round in 0..5 {
            let (t, c) = (Instant::now(), cpu_ns());
            let ids = tok.encode(chunk, true, true);
            println!(
                "encode 10k words ({} bytes) round {round}: {:?} wall, {:.2} ms cpu -> {} ids",
                chunk.len(),
                t.elapsed(),
                (cpu_ns() - c) as f64 / 1e6,
                ids.len()
            );
        }
        let ids = tok.encode(chunk, false, false);
        let t = Instant::now();
        let back = tok.decode(&ids, false);
        println!("decode: {:?} ({} bytes)", t.elapsed(), back.len());
    }
    Ok(())
}
