//! `config.json` → GGUF hyper-parameter metadata, with the keys and conventions of
//! llama.cpp's converter (facts from `convert_hf_to_gguf.py`, re-expressed here).

use mote_file::MetaValue;
use serde_json::Value;

use super::json::Obj;
use super::HfError;

/// The GGUF architectures a Hugging Face folder can become.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arch {
    Llama,
    Qwen2,
    Gemma3,
}

impl Arch {
    /// From `architectures[0]` (or `model_type` when that list is absent).
    fn from_hf(name: &str) -> Option<Arch> {
        Some(match name {
            "LlamaForCausalLM" | "MistralForCausalLM" | "llama" | "mistral" => Arch::Llama,
            "Qwen2ForCausalLM" | "qwen2" => Arch::Qwen2,
            "Gemma3ForCausalLM" | "gemma3_text" => Arch::Gemma3,
            _ => return None,
        })
    }

    /// `general.architecture`.
    pub fn name(self) -> &'static str {
        match self {
            Arch::Llama => "llama",
            Arch::Qwen2 => "qwen2",
            Arch::Gemma3 => "gemma3",
        }
    }

    /// GGUF llama rotates adjacent pairs, Hugging Face Llama rotates halves: the
    /// converter permutes the rows of Q and K so the two agree. Qwen2 is NEOX-style in
    /// both, so its rows are kept.
    pub fn permutes_qk(self) -> bool {
        self == Arch::Llama
    }

    /// The gate activation config.json must name.
    fn activation(self) -> &'static str {
        match self {
            Arch::Llama | Arch::Qwen2 => "silu",
            Arch::Gemma3 => "gelu_pytorch_tanh",
        }
    }
}

/// RoPE scaling from `rope_scaling` / `rope_parameters`.
#[derive(Clone, Debug, PartialEq)]
pub enum RopeScaling {
    None,
    Linear(f64),
    /// Llama 3.1: written as a `rope_freqs.weight` tensor of per-pair divisors.
    Llama3 {
        factor: f64,
        low_freq_factor: f64,
        high_freq_factor: f64,
        original_context: f64,
    },
}

/// The hyper-parameters the conversion needs.
#[derive(Clone, Debug)]
pub struct HfConfig {
    pub arch: Arch,
    pub vocab_size: usize,
    pub n_embd: usize,
    pub n_layer: usize,
    pub n_ff: usize,
    pub n_head: usize,
    pub n_head_kv: usize,
    /// Per-head width of Q/K/V.
    pub head_dim: usize,
    /// `head_dim` when config.json states it (then written as key/value length).
    explicit_head_dim: Option<usize>,
    pub n_ctx: usize,
    pub rms_eps: f64,
    pub rope_theta: f64,
    pub rope: RopeScaling,
    /// `tie_word_embeddings`, when stated.
    pub tie_embeddings: Option<bool>,
    /// Gemma 3: local attention window, RoPE base of local layers, which layers are local
    /// (when that differs from the default every-6th-global pattern), output softcap.
    sliding_window: Option<usize>,
    rope_theta_local: Option<f64>,
    local_layers: Option<Vec<bool>>,
    final_logit_softcap: Option<f64>,
}

const FILE: &str = "config.json";

fn bad(field: &str, problem: impl Into<String>) -> HfError {
    HfError::BadField {
        file: FILE,
        field: field.to_string(),
        problem: problem.into(),
    }
}

impl HfConfig {
    pub fn parse(value: &Value) -> Result<HfConfig, HfError> {
        let root = Obj::new(FILE, value)?;
        // Multimodal wrappers keep the decoder's numbers in `text_config`.
        let merged;
        let c = match root.obj("text_config")? {
            Some(text) => {
                let mut m = root.map.clone();
                m.extend(text.map.iter().map(|(k, v)| (k.clone(), v.clone())));
                merged = Value::Object(m);
                Obj::new(FILE, &merged)?
            }
            None => root,
        };
        let hf_arch = match c.get("architectures") {
            Some(Value::Array(a)) => match a.first() {
                Some(Value::String(s)) => s.clone(),
                _ => return Err(bad("architectures", "is not a list of names")),
            },
            Some(_) => return Err(bad("architectures", "is not a list of names")),
            None => c
                .str("model_type")?
                .ok_or_else(|| HfError::MissingField {
                    file: FILE,
                    field: "architectures".into(),
                })?
                .to_string(),
        };
        let arch = Arch::from_hf(&hf_arch).ok_or(HfError::UnknownArchitecture(hf_arch))?;

        let act = c.str("hidden_act")?.or(c.str("hidden_activation")?);
        if let Some(act) = act.filter(|a| *a != arch.activation()) {
            return Err(HfError::Unsupported(format!(
                "config.json: hidden_act {act:?} is not supported for {} ({} is)",
                arch.name(),
                arch.activation()
            )));
        }
        let gemma = arch == Arch::Gemma3;
        if gemma && c.get("attn_logit_softcapping").is_some() {
            return Err(HfError::Unsupported(
                "config.json: attn_logit_softcapping (Gemma 2) is not supported".into(),
            ));
        }

        let n_embd = c.req_usize("hidden_size")?;
        let n_layer = c.req_usize("num_hidden_layers")?;
        let n_ff = c.req_usize("intermediate_size")?;
        let n_head = match c.usize("num_attention_heads")? {
            Some(n) => n,
            None if gemma => 8,
            None => c.req_usize("num_attention_heads")?,
        };
        let n_head_kv = c
            .usize("num_key_value_heads")?
            .unwrap_or(if gemma { 4 } else { n_head });
        let vocab_size = c.req_usize("vocab_size")?;
        let n_ctx = c
            .usize_any(&[
                "max_position_embeddings",
                "n_ctx",
                "n_positions",
                "max_length",
                "max_sequence_length",
                "model_max_length",
            ])?
            .or(if gemma { Some(131_072) } else { None })
            .ok_or_else(|| HfError::MissingField {
                file: FILE,
                field: "max_position_embeddings".into(),
            })?;
        for (k, v) in [
            ("hidden_size", n_embd),
            ("num_hidden_layers", n_layer),
            ("intermediate_size", n_ff),
            ("num_attention_heads", n_head),
            ("num_key_value_heads", n_head_kv),
            ("vocab_size", vocab_size),
        ] {
            if v == 0 || u32::try_from(v).is_err() {
                return Err(bad(k, format!("= {v} is out of range")));
            }
        }
        if n_head % n_head_kv != 0 {
            return Err(bad(
                "num_key_value_heads",
                format!("= {n_head_kv} does not divide num_attention_heads = {n_head}"),
            ));
        }
        let explicit_head_dim = match c.usize("head_dim")? {
            Some(d) => Some(d),
            None if gemma => Some(256),
            None => None,
        };
        let head_dim = match explicit_head_dim {
            Some(d) => d,
            None if n_embd % n_head == 0 => n_embd / n_head,
            None => {
                return Err(bad(
                    "hidden_size",
                    format!("= {n_embd} is not a multiple of num_attention_heads = {n_head}"),
                ))
            }
        };
        if head_dim == 0 || head_dim % 2 != 0 || u32::try_from(head_dim).is_err() {
            return Err(bad(
                "head_dim",
                format!("= {head_dim} must be even and > 0"),
            ));
        }
        let rms_eps = c
            .f64("rms_norm_eps")?
            .or(if gemma { Some(1e-6) } else { None })
            .ok_or_else(|| HfError::MissingField {
                file: FILE,
                field: "rms_norm_eps".into(),
            })?;

        // transformers ≥ 5 nests rope settings in `rope_parameters`; earlier versions use
        // `rope_theta` and `rope_scaling`.
        // Gemma 3 (transformers 5) splits them into full_attention / sliding_attention.
        let mut params = match c.obj("rope_parameters")? {
            Some(p) => Some(p),
            None => c.obj("rope_scaling")?,
        };
        let local_params = params
            .map(|p| p.obj("sliding_attention"))
            .transpose()?
            .flatten();
        if let Some(full) = params
            .map(|p| p.obj("full_attention"))
            .transpose()?
            .flatten()
        {
            params = Some(full);
        }
        let default_theta = if gemma { 1_000_000.0 } else { 10_000.0 };
        let rope_theta = match params.map(|p| p.f64("rope_theta")).transpose()?.flatten() {
            Some(t) => t,
            None => c.f64("rope_theta")?.unwrap_or(default_theta),
        };
        let rope_theta_local = match local_params.map(|p| p.f64("rope_theta")).transpose()? {
            Some(Some(t)) => Some(t),
            _ => c.f64("rope_local_base_freq")?,
        };
        let (sliding_window, local_layers) = if gemma {
            local_attention(&c, n_layer)?
        } else {
            (None, None)
        };
        let rope = match params {
            None => RopeScaling::None,
            Some(p) => rope_scaling(p)?,
        };
        Ok(HfConfig {
            arch,
            vocab_size,
            n_embd,
            n_layer,
            n_ff,
            n_head,
            n_head_kv,
            head_dim,
            explicit_head_dim,
            n_ctx,
            rms_eps,
            rope_theta,
            rope,
            tie_embeddings: c.bool("tie_word_embeddings")?,
            sliding_window,
            rope_theta_local: rope_theta_local.filter(|_| gemma),
            local_layers,
            final_logit_softcap: c
                .f64("final_logit_softcapping")?
                .filter(|&f| gemma && f != 0.0),
        })
    }

    /// The `general.*` and `<arch>.*` keys, as llama.cpp's converter writes them.
    pub fn metadata(&self, name: &str) -> Vec<(String, MetaValue)> {
        let a = self.arch.name();
        let u = |v: usize| MetaValue::U32(v as u32);
        let mut m = vec![
            ("general.architecture".into(), MetaValue::String(a.into())),
            ("general.name".into(), MetaValue::String(name.into())),
            (format!("{a}.block_count"), u(self.n_layer)),
            (format!("{a}.context_length"), u(self.n_ctx)),
            (format!("{a}.embedding_length"), u(self.n_embd)),
            (format!("{a}.feed_forward_length"), u(self.n_ff)),
            (format!("{a}.attention.head_count"), u(self.n_head)),
            (format!("{a}.attention.head_count_kv"), u(self.n_head_kv)),
            (
                format!("{a}.rope.freq_base"),
                MetaValue::F32(self.rope_theta as f32),
            ),
            (
                format!("{a}.attention.layer_norm_rms_epsilon"),
                MetaValue::F32(self.rms_eps as f32),
            ),
        ];
        if let Some(d) = self.explicit_head_dim {
            m.push((format!("{a}.attention.key_length"), u(d)));
            m.push((format!("{a}.attention.value_length"), u(d)));
        }
        if let RopeScaling::Linear(f) = self.rope {
            m.push((
                format!("{a}.rope.scaling.type"),
                MetaValue::String("linear".into()),
            ));
            m.push((format!("{a}.rope.scaling.factor"), MetaValue::F32(f as f32)));
        }
        if self.arch == Arch::Llama {
            m.push((format!("{a}.vocab_size"), u(self.vocab_size)));
            m.push((format!("{a}.rope.dimension_count"), u(self.head_dim)));
        }
        if let Some(c) = self.final_logit_softcap {
            m.push((
                format!("{a}.final_logit_softcapping"),
                MetaValue::F32(c as f32),
            ));
        }
        if let Some(w) = self.sliding_window {
            m.push((format!("{a}.attention.sliding_window"), u(w)));
        }
        if let Some(t) = self.rope_theta_local {
            m.push((format!("{a}.rope.freq_base_swa"), MetaValue::F32(t as f32)));
        }
        if let Some(flags) = &self.local_layers {
            m.push((
                format!("{a}.attention.sliding_window_pattern"),
                MetaValue::Array(mote_file::MetaArray::Bool(flags.clone())),
            ));
        }
        m
    }

    /// Llama 3's per-pair frequency divisors (`rope_freqs.weight`), if it uses them.
    pub fn rope_freq_factors(&self) -> Option<Vec<f32>> {
        let RopeScaling::Llama3 {
            factor,
            low_freq_factor,
            high_freq_factor,
            original_context,
        } = self.rope
        else {
            return None;
        };
        let dim = self.head_dim as f64;
        let low_wavelen = original_context / low_freq_factor;
        let high_wavelen = original_context / high_freq_factor;
        Some(
            (0..self.head_dim / 2)
                .map(|i| {
                    // f32 as in the reference, which builds the frequencies in torch.float32.
                    let freq = 1.0 / (self.rope_theta as f32).powf((2 * i) as f32 / dim as f32);
                    let wavelen = 2.0 * std::f64::consts::PI / freq as f64;
                    if wavelen < high_wavelen {
                        1.0
                    } else if wavelen > low_wavelen {
                        factor as f32
                    } else {
                        let smooth = (original_context / wavelen - low_freq_factor)
                            / (high_freq_factor - low_freq_factor);
                        (1.0 / ((1.0 - smooth) / factor + smooth)) as f32
                    }
                })
                .collect(),
        )
    }
}

/// Gemma 3's window and, when `layer_types` departs from every-6th-layer-global, the
/// per-layer local flags (mote's `attention.sliding_window_pattern` bool array).
#[allow(clippy::type_complexity)]
fn local_attention(c: &Obj, n_layer: usize) -> Result<(Option<usize>, Option<Vec<bool>>), HfError> {
    if c.usize("sliding_window_pattern")? == Some(1) {
        return Ok((None, None));
    }
    let window = c.usize("sliding_window")?;
    let flags = match c.get("layer_types") {
        None => None,
        Some(Value::Array(types)) => {
            let flags = types
                .iter()
                .map(|t| match t.as_str() {
                    Some("sliding_attention") => Ok(true),
                    Some("full_attention") => Ok(false),
                    _ => Err(bad("layer_types", format!("has an unknown entry {t}"))),
                })
                .collect::<Result<Vec<bool>, HfError>>()?;
            if flags.len() != n_layer {
                return Err(bad(
                    "layer_types",
                    format!("has {} entries for {n_layer} layers", flags.len()),
                ));
            }
            let default: Vec<bool> = (0..n_layer).map(|i| i % 6 < 5).collect();
            (flags != default).then_some(flags)
        }
        Some(_) => return Err(bad("layer_types", "is not a list")),
    };
    Ok((window, flags))
}

fn rope_scaling(p: Obj) -> Result<RopeScaling, HfError> {
    let kind = match p.str("rope_type")? {
        Some(k) => Some(k),
        None => p.str("type")?,
    };
    let factor = p.f64("factor")?;
    match kind.map(str::to_ascii_lowercase).as_deref() {
        None | Some("default") => Ok(RopeScaling::None),
        Some("linear") => match factor {
            Some(f) if f > 0.0 => Ok(RopeScaling::Linear(f)),
            Some(f) => Err(bad("rope_scaling", format!("has factor {f}"))),
            None => Ok(RopeScaling::None),
        },
        Some("llama3") => {
            let low = p.f64("low_freq_factor")?.unwrap_or(1.0);
            let high = p.f64("high_freq_factor")?.unwrap_or(4.0);
            let factor = factor.unwrap_or(8.0);
            if low == high || factor <= 0.0 || low <= 0.0 {
                return Err(bad(
                    "rope_scaling",
                    "llama3 factors must be positive with low_freq_factor != high_freq_factor",
                ));
            }
            Ok(RopeScaling::Llama3 {
                factor,
                low_freq_factor: low,
                high_freq_factor: high,
                original_context: p.f64("original_max_position_embeddings")?.unwrap_or(8192.0),
            })
        }
        Some(other) => Err(HfError::Unsupported(format!(
            "config.json: rope scaling {other:?} is not supported (default, linear, llama3 are)"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn llama(extra: Value) -> Value {
        let mut v = json!({
            "architectures": ["LlamaForCausalLM"], "hidden_size": 4096,
            "num_hidden_layers": 2, "intermediate_size": 14336, "num_attention_heads": 32,
            "num_key_value_heads": 8, "vocab_size": 128256, "max_position_embeddings": 131072,
            "rms_norm_eps": 1e-5, "rope_theta": 500000.0, "hidden_act": "silu"
        });
        if let (Value::Object(m), Value::Object(e)) = (&mut v, extra) {
            m.extend(e);
        }
        v
    }

    #[test]
    fn llama3_rope_factors_match_the_reference() {
        let cfg = HfConfig::parse(&llama(json!({"rope_scaling": {
            "rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
            "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}})))
        .unwrap();
        let f = cfg.rope_freq_factors().unwrap();
        assert_eq!(f.len(), 64);
        // From the converter's formula in torch (float32 frequencies).
        let want = [
            (0, 1.0),
            (28, 1.0),
            (29, 1.207_483_9),
            (31, 2.026_313),
            (34, 5.257_327),
            (35, 8.0),
            (63, 8.0),
        ];
        for (i, w) in want {
            assert!((f[i] - w).abs() < 1e-4, "factor {i}: {} vs {w}", f[i]);
        }
        assert!(!cfg.metadata("m").iter().any(|(k, _)| k.contains("scaling")));
    }

    #[test]
    fn linear_scaling_text_config_and_errors() {
        let cfg = HfConfig::parse(&json!({"text_config": llama(json!({
            "rope_scaling": {"type": "linear", "factor": 4.0}}))}))
        .unwrap();
        let meta = cfg.metadata("m");
        let get = |k: &str| meta.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        assert_eq!(get("llama.rope.scaling.factor"), Some(MetaValue::F32(4.0)));
        assert_eq!(
            get("llama.attention.head_count_kv"),
            Some(MetaValue::U32(8))
        );
        assert_eq!(get("llama.rope.freq_base"), Some(MetaValue::F32(500000.0)));
        assert!(matches!(
            HfConfig::parse(&llama(
                json!({"rope_scaling": {"rope_type": "yarn", "factor": 4.0}})
            )),
            Err(HfError::Unsupported(_))
        ));
        assert!(matches!(
            HfConfig::parse(&llama(json!({"num_key_value_heads": 5}))),
            Err(HfError::BadField { .. })
        ));
        assert!(matches!(
            HfConfig::parse(&json!([1, 2])),
            Err(HfError::BadField { .. })
        ));
    }
}
