//! An optional hook that sees the input rows of every weight product, keyed by the
//! GGUF tensor name. Calibration tools (importance matrices, GPTQ Hessians) use it to
//! collect activation statistics without a second copy of the forward pass.

/// Receives the activations that multiply weight matrices during a forward pass.
pub trait MatmulObserver: Send + Sync {
    /// `x` holds `n` rows of `cols` values, the input of every tensor in `weights`
    /// (Q/K/V share one input, as do gate/up), e.g. `["blk.0.attn_q.weight", ...]`.
    fn observe(&self, weights: &[&str], x: &[f32], n: usize, cols: usize);
}

/// Calls `obs` (when set) for the layer-`il` tensors `parts` (`attn_q`, ...).
pub(crate) fn notify_layer(
    obs: Option<&dyn MatmulObserver>,
    il: usize,
    parts: &[&str],
    x: &[f32],
    n: usize,
) {
    if let Some(obs) = obs {
        let names: Vec<String> = parts
            .iter()
            .map(|p| format!("blk.{il}.{p}.weight"))
            .collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        obs.observe(&refs, x, n, x.len() / n.max(1));
    }
}
