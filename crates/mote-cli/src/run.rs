//! `mote run`: raw completion of a prompt.

use std::io::{IsTerminal, Read, Write};
use std::ops::ControlFlow;
use std::path::Path;

use anyhow::{bail, Context, Result};
use mote_session::{
    Completion, GenerateOptions, Loaded, ModelRunner, Sampler, SamplerConfig, Session,
};
use mote_tokenizer::Tokenizer;
use serde_json::json;

use crate::args::{GenArgs, RunArgs};
use crate::cache_files::PromptCache;
use crate::model_path;

pub type RealSession = Session<ModelRunner, Tokenizer>;

/// Load the model and tokenizer with the context size the flags ask for.
pub fn load(path: &Path, gen: &GenArgs) -> Result<Loaded> {
    if gen.threads > 0 {
        mote_tensor::parallel::set_threads(gen.threads);
    }
    let opts = mote_model::LoadOptions {
        threads: gen.threads,
        cache_type_k: gen.cache_type_k,
        cache_type_v: gen.cache_type_v,
        quantize: gen.quantize,
    };
    let loaded = mote_session::load(path, &opts, gen.ctx_size)
        .with_context(|| format!("cannot load {}", path.display()))?;
    crate::args::report_load_quantization(loaded.session.model().model());
    tracing::info!(
        "loaded {} in {:.0} ms, context {} tokens",
        path.display(),
        loaded.load_time.as_secs_f64() * 1e3,
        loaded.session.context_size()
    );
    Ok(loaded)
}

/// The seed the user gave, or one from the clock (reported, so a run can be repeated).
pub fn seed(gen: &GenArgs) -> u64 {
    gen.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0)
    })
}

pub fn sampler(gen: &GenArgs, seed: u64, n_ctx: usize) -> Result<Sampler> {
    let mut config = SamplerConfig {
        temperature: gen.temp,
        top_k: gen.top_k,
        top_p: gen.top_p,
        min_p: gen.min_p,
        repeat_penalty: gen.repeat_penalty,
        repeat_last_n: gen.repeat_last_n,
        presence_penalty: gen.presence_penalty,
        frequency_penalty: gen.frequency_penalty,
        seed,
        ..Default::default()
    };
    gen.dry.apply(&mut config);
    Ok(Sampler::new(config, n_ctx)?)
}

pub fn generate_options(gen: &GenArgs, load_time: std::time::Duration) -> Result<GenerateOptions> {
    let max_tokens = match gen.n_predict {
        n if n < -1 => bail!("--n-predict must be -1 (no limit) or at least 0, got {n}"),
        -1 => None,
        n => Some(n as usize),
    };
    gen.context.validate().map_err(anyhow::Error::msg)?;
    Ok(GenerateOptions {
        max_tokens,
        ignore_eos: gen.ignore_eos,
        stop: gen.reverse_prompt.clone(),
        load_time,
        ..Default::default()
    })
}

fn read_prompt(args: &RunArgs) -> Result<String> {
    if let Some(p) = &args.prompt {
        return Ok(p.clone());
    }
    if let Some(f) = &args.file {
        return std::fs::read_to_string(f)
            .with_context(|| format!("cannot read prompt file {}", f.display()));
    }
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        bail!("no prompt: pass -p TEXT, -f FILE, or pipe the prompt into stdin");
    }
    let mut s = String::new();
    stdin
        .lock()
        .read_to_string(&mut s)
        .context("cannot read the prompt from stdin")?;
    Ok(s)
}

pub fn run(args: RunArgs) -> Result<()> {
    let path = model_path::resolve(&args.model)?;
    let prompt = read_prompt(&args)?;
    let Loaded {
        mut session,
        load_time,
    } = load(&path, &args.gen)?;
    let seed = seed(&args.gen);
    let mut sampler = sampler(&args.gen, seed, session.context_size())?;
    let mut opts = generate_options(&args.gen, load_time)?;
    // Restoring the prompt cache counts into the time to the first token.
    let mut prompt_cache = PromptCache::open(&args.gen, &mut session);
    let cache_time = prompt_cache.as_ref().map(|pc| pc.restore_time);
    opts.load_time += cache_time.unwrap_or_default();

    let mut ids = session.tokenize_prompt(&prompt);
    if ids.is_empty() {
        // An empty prompt still needs a token to start from.
        match session.tokenizer().bos_id() {
            Some(bos) => ids.push(bos),
            None => bail!("the prompt is empty and the model has no BOS token to start from"),
        }
    }

    tracing::debug!("prompt tokens: {ids:?}");
    // `--keep -1` keeps the whole prompt (llama-cli's meaning).
    let bos = session.tokenizer().bos_id();
    opts.shift = args.gen.context.policy(
        session.context_size(),
        ids.len(),
        bos.is_some() && ids.first() == bos.as_ref(),
    );
    let mut stdout = std::io::stdout().lock();
    let completion = if args.json {
        session.generate(
            &ids,
            &mut sampler,
            &opts,
            &mut |_| ControlFlow::Continue(()),
        )?
    } else {
        let c = session.generate(&ids, &mut sampler, &opts, &mut |text| {
            // A closed pipe (`mote run … | head`) just ends generation.
            match stdout
                .write_all(text.as_bytes())
                .and_then(|_| stdout.flush())
            {
                Ok(()) => ControlFlow::Continue(()),
                Err(_) => ControlFlow::Break(()),
            }
        })?;
        if !c.text.ends_with('\n') {
            let _ = writeln!(stdout);
        }
        c
    };
    if let Some(pc) = &mut prompt_cache {
        pc.update(&session, &ids)?;
    }
    if args.json {
        let obj = completion_json(&completion, &path, seed, (load_time, cache_time));
        writeln!(stdout, "{obj}").context("cannot write to stdout")?;
    } else {
        eprintln!("{}", summary(&completion));
    }
    Ok(())
}

/// One stderr line: counts, speeds and why generation ended.
pub fn summary(c: &Completion) -> String {
    let s = &c.stats;
    format!(
        "[{} prompt tokens ({} reused), {} generated; prefill {:.1} tok/s, decode {:.1} tok/s; finish: {}{}]",
        s.prompt_tokens,
        s.reused_tokens,
        s.generated_tokens,
        s.prefill_tokens_per_s(),
        s.decode_tokens_per_s(),
        c.finish_reason,
        match s.n_discarded {
            0 => String::new(),
            n => format!("; truncated: {n} tokens discarded in {} shifts", s.shifts),
        }
    )
}

fn ms(d: std::time::Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

fn completion_json(
    c: &Completion,
    path: &Path,
    seed: u64,
    (load_time, cache_time): (std::time::Duration, Option<std::time::Duration>),
) -> serde_json::Value {
    let s = &c.stats;
    json!({
        "model": path.display().to_string(),
        "text": c.text,
        "finish_reason": c.finish_reason.as_str(),
        "tokens": c.tokens,
        "prompt_tokens": s.prompt_tokens,
        "reused_tokens": s.reused_tokens,
        "generated_tokens": s.generated_tokens,
        "truncated": s.n_discarded > 0,
        "n_discarded": s.n_discarded,
        "seed": seed,
        "timings": {
            "load_ms": ms(load_time),
            "prompt_cache_ms": cache_time.map(ms),
            "prefill_ms": ms(s.prefill_time),
            "prefill_tokens_per_s": s.prefill_tokens_per_s(),
            "decode_ms": ms(s.decode_time),
            "decode_tokens_per_s": s.decode_tokens_per_s(),
            "time_to_first_token_ms": s.time_to_first_token.map(ms),
            "total_ms": ms(s.total_time),
        },
    })
}
