//! Keras's optimizers with Keras's defaults and update rules: `optimizer.apply_gradients` after
//! `tape.gradient`, instead of the seed's hand-written `assign_sub(da * lr)`.
//!
//! Optimizers see only gradients and variables, never the tape. Their arithmetic runs with
//! recording off, so an update is never part of what a tape differentiates.
//!
//! ```
//! use gradtape::optimizers::{Adam, Optimizer};
//! use gradtape::{ops, Axes, GradientTape, Tensor, Variable};
//! let w = Variable::new(Tensor::from_vec(vec![1.0f32, -2.0], &[2])?);
//! let mut opt = Adam::new(0.1);
//! for _ in 0..100 {
//!     let tape = GradientTape::new();
//!     let loss = ops::reduce_sum(&ops::square(&w)?, Axes::All, false)?;
//!     let [g] = tape.gradient(&loss, [&w])?;
//!     opt.apply_gradients(&[(g, &w)])?;
//! }
//! assert!(w.value().to_vec::<f32>()?.iter().all(|v| v.abs() < 0.05));
//! # Ok::<(), gradtape::Error>(())
//! ```

use std::collections::HashMap;

use gradtape_core::internal as tape;
use gradtape_core::ops::{self, Axes};
use gradtape_core::{DType, Tensor};
use gradtape_core::{Error, Result};
use gradtape_core::{Variable, VariableOptions};

// ---------------------------------------------------------------------------------------------
// Learning rates

/// A learning rate that depends on the optimizer's step count (Keras's
/// `LearningRateSchedule`).
///
/// ```
/// use gradtape::optimizers::*;
/// struct Halve;
/// impl LearningRateSchedule for Halve { fn at(&self, step: u64) -> f64 { 0.1 / 2f64.powi(step as i32) } }
/// let opt = SGD::new(Halve);
/// assert_eq!(opt.learning_rate(), 0.1);
/// ```
pub trait LearningRateSchedule: Send {
    /// The learning rate at `step` (the number of updates applied so far).
    fn at(&self, step: u64) -> f64;

    /// The same from the step count as the optimizer keeps it, an int64 scalar tensor, as a
    /// float64 scalar tensor. The optimizers call this one: computed with ops, a step traced
    /// into a graph (`gradtape::function`, to come) recomputes the rate at every call instead
    /// of keeping the first. The default reads the step back to the host and calls
    /// [`LearningRateSchedule::at`]; the schedules here compute it with ops, to the same bits.
    ///
    /// # Errors
    /// When the step cannot be read back (or, in an override, as the ops it uses).
    fn at_tensor(&self, step: &Tensor) -> Result<Tensor> {
        Ok(Tensor::scalar(
            self.at(step.to_scalar::<i64>()?.max(0) as u64),
        ))
    }
}

/// A constant or a schedule.
///
/// ```
/// use gradtape::optimizers::*;
/// let lr: LearningRate = 0.01.into();
/// assert!(matches!(lr, LearningRate::Constant(v) if v == 0.01));
/// ```
pub enum LearningRate {
    /// The same rate at every step.
    Constant(f64),
    /// A rate that changes with the step count.
    Schedule(Box<dyn LearningRateSchedule>),
}

impl LearningRate {
    fn at(&self, step: u64) -> f64 {
        match self {
            LearningRate::Constant(v) => *v,
            LearningRate::Schedule(s) => s.at(step),
        }
    }
    fn at_tensor(&self, step: &Tensor) -> Result<Tensor> {
        match self {
            LearningRate::Constant(v) => Ok(Tensor::scalar(*v)),
            // a count set below zero reads as zero, as `Optimizer::iterations` reads it
            LearningRate::Schedule(s) => s.at_tensor(&ops::maximum(step, &0)?),
        }
    }
}

/// The step count as float64, for the schedules' ops.
fn steps(step: &Tensor) -> Result<Tensor> {
    ops::cast(step, DType::F64)
}

impl From<f64> for LearningRate {
    fn from(v: f64) -> Self {
        LearningRate::Constant(v)
    }
}

impl<S: LearningRateSchedule + 'static> From<S> for LearningRate {
    fn from(s: S) -> Self {
        LearningRate::Schedule(Box::new(s))
    }
}

/// `initial_learning_rate · decay_rate^(step / decay_steps)`, the exponent floored with
/// `staircase`.
///
/// ```
/// use gradtape::optimizers::{ExponentialDecay, LearningRateSchedule};
/// let s = ExponentialDecay { initial_learning_rate: 0.1, decay_steps: 10, decay_rate: 0.5, staircase: true };
/// assert_eq!(s.at(25), 0.025);
/// ```
#[derive(Clone, Debug)]
pub struct ExponentialDecay {
    /// Rate at step 0.
    pub initial_learning_rate: f64,
    /// Steps per factor of `decay_rate`.
    pub decay_steps: u64,
    /// Factor per `decay_steps`.
    pub decay_rate: f64,
    /// Decay in whole steps of `decay_steps`.
    pub staircase: bool,
}

impl LearningRateSchedule for ExponentialDecay {
    fn at(&self, step: u64) -> f64 {
        let mut p = step as f64 / self.decay_steps.max(1) as f64;
        if self.staircase {
            p = p.floor();
        }
        self.initial_learning_rate * self.decay_rate.powf(p)
    }
    fn at_tensor(&self, step: &Tensor) -> Result<Tensor> {
        let mut p = ops::divide(&steps(step)?, &(self.decay_steps.max(1) as f64))?;
        if self.staircase {
            p = ops::floor(&p)?;
        }
        ops::multiply(
            &self.initial_learning_rate,
            &ops::pow(&self.decay_rate, &p)?,
        )
    }
}

/// `values[0]` up to `boundaries[0]` (inclusive), `values[1]` up to `boundaries[1]`, ...,
/// `values[n]` after the last boundary.
///
/// ```
/// use gradtape::optimizers::{LearningRateSchedule, PiecewiseConstantDecay};
/// let s = PiecewiseConstantDecay { boundaries: vec![10, 20], values: vec![1.0, 0.5, 0.1] };
/// assert_eq!((s.at(10), s.at(11), s.at(30)), (1.0, 0.5, 0.1));
/// ```
#[derive(Clone, Debug)]
pub struct PiecewiseConstantDecay {
    /// Increasing step boundaries.
    pub boundaries: Vec<u64>,
    /// One more value than boundaries.
    pub values: Vec<f64>,
}

impl LearningRateSchedule for PiecewiseConstantDecay {
    fn at(&self, step: u64) -> f64 {
        let i = self.boundaries.iter().take_while(|&&b| step > b).count();
        self.value(i)
    }
    fn at_tensor(&self, step: &Tensor) -> Result<Tensor> {
        // value(i), i the number of leading boundaries the step is past, as `at` counts them
        let mut past = ops::greater_equal(step, &0)?; // true
        let mut rate = Tensor::scalar(self.value(0));
        for (k, &b) in self.boundaries.iter().enumerate() {
            past = ops::logical_and(
                &past,
                &ops::greater(step, &(b.min(i64::MAX as u64) as i64))?,
            )?;
            rate = ops::select(&past, &Tensor::scalar(self.value(k + 1)), &rate)?;
        }
        Ok(rate)
    }
}

impl PiecewiseConstantDecay {
    fn value(&self, i: usize) -> f64 {
        self.values
            .get(i)
            .or(self.values.last())
            .copied()
            .unwrap_or(0.0)
    }
}

/// Cosine decay from the initial rate to `alpha` times it over `decay_steps`, after an optional
/// linear warm-up from `initial_learning_rate` to `warmup_target` over `warmup_steps` (Keras 3).
///
/// ```
/// use gradtape::optimizers::{CosineDecay, LearningRateSchedule};
/// let s = CosineDecay { initial_learning_rate: 1.0, decay_steps: 100, alpha: 0.0, warmup_target: None, warmup_steps: 0 };
/// assert!((s.at(50) - 0.5).abs() < 1e-12);
/// ```
#[derive(Clone, Debug)]
pub struct CosineDecay {
    /// Rate at step 0.
    pub initial_learning_rate: f64,
    /// Steps of the cosine part.
    pub decay_steps: u64,
    /// Final rate as a fraction of the starting rate.
    pub alpha: f64,
    /// Rate reached at the end of the warm-up, when there is one.
    pub warmup_target: Option<f64>,
    /// Steps of linear warm-up.
    pub warmup_steps: u64,
}

impl LearningRateSchedule for CosineDecay {
    fn at(&self, step: u64) -> f64 {
        let decayed = |lr: f64, step: u64| {
            let s = step.min(self.decay_steps) as f64 / self.decay_steps.max(1) as f64;
            let cosine = 0.5 * (1.0 + (std::f64::consts::PI * s).cos());
            lr * ((1.0 - self.alpha) * cosine + self.alpha)
        };
        match self.warmup_target {
            None => decayed(self.initial_learning_rate, step),
            Some(target) if step < self.warmup_steps => {
                self.initial_learning_rate
                    + (target - self.initial_learning_rate) * step as f64 / self.warmup_steps as f64
            }
            Some(target) => decayed(target, step - self.warmup_steps),
        }
    }
    fn at_tensor(&self, step: &Tensor) -> Result<Tensor> {
        // the same arithmetic as `at`, in the same order, on float64 tensors
        let decayed = |lr: f64, step: &Tensor| -> Result<Tensor> {
            let s = ops::divide(
                &steps(&ops::minimum(
                    step,
                    &(self.decay_steps.min(i64::MAX as u64) as i64),
                )?)?,
                &(self.decay_steps.max(1) as f64),
            )?;
            let cosine = ops::multiply(
                &0.5,
                &ops::add(&1.0, &ops::cos(&ops::multiply(&std::f64::consts::PI, &s)?)?)?,
            )?;
            ops::multiply(
                &lr,
                &ops::add(&ops::multiply(&(1.0 - self.alpha), &cosine)?, &self.alpha)?,
            )
        };
        match self.warmup_target {
            None => decayed(self.initial_learning_rate, step),
            Some(target) => {
                let w = self.warmup_steps.min(i64::MAX as u64) as i64;
                let warming = ops::add(
                    &self.initial_learning_rate,
                    &ops::divide(
                        &ops::multiply(&(target - self.initial_learning_rate), &steps(step)?)?,
                        &(self.warmup_steps as f64),
                    )?,
                )?;
                let after = decayed(target, &ops::maximum(&ops::subtract(step, &w)?, &0)?)?;
                ops::select(&ops::less(step, &w)?, &warming, &after)
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// What every optimizer shares

/// Gradient clipping, applied before the update (at most one kind, as in Keras).
///
/// ```
/// use gradtape::optimizers::*;
/// assert_eq!(Clip::default(), Clip::None);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub enum Clip {
    /// No clipping.
    #[default]
    None,
    /// Each gradient scaled so its L2 norm is at most this (`clipnorm`).
    Norm(f64),
    /// All gradients scaled together so their joint L2 norm is at most this (`global_clipnorm`).
    GlobalNorm(f64),
    /// Each element clamped to `[-v, v]` (`clipvalue`).
    Value(f64),
}

fn l2_squared(g: &Tensor) -> Result<Tensor> {
    ops::reduce_sum(&ops::square(g)?, Axes::All, false)
}

fn clip(grads: Vec<Tensor>, clip: Clip) -> Result<Vec<Tensor>> {
    match clip {
        Clip::None => Ok(grads),
        Clip::Value(v) => grads
            .iter()
            .map(|g| ops::clip_by_value(g, &-v, &v))
            .collect(),
        Clip::Norm(c) => grads
            .iter()
            .map(|g| {
                let norm = ops::sqrt(&l2_squared(g)?)?;
                ops::divide(&ops::multiply(g, &c)?, &ops::maximum(&norm, &c)?)
            })
            .collect(),
        Clip::GlobalNorm(c) => {
            // in float64 with ops (no read back to the host), to the bits the host's float64
            // arithmetic gave: Σ‖g‖², √, c · min(1/norm, 1/c)
            let mut total = Tensor::scalar(0.0f64);
            for g in &grads {
                total = ops::add(&total, &ops::cast(&l2_squared(g)?, DType::F64)?)?;
            }
            let inverse = ops::divide(&1.0, &ops::sqrt(&total)?)?;
            let scale = ops::multiply(&c, &ops::minimum(&inverse, &(1.0 / c))?)?;
            grads
                .iter()
                .map(|g| ops::multiply(g, &ops::cast(&scale, g.dtype())?))
                .collect()
        }
    }
}

/// State every optimizer keeps: the learning rate, clipping, the step count and the slots
/// (momentum, first and second moments...) of each variable, created on first use.
///
/// ```
/// use gradtape::optimizers::*;
/// let opt = Adam::new(0.001); // every optimizer keeps a Common inside
/// assert_eq!(opt.iterations(), 0);
/// ```
pub struct Common {
    learning_rate: LearningRate,
    clip: Clip,
    /// The step count, an int64 variable (Keras's `optimizer.iterations`), and each variable's
    /// slots, variables too (Keras's slot variables), by the variable's handle: state that a
    /// step reads and assigns with ops, so that a step traced into a graph
    /// (`gradtape::function`, to come) keeps it up to date instead of freezing it.
    iterations: Variable,
    slots: HashMap<u64, Vec<Variable>>,
}

impl Common {
    /// The state of a new optimizer: no steps taken, no slots yet, no clipping. An optimizer
    /// of your own keeps one and returns it from [`Optimizer::common`].
    pub fn new(learning_rate: impl Into<LearningRate>) -> Self {
        Common {
            learning_rate: learning_rate.into(),
            clip: Clip::None,
            iterations: Variable::with_options(
                Tensor::scalar(0i64),
                VariableOptions {
                    name: Some("iterations".into()),
                    trainable: false,
                },
            ),
            slots: HashMap::new(),
        }
    }

    /// The slot variables of `var`, made (at `init`, shaped like `value`) on its first update.
    fn slots_of(
        &mut self,
        var: &Variable,
        value: &Tensor,
        n: usize,
        init: f64,
    ) -> Result<Vec<Variable>> {
        if let Some(s) = self.slots.get(&var.handle_id()).filter(|s| s.len() == n) {
            return Ok(s.clone());
        }
        let made = (0..n)
            .map(|k| {
                Ok(Variable::with_options(
                    Tensor::full_like(value, init)?,
                    slot_options(var, k),
                ))
            })
            .collect::<Result<Vec<_>>>()?;
        self.slots.insert(var.handle_id(), made.clone());
        Ok(made)
    }
}

/// Slot `k` of `var`: named after it (`w/slot0`), not trainable.
fn slot_options(var: &Variable, k: usize) -> VariableOptions {
    VariableOptions {
        name: var.name().map(|n| format!("{n}/slot{k}")),
        trainable: false,
    }
}

/// The interface of every optimizer (Keras's `Optimizer`). To write one, keep a [`Common`]
/// and give the per-variable rule in [`Optimizer::update`]; `apply_gradients`, `minimize`,
/// clipping, learning-rate schedules and the step count come with the trait (as a Keras
/// optimizer subclass gives `update_step` only).
///
/// ```
/// use gradtape::optimizers::{Common, Optimizer};
/// use gradtape::{ops, Result, Tensor, Variable};
/// /// signSGD: a step of `lr` against the sign of each gradient element, with momentum.
/// struct SignSgd { common: Common }
/// impl Optimizer for SignSgd {
///     fn common(&self) -> &Common { &self.common }
///     fn common_mut(&mut self) -> &mut Common { &mut self.common }
///     fn slot_count(&self) -> usize { 1 } // the momentum of each variable
///     fn update(&self, var: &Tensor, grad: &Tensor, lr: f64, _t: f64, slots: &mut [Tensor]) -> Result<Tensor> {
///         slots[0] = ops::add(&ops::multiply(&slots[0], &0.9)?, grad)?;
///         ops::subtract(var, &ops::multiply(&ops::sign(&slots[0])?, &lr)?)
///     }
/// }
/// let v = Variable::new(Tensor::from_vec(vec![1.0f32, -1.0], &[2])?);
/// let mut opt = SignSgd { common: Common::new(0.25) };
/// opt.apply_gradients(&[(Some(Tensor::from_vec(vec![3.0f32, -0.5], &[2])?), &v)])?;
/// assert_eq!(v.value().to_vec::<f32>()?, vec![0.75, -0.75]);
/// assert_eq!(opt.iterations(), 1);
/// # Ok::<(), gradtape::Error>(())
/// ```
///
/// ```
/// use gradtape::optimizers::*;
/// let mut opts: Vec<Box<dyn Optimizer>> = vec![Box::new(SGD::new(0.1)), Box::new(Adam::new(0.1))];
/// let v = gradtape::Variable::new(1.0);
/// for o in &mut opts { o.apply_gradients(&[(Some(gradtape::Tensor::scalar(1.0f32)), &v)])?; }
/// assert!(v.value().to_scalar::<f32>()? < 1.0);
/// # Ok::<(), gradtape::Error>(())
/// ```
pub trait Optimizer {
    /// The state the trait's methods keep for you (learning rate, clipping, step count,
    /// slots).
    fn common(&self) -> &Common;
    /// The same, to update.
    fn common_mut(&mut self) -> &mut Common;
    /// How many slots (tensors shaped like the variable: momentum, moments...) each variable
    /// gets.
    fn slot_count(&self) -> usize;
    /// The value slots start at (0 unless overridden; Adagrad starts its accumulator higher).
    fn slot_initial_value(&self) -> f64 {
        0.0
    }
    /// The new value of `var` from its (clipped) gradient, the learning rate of this step,
    /// the step `t` (1 for the first update) and its slots (updated in place). Runs with
    /// recording off.
    ///
    /// # Errors
    /// As the ops it uses.
    fn update(
        &self,
        var: &Tensor,
        grad: &Tensor,
        lr: f64,
        t: f64,
        slots: &mut [Tensor],
    ) -> Result<Tensor>;

    /// [`Optimizer::update`] with the learning rate and the step as float64 scalar tensors,
    /// computed with ops from the step count, and the slots as the variables that hold them
    /// (assign each its new value): what `apply_gradients` calls. The default reads the rate
    /// and the step back to the host and calls `update` on the slots' values; the optimizers
    /// here override it and compute with the tensors, so that a step traced into a graph
    /// (`gradtape::function`, to come) recomputes them at every call, and assign each slot as
    /// soon as it is computed, so that its old value is freed as early as before the slots
    /// were variables. Override it too when your rule should trace.
    ///
    /// # Errors
    /// As `update`, when `lr` or `t` cannot be read back, or a new slot value differs from
    /// its variable in shape or dtype.
    fn update_with(
        &self,
        var: &Tensor,
        grad: &Tensor,
        lr: &Tensor,
        t: &Tensor,
        slots: &[Variable],
    ) -> Result<Tensor> {
        let mut values: Vec<Tensor> = slots.iter().map(Variable::read_value).collect();
        let new = self.update(var, grad, lr.item()?, t.item()?, &mut values)?;
        for (s, value) in slots.iter().zip(&values) {
            s.assign(value)?;
        }
        Ok(new)
    }

    /// Applies one update to each variable that has a gradient, from any iterator of
    /// (gradient, variable) pairs: Keras's `apply_gradients(zip(grads, vars))` is
    /// `apply_gradients(grads.into_iter().zip(&vars))`, and a slice of pairs works too. `None`
    /// gradients are skipped with a warning naming the variables (as Keras does); all `None` is
    /// an error.
    ///
    /// # Errors
    /// When every gradient is `None`, or a gradient's shape or dtype differs from its variable's.
    ///
    /// ```
    /// use gradtape::optimizers::{Optimizer, SGD};
    /// use gradtape::{ops, GradientTape, Variable};
    /// let vars = vec![Variable::new(1.0), Variable::new(2.0)];
    /// let tape = GradientTape::new();
    /// let loss = ops::multiply(&vars[0], &vars[1])?;
    /// let grads = tape.gradient(&loss, &vars)?;
    /// SGD::new(0.5).apply_gradients(grads.into_iter().zip(&vars))?;
    /// assert_eq!(vars[0].value().to_scalar::<f32>()?, 0.0);
    /// # Ok::<(), gradtape::Error>(())
    /// ```
    fn apply_gradients<'v, I>(&mut self, grads_and_vars: I) -> Result<()>
    where
        I: IntoIterator,
        I::Item: GradientAndVariable<'v>,
        Self: Sized,
    {
        let pairs: Vec<(Option<Tensor>, &Variable)> = grads_and_vars
            .into_iter()
            .map(GradientAndVariable::into_pair)
            .collect();
        self.apply_gradient_pairs(&pairs)
    }

    /// Keras's `minimize`: records `loss` on a fresh tape, takes its gradients with respect to
    /// `var_list` and applies them. Returns the loss.
    ///
    /// # Errors
    /// As `loss`, the gradient and [`Optimizer::apply_gradients`].
    ///
    /// ```
    /// use gradtape::optimizers::{Optimizer, SGD};
    /// use gradtape::{ops, Variable};
    /// let w = vec![Variable::new(3.0)];
    /// let mut opt = SGD::new(0.25);
    /// for _ in 0..50 {
    ///     opt.minimize(|| ops::square(&w[0]), &w)?; // w ← w - 0.25 · 2w
    /// }
    /// assert!(w[0].value().to_scalar::<f32>()?.abs() < 1e-6);
    /// # Ok::<(), gradtape::Error>(())
    /// ```
    fn minimize(
        &mut self,
        loss: impl FnOnce() -> Result<Tensor>,
        var_list: &[Variable],
    ) -> Result<Tensor>
    where
        Self: Sized,
    {
        let tape = gradtape_core::GradientTape::new();
        let value = loss()?;
        let grads = tape.gradient(&value, var_list)?;
        self.apply_gradients(grads.into_iter().zip(var_list))?;
        Ok(value)
    }

    /// [`Optimizer::apply_gradients`] on a slice of pairs, the form a `dyn Optimizer` can call.
    ///
    /// # Errors
    /// As [`Optimizer::apply_gradients`].
    fn apply_gradient_pairs(
        &mut self,
        grads_and_vars: &[(Option<Tensor>, &Variable)],
    ) -> Result<()> {
        let op = "apply_gradients";
        let (present, missing): (Vec<_>, Vec<_>) =
            grads_and_vars.iter().partition(|(g, _)| g.is_some());
        if present.is_empty() {
            let names: Vec<&str> = missing
                .iter()
                .map(|(_, v)| v.name().unwrap_or("(unnamed)"))
                .collect();
            return Err(Error::arg(
                op,
                format!("no gradients for any variable: {names:?}"),
            ));
        }
        if !missing.is_empty() {
            let names: Vec<&str> = missing
                .iter()
                .map(|(_, v)| v.name().unwrap_or("(unnamed)"))
                .collect();
            eprintln!("gradtape: warning: gradients do not exist for variables {names:?} when applying gradients");
        }
        let mut grads = vec![];
        let mut vars = vec![];
        for (g, v) in present {
            let g = g
                .as_ref()
                .ok_or_else(|| Error::tape(op, "gradient vanished"))?;
            if g.shape() != v.shape() || g.dtype() != v.dtype() {
                return Err(Error::shape(
                    op,
                    format!(
                        "gradient {} {:?} does not match variable {} {} {:?}",
                        g.dtype(),
                        g.shape(),
                        v.name().unwrap_or("(unnamed)"),
                        v.dtype(),
                        v.shape()
                    ),
                ));
            }
            grads.push(g.clone());
            vars.push(*v);
        }
        tape::without_recording(|| {
            let c = self.common();
            let grads = clip(grads, c.clip)?;
            // the rate and the step `t` (1 for the first update) from the count, with ops
            let step = c.iterations.read_value();
            let lr = c.learning_rate.at_tensor(&step)?;
            let t = ops::cast(&ops::add(&step, &1)?, DType::F64)?;
            let (n, init) = (self.slot_count(), self.slot_initial_value());
            for (g, v) in grads.iter().zip(&vars) {
                let value = v.read_value();
                let slots = self.common_mut().slots_of(v, &value, n, init)?;
                let new = self.update_with(&value, g, &lr, &t, &slots)?;
                v.assign(&new)?;
            }
            self.common().iterations.assign_add(&1)
        })
    }

    /// Number of updates applied so far (read from [`Optimizer::iterations_variable`]).
    fn iterations(&self) -> u64 {
        let count = self.common().iterations.read_value().to_scalar::<i64>();
        count.map_or(0, |n| n.max(0) as u64)
    }

    /// The step count itself, an int64 variable (Keras's `optimizer.iterations`).
    ///
    /// ```
    /// use gradtape::optimizers::{Optimizer, SGD};
    /// let v = gradtape::Variable::new(1.0);
    /// let mut opt = SGD::new(0.1);
    /// opt.apply_gradients([(gradtape::Tensor::scalar(1.0f32), &v)])?;
    /// assert_eq!(opt.iterations_variable().value().to_scalar::<i64>()?, 1);
    /// # Ok::<(), gradtape::Error>(())
    /// ```
    fn iterations_variable(&self) -> &Variable {
        &self.common().iterations
    }

    /// Every variable the optimizer keeps (Keras's `optimizer.variables`): the step count,
    /// then the slots of each variable it updated, in the order those variables were made.
    ///
    /// ```
    /// use gradtape::optimizers::{Adam, Optimizer};
    /// use gradtape::{Tensor, Variable, VariableOptions};
    /// let w = Variable::with_options(1.0, VariableOptions { name: Some("w".into()), trainable: true });
    /// let mut opt = Adam::new(0.1);
    /// opt.apply_gradients([(Tensor::scalar(1.0f32), &w)])?;
    /// let names: Vec<String> = opt.variables().iter().map(|v| v.name().unwrap_or("").to_string()).collect();
    /// assert_eq!(names, ["iterations", "w/slot0", "w/slot1"]);
    /// # Ok::<(), gradtape::Error>(())
    /// ```
    fn variables(&self) -> Vec<Variable> {
        let c = self.common();
        let mut by_variable: Vec<(&u64, &Vec<Variable>)> = c.slots.iter().collect();
        by_variable.sort_by_key(|(id, _)| **id);
        std::iter::once(c.iterations.clone())
            .chain(by_variable.into_iter().flat_map(|(_, s)| s.iter().cloned()))
            .collect()
    }

    /// The learning rate the next update will use.
    fn learning_rate(&self) -> f64 {
        let c = self.common();
        c.learning_rate.at(self.iterations())
    }

    /// The optimizer's state for `vars` as named tensors, for a checkpoint: the step count
    /// (`optimizer/iterations`) and each variable's slots (`optimizer/{variable}/slot{k}`:
    /// momentum, Adam's moments...). Saved with the model, a resumed run continues exactly
    /// where it stopped ([`crate::checkpoint::save_with_optimizer`]).
    ///
    /// # Errors
    /// When a variable that has slots has no name.
    ///
    /// ```
    /// use gradtape::optimizers::{Adam, Optimizer};
    /// use gradtape::{Tensor, Variable, VariableOptions};
    /// let w = Variable::with_options(1.0, VariableOptions { name: Some("w".into()), trainable: true });
    /// let mut opt = Adam::new(0.1);
    /// opt.apply_gradients([(Tensor::scalar(1.0f32), &w)])?;
    /// let names: Vec<String> = opt.state(&[w])?.into_iter().map(|(n, _)| n).collect();
    /// assert_eq!(names, ["optimizer/iterations", "optimizer/w/slot0", "optimizer/w/slot1"]);
    /// # Ok::<(), gradtape::Error>(())
    /// ```
    fn state(&self, vars: &[Variable]) -> Result<Vec<(String, Tensor)>> {
        let c = self.common();
        let mut out = vec![(
            "optimizer/iterations".to_string(),
            c.iterations.read_value(),
        )];
        for v in vars {
            let Some(slots) = c.slots.get(&v.handle_id()) else {
                continue;
            };
            let name = v.name().ok_or_else(|| {
                Error::arg(
                    "Optimizer::state",
                    format!(
                        "a variable of shape {:?} with optimizer slots has no name",
                        v.shape()
                    ),
                )
            })?;
            for (k, s) in slots.iter().enumerate() {
                out.push((format!("optimizer/{name}/slot{k}"), s.read_value()));
            }
        }
        Ok(out)
    }

    /// Restores what [`Optimizer::state`] saved, matching variables by name. Checks everything
    /// before changing anything.
    ///
    /// # Errors
    /// When the step count is missing, or a slot is missing, or differs from its variable in
    /// shape or dtype.
    fn load_state(
        &mut self,
        vars: &[Variable],
        tensors: &std::collections::BTreeMap<String, Tensor>,
    ) -> Result<()> {
        let op = "Optimizer::load_state";
        let iterations = tensors
            .get("optimizer/iterations")
            .ok_or_else(|| Error::io(op, "no optimizer state (optimizer/iterations is missing)"))?
            .to_scalar::<i64>()?;
        let n = self.slot_count();
        let mut restored = vec![];
        for v in vars {
            let Some(name) = v.name() else { continue };
            let found: Vec<Option<&Tensor>> = (0..n)
                .map(|k| tensors.get(&format!("optimizer/{name}/slot{k}")))
                .collect();
            if found.iter().all(Option::is_none) {
                continue; // never updated when saved: its slots start fresh, as they would have
            }
            let mut slots = vec![];
            for (k, t) in found.into_iter().enumerate() {
                match t {
                    Some(t) if t.shape() == v.shape() && t.dtype() == v.dtype() => {
                        slots.push(t.clone())
                    }
                    Some(t) => {
                        return Err(Error::shape(
                            op,
                            format!(
                                "optimizer/{name}/slot{k} is {} {:?} but the variable is {} {:?}",
                                t.dtype(),
                                t.shape(),
                                v.dtype(),
                                v.shape()
                            ),
                        ))
                    }
                    None => {
                        return Err(Error::io(
                            op,
                            format!("optimizer/{name}/slot{k} is missing"),
                        ))
                    }
                }
            }
            restored.push((v, slots));
        }
        let c = self.common_mut();
        c.iterations.assign(&Tensor::scalar(iterations.max(0)))?;
        for (v, slots) in restored {
            let made = slots
                .into_iter()
                .enumerate()
                .map(|(k, t)| Variable::with_options(t, slot_options(v, k)))
                .collect();
            c.slots.insert(v.handle_id(), made);
        }
        Ok(())
    }
}

/// One (gradient, variable) pair as [`Optimizer::apply_gradients`] takes it: a gradient as
/// `tape.gradient` returns it (`Option<Tensor>`, owned or borrowed) or a plain `Tensor`, with
/// a `&Variable`; or a reference to such a pair.
pub trait GradientAndVariable<'v> {
    /// The pair, owned.
    fn into_pair(self) -> (Option<Tensor>, &'v Variable);
}

impl<'v> GradientAndVariable<'v> for (Option<Tensor>, &'v Variable) {
    fn into_pair(self) -> (Option<Tensor>, &'v Variable) {
        self
    }
}
impl<'v> GradientAndVariable<'v> for (Tensor, &'v Variable) {
    fn into_pair(self) -> (Option<Tensor>, &'v Variable) {
        (Some(self.0), self.1)
    }
}
impl<'v> GradientAndVariable<'v> for (&Option<Tensor>, &'v Variable) {
    fn into_pair(self) -> (Option<Tensor>, &'v Variable) {
        (self.0.clone(), self.1)
    }
}
impl<'v> GradientAndVariable<'v> for &(Option<Tensor>, &'v Variable) {
    fn into_pair(self) -> (Option<Tensor>, &'v Variable) {
        (self.0.clone(), self.1)
    }
}

/// A boxed optimizer is an optimizer, so `Box<dyn Optimizer>` has the generic methods too.
impl<O: Optimizer + ?Sized> Optimizer for Box<O> {
    fn common(&self) -> &Common {
        (**self).common()
    }
    fn common_mut(&mut self) -> &mut Common {
        (**self).common_mut()
    }
    fn slot_count(&self) -> usize {
        (**self).slot_count()
    }
    fn slot_initial_value(&self) -> f64 {
        (**self).slot_initial_value()
    }
    fn update(
        &self,
        var: &Tensor,
        grad: &Tensor,
        lr: f64,
        t: f64,
        slots: &mut [Tensor],
    ) -> Result<Tensor> {
        (**self).update(var, grad, lr, t, slots)
    }
    fn update_with(
        &self,
        var: &Tensor,
        grad: &Tensor,
        lr: &Tensor,
        t: &Tensor,
        slots: &[Variable],
    ) -> Result<Tensor> {
        (**self).update_with(var, grad, lr, t, slots)
    }
    fn apply_gradient_pairs(
        &mut self,
        grads_and_vars: &[(Option<Tensor>, &Variable)],
    ) -> Result<()> {
        (**self).apply_gradient_pairs(grads_and_vars)
    }
}

macro_rules! clip_builders {
    ($t:ty, $init:ident) => {
        clip_builders!(@impl $t, |s: &$t| s.$init);
    };
    ($t:ty) => {
        clip_builders!(@impl $t, |_s: &$t| 0.0);
    };
    (@impl $t:ty, $init:expr) => {
        impl $t {
            /// Clips each gradient to this L2 norm (Keras's `clipnorm`).
            ///
            /// ```
            /// use gradtape::optimizers::*;
            /// let v = gradtape::Variable::new(0.0);
            /// let mut o = SGD::new(1.0).clipnorm(1.0);
            /// o.apply_gradients(&[(Some(gradtape::Tensor::scalar(5.0f32)), &v)])?;
            /// assert_eq!(v.value().to_scalar::<f32>()?, -1.0);
            /// # Ok::<(), gradtape::Error>(())
            /// ```
            pub fn clipnorm(mut self, v: f64) -> Self {
                self.common.clip = Clip::Norm(v);
                self
            }
            /// Clips all gradients together to this L2 norm (Keras's `global_clipnorm`).
            ///
            /// ```
            /// use gradtape::optimizers::*;
            /// let v = gradtape::Variable::new(0.0);
            /// let mut o = SGD::new(1.0).global_clipnorm(2.0);
            /// o.apply_gradients(&[(Some(gradtape::Tensor::scalar(-8.0f32)), &v)])?;
            /// assert_eq!(v.value().to_scalar::<f32>()?, 2.0);
            /// # Ok::<(), gradtape::Error>(())
            /// ```
            pub fn global_clipnorm(mut self, v: f64) -> Self {
                self.common.clip = Clip::GlobalNorm(v);
                self
            }
            /// Clamps gradient elements to `[-v, v]` (Keras's `clipvalue`).
            ///
            /// ```
            /// use gradtape::optimizers::*;
            /// let v = gradtape::Variable::new(0.0);
            /// let mut o = SGD::new(1.0).clipvalue(0.5);
            /// o.apply_gradients(&[(Some(gradtape::Tensor::scalar(3.0f32)), &v)])?;
            /// assert_eq!(v.value().to_scalar::<f32>()?, -0.5);
            /// # Ok::<(), gradtape::Error>(())
            /// ```
            pub fn clipvalue(mut self, v: f64) -> Self {
                self.common.clip = Clip::Value(v);
                self
            }
        }
        impl Optimizer for $t {
            fn common(&self) -> &Common {
                &self.common
            }
            fn common_mut(&mut self) -> &mut Common {
                &mut self.common
            }
            fn slot_count(&self) -> usize {
                self.slots()
            }
            fn slot_initial_value(&self) -> f64 {
                ($init)(self)
            }
            fn update(&self, var: &Tensor, grad: &Tensor, lr: f64, t: f64, slots: &mut [Tensor]) -> Result<Tensor> {
                on_slot_values(slots, |s| self.rule(var, grad, &Tensor::scalar(lr), &Tensor::scalar(t), s))
            }
            fn update_with(&self, var: &Tensor, grad: &Tensor, lr: &Tensor, t: &Tensor, slots: &[Variable]) -> Result<Tensor> {
                self.rule(var, grad, lr, t, slots)
            }
        }
    };
}

use ops::{add, divide, maximum, multiply, sqrt, square, subtract};

/// `rule` (written on slot variables) on slots given as values, for the `update` form of the
/// optimizers here: the values in variables of their own for the call, then back.
fn on_slot_values(
    slots: &mut [Tensor],
    rule: impl FnOnce(&[Variable]) -> Result<Tensor>,
) -> Result<Tensor> {
    let held: Vec<Variable> = slots
        .iter()
        .map(|t| {
            Variable::with_options(
                t.clone(),
                VariableOptions {
                    name: None,
                    trainable: false,
                },
            )
        })
        .collect();
    let new = rule(&held)?;
    for (t, v) in slots.iter_mut().zip(&held) {
        *t = v.read_value();
    }
    Ok(new)
}

/// A float64 scalar (a rate, a bias correction) in the dtype of the variable it updates: the
/// rounding a Rust number gets when it meets a tensor.
fn in_dtype_of(var: &Tensor, x: &Tensor) -> Result<Tensor> {
    ops::cast(x, var.dtype())
}

// ---------------------------------------------------------------------------------------------
// The optimizers

/// Stochastic gradient descent with optional (Nesterov) momentum. Keras defaults:
/// learning rate 0.01, momentum 0.
///
/// ```
/// use gradtape::optimizers::{Optimizer, SGD};
/// let v = gradtape::Variable::new(1.0);
/// let mut opt = SGD::new(0.1);
/// opt.apply_gradients(&[(Some(gradtape::Tensor::scalar(2.0f32)), &v)])?;
/// assert!((v.value().to_scalar::<f32>()? - 0.8).abs() < 1e-7);
/// # Ok::<(), gradtape::Error>(())
/// ```
pub struct SGD {
    common: Common,
    momentum: f64,
    nesterov: bool,
}

impl SGD {
    /// Plain SGD with this learning rate (a number or a schedule).
    ///
    /// ```
    /// use gradtape::optimizers::*;
    /// assert_eq!(SGD::new(0.01).learning_rate(), 0.01);
    /// ```
    pub fn new(learning_rate: impl Into<LearningRate>) -> Self {
        SGD {
            common: Common::new(learning_rate.into()),
            momentum: 0.0,
            nesterov: false,
        }
    }
    /// Momentum in `[0, 1)`.
    ///
    /// ```
    /// use gradtape::optimizers::*;
    /// let _ = SGD::new(0.01).momentum(0.9);
    /// ```
    pub fn momentum(mut self, m: f64) -> Self {
        self.momentum = m;
        self
    }
    /// Nesterov momentum.
    ///
    /// ```
    /// use gradtape::optimizers::*;
    /// let _ = SGD::new(0.01).momentum(0.9).nesterov(true);
    /// ```
    pub fn nesterov(mut self, yes: bool) -> Self {
        self.nesterov = yes;
        self
    }
    fn slots(&self) -> usize {
        usize::from(self.momentum != 0.0)
    }
    fn rule(
        &self,
        var: &Tensor,
        g: &Tensor,
        lr: &Tensor,
        _t: &Tensor,
        s: &[Variable],
    ) -> Result<Tensor> {
        let lr = &in_dtype_of(var, lr)?;
        if self.momentum == 0.0 {
            return subtract(var, &multiply(g, lr)?);
        }
        // m = momentum·m - lr·g; var += momentum·m - lr·g (Nesterov) or var += m
        let m = subtract(
            &multiply(&s[0].read_value(), &self.momentum)?,
            &multiply(g, lr)?,
        )?;
        s[0].assign(&m)?;
        if self.nesterov {
            add(
                var,
                &subtract(&multiply(&m, &self.momentum)?, &multiply(g, lr)?)?,
            )
        } else {
            add(var, &m)
        }
    }
}
clip_builders!(SGD);

/// Adam (Kingma & Ba) with Keras's bias correction folded into the learning rate, and AMSGrad.
/// Keras defaults: learning rate 0.001, β₁ 0.9, β₂ 0.999, ε 1e-7.
///
/// ```
/// use gradtape::optimizers::{Adam, Optimizer};
/// let v = gradtape::Variable::new(1.0);
/// let mut opt = Adam::new(0.1);
/// opt.apply_gradients(&[(Some(gradtape::Tensor::scalar(5.0f32)), &v)])?;
/// assert!((v.value().to_scalar::<f32>()? - 0.9).abs() < 1e-6); // the first step is lr·sign(g)
/// # Ok::<(), gradtape::Error>(())
/// ```
pub struct Adam {
    common: Common,
    beta_1: f64,
    beta_2: f64,
    epsilon: f64,
    amsgrad: bool,
    weight_decay: f64,
}

impl Adam {
    /// Adam with this learning rate and Keras's other defaults.
    ///
    /// ```
    /// use gradtape::optimizers::*;
    /// assert_eq!(Adam::new(0.001).learning_rate(), 0.001);
    /// ```
    pub fn new(learning_rate: impl Into<LearningRate>) -> Self {
        Adam {
            common: Common::new(learning_rate.into()),
            beta_1: 0.9,
            beta_2: 0.999,
            epsilon: 1e-7,
            amsgrad: false,
            weight_decay: 0.0,
        }
    }
    /// Decay rate of the first moment.
    ///
    /// ```
    /// use gradtape::optimizers::*;
    /// let _ = Adam::new(0.001).beta_1(0.8);
    /// ```
    pub fn beta_1(mut self, v: f64) -> Self {
        self.beta_1 = v;
        self
    }
    /// Decay rate of the second moment.
    ///
    /// ```
    /// use gradtape::optimizers::*;
    /// let _ = Adam::new(0.001).beta_2(0.99);
    /// ```
    pub fn beta_2(mut self, v: f64) -> Self {
        self.beta_2 = v;
        self
    }
    /// The ε added to the denominator.
    ///
    /// ```
    /// use gradtape::optimizers::*;
    /// let _ = Adam::new(0.001).epsilon(1e-8);
    /// ```
    pub fn epsilon(mut self, v: f64) -> Self {
        self.epsilon = v;
        self
    }
    /// Use the maximum of past second moments (AMSGrad).
    ///
    /// ```
    /// use gradtape::optimizers::*;
    /// let _ = Adam::new(0.001).amsgrad(true);
    /// ```
    pub fn amsgrad(mut self, yes: bool) -> Self {
        self.amsgrad = yes;
        self
    }
    fn slots(&self) -> usize {
        if self.amsgrad {
            3
        } else {
            2
        }
    }
    fn rule(
        &self,
        var: &Tensor,
        g: &Tensor,
        lr: &Tensor,
        t: &Tensor,
        s: &[Variable],
    ) -> Result<Tensor> {
        let mut var = var.clone();
        if self.weight_decay != 0.0 {
            // decoupled weight decay (AdamW): var -= var · wd · lr
            let decay = in_dtype_of(&var, &multiply(&self.weight_decay, lr)?)?;
            var = subtract(&var, &multiply(&var, &decay)?)?;
        }
        // lr · √(1 - β₂ᵗ) / (1 - β₁ᵗ), in float64 as before, then in the variable's dtype
        let alpha = divide(
            &multiply(lr, &sqrt(&subtract(&1.0, &ops::pow(&self.beta_2, t)?)?)?)?,
            &subtract(&1.0, &ops::pow(&self.beta_1, t)?)?,
        )?;
        let alpha = &in_dtype_of(&var, &alpha)?;
        // m += (g - m)(1 - β₁); v += (g² - v)(1 - β₂)
        let m = {
            let m = s[0].read_value();
            add(&m, &multiply(&subtract(g, &m)?, &(1.0 - self.beta_1))?)?
        };
        let v = {
            let v = s[1].read_value();
            add(
                &v,
                &multiply(&subtract(&square(g)?, &v)?, &(1.0 - self.beta_2))?,
            )?
        };
        s[0].assign(&m)?;
        s[1].assign(&v)?;
        let denom_v = if self.amsgrad {
            let most = maximum(&s[2].read_value(), &v)?;
            s[2].assign(&most)?;
            most
        } else {
            v
        };
        subtract(
            &var,
            &divide(
                &multiply(&m, alpha)?,
                &add(&sqrt(&denom_v)?, &self.epsilon)?,
            )?,
        )
    }
}
clip_builders!(Adam);

/// Adam with decoupled weight decay (Loshchilov & Hutter). Keras defaults: learning rate 0.001,
/// weight decay 0.004.
///
/// ```
/// use gradtape::optimizers::{AdamW, Optimizer};
/// let v = gradtape::Variable::new(1.0);
/// let mut opt = AdamW::new(0.1).weight_decay(0.5);
/// opt.apply_gradients(&[(Some(gradtape::Tensor::scalar(0.0f32)), &v)])?;
/// assert!((v.value().to_scalar::<f32>()? - 0.95).abs() < 1e-6); // decay only: 1 - 1·0.5·0.1
/// # Ok::<(), gradtape::Error>(())
/// ```
pub struct AdamW(Adam);

impl AdamW {
    /// AdamW with this learning rate and Keras's defaults.
    ///
    /// ```
    /// use gradtape::optimizers::*;
    /// assert_eq!(AdamW::new(0.001).learning_rate(), 0.001);
    /// ```
    pub fn new(learning_rate: impl Into<LearningRate>) -> Self {
        let mut a = Adam::new(learning_rate);
        a.weight_decay = 0.004;
        AdamW(a)
    }
    /// The decoupled weight decay coefficient.
    ///
    /// ```
    /// use gradtape::optimizers::*;
    /// let _ = AdamW::new(0.001).weight_decay(0.01);
    /// ```
    pub fn weight_decay(mut self, v: f64) -> Self {
        self.0.weight_decay = v;
        self
    }
    /// Use AMSGrad.
    ///
    /// ```
    /// use gradtape::optimizers::*;
    /// let _ = AdamW::new(0.001).amsgrad(true);
    /// ```
    pub fn amsgrad(mut self, yes: bool) -> Self {
        self.0 = self.0.amsgrad(yes);
        self
    }
    /// Clips each gradient to this L2 norm (Keras's `clipnorm`).
    ///
    /// ```
    /// use gradtape::optimizers::*;
    /// let _ = AdamW::new(0.001).clipnorm(1.0);
    /// ```
    pub fn clipnorm(mut self, v: f64) -> Self {
        self.0 = self.0.clipnorm(v);
        self
    }
    /// Clips all gradients together to this L2 norm (Keras's `global_clipnorm`; AdamW lacked
    /// it and `clipvalue`, which every other optimizer has).
    ///
    /// ```
    /// use gradtape::optimizers::*;
    /// let v = gradtape::Variable::new(0.0);
    /// let mut o = AdamW::new(1.0).weight_decay(0.0).global_clipnorm(2.0);
    /// o.apply_gradients(&[(Some(gradtape::Tensor::scalar(-8.0f32)), &v)])?;
    /// assert!((v.value().to_scalar::<f32>()? - 1.0).abs() < 1e-5); // Adam's first step is lr
    /// # Ok::<(), gradtape::Error>(())
    /// ```
    pub fn global_clipnorm(mut self, v: f64) -> Self {
        self.0 = self.0.global_clipnorm(v);
        self
    }
    /// Clamps gradient elements to `[-v, v]` (Keras's `clipvalue`).
    ///
    /// ```
    /// use gradtape::optimizers::*;
    /// let _ = AdamW::new(0.001).clipvalue(0.5);
    /// ```
    pub fn clipvalue(mut self, v: f64) -> Self {
        self.0 = self.0.clipvalue(v);
        self
    }
}

impl Optimizer for AdamW {
    fn common(&self) -> &Common {
        &self.0.common
    }
    fn common_mut(&mut self) -> &mut Common {
        &mut self.0.common
    }
    fn slot_count(&self) -> usize {
        self.0.slots()
    }
    fn update(
        &self,
        var: &Tensor,
        grad: &Tensor,
        lr: f64,
        t: f64,
        slots: &mut [Tensor],
    ) -> Result<Tensor> {
        on_slot_values(slots, |s| {
            self.0
                .rule(var, grad, &Tensor::scalar(lr), &Tensor::scalar(t), s)
        })
    }
    fn update_with(
        &self,
        var: &Tensor,
        grad: &Tensor,
        lr: &Tensor,
        t: &Tensor,
        slots: &[Variable],
    ) -> Result<Tensor> {
        self.0.rule(var, grad, lr, t, slots)
    }
}

/// RMSprop. Keras defaults: learning rate 0.001, ρ 0.9, momentum 0, ε 1e-7, not centered.
///
/// ```
/// use gradtape::optimizers::{Optimizer, RMSprop};
/// let v = gradtape::Variable::new(1.0);
/// let mut opt = RMSprop::new(0.01);
/// opt.apply_gradients(&[(Some(gradtape::Tensor::scalar(1.0f32)), &v)])?;
/// assert!(v.value().to_scalar::<f32>()? < 1.0);
/// # Ok::<(), gradtape::Error>(())
/// ```
pub struct RMSprop {
    common: Common,
    rho: f64,
    momentum: f64,
    epsilon: f64,
    centered: bool,
}

impl RMSprop {
    /// RMSprop with this learning rate and Keras's defaults.
    ///
    /// ```
    /// use gradtape::optimizers::*;
    /// assert_eq!(RMSprop::new(0.001).learning_rate(), 0.001);
    /// ```
    pub fn new(learning_rate: impl Into<LearningRate>) -> Self {
        RMSprop {
            common: Common::new(learning_rate.into()),
            rho: 0.9,
            momentum: 0.0,
            epsilon: 1e-7,
            centered: false,
        }
    }
    /// Decay of the moving average of squared gradients.
    ///
    /// ```
    /// use gradtape::optimizers::*;
    /// let _ = RMSprop::new(0.001).rho(0.95);
    /// ```
    pub fn rho(mut self, v: f64) -> Self {
        self.rho = v;
        self
    }
    /// Momentum.
    ///
    /// ```
    /// use gradtape::optimizers::*;
    /// let _ = RMSprop::new(0.001).momentum(0.9);
    /// ```
    pub fn momentum(mut self, v: f64) -> Self {
        self.momentum = v;
        self
    }
    /// Normalise by the variance rather than the second moment.
    ///
    /// ```
    /// use gradtape::optimizers::*;
    /// let _ = RMSprop::new(0.001).centered(true);
    /// ```
    pub fn centered(mut self, yes: bool) -> Self {
        self.centered = yes;
        self
    }
    fn slots(&self) -> usize {
        3
    }
    fn rule(
        &self,
        var: &Tensor,
        g: &Tensor,
        lr: &Tensor,
        _t: &Tensor,
        s: &[Variable],
    ) -> Result<Tensor> {
        let lr = &in_dtype_of(var, lr)?;
        let vel = add(
            &multiply(&s[0].read_value(), &self.rho)?,
            &multiply(&square(g)?, &(1.0 - self.rho))?,
        )?;
        s[0].assign(&vel)?;
        let denom = if self.centered {
            let avg = add(
                &multiply(&s[1].read_value(), &self.rho)?,
                &multiply(g, &(1.0 - self.rho))?,
            )?;
            s[1].assign(&avg)?;
            add(&subtract(&vel, &square(&avg)?)?, &self.epsilon)?
        } else {
            add(&vel, &self.epsilon)?
        };
        let increment = divide(&multiply(g, lr)?, &sqrt(&denom)?)?;
        if self.momentum > 0.0 {
            let m = add(&multiply(&s[2].read_value(), &self.momentum)?, &increment)?;
            s[2].assign(&m)?;
            subtract(var, &m)
        } else {
            subtract(var, &increment)
        }
    }
}
clip_builders!(RMSprop);

/// Adagrad. Keras defaults: learning rate 0.001, initial accumulator 0.1, ε 1e-7.
///
/// ```
/// use gradtape::optimizers::{Adagrad, Optimizer};
/// let v = gradtape::Variable::new(1.0);
/// let mut opt = Adagrad::new(0.1);
/// opt.apply_gradients(&[(Some(gradtape::Tensor::scalar(1.0f32)), &v)])?;
/// assert!(v.value().to_scalar::<f32>()? < 1.0);
/// # Ok::<(), gradtape::Error>(())
/// ```
pub struct Adagrad {
    common: Common,
    initial_accumulator_value: f64,
    epsilon: f64,
}

impl Adagrad {
    /// Adagrad with this learning rate and Keras's defaults.
    ///
    /// ```
    /// use gradtape::optimizers::*;
    /// assert_eq!(Adagrad::new(0.1).learning_rate(), 0.1);
    /// ```
    pub fn new(learning_rate: impl Into<LearningRate>) -> Self {
        Adagrad {
            common: Common::new(learning_rate.into()),
            initial_accumulator_value: 0.1,
            epsilon: 1e-7,
        }
    }
    /// Starting value of the accumulators.
    ///
    /// ```
    /// use gradtape::optimizers::*;
    /// let _ = Adagrad::new(0.1).initial_accumulator_value(0.0);
    /// ```
    pub fn initial_accumulator_value(mut self, v: f64) -> Self {
        self.initial_accumulator_value = v;
        self
    }
    fn slots(&self) -> usize {
        1
    }
    fn rule(
        &self,
        var: &Tensor,
        g: &Tensor,
        lr: &Tensor,
        _t: &Tensor,
        s: &[Variable],
    ) -> Result<Tensor> {
        let lr = &in_dtype_of(var, lr)?;
        let acc = add(&s[0].read_value(), &square(g)?)?;
        s[0].assign(&acc)?;
        subtract(
            var,
            &divide(&multiply(g, lr)?, &sqrt(&add(&acc, &self.epsilon)?)?)?,
        )
    }
}
clip_builders!(Adagrad, initial_accumulator_value);
