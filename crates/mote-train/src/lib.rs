//! `mote-train` owns training on the CPU: an f32 copy of a model's tensors
//! ([`Params`]), the forward pass of `mote-model`'s generic decoder with the activations
//! kept ([`Network::forward`]) and its backward pass ([`Network::backward`]), the LM head
//! fused with cross-entropy / distillation KL in chunks of positions ([`head_loss`]),
//! and AdamW with clipping and a warm-up + cosine schedule ([`adamw_step`]).
//!
//! The architecture comes from `mote-model` (its [`mote_model::ArchSpec`],
//! [`mote_model::ModelConfig`], loaded weights and RoPE angles): there is no second
//! model per family. Operations are generic over [`Real`] so that the gradient checks
//! run them in f64 against central finite differences.

pub mod adamw;
pub mod attention;
pub mod checkpoint;
pub mod cli;
pub mod data;
pub mod export;
pub mod gemm;
pub mod loss;
pub mod model;
pub mod ops;
pub mod params;
pub mod real;
pub mod rng;
pub mod trainer;

pub use adamw::{adamw_step, clip_grad_norm, AdamConfig, AdamState};
pub use loss::{head_loss, LossSpec, LossValue, Teacher, IGNORE};
pub use model::{Grads, Network, Tape};
pub use params::{Params, Tensor};
pub use real::Real;
pub use rng::Rng;

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error(transparent)]
    Model(#[from] mote_model::ModelError),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
}

/// One training micro-step: forward, loss, backward; gradients accumulate into `g`.
pub fn loss_and_grad(
    net: &Network,
    p: &Params,
    tokens: &[u32],
    spec: &mut LossSpec,
    g: &mut Grads,
) -> Result<LossValue, TrainError> {
    let tape = net.forward(p, tokens)?;
    let (value, dh) = head_loss(p, &tape.hidden, spec, Some(g))?;
    net.backward(p, &tape, &dh, g);
    Ok(value)
}
