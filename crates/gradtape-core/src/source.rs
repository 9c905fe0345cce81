//! What a gradient can be taken with respect to: tensors and variables, and lists of them.

use crate::context::tapes::TapeState;
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::tensor::{Tensor, TensorId};
use crate::variable::Variable;

pub(crate) mod private {
    pub trait Sealed {
        fn key(&self) -> super::SourceKey;
        fn watch_on(&self, tape: &super::TapeState);
        fn variable(&self) -> Option<&super::Variable> {
            None
        }
        fn owned(&self) -> super::OwnedSource;
    }
}

/// The identity, shape and dtype of a source, enough to hand back zeros when unconnected.
pub struct SourceKey {
    pub(crate) id: TensorId,
    pub(crate) shape: Vec<usize>,
    pub(crate) dtype: DType,
    /// For one example's tensor inside a vmap: the whole batch's key, and the level.
    pub(crate) batch: Option<(Box<SourceKey>, usize)>,
}

/// Something a tape can watch and differentiate with respect to: a [`Tensor`] or a
/// [`Variable`].
///
/// ```
/// use gradtape::{ops, GradientTape, Source, Tensor, Variable};
/// let (x, v) = (Tensor::scalar(2.0f32), Variable::new(3.0));
/// let tape = GradientTape::new();
/// tape.watch(&x);
/// let y = ops::multiply(&x, &v)?;
/// let sources: [&dyn Source; 2] = [&x, &v];
/// let [gx, gv] = tape.gradient(&y, sources)?;
/// assert_eq!((gx.unwrap().to_scalar::<f32>()?, gv.unwrap().to_scalar::<f32>()?), (3.0, 2.0));
/// # Ok::<(), gradtape::Error>(())
/// ```
pub trait Source: private::Sealed {}

impl private::Sealed for Tensor {
    fn key(&self) -> SourceKey {
        SourceKey {
            id: self.id(),
            shape: self.shape().to_vec(),
            dtype: self.dtype(),
            batch: self.batch().map(|(p, level)| (Box::new(p.key()), level)),
        }
    }
    fn watch_on(&self, tape: &TapeState) {
        tape.watch_tensor(self);
        // inside a vmap the ops record the whole batch: watch that too
        if let Some((p, _)) = self.batch() {
            p.watch_on(tape);
        }
    }
    fn owned(&self) -> OwnedSource {
        OwnedSource::Tensor(self.clone())
    }
}
impl Source for Tensor {}

impl private::Sealed for Variable {
    fn key(&self) -> SourceKey {
        SourceKey {
            id: self.handle_id(),
            shape: self.shape().to_vec(),
            dtype: self.dtype(),
            batch: None,
        }
    }
    fn watch_on(&self, tape: &TapeState) {
        tape.watch_variable(self);
    }
    fn variable(&self) -> Option<&Variable> {
        Some(self)
    }
    fn owned(&self) -> OwnedSource {
        OwnedSource::Variable(self.clone())
    }
}
impl Source for Variable {}

impl<S: private::Sealed + ?Sized> private::Sealed for &S {
    fn key(&self) -> SourceKey {
        (**self).key()
    }
    fn watch_on(&self, tape: &TapeState) {
        (**self).watch_on(tape)
    }
    fn variable(&self) -> Option<&Variable> {
        (**self).variable()
    }
    fn owned(&self) -> OwnedSource {
        (**self).owned()
    }
}
impl<S: Source + ?Sized> Source for &S {}

/// `source` kept by value.
pub(crate) fn owned_source(source: &dyn Source) -> OwnedSource {
    source.owned()
}

/// A source kept by value (what a `ForwardAccumulator` holds on to).
#[derive(Clone)]
pub enum OwnedSource {
    /// A tensor.
    Tensor(Tensor),
    /// A variable.
    Variable(Variable),
}

/// What [`GradientTape::gradient`](crate::GradientTape::gradient) takes gradients with respect to, and the shape of its
/// answer: one tensor or variable gives one gradient (`tape.gradient(y, x)` in TensorFlow),
/// an array of sources gives an array (`let [da, db] = ...`), a slice or `Vec` (a model's
/// `trainable_variables()`) gives a `Vec`, in the same order, and a tuple of any of these a
/// tuple of their answers: TensorFlow's `tape.gradient(loss, [x] + layer.trainable_variables)`
/// is `tape.gradient(&loss, (&x, &layer.trainable_variables()))`, which gives
/// `(Option<Tensor>, Vec<Option<Tensor>>)`, so tensors and variables mix without a cast.
///
/// ```
/// use gradtape::{ops, GradientTape, Tensor, Variable};
/// let vars = vec![Variable::new(1.0), Variable::new(2.0)];
/// let x = Tensor::scalar(3.0f32);
/// let tape = GradientTape::new();
/// tape.watch(&x);
/// let y = ops::multiply(&ops::multiply(&vars[0], &vars[1])?, &x)?;
/// let (dx, dvars) = tape.gradient(&y, (&x, &vars))?;
/// assert_eq!(dx.unwrap().to_scalar::<f32>()?, 2.0);
/// assert_eq!(dvars[1].as_ref().unwrap().to_scalar::<f32>()?, 3.0);
/// # Ok::<(), gradtape::Error>(())
/// ```
pub trait Sources {
    /// `Option<Tensor>` for one source, `[Option<Tensor>; N]` for an array, a tuple of the
    /// parts' for a tuple, `Vec<Option<Tensor>>` otherwise.
    type Gradients;
    /// The sources, in order.
    fn sources(&self) -> Vec<&dyn Source>;
    /// The gradients, one per source, in this container's shape.
    #[doc(hidden)]
    fn gradients(&self, grads: Vec<Option<Tensor>>) -> Result<Self::Gradients>;
}

fn wrong_count() -> Error {
    Error::tape("gradient", "wrong number of gradients")
}

macro_rules! single_sources {
    ($($t:ty),*) => {$(
        impl Sources for $t {
            type Gradients = Option<Tensor>;
            fn sources(&self) -> Vec<&dyn Source> {
                vec![self]
            }
            fn gradients(&self, grads: Vec<Option<Tensor>>) -> Result<Self::Gradients> {
                let [g] = <[Option<Tensor>; 1]>::try_from(grads).map_err(|_| wrong_count())?;
                Ok(g)
            }
        }
    )*};
}
single_sources!(Tensor, Variable);

impl<T: Sources + ?Sized> Sources for &T {
    type Gradients = T::Gradients;
    fn sources(&self) -> Vec<&dyn Source> {
        (**self).sources()
    }
    fn gradients(&self, grads: Vec<Option<Tensor>>) -> Result<Self::Gradients> {
        (**self).gradients(grads)
    }
}

impl<S: Source, const N: usize> Sources for [S; N] {
    type Gradients = [Option<Tensor>; N];
    fn sources(&self) -> Vec<&dyn Source> {
        self.iter().map(|s| s as &dyn Source).collect()
    }
    fn gradients(&self, grads: Vec<Option<Tensor>>) -> Result<Self::Gradients> {
        grads.try_into().map_err(|_| wrong_count())
    }
}

macro_rules! source_lists {
    ($($t:ty),*) => {$(
        impl<S: Source> Sources for $t {
            type Gradients = Vec<Option<Tensor>>;
            fn sources(&self) -> Vec<&dyn Source> {
                self.iter().map(|s| s as &dyn Source).collect()
            }
            fn gradients(&self, grads: Vec<Option<Tensor>>) -> Result<Self::Gradients> {
                Ok(grads)
            }
        }
    )*};
}
source_lists!([S], Vec<S>);

macro_rules! source_tuples {
    ($(($($p:ident $i:tt),+)),*) => {$(
        impl<$($p: Sources),+> Sources for ($($p,)+) {
            type Gradients = ($($p::Gradients,)+);
            fn sources(&self) -> Vec<&dyn Source> {
                let mut all = vec![];
                $(all.extend(self.$i.sources());)+
                all
            }
            fn gradients(&self, grads: Vec<Option<Tensor>>) -> Result<Self::Gradients> {
                let mut rest = grads.into_iter();
                Ok(($({
                    let n = self.$i.sources().len();
                    self.$i.gradients(rest.by_ref().take(n).collect())?
                },)+))
            }
        }
    )*};
}
source_tuples!(
    (A 0, B 1),
    (A 0, B 1, C 2),
    (A 0, B 1, C 2, D 3),
    (A 0, B 1, C 2, D 3, E 4),
    (A 0, B 1, C 2, D 3, E 4, F 5)
);

/// What a gradient is for a source the target does not depend on.
///
/// ```
/// use gradtape::{GradientOptions, GradientTape, Tensor, UnconnectedGradients};
/// let (x, z) = (Tensor::scalar(1.0f32), Tensor::scalar(2.0f32));
/// let tape = GradientTape::new();
/// tape.watch(&z);
/// let opts = GradientOptions { unconnected_gradients: UnconnectedGradients::Zero, ..Default::default() };
/// let g = tape.gradient_with(&[&x], &[&z], &opts)?;
/// assert_eq!(g[0].as_ref().unwrap().to_scalar::<f32>()?, 0.0);
/// # Ok::<(), gradtape::Error>(())
/// ```
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub enum UnconnectedGradients {
    /// `None` (TensorFlow's default).
    #[default]
    None,
    /// Zeros of the source's shape and dtype.
    Zero,
}

impl SourceKey {
    pub(crate) fn copy(&self) -> SourceKey {
        SourceKey {
            id: self.id,
            shape: self.shape.clone(),
            dtype: self.dtype,
            batch: self.batch.as_ref().map(|(p, l)| (Box::new(p.copy()), *l)),
        }
    }
}
