//! gradtape's training kit: Keras's layers ([`layers`]), optimizers ([`optimizers`]), losses
//! ([`losses`]) and metrics ([`metrics`]), and checkpoints in the safetensors format
//! ([`checkpoint`]). Everything here is built from the core's public ops, variables and tapes,
//! as user code is (the [`optimizers::Optimizer`] and [`layers::Layer`] traits can be
//! implemented outside). The `gradtape` crate re-exports the modules under the same names
//! (`gradtape::layers`, ...).
#![deny(missing_docs)]

pub mod checkpoint;
pub mod layers;
pub mod losses;
pub mod metrics;
pub mod optimizers;
