//! mote's side of the export checks (scripts/test.d/export.sh): runs a GGUF model on a
//! prompt and writes what the other runtime must reproduce.
//!
//! `mote_logits MODEL TEXT N_PROMPT N_DECODE OUT` tokenizes TEXT (with BOS if the model
//! adds one), keeps its first N_PROMPT tokens, runs them teacher-forced, then decodes
//! N_DECODE greedy tokens one at a time through an F32 KV cache. Writes `OUT.json`
//! (`prompt`, `generated`: the N_DECODE fed tokens plus the next argmax, `vocab`) and
//! `OUT.bin`: little-endian f32 logits, one row per prompt position then one per decode
//! step.

use std::io::Write;
use std::path::Path;

use mote_model::{KvPrecision, LoadOptions, Model};
use mote_tokenizer::Tokenizer;

fn argmax(row: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &v) in row.iter().enumerate() {
        if v > row[best] {
            best = i;
        }
    }
    best as u32
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 6 {
        return Err("usage: mote_logits MODEL TEXT N_PROMPT N_DECODE OUT".into());
    }
    let model = Model::load(Path::new(&args[1]), &LoadOptions::default())?;
    let tok = Tokenizer::from_gguf(model.gguf())?;
    let n_prompt: usize = args[3].parse()?;
    let n_decode: usize = args[4].parse()?;
    let mut prompt = tok.encode(&args[2], true, false);
    prompt.truncate(n_prompt);
    let vocab = model.config().vocab_size;
    let mut cache = model.new_cache_with(prompt.len() + n_decode + 1, KvPrecision::F32);
    let mut rows = model.forward(&prompt, &mut cache, true)?;
    let mut generated = vec![argmax(&rows[rows.len() - vocab..])];
    for _ in 0..n_decode {
        let last = generated[generated.len() - 1];
        let row = model.forward(&[last], &mut cache, false)?;
        generated.push(argmax(&row));
        rows.extend_from_slice(&row);
    }
    let out = &args[5];
    let meta = serde_json::json!({ "prompt": prompt, "generated": generated, "vocab": vocab });
    std::fs::write(format!("{out}.json"), meta.to_string())?;
    let mut f = std::io::BufWriter::new(std::fs::File::create(format!("{out}.bin"))?);
    for v in rows {
        f.write_all(&v.to_le_bytes())?;
    }
    f.flush()?;
    Ok(())
}
