//! Function transforms in the spirit of `torch.func` and JAX, over Rust closures that take a
//! slice of tensors: `grad`, `value_and_grad` (with `argnums`, and `has_aux` as
//! [`value_and_grad_with_aux`]), `vjp`, `jvp`, `jacrev`, `jacfwd`, `hessian`, `hvp`. They are
//! built on the tapes, [`crate::ForwardAccumulator`] and [`crate::vmap()`], not on a second
//! autodiff engine, so they compose with all three (and the closures they return compose with
//! each other).
//!
//! As in JAX, a gradient with respect to an argument the result does not depend on is zeros,
//! never `None`.
//!
//! ```
//! use gradtape::{func, ops, Axes, Tensor};
//! // f(x) = Σ x³
//! let f = |a: &[Tensor]| ops::reduce_sum(&ops::multiply(&ops::square(&a[0])?, &a[0])?, Axes::All, false);
//! let x = Tensor::from_vec(vec![1.0f64, 2.0], &[2])?;
//! let g = func::grad(f, &[0])(&[x.clone()])?; // 3x²
//! assert_eq!(g[0].to_vec::<f64>()?, vec![3.0, 12.0]);
//! let h = func::hessian(f, 0)(&[x])?; // diag(6x)
//! assert_eq!(h.to_vec::<f64>()?, vec![6.0, 0.0, 0.0, 12.0]);
//! # Ok::<(), gradtape::Error>(())
//! ```

use crate::error::{Error, Result};
use crate::source::{Source, UnconnectedGradients};
use crate::tape::GradientOptions;
use crate::tensor::Tensor;
use crate::{ForwardAccumulator, GradientTape, JacobianOptions};

/// Which arguments a transform differentiates, and so the shape of what it returns, as in JAX:
/// one index (`grad(f, 0)`, JAX's `argnums=0`) gives one tensor; an array (`[0, 2]` or
/// `&[0, 2]`, JAX's tuple) gives an array to destructure (`let [ga, gb] = …`); a slice or a
/// `Vec` chosen at run time gives a `Vec`. `'static` or owned only: the closure a transform
/// returns keeps no borrow of them.
pub trait Argnums: Clone + 'static {
    /// One tensor per index, packed as the index was given.
    type Output;
    /// The indices, in order.
    fn indices(&self) -> Vec<usize>;
    /// Packs one result per index (as many as [`Argnums::indices`] gave, in its order).
    ///
    /// # Errors
    /// When the count differs (a transform's bug, reported rather than a panic).
    fn pack(results: Vec<Tensor>) -> Result<Self::Output>;
}

impl Argnums for usize {
    type Output = Tensor;
    fn indices(&self) -> Vec<usize> {
        vec![*self]
    }
    fn pack(results: Vec<Tensor>) -> Result<Tensor> {
        array::<1>(results).map(|[t]| t)
    }
}

impl<const N: usize> Argnums for [usize; N] {
    type Output = [Tensor; N];
    fn indices(&self) -> Vec<usize> {
        self.to_vec()
    }
    fn pack(results: Vec<Tensor>) -> Result<[Tensor; N]> {
        array(results)
    }
}

impl<const N: usize> Argnums for &'static [usize; N] {
    type Output = [Tensor; N];
    fn indices(&self) -> Vec<usize> {
        self.to_vec()
    }
    fn pack(results: Vec<Tensor>) -> Result<[Tensor; N]> {
        array(results)
    }
}

impl Argnums for &'static [usize] {
    type Output = Vec<Tensor>;
    fn indices(&self) -> Vec<usize> {
        self.to_vec()
    }
    fn pack(results: Vec<Tensor>) -> Result<Vec<Tensor>> {
        Ok(results)
    }
}

impl Argnums for Vec<usize> {
    type Output = Vec<Tensor>;
    fn indices(&self) -> Vec<usize> {
        self.clone()
    }
    fn pack(results: Vec<Tensor>) -> Result<Vec<Tensor>> {
        Ok(results)
    }
}

fn array<const N: usize>(results: Vec<Tensor>) -> Result<[Tensor; N]> {
    results.try_into().map_err(|v: Vec<Tensor>| {
        Error::tape(
            "argnums",
            format!("{N} argnums, but the transform gave {} results", v.len()),
        )
    })
}

fn check_argnums(op: &'static str, argnums: &[usize], n: usize) -> Result<()> {
    match argnums.iter().find(|&&a| a >= n) {
        Some(a) => Err(Error::arg(
            op,
            format!("argnums has {a}, but the function got {n} arguments"),
        )),
        None => Ok(()),
    }
}

/// The gradients (zeros where unconnected) of the scalar `value` with respect to `args[k]`.
/// As JAX's `grad`, a value that is not a float scalar, or an argument that is not float, is
/// an error (a tape would sum a vector's elements, and give integers no gradient).
fn gradients(
    tape: GradientTape,
    value: &Tensor,
    args: &[Tensor],
    argnums: &[usize],
) -> Result<Vec<Tensor>> {
    let op = "grad";
    if value.rank() != 0 {
        return Err(Error::shape(
            op,
            format!(
                "gradients are defined for functions with a scalar output; this one returned \
                 shape {:?} (reduce it to a scalar, or use vjp or jacrev)",
                value.shape()
            ),
        ));
    }
    if !value.dtype().is_float() {
        return Err(Error::dtype(
            op,
            format!(
                "gradients need a float output; this one returned {}",
                value.dtype()
            ),
        ));
    }
    if let Some(&k) = argnums.iter().find(|&&k| !args[k].dtype().is_float()) {
        return Err(Error::dtype(
            op,
            format!(
                "argument {k} is {}: gradients are taken with respect to float arguments only \
                 (cast it, or leave it out of argnums)",
                args[k].dtype()
            ),
        ));
    }
    let sources: Vec<&dyn Source> = argnums.iter().map(|&k| &args[k] as &dyn Source).collect();
    let options = GradientOptions {
        unconnected_gradients: UnconnectedGradients::Zero,
        ..Default::default()
    };
    let grads = tape.gradient_with(&[value], &sources, &options)?;
    grads
        .into_iter()
        .zip(argnums)
        .map(|(g, &k)| g.map_or_else(|| Tensor::zeros_like(&args[k]), Ok))
        .collect()
}

/// JAX's `value_and_grad`: `f`'s value and its gradients with respect to `args[argnums]`.
///
/// # Errors
/// As `f`, an argnum out of range, a gradient rule failing, and (as JAX raises) an output that
/// is not a float scalar or an argument in `argnums` that is not float.
///
/// ```
/// use gradtape::{func, ops, Tensor};
/// let f = |a: &[Tensor]| ops::multiply(&a[0], &a[1]);
/// let (v, g) = func::value_and_grad(f, 1)(&[Tensor::scalar(3.0f32), Tensor::scalar(4.0f32)])?;
/// assert_eq!((v.item()?, g.item()?), (12.0, 3.0));
/// # Ok::<(), gradtape::Error>(())
/// ```
pub fn value_and_grad<F, A>(f: F, argnums: A) -> impl Fn(&[Tensor]) -> Result<(Tensor, A::Output)>
where
    F: Fn(&[Tensor]) -> Result<Tensor>,
    A: Argnums,
{
    let argnums = argnums.indices();
    move |args: &[Tensor]| {
        check_argnums("value_and_grad", &argnums, args.len())?;
        let tape = GradientTape::new();
        let args = &own_inputs(args)?;
        for &k in &argnums {
            tape.watch(&args[k]);
        }
        let value = f(args)?;
        let grads = gradients(tape, &value, args, &argnums)?;
        Ok((value, A::pack(grads)?))
    }
}

/// JAX's `value_and_grad(has_aux=True)`: `f` returns its value and something else (the
/// auxiliary data, returned as it is, not differentiated).
///
/// # Errors
/// As [`value_and_grad`].
///
/// ```
/// use gradtape::{func, ops, Tensor};
/// let f = |a: &[Tensor]| {
///     let y = ops::square(&a[0])?;
///     Ok((y.clone(), format!("loss {}", y.item()?)))
/// };
/// let (v, aux, g) = func::value_and_grad_with_aux(f, 0)(&[Tensor::scalar(3.0f64)])?;
/// assert_eq!((v.item()?, aux.as_str(), g.item()?), (9.0, "loss 9", 6.0));
/// # Ok::<(), gradtape::Error>(())
/// ```
pub fn value_and_grad_with_aux<F, X, A>(
    f: F,
    argnums: A,
) -> impl Fn(&[Tensor]) -> Result<(Tensor, X, A::Output)>
where
    F: Fn(&[Tensor]) -> Result<(Tensor, X)>,
    A: Argnums,
{
    let argnums = argnums.indices();
    move |args: &[Tensor]| {
        check_argnums("value_and_grad", &argnums, args.len())?;
        let tape = GradientTape::new();
        let args = &own_inputs(args)?;
        for &k in &argnums {
            tape.watch(&args[k]);
        }
        let (value, aux) = f(args)?;
        let grads = gradients(tape, &value, args, &argnums)?;
        Ok((value, aux, A::pack(grads)?))
    }
}

/// JAX's `grad`: the gradients of the scalar `f` with respect to `args[argnums]`, one tensor
/// for one argnum, an array for an array of them (see [`Argnums`]).
///
/// # Errors
/// As [`value_and_grad`].
///
/// ```
/// use gradtape::{func, ops, Tensor};
/// let g = func::grad(|a: &[Tensor]| ops::sin(&a[0]), 0)(&[Tensor::scalar(0.0f64)])?;
/// assert_eq!(g.item()?, 1.0);
/// let f = |a: &[Tensor]| ops::multiply(&a[0], &a[1]);
/// let [ga, gb] = func::grad(f, [0, 1])(&[Tensor::scalar(2.0f64), Tensor::scalar(5.0f64)])?;
/// assert_eq!((ga.item()?, gb.item()?), (5.0, 2.0));
/// # Ok::<(), gradtape::Error>(())
/// ```
pub fn grad<F, A>(f: F, argnums: A) -> impl Fn(&[Tensor]) -> Result<A::Output>
where
    F: Fn(&[Tensor]) -> Result<Tensor>,
    A: Argnums,
{
    let vg = value_and_grad(f, argnums);
    move |args: &[Tensor]| Ok(vg(args)?.1)
}

/// The pullback [`vjp`] returns: the vector-Jacobian product of the recorded call for any
/// cotangents (one per output), as many times as wanted.
pub struct Vjp {
    tape: crate::PersistentTape,
    outputs: Vec<Tensor>,
    primals: Vec<Tensor>,
}

impl Vjp {
    /// `cotangentsᵀ J` for each primal (zeros where unconnected).
    ///
    /// # Errors
    /// When the cotangents do not match the outputs in number, shape or dtype.
    pub fn call(&self, cotangents: &[Tensor]) -> Result<Vec<Tensor>> {
        let targets: Vec<&Tensor> = self.outputs.iter().collect();
        let sources: Vec<&dyn Source> = self.primals.iter().map(|p| p as &dyn Source).collect();
        let options = GradientOptions {
            output_gradients: Some(cotangents.to_vec()),
            unconnected_gradients: UnconnectedGradients::Zero,
        };
        self.tape
            .gradient_with(&targets, &sources, &options)?
            .into_iter()
            .zip(&self.primals)
            .map(|(g, p)| g.map_or_else(|| Tensor::zeros_like(p), Ok))
            .collect()
    }
}

/// JAX's `vjp`: `f`'s outputs at `primals` and the pullback.
///
/// # Errors
/// As `f`.
///
/// ```
/// use gradtape::{func, ops, Tensor};
/// let x = Tensor::from_vec(vec![1.0f32, 2.0], &[2])?;
/// let (out, pullback) = func::vjp(|a: &[Tensor]| Ok(vec![ops::square(&a[0])?]), &[x])?;
/// let g = pullback.call(&[Tensor::from_vec(vec![1.0f32, 10.0], &[2])?])?;
/// assert_eq!((out[0].to_vec::<f32>()?, g[0].to_vec::<f32>()?), (vec![1.0, 4.0], vec![2.0, 40.0]));
/// # Ok::<(), gradtape::Error>(())
/// ```
pub fn vjp<F>(f: F, primals: &[Tensor]) -> Result<(Vec<Tensor>, Vjp)>
where
    F: FnOnce(&[Tensor]) -> Result<Vec<Tensor>>,
{
    let tape = GradientTape::persistent();
    let primals = own_inputs(primals)?;
    for p in &primals {
        tape.watch(p);
    }
    let outputs = f(&primals)?;
    tape.stop();
    Ok((
        outputs.clone(),
        Vjp {
            tape,
            outputs,
            primals,
        },
    ))
}

/// JAX's `jvp`: `f`'s outputs at `primals` and their directional derivatives along
/// `tangents` (zeros where unconnected), by [`ForwardAccumulator`].
///
/// # Errors
/// As `f`, and tangents that do not match the primals.
///
/// ```
/// use gradtape::{func, ops, Tensor};
/// let (y, dy) = func::jvp(|a: &[Tensor]| Ok(vec![ops::exp(&a[0])?]), &[Tensor::scalar(0.0f64)], &[Tensor::scalar(2.0f64)])?;
/// assert_eq!((y[0].item()?, dy[0].item()?), (1.0, 2.0));
/// # Ok::<(), gradtape::Error>(())
/// ```
pub fn jvp<F>(f: F, primals: &[Tensor], tangents: &[Tensor]) -> Result<(Vec<Tensor>, Vec<Tensor>)>
where
    F: FnOnce(&[Tensor]) -> Result<Vec<Tensor>>,
{
    let primals = &own_inputs(primals)?;
    let acc = ForwardAccumulator::new(primals, tangents)?;
    let outputs = f(primals)?;
    let refs: Vec<&Tensor> = outputs.iter().collect();
    let tangents_out = acc.jvps(&refs, UnconnectedGradients::Zero)?;
    let tangents_out = tangents_out
        .into_iter()
        .zip(&outputs)
        .map(|(t, y)| t.map_or_else(|| Tensor::zeros_like(y), Ok))
        .collect::<Result<Vec<_>>>()?;
    Ok((outputs, tangents_out))
}

/// `jacrev`: the jacobian of `f`'s (single) output with respect to `args[argnums]`, by reverse
/// mode (`output.shape + arg.shape` each; one tensor for one argnum, as [`grad`]).
///
/// # Errors
/// As `f`, an argnum out of range.
///
/// ```
/// use gradtape::{func, ops, Tensor};
/// let j = func::jacrev(|a: &[Tensor]| ops::multiply(&a[0], &a[0]), 0)(&[Tensor::from_vec(vec![1.0f32, 3.0], &[2])?])?;
/// assert_eq!(j.to_vec::<f32>()?, vec![2.0, 0.0, 0.0, 6.0]);
/// # Ok::<(), gradtape::Error>(())
/// ```
pub fn jacrev<F, A>(f: F, argnums: A) -> impl Fn(&[Tensor]) -> Result<A::Output>
where
    F: Fn(&[Tensor]) -> Result<Tensor>,
    A: Argnums,
{
    let argnums = argnums.indices();
    move |args: &[Tensor]| {
        check_argnums("jacrev", &argnums, args.len())?;
        let tape = GradientTape::new();
        let args = &own_inputs(args)?;
        for &k in &argnums {
            tape.watch(&args[k]);
        }
        let y = f(args)?;
        let options = JacobianOptions {
            unconnected_gradients: UnconnectedGradients::Zero,
            ..Default::default()
        };
        let sources: Vec<&Tensor> = argnums.iter().map(|&k| &args[k]).collect();
        let js = tape.jacobian_with(&y, sources.as_slice(), &options)?;
        let js = js
            .into_iter()
            .map(|j| j.ok_or_else(|| Error::tape("jacrev", "no jacobian")))
            .collect::<Result<Vec<_>>>()?;
        A::pack(js)
    }
}

/// `jacfwd`: the same jacobian by forward mode: [`jvp`] along every basis direction of each
/// `args[argnum]`, batched by [`crate::vmap()`]. Shape `output.shape + arg.shape` each.
///
/// # Errors
/// As `f`, an argnum out of range.
///
/// ```
/// use gradtape::{func, ops, Tensor};
/// let j = func::jacfwd(|a: &[Tensor]| ops::multiply(&a[0], &a[0]), 0)(&[Tensor::from_vec(vec![1.0f32, 3.0], &[2])?])?;
/// assert_eq!(j.to_vec::<f32>()?, vec![2.0, 0.0, 0.0, 6.0]);
/// # Ok::<(), gradtape::Error>(())
/// ```
pub fn jacfwd<F, A>(f: F, argnums: A) -> impl Fn(&[Tensor]) -> Result<A::Output>
where
    F: Fn(&[Tensor]) -> Result<Tensor>,
    A: Argnums,
{
    let argnums = argnums.indices();
    move |args: &[Tensor]| {
        check_argnums("jacfwd", &argnums, args.len())?;
        let js = argnums
            .iter()
            .map(|&k| jacfwd_one(&f, args, k))
            .collect::<Result<Vec<_>>>()?;
        A::pack(js)
    }
}

fn jacfwd_one<F>(f: &F, args: &[Tensor], argnum: usize) -> Result<Tensor>
where
    F: Fn(&[Tensor]) -> Result<Tensor>,
{
    let x = &args[argnum];
    let n = x.numel();
    let mut basis_shape = vec![n];
    basis_shape.extend_from_slice(x.shape());
    let basis = crate::ops::reshape_to(&Tensor::eye(n, x.dtype())?, &basis_shape)?;
    // column k of the jacobian: the jvp along basis direction k, for every k at once
    let cols = crate::vmap(|t: &[Tensor]| {
        let (_, dy) = jvp(
            |a: &[Tensor]| Ok(vec![f(a)?]),
            args,
            &tangents_for(args, argnum, &t[0])?,
        )?;
        Ok(dy)
    })
    .out_axes(-1)
    .call(&[basis])?;
    let y_shape = cols[0].shape()[..cols[0].rank() - 1].to_vec();
    let mut shape = y_shape;
    shape.extend_from_slice(x.shape());
    // (reshape_to copies a strided result itself, and records the copy on the tapes: an
    // unrecorded to_contiguous here cut grad(jacfwd(f)) to zero)
    crate::ops::reshape_to(&cols[0], &shape)
}

/// Each argument as an input of its own ([`crate::ops::identity`]), made while the caller's
/// tape records: one tensor passed as two arguments is two inputs with a gradient each, as in
/// JAX (it was one input, credited twice).
fn own_inputs(args: &[Tensor]) -> Result<Vec<Tensor>> {
    args.iter().map(crate::ops::identity).collect()
}

/// Tangents for every argument: `t` for `args[argnum]`, zeros for the others.
fn tangents_for(args: &[Tensor], argnum: usize, t: &Tensor) -> Result<Vec<Tensor>> {
    args.iter()
        .enumerate()
        .map(|(k, a)| {
            if k == argnum {
                Ok(t.clone())
            } else {
                Tensor::zeros_like(a)
            }
        })
        .collect()
}

/// The Hessian of the scalar `f` with respect to `args[argnum]` (`arg.shape + arg.shape`): the
/// jacobian of the gradient, reverse over reverse.
///
/// # Errors
/// As `f`, an argnum out of range.
pub fn hessian<F>(f: F, argnum: usize) -> impl Fn(&[Tensor]) -> Result<Tensor>
where
    F: Fn(&[Tensor]) -> Result<Tensor>,
{
    let g = grad(f, argnum);
    jacrev(g, argnum)
}

/// The Hessian-vector product of the scalar `f` at `primals` along `tangents`, forward over
/// reverse (`jvp` of `grad`): one result per primal.
///
/// # Errors
/// As `f`, and tangents that do not match the primals.
///
/// ```
/// use gradtape::{func, ops, Axes, Tensor};
/// let f = |a: &[Tensor]| ops::reduce_sum(&ops::multiply(&ops::square(&a[0])?, &a[0])?, Axes::All, false);
/// let x = Tensor::from_vec(vec![1.0f64, 2.0], &[2])?;
/// let h = func::hvp(f, &[x], &[Tensor::from_vec(vec![1.0f64, 1.0], &[2])?])?;
/// assert_eq!(h[0].to_vec::<f64>()?, vec![6.0, 12.0]);
/// # Ok::<(), gradtape::Error>(())
/// ```
pub fn hvp<F>(f: F, primals: &[Tensor], tangents: &[Tensor]) -> Result<Vec<Tensor>>
where
    F: Fn(&[Tensor]) -> Result<Tensor>,
{
    let argnums: Vec<usize> = (0..primals.len()).collect();
    let g = grad(f, argnums);
    Ok(jvp(|a: &[Tensor]| g(a), primals, tangents)?.1)
}
