//! Which type each tensor gets.
//!
//! The mixed presets follow the rules llama.cpp applies (facts from its
//! `llama_tensor_get_type`, re-expressed here): the output projection (or the token
//! embedding when the two are tied) goes to Q6_K; `attn_v` and `ffn_down` go up a step
//! in the layers where errors hurt most; 1-D tensors and norms are never quantized;
//! rows that do not split into whole blocks fall back to a type that fits. Tensors are
//! visited in llama.cpp's order (see [`llama_order`]) because some rules count
//! `attn_v` tensors as they go.

use std::cmp::Ordering;

use mote_tensor::DType;
use regex::Regex;

use super::preset::Preset;

/// Broad roles, by name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Category {
    Output,
    TokenEmbd,
    AttnV,
    AttnK,
    AttnQ,
    AttnOutput,
    AttnQkv,
    FfnUp,
    FfnGate,
    FfnDown,
    Other,
}

fn category(name: &str) -> Category {
    if name == "output.weight" {
        Category::Output
    } else if name == "token_embd.weight" || name == "per_layer_token_embd.weight" {
        Category::TokenEmbd
    } else if name.contains("attn_qkv.weight") {
        Category::AttnQkv
    } else if name.contains("attn_kv_b.weight") || name.contains("attn_v.weight") {
        Category::AttnV
    } else if name.contains("attn_k.weight") {
        Category::AttnK
    } else if name.contains("attn_q.weight") {
        Category::AttnQ
    } else if name.contains("attn_output.weight") {
        Category::AttnOutput
    } else if name.contains("ffn_up") {
        Category::FfnUp
    } else if name.contains("ffn_gate") {
        Category::FfnGate
    } else if name.contains("ffn_down") {
        Category::FfnDown
    } else {
        Category::Other
    }
}

/// Dimensions that count, ignoring trailing ones (ggml's `ggml_n_dims`).
fn n_dims(dims: &[u64]) -> usize {
    let mut n = dims.len();
    while n > 1 && dims[n - 1] == 1 {
        n -= 1;
    }
    n.max(1)
}

/// Whether a tensor is a weight matrix worth quantizing at all.
pub fn allows_quantization(name: &str, dims: &[u64]) -> bool {
    const NEVER: [&str; 11] = [
        "_norm.weight",
        "ffn_gate_inp.weight",
        "altup",
        "laurel",
        "per_layer_model_proj",
        "ssm_conv1d",
        "shortconv.conv.weight",
        "attn_rel_b.weight",
        "time_mix_",
        ".position_embd",
        ".patch_embd",
    ];
    n_dims(dims) >= 2
        && name.ends_with("weight")
        && name != "position_embd.weight"
        && name != "token_types.weight"
        && !NEVER.iter().any(|s| name.contains(s))
}

fn layer_of(name: &str) -> Option<i64> {
    let rest = name.strip_prefix("blk.")?;
    let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
    digits.parse().ok()
}

/// llama.cpp's tensor order: non-layer tensors first, then by layer number, then by
/// name. Output files use it too, so they line up with llama-quantize's.
pub fn llama_order(a: &str, b: &str) -> Ordering {
    let la = layer_of(a).unwrap_or(-1);
    let lb = layer_of(b).unwrap_or(-1);
    la.cmp(&lb).then_with(|| a.cmp(b))
}

/// The layers where more bits pay off: the first and last eighth, and every third
/// one in between.
fn use_more_bits(i: usize, n: usize) -> bool {
    let (i, n) = (i as i64, n as i64);
    i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2
}

/// Everything the rules need to know about the model and the request.
pub struct Policy {
    pub preset: Preset,
    /// Every quantizable tensor gets the preset's base type (no mixing).
    pub pure: bool,
    pub overrides: Vec<(Regex, DType)>,
    pub has_imatrix: bool,
    /// Transformer blocks (`{arch}.block_count`).
    pub n_layer: usize,
    /// Query heads per key/value head.
    pub n_gqa: usize,
    /// No separate `output.weight`: the token embedding doubles as the output.
    pub tied_embeddings: bool,
    /// attn_v tensors in the model.
    pub n_attn_v: usize,
    i_attn_v: usize,
    i_ffn_down: usize,
}

/// Why a tensor got its type, for the report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    Kept,
    Preset,
    Override,
    Fallback,
}

impl Policy {
    pub fn new(preset: Preset, pure: bool, overrides: Vec<(Regex, DType)>) -> Policy {
        Policy {
            preset,
            pure,
            overrides,
            has_imatrix: false,
            n_layer: 0,
            n_gqa: 1,
            tied_embeddings: true,
            n_attn_v: 0,
            i_attn_v: 0,
            i_ffn_down: 0,
        }
    }

    /// Counts what the rules count before the first call to [`Policy::choose`].
    pub fn survey<'a>(&mut self, names: impl Iterator<Item = &'a str>) {
        for name in names {
            match category(name) {
                Category::Output => self.tied_embeddings = false,
                Category::AttnV | Category::AttnQkv => self.n_attn_v += 1,
                _ => {}
            }
        }
    }

    /// The type for one tensor; call in [`llama_order`].
    pub fn choose(&mut self, name: &str, dims: &[u64], current: DType) -> (DType, Reason) {
        if !allows_quantization(name, dims) {
            return (current, Reason::Kept);
        }
        let mut reason = Reason::Preset;
        let mut ty = self.preset.base_type();
        if let Some((_, t)) = self.overrides.iter().find(|(re, _)| re.is_match(name)) {
            ty = *t;
            reason = Reason::Override;
        } else if !self.pure && ty.is_quantized() {
            ty = self.mixed(name, dims, ty);
        }
        if !ty.is_quantized() {
            return (ty, reason);
        }
        let fitted = fallback(dims, ty);
        if fitted != ty {
            reason = Reason::Fallback;
        }
        (fitted, reason)
    }

    fn mixed(&mut self, name: &str, dims: &[u64], base: DType) -> DType {
        use Preset as P;
        let p = self.preset;
        let cols = dims.first().copied().unwrap_or(0);
        let cat = category(name);
        if cat == Category::Output || (self.tied_embeddings && cat == Category::TokenEmbd) {
            return if cols % base.block_len() as u64 != 0 {
                DType::Q8_0
            } else if base != DType::Q8_0 {
                DType::Q6_K
            } else {
                base
            };
        }
        match cat {
            // attn_qkv follows attn_v's rules (llama.cpp's qkv-specific branch is never reached).
            Category::AttnV | Category::AttnQkv => {
                let i = self.i_attn_v;
                self.i_attn_v += 1;
                let n = self.n_attn_v;
                match p {
                    P::Q2K if self.n_gqa >= 4 => DType::Q4_K,
                    P::Q2K => DType::Q3_K,
                    P::Q3KM if i < 2 => DType::Q5_K,
                    P::Q3KM => DType::Q4_K,
                    P::Q3KL => DType::Q5_K,
                    P::Q4KM | P::Q5KM if use_more_bits(i, n) => DType::Q6_K,
                    P::Q4KS if i < 4 => DType::Q5_K,
                    _ => base,
                }
            }
            Category::FfnDown => {
                // Dense models: the k-th ffn_down is layer k.
                let i = self.i_ffn_down;
                self.i_ffn_down += 1;
                let n = self.n_layer.max(1);
                match p {
                    P::Q2K => DType::Q3_K,
                    P::Q3KM if i < n / 16 => DType::Q5_K,
                    P::Q3KM => DType::Q4_K,
                    P::Q3KL => DType::Q5_K,
                    P::Q4KM | P::Q5KM if use_more_bits(i, n) => DType::Q6_K,
                    P::Q4KS if i < n / 8 => DType::Q5_K,
                    P::Q4_0 if self.has_imatrix && i < n / 8 => DType::Q4_1,
                    P::Q5_0 if self.has_imatrix && i < n / 8 => DType::Q5_1,
                    _ => base,
                }
            }
            Category::AttnOutput => match p {
                P::Q2K => DType::Q3_K,
                P::Q3KM => DType::Q4_K,
                P::Q3KL => DType::Q5_K,
                _ => base,
            },
            _ => base,
        }
    }
}

/// A type whose blocks fit the row length, as llama.cpp falls back (see
/// [`mote_model::fit_to_row`]); `dims[0]` is the row length.
pub fn fallback(dims: &[u64], ty: DType) -> DType {
    match usize::try_from(dims.first().copied().unwrap_or(0)) {
        Ok(cols) => mote_model::fit_to_row(ty, cols),
        Err(_) => DType::F16,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(preset: Preset, names: &[(&str, Vec<u64>)], n_layer: usize) -> Vec<DType> {
        let mut p = Policy::new(preset, false, vec![]);
        p.n_layer = n_layer;
        p.survey(names.iter().map(|(n, _)| *n));
        names
            .iter()
            .map(|(n, d)| p.choose(n, d, DType::F16).0)
            .collect()
    }

    #[test]
    fn norms_and_vectors_are_kept() {
        assert!(!allows_quantization("blk.0.attn_norm.weight", &[576]));
        assert!(!allows_quantization("blk.0.attn_norm.weight", &[576, 1]));
        assert!(!allows_quantization("blk.0.attn_q.bias", &[576, 576]));
        assert!(allows_quantization("blk.0.attn_q.weight", &[576, 576]));
    }

    #[test]
    fn q4_k_m_mixes_like_llama_cpp() {
        // 8 layers: use_more_bits is true for layers 0, 3, 6, 7.
        let mut names = vec![("token_embd.weight", vec![512, 1000])];
        let layer_names: Vec<String> = (0..8)
            .flat_map(|i| {
                [
                    format!("blk.{i}.attn_v.weight"),
                    format!("blk.{i}.ffn_down.weight"),
                    format!("blk.{i}.attn_q.weight"),
                ]
            })
            .collect();
        for n in &layer_names {
            names.push((n.as_str(), vec![512, 512]));
        }
        let types = plan(Preset::Q4KM, &names, 8);
        assert_eq!(
            types[0],
            DType::Q6_K,
            "tied embedding takes the output's type"
        );
        let v: Vec<DType> = (0..8).map(|i| types[1 + 3 * i]).collect();
        let bumped: Vec<usize> = (0..8).filter(|&i| v[i] == DType::Q6_K).collect();
        assert_eq!(bumped, vec![0, 3, 6, 7]);
        assert!((0..8).all(|i| types[3 + 3 * i] == DType::Q4_K));
    }

    #[test]
    fn ragged_rows_fall_back() {
        assert_eq!(fallback(&[640, 10], DType::Q4_K), DType::Q5_0);
        assert_eq!(fallback(&[640, 10], DType::Q6_K), DType::Q8_0);
        assert_eq!(fallback(&[100, 10], DType::Q4_0), DType::F16);
        assert_eq!(fallback(&[512, 10], DType::Q4_K), DType::Q4_K);
        // Gemma-3-270m's tied 640-wide embedding goes to Q8_0 in Q4_K_M.
        let t = plan(
            Preset::Q4KM,
            &[("token_embd.weight", vec![640, 262144])],
            18,
        );
        assert_eq!(t[0], DType::Q8_0);
    }

    #[test]
    fn overrides_win_and_order_matches_llama() {
        let mut p = Policy::new(
            Preset::Q4_0,
            false,
            vec![(Regex::new("attn_q").unwrap(), DType::Q8_0)],
        );
        assert_eq!(
            p.choose("blk.0.attn_q.weight", &[64, 64], DType::F32),
            (DType::Q8_0, Reason::Override)
        );
        let mut names = vec!["blk.10.a", "blk.2.a", "output.weight", "blk.2.0"];
        names.sort_by(|a, b| llama_order(a, b));
        assert_eq!(
            names,
            vec!["output.weight", "blk.2.0", "blk.2.a", "blk.10.a"]
        );
    }
}
