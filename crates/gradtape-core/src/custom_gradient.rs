//! TensorFlow's `tf.custom_gradient`: an operation defined by its forward computation and its
//! own gradient function, for numerically stable gradients (`log1pexp`), straight-through
//! estimators, gradient clipping inside a model, or anything the chain rule gets wrong.
//!
//! The forward runs with recording off; the tapes then see one op whose inputs are the given
//! tensors (and every trainable variable the forward read) and whose gradient is the function
//! you wrote. That function receives the upstream gradient of every output and returns one
//! gradient (or `None`) per input, then one per variable read, in the order the forward first
//! read them (TensorFlow's `variables=` rule), flat or as TensorFlow's
//! `(input_grads, variable_grads)` ([`IntoGradients`]). Written with gradtape's ops, it is
//! itself recorded by an outer tape, so second derivatives go through it.
//!
//! As in TensorFlow, one output is returned as itself (`Ok((y, grad))`, answered as a
//! `Tensor`), several as a `Vec` or tuple. The gradient closure names its parameters' types
//! (`|dy: &[Tensor], _: &_|`): Rust infers them only for a closure passed straight to a
//! function, and this one is returned. It owns what it reads (`move`, after a `clone` of a
//! borrowed input): a tensor's clone shares its storage, so that costs a reference count.

use std::rc::Rc;

use crate::error::{Error, Result};
use crate::function::Outputs;
use crate::tensor::Tensor;
use crate::variable::Variable;

/// The gradient function of a [`custom_gradient`]: upstream gradients (one per output, zeros for
/// an output the target does not use) and the variables the forward read; returns one
/// gradient per input, then one per variable.
pub type GradientFn = dyn Fn(&[Tensor], &[Variable]) -> Result<Vec<Option<Tensor>>>;

/// Runs `forward` on `inputs` and records it as one op whose gradient is the function it
/// returns (see the [module docs](self)).
///
/// # Errors
/// When `forward` fails; at gradient time, when the gradient function fails or returns the
/// wrong number of gradients (the message names the variables the forward read), or a
/// gradient whose shape or dtype differs from its input's.
///
/// TensorFlow's `log1pexp`, whose plain gradient is NaN at large `x` in float32:
///
/// ```
/// use gradtape::{custom_gradient, ops, GradientTape, Tensor};
/// fn log1pexp(x: &Tensor) -> gradtape::Result<Tensor> {
///     custom_gradient(&[x], |xs| {
///         let e = ops::exp(&xs[0])?;
///         let y = ops::log1p(&e)?;
///         // d/dx log(1 + eˣ) = 1 - 1 / (1 + eˣ), which stays finite where eˣ overflows
///         let grad = move |dy: &[Tensor], _: &_| {
///             let local = ops::subtract(&1.0, &ops::reciprocal(&ops::add(&e, &1.0)?)?)?;
///             ops::multiply(&dy[0], &local)
///         };
///         Ok((y, grad))
///     })
/// }
/// let x = Tensor::scalar(100.0f32);
/// let tape = GradientTape::new();
/// tape.watch(&x);
/// let y = log1pexp(&x)?;
/// let [g] = tape.gradient(&y, [&x])?;
/// assert_eq!(g.unwrap().to_scalar::<f32>()?, 1.0);
/// # Ok::<(), gradtape::Error>(())
/// ```
///
/// A gradient-clipping identity (the forward is the identity, the gradient is clipped):
///
/// ```
/// use gradtape::{custom_gradient, ops, GradientTape, Tensor};
/// let x = Tensor::from_vec(vec![3.0f32, -4.0], &[2])?;
/// let tape = GradientTape::new();
/// tape.watch(&x);
/// let y: Tensor = custom_gradient(&[&x], |xs| {
///     let grad = |dy: &[Tensor], _: &_| ops::clip_by_value(&dy[0], &-1.0, &1.0);
///     Ok((xs[0].clone(), grad))
/// })?;
/// let loss = ops::reduce_sum(&ops::multiply(&y, &10.0)?, gradtape::Axes::All, false)?;
/// let [g] = tape.gradient(&loss, [&x])?;
/// assert_eq!(g.unwrap().to_vec::<f32>()?, vec![1.0, 1.0]); // 10 clipped to 1
/// # Ok::<(), gradtape::Error>(())
/// ```
pub fn custom_gradient<F, O, G, R>(inputs: &[&Tensor], forward: F) -> Result<O>
where
    F: FnOnce(&[Tensor]) -> Result<(O, G)>,
    O: Outputs,
    G: Fn(&[Tensor], &[Variable]) -> Result<R> + 'static,
    R: IntoGradients,
{
    let args: Vec<Tensor> = inputs.iter().map(|t| (*t).clone()).collect();
    let (result, variables) = crate::context::tapes::run_custom_forward(|| forward(&args));
    let (outputs, grad) = result?;
    let outputs = outputs.into_tensors();
    let expected: Vec<(Vec<usize>, crate::DType)> = inputs
        .iter()
        .map(|t| (t.shape().to_vec(), t.dtype()))
        .chain(variables.iter().map(|v| (v.shape().to_vec(), v.dtype())))
        .collect();
    let vars = variables.clone();
    // The user's function, its answer checked: one gradient per input and per variable read,
    // each of its input's shape and dtype.
    let checked: Rc<Upstream> = Rc::new(move |upstream: &[Tensor]| {
        let grads = grad(upstream, &vars)?.into_gradients();
        check(&grads, &expected, &vars)?;
        Ok(grads)
    });
    let batched = inputs
        .iter()
        .copied()
        .chain(&outputs)
        .any(|t| t.batch().is_some());
    if batched
        && (crate::context::tapes::any_recording() || crate::context::accumulators::any_running())
    {
        if !variables.is_empty() {
            return Err(Error::tape(
                "custom_gradient",
                "a custom gradient whose forward reads variables, on one example's tensors inside vmap, under a tape or forward accumulator is not supported yet",
            ));
        }
        return O::from_tensors(record_batched(inputs, outputs, checked)?);
    }
    O::from_tensors(record(inputs, &variables, outputs, checked)?)
}

/// What a [`custom_gradient`]'s gradient function may return, as TensorFlow's may: one
/// gradient (`Tensor`, or `Option<Tensor>` for none), one per input (`Vec<Tensor>`,
/// `Vec<Option<Tensor>>`, or an array), or TensorFlow's `(input_grads, variable_grads)` pair
/// when the forward read variables. Everything flattens to one gradient per input, then one
/// per variable.
pub trait IntoGradients {
    /// The gradients, flat: inputs first, then variables.
    fn into_gradients(self) -> Vec<Option<Tensor>>;
}

impl IntoGradients for Tensor {
    fn into_gradients(self) -> Vec<Option<Tensor>> {
        vec![Some(self)]
    }
}

impl IntoGradients for Option<Tensor> {
    fn into_gradients(self) -> Vec<Option<Tensor>> {
        vec![self]
    }
}

impl<T: IntoGradients> IntoGradients for Vec<T> {
    fn into_gradients(self) -> Vec<Option<Tensor>> {
        self.into_iter().flat_map(T::into_gradients).collect()
    }
}

impl<T: IntoGradients, const N: usize> IntoGradients for [T; N] {
    fn into_gradients(self) -> Vec<Option<Tensor>> {
        self.into_iter().flat_map(T::into_gradients).collect()
    }
}

impl<A: IntoGradients, B: IntoGradients> IntoGradients for (A, B) {
    fn into_gradients(self) -> Vec<Option<Tensor>> {
        let mut flat = self.0.into_gradients();
        flat.extend(self.1.into_gradients());
        flat
    }
}

/// A gradient function given the upstream gradient of every output (see [`GradientFn`]).
type Upstream = dyn Fn(&[Tensor]) -> Result<Vec<Option<Tensor>>>;

/// Records the op on the tapes and accumulators: one entry per output, whose gradient is
/// `grad` with that output's upstream gradient and zeros for the others (it is linear in
/// them, so the tape's sum over outputs is the whole gradient). Returns the outputs under
/// fresh identities (an output may be an input returned as it is).
fn record(
    inputs: &[&Tensor],
    variables: &[Variable],
    outputs: Vec<Tensor>,
    grad: Rc<Upstream>,
) -> Result<Vec<Tensor>> {
    crate::context::traces::note_custom_gradient();
    let outputs: Vec<Tensor> = outputs
        .iter()
        .map(|o| {
            let fresh = o.with_new_id();
            crate::context::traces::alias(&fresh, o);
            fresh
        })
        .collect();
    let shapes: Rc<Vec<(Vec<usize>, crate::DType)>> = Rc::new(
        outputs
            .iter()
            .map(|o| (o.shape().to_vec(), o.dtype()))
            .collect(),
    );
    for (k, out) in outputs.iter().enumerate() {
        let vjp = {
            let (grad, shapes) = (grad.clone(), shapes.clone());
            move |g: &Tensor| -> Result<Vec<Option<Tensor>>> {
                let upstream = shapes
                    .iter()
                    .enumerate()
                    .map(|(j, (s, dt))| match j == k {
                        true => Ok(g.clone()),
                        false => Tensor::zeros(s, *dt),
                    })
                    .collect::<Result<Vec<_>>>()?;
                grad(&upstream)
            }
        };
        let jvp = |tangents: &[Option<Tensor>]| derived_jvp(&vjp, out, tangents);
        crate::record::record_custom(
            inputs,
            variables,
            out,
            || {
                let vjp = vjp.clone();
                move |g: &Tensor, _: &[bool], result: &mut Vec<Option<Tensor>>| {
                    result.extend(vjp(g)?);
                    Ok(())
                }
            },
            &jvp,
        )?;
    }
    Ok(outputs)
}

/// The batching rule of a custom gradient (JAX's for `custom_vjp`): inside a vmap the tapes
/// and accumulators see the whole batch, so the op is recorded on the batch behind the
/// examples' tensors of the innermost level, and its gradient function runs the user's on
/// the examples (the batch's upstream gradient as one example's tensor, at that level), each
/// input's gradient taken back to the batch: as it is for a batched input, summed over the
/// examples for one they share. Levels nest: the batch may itself be one example of an outer
/// vmap, taken apart the same way. The function may run after the vmap ended (a tape outside
/// it): the levels of the examples it captured run again while it does.
fn record_batched(
    inputs: &[&Tensor],
    outputs: Vec<Tensor>,
    grad: Rc<Upstream>,
) -> Result<Vec<Tensor>> {
    let all: Vec<&Tensor> = inputs.iter().copied().chain(&outputs).collect();
    let Some(level) = crate::context::levels::level_of(&all) else {
        return record(inputs, &[], outputs, grad);
    };
    let b = crate::context::levels::size_of(level)?;
    let saved = crate::context::levels::running();
    let shared: Vec<bool> = inputs
        .iter()
        .map(|x| crate::context::levels::at(x, level).is_none())
        .collect();
    let whole_inputs: Vec<Tensor> = inputs
        .iter()
        .map(|x| crate::context::levels::at(x, level).unwrap_or(x).clone())
        .collect();
    let whole_outputs: Vec<Tensor> = outputs
        .iter()
        .map(|y| crate::ops::batching::physical(y, level, b))
        .collect::<Result<_>>()?;
    let whole_grad: Rc<Upstream> = Rc::new(move |upstream: &[Tensor]| {
        crate::context::levels::with_levels(&saved, || {
            let upstream = upstream
                .iter()
                .map(|u| crate::ops::batching::batched_below(u, level))
                .collect::<Result<Vec<_>>>()?;
            grad(&upstream)?
                .into_iter()
                .zip(&shared)
                .map(|(g, &shared)| {
                    g.map(|g| {
                        let whole = crate::ops::batching::physical(&g, level, b)?;
                        match shared {
                            true => crate::ops::reduce_sum(&whole, 0, false),
                            false => Ok(whole),
                        }
                    })
                    .transpose()
                })
                .collect()
        })
    });
    let whole_inputs: Vec<&Tensor> = whole_inputs.iter().collect();
    let recorded = record_batched(&whole_inputs, whole_outputs, whole_grad)?;
    Ok(recorded
        .into_iter()
        .map(|p| Tensor::batched(p, level))
        .collect())
}

/// The JVP of an op known only by its gradient function `vjp` (`u ↦ Jᵀu`, linear in `u`):
/// `J t` is the gradient of `⟨Jᵀu, t⟩` with respect to `u`, at any `u` (zeros). It needs the
/// gradient function written with differentiable ops, as second derivatives do.
fn derived_jvp(
    vjp: &dyn Fn(&Tensor) -> Result<Vec<Option<Tensor>>>,
    out: &Tensor,
    tangents: &[Option<Tensor>],
) -> Result<Option<Tensor>> {
    let u = Tensor::zeros_like(out)?;
    let tape = crate::GradientTape::new();
    tape.watch(&u);
    let mut inner: Option<Tensor> = None;
    for (g, t) in vjp(&u)?.iter().zip(tangents) {
        if let (Some(g), Some(t)) = (g, t) {
            let term =
                crate::ops::reduce_sum(&crate::ops::multiply(g, t)?, crate::Axes::All, false)?;
            inner = Some(match inner {
                Some(s) => crate::ops::add(&s, &term)?,
                None => term,
            });
        }
    }
    let Some(inner) = inner else {
        return Ok(None);
    };
    let [j] = tape.gradient(&inner, [&u])?;
    j.map_or_else(|| Tensor::zeros_like(out), Ok).map(Some)
}

fn check(
    grads: &[Option<Tensor>],
    expected: &[(Vec<usize>, crate::DType)],
    vars: &[Variable],
) -> Result<()> {
    let op = "custom_gradient";
    if grads.len() != expected.len() {
        let names: Vec<&str> = vars
            .iter()
            .map(|v| v.name().unwrap_or("(unnamed)"))
            .collect();
        return Err(Error::tape(
            op,
            format!(
                "the gradient function returned {} gradients for {} inputs and {} variables the forward read ({names:?}): return one per input, then one per variable",
                grads.len(),
                expected.len() - vars.len(),
                vars.len()
            ),
        ));
    }
    for (i, (g, (shape, dtype))) in grads.iter().zip(expected).enumerate() {
        if let Some(g) = g {
            if !crate::shape::same(g.shape(), &shape[..]) || g.dtype() != *dtype {
                return Err(Error::shape(
                    op,
                    format!(
                        "gradient {i} is {} {:?}, but its input is {dtype} {shape:?}",
                        g.dtype(),
                        g.shape()
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// TensorFlow's `tf.recompute_grad` (PyTorch's `checkpoint`): `f` wrapped so that a tape keeps
/// only its inputs, not its intermediates; the backward pass runs `f` again on a tape of its
/// own and differentiates that. Same gradients, less memory held between the forward and the
/// backward pass, one more forward pass of `f` per gradient. Variables read inside `f` get
/// their gradients as usual.
///
/// # Errors
/// As `f`; at gradient time, as `f` run again and its gradient.
///
/// ```
/// use gradtape::{ops, recompute_grad, GradientTape, Tensor, Variable};
/// let w = Variable::new(Tensor::from_vec(vec![0.5f64, -1.0, 2.0, 0.25], &[2, 2])?);
/// let w2 = w.clone();
/// let block = recompute_grad(move |xs: &[Tensor]| Ok(vec![ops::tanh(&ops::matmul(&xs[0], &w2)?)?]));
/// let x = Tensor::from_vec(vec![1.0f64, 2.0], &[1, 2])?;
/// let tape = GradientTape::new();
/// let y = block(&[&x])?;
/// let plain = GradientTape::new();
/// let y2 = ops::tanh(&ops::matmul(&x, &w)?)?;
/// let [g] = tape.gradient(&y[0], [&w])?;
/// let [g2] = plain.gradient(&y2, [&w])?;
/// assert_eq!(g.unwrap().to_vec::<f64>()?, g2.unwrap().to_vec::<f64>()?);
/// # Ok::<(), gradtape::Error>(())
/// ```
pub fn recompute_grad<F>(f: F) -> impl Fn(&[&Tensor]) -> Result<Vec<Tensor>>
where
    F: Fn(&[Tensor]) -> Result<Vec<Tensor>> + 'static,
{
    let f = std::rc::Rc::new(f);
    move |inputs: &[&Tensor]| {
        let f = f.clone();
        custom_gradient(inputs, move |xs| {
            let outputs = f(xs)?;
            let saved: Vec<Tensor> = xs.to_vec();
            let grad = move |dy: &[Tensor], vars: &[Variable]| -> Result<Vec<Option<Tensor>>> {
                let tape = crate::GradientTape::new();
                // each argument its own input, as TensorFlow's identity (b/147369366): the
                // same tensor given twice was credited twice
                let saved: Vec<Tensor> = saved
                    .iter()
                    .map(crate::ops::identity)
                    .collect::<Result<_>>()?;
                for x in &saved {
                    tape.watch(x);
                }
                let outputs = f(&saved)?;
                let targets: Vec<&Tensor> = outputs.iter().collect();
                let sources: Vec<&dyn crate::Source> = saved
                    .iter()
                    .map(|x| x as &dyn crate::Source)
                    .chain(vars.iter().map(|v| v as &dyn crate::Source))
                    .collect();
                let options = crate::GradientOptions {
                    output_gradients: Some(dy.to_vec()),
                    ..Default::default()
                };
                tape.gradient_with(&targets, &sources, &options)
            };
            Ok((outputs, grad))
        })
    }
}

/// TensorFlow's `tf.grad_pass_through`: `f` wrapped so that its value is `f`'s and its
/// gradient is the identity's, for a step with no gradient of its own on the way (an
/// assign, a quantizer's rounding: a straight-through estimator). Variables read inside `f`
/// get no gradient from it, as in TensorFlow.
///
/// # Errors
/// As `f`; when `f`'s result differs from its argument in shape or dtype (the identity's
/// gradient would not fit).
///
/// TensorFlow's own example, `tf.grad_pass_through(x.assign)(z**2)`:
///
/// ```
/// use gradtape::{grad_pass_through, ops, GradientTape, Variable};
/// let (x, z) = (Variable::new(1.0), Variable::new(3.0));
/// let tape = GradientTape::new();
/// let assign = {
///     let x = x.clone();
///     grad_pass_through(move |t| {
///         x.assign(t)?;
///         Ok(x.value())
///     })
/// };
/// let y = assign(&ops::square(&z)?)?; // 9
/// let g = tape.gradient(&y, &z)?;
/// assert_eq!((y.item()?, g.unwrap().item()?), (9.0, 6.0));
/// # Ok::<(), gradtape::Error>(())
/// ```
pub fn grad_pass_through<F>(f: F) -> impl Fn(&Tensor) -> Result<Tensor>
where
    F: Fn(&Tensor) -> Result<Tensor> + 'static,
{
    let f = Rc::new(f);
    move |x: &Tensor| {
        let f = f.clone();
        let out = custom_gradient(&[x], move |xs| {
            let y = f(&xs[0])?;
            if !crate::shape::same(y.shape(), xs[0].shape()) || y.dtype() != xs[0].dtype() {
                return Err(Error::shape(
                    "grad_pass_through",
                    format!(
                        "the function maps {}{:?} to {}{:?}; the identity's gradient needs the same shape and dtype",
                        xs[0].dtype(),
                        xs[0].shape(),
                        y.dtype(),
                        y.shape()
                    ),
                ));
            }
            let grad = |dy: &[Tensor], vars: &[Variable]| -> Result<Vec<Option<Tensor>>> {
                Ok(std::iter::once(Some(dy[0].clone()))
                    .chain(vars.iter().map(|_| None))
                    .collect())
            };
            Ok((vec![y], grad))
        })?;
        out.into_iter()
            .next()
            .ok_or_else(|| Error::tape("grad_pass_through", "no output"))
    }
}

/// JAX's `custom_jvp`: `f` on `inputs`, differentiated by the JVP rule you give instead of
/// through `f`'s ops. `jvp(primals, tangents)` returns one tangent per output and must be
/// linear in the tangents (JAX's requirement too); written with gradtape's ops. Forward mode
/// (`ForwardAccumulator`, `func::jvp`, `jacfwd`) uses it; reverse mode (tapes, `grad`,
/// `jacrev`) uses its transpose, found as JAX finds it, by differentiating the rule with
/// respect to the tangents; `vmap` runs it per example; second derivatives differentiate the
/// rule in the primals. Variables read inside `f` get no gradient from it (JAX has none:
/// pass them as inputs), and integer inputs none.
///
/// # Errors
/// As `f`; at differentiation time, as the rule, or when it returns tangents that do not
/// match the outputs in number, shape or dtype.
///
/// JAX's documentation example, `f(x, y) = sin(x) · y` with its rule:
///
/// ```
/// use gradtape::{custom_jvp, func, ops, Tensor};
/// let f = |a: &[Tensor]| -> gradtape::Result<Tensor> {
///     let out = custom_jvp(
///         &[&a[0], &a[1]],
///         |p| Ok(vec![ops::multiply(&ops::sin(&p[0])?, &p[1])?]),
///         |p, t| {
///             let dx = ops::multiply(&ops::multiply(&ops::cos(&p[0])?, &p[1])?, &t[0])?;
///             Ok(vec![ops::add(&dx, &ops::multiply(&ops::sin(&p[0])?, &t[1])?)?])
///         },
///     )?;
///     Ok(out[0].clone())
/// };
/// let (x, y) = (Tensor::scalar(2.0f64), Tensor::scalar(3.0f64));
/// let g = func::grad(f, [0, 1])(&[x.clone(), y.clone()])?;
/// assert!((g[0].item()? - 2f64.cos() * 3.0).abs() < 1e-15);
/// assert!((g[1].item()? - 2f64.sin()).abs() < 1e-15);
/// # Ok::<(), gradtape::Error>(())
/// ```
pub fn custom_jvp<F, J>(inputs: &[&Tensor], f: F, jvp: J) -> Result<Vec<Tensor>>
where
    F: FnOnce(&[Tensor]) -> Result<Vec<Tensor>>,
    J: Fn(&[Tensor], &[Tensor]) -> Result<Vec<Tensor>> + 'static,
{
    custom_gradient(inputs, move |xs| {
        let outputs = f(xs)?;
        let primals = xs.to_vec();
        let grad = move |dy: &[Tensor], vars: &[Variable]| -> Result<Vec<Option<Tensor>>> {
            // linear in the tangents: the transpose applied to `dy` is the gradient of
            // <dy, rule(x, t)> with respect to t, at any t (zeros)
            let tangents = primals
                .iter()
                .map(Tensor::zeros_like)
                .collect::<Result<Vec<Tensor>>>()?;
            let tape = crate::GradientTape::new();
            let floats: Vec<&Tensor> = tangents.iter().filter(|t| t.dtype().is_float()).collect();
            for t in &floats {
                tape.watch(*t);
            }
            let outs = jvp(&primals, &tangents)?;
            if outs.len() != dy.len() {
                return Err(Error::tape(
                    "custom_jvp",
                    format!(
                        "the rule returned {} tangents for {} outputs",
                        outs.len(),
                        dy.len()
                    ),
                ));
            }
            let targets: Vec<&Tensor> = outs.iter().collect();
            let sources: Vec<&dyn crate::Source> =
                floats.iter().map(|t| *t as &dyn crate::Source).collect();
            let options = crate::GradientOptions {
                output_gradients: Some(dy.to_vec()),
                unconnected_gradients: crate::UnconnectedGradients::Zero,
            };
            let mut grads = tape
                .gradient_with(&targets, &sources, &options)?
                .into_iter();
            Ok(tangents
                .iter()
                .map(|t| match t.dtype().is_float() {
                    true => grads.next().flatten(),
                    false => None,
                })
                .chain(vars.iter().map(|_| None))
                .collect())
        };
        Ok((outputs, grad))
    })
}
