//! # gradtape
//!
//! TensorFlow's `GradientTape` in Rust: eager tensors, trainable variables, and a tape that
//! records what runs so that `tape.gradient(loss, [a, b])` returns exact gradients. Nested tapes
//! give higher derivatives, persistent tapes allow many gradient calls, and the numbers match
//! TensorFlow's.
//!
//! The linear regression that gradtape started from, one gradient-descent step:
//!
//! ```
//! use gradtape::{Axes, GradientTape, Result, Tensor, Variable};
//!
//! // y" = a + b * x
//! struct Regression { a: Variable, b: Variable }
//! impl Regression {
//!     fn call(&self, x: &Tensor) -> Tensor {
//!         &self.a + &self.b * x                        // tf.add(self.a, tf.multiply(self.b, x))
//!     }
//! }
//! fn loss_func(y_true: &Tensor, y_pred: &Tensor) -> Result<Tensor> {
//!     (y_true - y_pred).square()?.reduce_sum(Axes::All, false)
//! }
//!
//! let model = Regression { a: Variable::new(0.0), b: Variable::new(0.0) };
//! let x = Tensor::from_vec(vec![0.0f32, 0.5, 1.0], &[3])?;
//! let y = Tensor::from_vec(vec![0.3f32, 0.55, 0.8], &[3])?;
//! let lr = 0.1;
//!
//! let g = GradientTape::new();                     // with tf.GradientTape() as g:
//! let y_pred = model.call(&x);                     //     y_pred = model(inputs)
//! let current_loss = loss_func(&y, &y_pred)?;      //     current_loss = loss_func(y_true, y_pred)
//! let [da, db] = g.gradient(&current_loss, [&model.a, &model.b])?;
//! model.a.assign_sub(&(da.unwrap() * lr))?;        // model.a.assign_sub(da * lr)
//! model.b.assign_sub(&(db.unwrap() * lr))?;
//!
//! assert!((model.a.value().item()? - 0.33).abs() < 1e-6);
//! # Ok::<(), gradtape::Error>(())
//! ```
//!
//! Operators (`+ - * /`) panic on a shape or dtype error, with the op's message at the
//! caller's line; the functions of [`ops`] return the same error as a `Result` (see the
//! README's "Operators" section for why).
//!
//! Modules follow TensorFlow's concepts: [`Tensor`], [`ops`] (`tf.*` and `tf.math.*` under the
//! same names), [`Variable`], [`GradientTape`] / [`PersistentTape`], [`random`]. Three are
//! about speed and change no result: [`function()`] (`tf.function`: a step traced once per
//! signature into a graph, optimized, and replayed, bit for bit as eager), [`fusion`]
//! (elementwise chains on large tensors run lazily, in one pass) and [`threading`] (running a
//! training loop among the compute threads).
//! [`device`] places tensors on the CPU or an NVIDIA GPU (`with_device`, [`Tensor::to_device`]);
//! the GPU backend, `cuda`, is found at run time and needs no CUDA toolkit to build.
#![deny(missing_docs)]

// The core (tensors, ops, the transformations, the backends) is the `gradtape-core` crate; every
// one of its public items and modules is re-exported here under the path it always had.
pub use gradtape_core::*;
// The training kit, the file formats and data parallelism are crates of their own (they
// compile side by side), re-exported under the paths they had when they were modules here.
pub use gradtape_distributed as distributed;
#[cfg(feature = "npy")]
pub use gradtape_io::npy;
pub use gradtape_io::{data, summary};
pub use gradtape_train::{checkpoint, layers, losses, metrics, optimizers};

/// What most programs use, in one import: `use gradtape::prelude::*;` brings the tensor and
/// variable types, the tapes, `function`, the op module, the `Optimizer` and `Layer` traits
/// (their methods need them in scope) and the error type.
///
/// ```
/// use gradtape::prelude::*;
/// let w = Variable::new(3.0);
/// let tape = GradientTape::new();
/// let loss = ops::square(&w)?;
/// let [g] = tape.gradient(&loss, [&w])?;
/// optimizers::SGD::new(0.25).apply_gradients([(g, &w)])?;
/// assert_eq!(w.value().to_scalar::<f32>()?, 1.5);
/// # Ok::<(), gradtape::Error>(())
/// ```
pub mod prelude {
    pub use crate::layers::{self, Layer};
    pub use crate::optimizers::{self, Optimizer};
    pub use crate::{
        func, function, losses, ops, vmap, Axes, DType, Device, Error, ForwardAccumulator,
        GradientTape, PersistentTape, Result, Tensor, Variable,
    };
}

/// The README's Rust code, compiled and run as a doc test so it stays true.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
pub struct ReadmeDoctests;
