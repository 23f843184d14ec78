//! Architecture specs: what distinguishes one decoder family from another, as data.
//!
//! Every supported model is the same pre-norm transformer; a spec only switches the
//! optional parts on and off. Adding a family that fits this shape means adding a row
//! to [`ArchSpec::lookup`], not writing a new model.

/// How rotary position embedding pairs up the dimensions of a head.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RopeStyle {
    /// Dimensions `(2i, 2i+1)` rotate together (llama.cpp's "normal" rope; GGUF llama
    /// files have Q/K rows permuted by the converter so that this is right).
    Adjacent,
    /// Dimensions `(i, i + n_rot/2)` rotate together (GPT-NeoX style).
    Neox,
}

/// The gate activation of the gated feed-forward block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    /// SwiGLU: `silu(gate) * up`.
    Silu,
    /// GeGLU with the tanh approximation of GELU.
    GeluTanh,
}

/// Whether a group of optional tensors must, may, or must not be present.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Presence {
    Required,
    Optional,
}

/// Interleaved local (sliding-window) and global attention layers.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SlidingWindowSpec {
    /// Layers come in periods of this many; the last of each period is global. A file
    /// may override it with `<arch>.attention.sliding_window_pattern`.
    pub default_period: u32,
    /// RoPE base of the local layers unless `<arch>.rope.freq_base_swa` says otherwise.
    pub default_local_rope_base: f32,
}

/// How the attention logits are scaled before the softmax.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttnScale {
    /// `1 / sqrt(key_length)`.
    InvSqrtHeadDim,
    /// Gemma 3: `1 / sqrt(key_length)`, except that the 62-layer (27B) model uses
    /// `1 / sqrt(embedding_length / head_count)` (its `query_pre_attn_scalar`).
    Gemma3,
}

/// The switches that make the generic decoder one particular architecture.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ArchSpec {
    /// `general.architecture` value, also the metadata key prefix.
    pub name: &'static str,
    pub rope: RopeStyle,
    pub activation: Activation,
    pub attn_scale: AttnScale,
    /// Multiply token embeddings by `sqrt(embedding_length)`.
    pub scale_embeddings: bool,
    /// Per-head RMS norms of queries and keys before RoPE (`attn_q_norm`, `attn_k_norm`).
    pub qk_norm: bool,
    /// RMS norms of the attention and FFN outputs before each residual add
    /// (`post_attention_norm`, `post_ffw_norm`).
    pub post_norms: bool,
    /// Biases on the Q/K/V projections (`attn_{q,k,v}.bias`).
    pub qkv_bias: Presence,
    /// `None`: every layer attends to the whole context.
    pub sliding_window: Option<SlidingWindowSpec>,
}

const BASE: ArchSpec = ArchSpec {
    name: "llama",
    rope: RopeStyle::Adjacent,
    activation: Activation::Silu,
    attn_scale: AttnScale::InvSqrtHeadDim,
    scale_embeddings: false,
    qk_norm: false,
    post_norms: false,
    qkv_bias: Presence::Optional,
    sliding_window: None,
};

const SPECS: &[ArchSpec] = &[
    // SmolLM2, TinyLlama, Mistral, Llama 2/3.
    BASE,
    ArchSpec {
        name: "qwen2",
        rope: RopeStyle::Neox,
        qkv_bias: Presence::Required,
        ..BASE
    },
    ArchSpec {
        name: "gemma3",
        rope: RopeStyle::Neox,
        activation: Activation::GeluTanh,
        attn_scale: AttnScale::Gemma3,
        scale_embeddings: true,
        qk_norm: true,
        post_norms: true,
        sliding_window: Some(SlidingWindowSpec {
            default_period: 6,
            default_local_rope_base: 10_000.0,
        }),
        ..BASE
    },
];

impl ArchSpec {
    /// The spec for a `general.architecture` value, if mote supports it.
    pub fn lookup(arch: &str) -> Option<&'static ArchSpec> {
        SPECS.iter().find(|s| s.name == arch)
    }

    /// Names of all supported architectures (for error messages).
    pub fn supported() -> impl Iterator<Item = &'static str> {
        SPECS.iter().map(|s| s.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_known_and_unknown() {
        assert_eq!(
            ArchSpec::lookup("llama").map(|s| s.rope),
            Some(RopeStyle::Adjacent)
        );
        assert_eq!(
            ArchSpec::lookup("qwen2").map(|s| s.rope),
            Some(RopeStyle::Neox)
        );
        assert!(ArchSpec::lookup("gemma3").is_some_and(|s| s.sliding_window.is_some()));
        assert!(ArchSpec::lookup("gpt2").is_none());
        assert_eq!(ArchSpec::supported().count(), SPECS.len());
    }
}
