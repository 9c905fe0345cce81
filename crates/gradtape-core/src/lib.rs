//! # gradtape-core
//!
//! The tensor core of [gradtape](https://docs.rs/gradtape): dtypes, shapes and storage, the
//! backends (the host, lazy fusion, CUDA), [`Tensor`], the primitives and their one `apply`
//! path, the per-thread context, and the transformations (the gradient tape, forward-mode
//! accumulators, `vmap`, the function transforms). The training kit (layers, optimizers,
//! losses, metrics, checkpoints), the file formats and distributed training are built on it in
//! the `gradtape` crate, which re-exports everything here under the same paths: depend on
//! `gradtape` unless you want the core alone.
//!
//! ```
//! use gradtape_core::{ops, GradientTape, Tensor};
//! let x = Tensor::scalar(3.0f32);
//! let tape = GradientTape::new();
//! tape.watch(&x);
//! let y = ops::square(&x)?;
//! let [g] = tape.gradient(&y, [&x])?;
//! assert_eq!(g.unwrap().to_scalar::<f32>()?, 6.0);
//! # Ok::<(), gradtape_core::Error>(())
//! ```
#![deny(missing_docs)]

mod backend;
mod context;
#[cfg(feature = "cuda")]
pub use backend::cuda;
pub mod custom_gradient;
pub mod debugging;
pub mod device;
mod display;
mod dtype;
mod error;
pub mod forward_accumulator;
pub mod func;
pub mod function;
pub mod fusion;
#[cfg(feature = "linalg")]
pub mod linalg;
#[cfg(feature = "ndarray")]
mod ndarray;
mod operators;
pub mod ops;
mod primitive;
pub mod random;
mod record;
mod shape;
mod source;
mod tape;
mod tensor;
pub mod threading;
mod variable;
pub mod vmap;

pub use backend::storage::memory;
pub use context::tapes::{no_grad, no_grad_guard, NoGradGuard, TracedOp, TracedTensor};
pub use custom_gradient::{
    custom_gradient, custom_jvp, grad_pass_through, recompute_grad, GradientFn, IntoGradients,
};
pub use device::Device;
pub use dtype::{DType, Element};
pub use error::{Error, Result};
pub use forward_accumulator::ForwardAccumulator;
pub use function::{function, print, print_with, Function, Graph, Outputs, TensorSpec};
pub use ops::Axes;
pub use source::{Source, Sources, UnconnectedGradients};
pub use tape::{
    GradientOptions, GradientTape, JacobianOptions, PersistentTape, StopRecordingGuard, Tape,
    TapeBuilder,
};
pub use tensor::{AsTensor, Operand, Tensor};
pub use variable::{Variable, VariableOptions};
pub use vmap::{vmap, InAxes, OutAxes, Vmap};

/// What the `gradtape` crate's training kit and file formats use from the core that is not
/// public API: no stability promise, not for users.
#[doc(hidden)]
pub mod internal {
    pub use crate::context::tapes::without_recording;
    pub use crate::context::traces::{check_values, Checker};
    pub use crate::ops::nn::labels::class_labels_one_hot;
    pub use crate::shape::checked_numel;
    pub use crate::tensor::TensorId;
}
