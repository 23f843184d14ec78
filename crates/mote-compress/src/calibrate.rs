//! Runs a model over calibration text with a [`MatmulObserver`] installed, so that
//! imatrix and GPTQ see the activations every weight multiplies.

use std::sync::Arc;

use mote_model::{MatmulObserver, Model};
use mote_tokenizer::Tokenizer;

use crate::error::Result;
use crate::perplexity::{tokenize_text, window_count, PerplexityOptions};

/// How the calibration text is cut: windows of `ctx` tokens (the first replaced by BOS
/// when the model adds one, as llama-imatrix does), at most `chunks` of them.
#[derive(Clone, Copy, Debug)]
pub struct CalibrationOptions {
    pub ctx: usize,
    pub chunks: Option<usize>,
}

/// Feeds `text` through `model` window by window with `observer` installed; returns the
/// number of windows run. `progress(done, total)` is called after each window.
pub fn run_calibration(
    model: &Model,
    tokenizer: &Tokenizer,
    text: &str,
    opts: &CalibrationOptions,
    observer: Arc<dyn MatmulObserver>,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<usize> {
    let tokens = tokenize_text(tokenizer, text);
    let popts = PerplexityOptions {
        ctx: opts.ctx,
        chunks: opts.chunks,
    };
    let chunks = window_count(tokens.len(), &popts)?;
    let bos = tokenizer.adds_bos().then(|| tokenizer.bos_id()).flatten();
    model.set_observer(Some(observer));
    let result = (|| -> Result<()> {
        let mut window = vec![0u32; opts.ctx];
        for chunk in 0..chunks {
            window.copy_from_slice(&tokens[chunk * opts.ctx..(chunk + 1) * opts.ctx]);
            if let Some(b) = bos {
                window[0] = b;
            }
            let mut cache = model.new_cache(opts.ctx);
            model.forward(&window, &mut cache, false)?;
            progress(chunk + 1, chunks);
        }
        Ok(())
    })();
    // Always detach: the model may be used for evaluation afterwards.
    model.set_observer(None);
    result.map(|()| chunks)
}
