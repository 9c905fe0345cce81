//! Primitives as data: each primitive is one [`Primitive`] value holding everything gradtape
//! knows about it (its kernel, its derivative, its batching rule, its CUDA expression), and
//! every op built on one goes through the one path, `ops::apply`: batch, compute, record.
//! This module holds the data only (below the context and the ops); `apply` is in `ops`, and
//! the rules of each derivative family are interpreted by `record`.
//!
//! Before, each op repeated those steps by hand (its `vmap` rule, its kernels, its
//! `tape::record` call) and the list of primitives was a list of strings; now a transformation
//! or a backend reads the table, and a primitive that lacks a rule is a test failure
//! (`tests/gradcheck.rs::every_primitive_has_every_rule`), not an op that silently does not
//! batch. Every op is one of these primitives (57) or a composition of them: the elementwise
//! families (the unary table, the roundings, the broadcasting binary ops, the comparisons and
//! logical ops, `select`, `is_finite`, `is_nan`, `stop_gradient`), the linear ones
//! (`identity`, `reshape`, `transpose`, `broadcast_to`, `cast`, `slice`, `unslice`,
//! `reduce_sum`, `concat`, `gather`/`scatter_add`, `patches`/`unpatches`, `to_device`), the
//! weighted reductions (`reduce_max`, `reduce_min`, `reduce_prod`), `matmul`, and the ones
//! without a gradient (`argmax`, `argmin`, `reduce_any`, `reduce_all`, `one_hot`).

use crate::backend::device::Device;
pub(crate) use crate::backend::fusion::Fused;
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::shape::{Dims, Window};
use crate::tensor::Tensor;

/// One primitive operation: what [`Primitive::apply`] needs to run it under every
/// transformation.
///
/// ```
/// let exp = gradtape::ops::primitives().find(|p| p.name() == "exp").unwrap();
/// assert!(exp.is_differentiable());
/// assert_eq!(exp.cuda_expression(), Some("exp(v)"));
/// ```
pub struct Primitive {
    pub(crate) name: &'static str,
    /// The kernel on unbatched inputs (it picks the backend: fused, CUDA or the host, and
    /// checks dtypes and shapes).
    pub(crate) forward: fn(&[&Tensor], &Params) -> Result<Tensor>,
    /// How many tensors it takes ([`ANY`]: one or more, `concat`).
    pub(crate) arity: usize,
    /// The kind of [`Params`] it takes.
    pub(crate) params: ParamsKind,
    pub(crate) derivative: Derivative,
    pub(crate) batching: Batching,
    /// The element function as CUDA C (of `v`, or of `p` and `q`), compiled by NVRTC.
    pub(crate) cuda: Option<&'static str>,
    /// Its block kernel or fold, for the primitives that a compiled graph may run inside a
    /// fusion group (`gradtape::function`'s executor) and the lazy engine fuses.
    pub(crate) fused: Option<Fused>,
}

impl Primitive {
    /// An elementwise primitive without parameters (the tables, `select`, `stop_gradient`):
    /// batched as a whole with one input, by broadcasting with more.
    pub(crate) const fn elementwise(
        name: &'static str,
        arity: usize,
        forward: fn(&[&Tensor], &Params) -> Result<Tensor>,
        derivative: Derivative,
        cuda: Option<&'static str>,
    ) -> Primitive {
        Primitive {
            name,
            forward,
            arity,
            params: ParamsKind::None,
            derivative,
            batching: if arity == 1 {
                Batching::Elementwise
            } else {
                Batching::Broadcast
            },
            cuda,
            fused: None,
        }
    }

    /// The same primitive with its block kernel or fold.
    pub(crate) const fn with_fused(mut self, fused: Fused) -> Primitive {
        self.fused = Some(fused);
        self
    }

    /// Its name, TensorFlow's where TensorFlow has the op (`exp`, `multiply`); tapes and
    /// forward accumulators report ops by it.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// True when a tape records a gradient for it (`round` and the comparisons have none:
    /// TensorFlow gives `None` through them).
    pub fn is_differentiable(&self) -> bool {
        !matches!(self.derivative, Derivative::None)
    }

    /// The CUDA C expression its GPU kernel is generated from, for elementwise primitives.
    pub fn cuda_expression(&self) -> Option<&'static str> {
        self.cuda
    }

    /// How many tensors it takes; `None` for any number from one (`concat`).
    pub fn arity(&self) -> Option<usize> {
        (self.arity != ANY).then_some(self.arity)
    }
}

/// The arity of a primitive that takes any number of tensors from one (`concat`).
pub(crate) const ANY: usize = 0;

/// What an op call fixes besides its tensors (JAX's params): kept with the primitive in a
/// tape entry's rules, and what a traced graph will store (`gradtape::function`, issue 22).
/// Shapes, permutations and axes are kept inline up to rank 6, so an op call allocates nothing
/// for them.
///
/// ```
/// use gradtape::ops::Params;
/// assert_eq!(Params::shape(&[2, 3]), Params::shape(&[2, 3]));
/// assert_eq!(format!("{:?}", Params::reduce(&[0], true)), "Reduce { axes: [0], keepdims: true }");
/// ```
#[derive(Clone)]
pub struct Params(Kind);

#[derive(Clone)]
enum Kind {
    None,
    Shape(Dims<usize>),
    Perm(Dims<usize>),
    Reduce {
        axes: Dims<usize>,
        keepdims: bool,
    },
    DType(DType),
    // boxed: a `Params` is moved on every op call and kept by every recorded linear op
    Slice(Box<SliceSpec>),
    Unslice {
        shape: Dims<usize>,
        slice: Box<SliceSpec>,
    },
    Axis(usize),
    Scatter {
        axis: usize,
        dim: usize,
    },
    Window(Box<Window>),
    Device(Device),
    OneHot {
        depth: usize,
        on: f64,
        off: f64,
        dtype: DType,
    },
    Triangular {
        lower: bool,
        adjoint: bool,
    },
    FullMatrices(bool),
}

impl Params {
    /// Nothing (the elementwise primitives, `identity`, `matmul`).
    pub const NONE: Params = Params(Kind::None);

    /// The result's shape (`reshape`, `broadcast_to`).
    pub fn shape(shape: &[usize]) -> Params {
        Params(Kind::Shape(Dims::from_slice(shape)))
    }

    /// `perm[i]` is the input axis that becomes axis `i` (`transpose`).
    pub fn perm(perm: &[usize]) -> Params {
        Params(Kind::Perm(Dims::from_slice(perm)))
    }

    /// The reduced axes (each in range, increasing) and whether they stay as size 1
    /// (`reduce_sum`, `reduce_max`, `reduce_min`, `reduce_prod`).
    pub fn reduce(axes: &[usize], keepdims: bool) -> Params {
        Params(Kind::Reduce {
            axes: Dims::from_slice(axes),
            keepdims,
        })
    }

    /// The result's dtype (`cast`).
    pub fn dtype(dtype: DType) -> Params {
        Params(Kind::DType(dtype))
    }

    /// The elements a strided view selects (`slice`).
    pub fn slice(spec: SliceSpec) -> Params {
        Params(Kind::Slice(Box::new(spec)))
    }

    /// Zeros of `shape` with the input written where `spec` selects (`unslice`, the adjoint of
    /// `slice`).
    pub fn unslice(shape: &[usize], spec: SliceSpec) -> Params {
        Params(Kind::Unslice {
            shape: Dims::from_slice(shape),
            slice: Box::new(spec),
        })
    }

    /// Which triangle of a matrix is read, and whether it is used transposed
    /// (`triangular_solve`, TensorFlow's `lower` and `adjoint`).
    pub fn triangular(lower: bool, adjoint: bool) -> Params {
        Params(Kind::Triangular { lower, adjoint })
    }

    /// Whether a decomposition gives its square factors whole or only their first `min(m, n)`
    /// columns (TensorFlow's `full_matrices` of `qr` and `svd`).
    pub fn full_matrices(full: bool) -> Params {
        Params(Kind::FullMatrices(full))
    }

    /// One axis, in range (`concat`, `gather`, `argmax`, `argmin`).
    pub fn axis(axis: usize) -> Params {
        Params(Kind::Axis(axis))
    }

    /// The axis that `scatter_add` writes along and that axis' size in the result (the
    /// adjoint of `gather`).
    pub fn scatter(axis: usize, dim: usize) -> Params {
        Params(Kind::Scatter { axis, dim })
    }

    /// Where the result goes (`to_device`).
    pub fn device(device: Device) -> Params {
        Params(Kind::Device(device))
    }

    /// Rows of `depth` elements of `dtype`, `on` at the index and `off` elsewhere (`one_hot`).
    pub fn one_hot(depth: usize, on: f64, off: f64, dtype: DType) -> Params {
        Params(Kind::OneHot {
            depth,
            on,
            off,
            dtype,
        })
    }

    /// The sliding window of a convolution or pooling (`patches`, `unpatches`).
    pub(crate) fn window(w: &Window) -> Params {
        Params(Kind::Window(Box::new(w.clone())))
    }

    /// The sizes it holds, in a fixed order (a result's shape, a slice's starts and lengths, a
    /// scattered axis' size, a one-hot depth): what a compiled graph substitutes to run at
    /// another batch size (`Function::input_signature`). Axes, permutations, steps and windows
    /// are not sizes.
    pub(crate) fn sizes(&self) -> Vec<usize> {
        match &self.0 {
            Kind::Shape(s) => s.to_vec(),
            Kind::Slice(s) => s.starts.iter().chain(&s.lens).copied().collect(),
            Kind::Unslice { shape, slice } => shape
                .iter()
                .chain(&slice.starts)
                .chain(&slice.lens)
                .copied()
                .collect(),
            Kind::Scatter { dim, .. } => vec![*dim],
            Kind::OneHot { depth, .. } => vec![*depth],
            _ => vec![],
        }
    }

    /// The same parameters with `sizes` in place of [`Params::sizes`] (as many, in order).
    pub(crate) fn with_sizes(&self, sizes: &[usize]) -> Params {
        let slice = |s: &SliceSpec, v: &[usize]| SliceSpec {
            starts: v[..s.starts.len()].to_vec(),
            lens: v[s.starts.len()..s.starts.len() + s.lens.len()].to_vec(),
            steps: s.steps.clone(),
        };
        Params(match &self.0 {
            Kind::Shape(_) => Kind::Shape(Dims::from_slice(sizes)),
            Kind::Slice(s) => Kind::Slice(Box::new(slice(s, sizes))),
            Kind::Unslice { shape, slice: s } => Kind::Unslice {
                shape: Dims::from_slice(&sizes[..shape.len()]),
                slice: Box::new(slice(s, &sizes[shape.len()..])),
            },
            Kind::Scatter { axis, .. } => Kind::Scatter {
                axis: *axis,
                dim: sizes[0],
            },
            Kind::OneHot { on, off, dtype, .. } => Kind::OneHot {
                depth: sizes[0],
                on: *on,
                off: *off,
                dtype: *dtype,
            },
            other => other.clone(),
        })
    }

    pub(crate) fn kind(&self) -> ParamsKind {
        match &self.0 {
            Kind::None => ParamsKind::None,
            Kind::Shape(_) => ParamsKind::Shape,
            Kind::Perm(_) => ParamsKind::Perm,
            Kind::Reduce { .. } => ParamsKind::Reduce,
            Kind::DType(_) => ParamsKind::DType,
            Kind::Slice(_) => ParamsKind::Slice,
            Kind::Unslice { .. } => ParamsKind::Unslice,
            Kind::Axis(_) => ParamsKind::Axis,
            Kind::Scatter { .. } => ParamsKind::Scatter,
            Kind::Window(_) => ParamsKind::Window,
            Kind::Device(_) => ParamsKind::Device,
            Kind::OneHot { .. } => ParamsKind::OneHot,
            Kind::Triangular { .. } => ParamsKind::Triangular,
            Kind::FullMatrices(_) => ParamsKind::FullMatrices,
        }
    }

    /// The error for parameters of the wrong kind (only [`Primitive::apply`] can pass them).
    pub(crate) fn wrong(&self, op: &'static str) -> Error {
        Error::arg(op, format!("parameters {self:?} are not this primitive's"))
    }
    pub(crate) fn as_shape(&self, op: &'static str) -> Result<&[usize]> {
        match &self.0 {
            Kind::Shape(s) => Ok(s),
            _ => Err(self.wrong(op)),
        }
    }
    pub(crate) fn as_perm(&self, op: &'static str) -> Result<&[usize]> {
        match &self.0 {
            Kind::Perm(p) => Ok(p),
            _ => Err(self.wrong(op)),
        }
    }
    pub(crate) fn as_reduce(&self, op: &'static str) -> Result<(&[usize], bool)> {
        match &self.0 {
            Kind::Reduce { axes, keepdims } => Ok((axes, *keepdims)),
            _ => Err(self.wrong(op)),
        }
    }
    pub(crate) fn as_dtype(&self, op: &'static str) -> Result<DType> {
        match &self.0 {
            Kind::DType(d) => Ok(*d),
            _ => Err(self.wrong(op)),
        }
    }
    pub(crate) fn as_slice(&self, op: &'static str) -> Result<&SliceSpec> {
        match &self.0 {
            Kind::Slice(s) => Ok(s),
            _ => Err(self.wrong(op)),
        }
    }
    pub(crate) fn as_unslice(&self, op: &'static str) -> Result<(&[usize], &SliceSpec)> {
        match &self.0 {
            Kind::Unslice { shape, slice } => Ok((shape, slice)),
            _ => Err(self.wrong(op)),
        }
    }
    pub(crate) fn as_axis(&self, op: &'static str) -> Result<usize> {
        match &self.0 {
            Kind::Axis(a) => Ok(*a),
            _ => Err(self.wrong(op)),
        }
    }
    pub(crate) fn as_scatter(&self, op: &'static str) -> Result<(usize, usize)> {
        match &self.0 {
            Kind::Scatter { axis, dim } => Ok((*axis, *dim)),
            _ => Err(self.wrong(op)),
        }
    }
    pub(crate) fn as_window(&self, op: &'static str) -> Result<&Window> {
        match &self.0 {
            Kind::Window(w) => Ok(w),
            _ => Err(self.wrong(op)),
        }
    }
    pub(crate) fn as_one_hot(&self, op: &'static str) -> Result<(usize, f64, f64, DType)> {
        match &self.0 {
            Kind::OneHot {
                depth,
                on,
                off,
                dtype,
            } => Ok((*depth, *on, *off, *dtype)),
            _ => Err(self.wrong(op)),
        }
    }
    #[cfg_attr(not(feature = "linalg"), allow(dead_code))]
    pub(crate) fn as_triangular(&self, op: &'static str) -> Result<(bool, bool)> {
        match &self.0 {
            Kind::Triangular { lower, adjoint } => Ok((*lower, *adjoint)),
            _ => Err(self.wrong(op)),
        }
    }
    #[cfg_attr(not(feature = "linalg"), allow(dead_code))]
    pub(crate) fn as_full_matrices(&self, op: &'static str) -> Result<bool> {
        match &self.0 {
            Kind::FullMatrices(f) => Ok(*f),
            _ => Err(self.wrong(op)),
        }
    }
    pub(crate) fn as_device(&self, op: &'static str) -> Result<Device> {
        match &self.0 {
            Kind::Device(d) => Ok(*d),
            _ => Err(self.wrong(op)),
        }
    }
}

impl std::fmt::Debug for Params {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Kind::None => f.write_str("None"),
            Kind::Shape(s) => f.debug_tuple("Shape").field(&&s[..]).finish(),
            Kind::Perm(p) => f.debug_tuple("Perm").field(&&p[..]).finish(),
            Kind::Reduce { axes, keepdims } => f
                .debug_struct("Reduce")
                .field("axes", &&axes[..])
                .field("keepdims", keepdims)
                .finish(),
            Kind::DType(d) => f.debug_tuple("DType").field(d).finish(),
            Kind::Slice(s) => f.debug_tuple("Slice").field(s).finish(),
            Kind::Unslice { shape, slice } => f
                .debug_struct("Unslice")
                .field("shape", &&shape[..])
                .field("slice", slice)
                .finish(),
            Kind::Axis(a) => f.debug_tuple("Axis").field(a).finish(),
            Kind::Scatter { axis, dim } => f
                .debug_struct("Scatter")
                .field("axis", axis)
                .field("dim", dim)
                .finish(),
            Kind::Window(w) => f.debug_tuple("Window").field(w).finish(),
            Kind::Device(d) => f.debug_tuple("Device").field(d).finish(),
            Kind::OneHot {
                depth,
                on,
                off,
                dtype,
            } => f
                .debug_struct("OneHot")
                .field("depth", depth)
                .field("on", on)
                .field("off", off)
                .field("dtype", dtype)
                .finish(),
            Kind::Triangular { lower, adjoint } => f
                .debug_struct("Triangular")
                .field("lower", lower)
                .field("adjoint", adjoint)
                .finish(),
            Kind::FullMatrices(full) => f.debug_tuple("FullMatrices").field(full).finish(),
        }
    }
}

impl PartialEq for Params {
    fn eq(&self, other: &Params) -> bool {
        match (&self.0, &other.0) {
            (Kind::None, Kind::None) => true,
            (Kind::Shape(a), Kind::Shape(b)) | (Kind::Perm(a), Kind::Perm(b)) => a[..] == b[..],
            (
                Kind::Reduce { axes, keepdims },
                Kind::Reduce {
                    axes: axes2,
                    keepdims: keepdims2,
                },
            ) => axes[..] == axes2[..] && keepdims == keepdims2,
            (Kind::DType(a), Kind::DType(b)) => a == b,
            (Kind::Slice(a), Kind::Slice(b)) => a == b,
            (
                Kind::Unslice { shape, slice },
                Kind::Unslice {
                    shape: shape2,
                    slice: slice2,
                },
            ) => shape[..] == shape2[..] && slice == slice2,
            (Kind::Axis(a), Kind::Axis(b)) => a == b,
            (
                Kind::Scatter { axis, dim },
                Kind::Scatter {
                    axis: axis2,
                    dim: dim2,
                },
            ) => axis == axis2 && dim == dim2,
            (Kind::Window(a), Kind::Window(b)) => a == b,
            (Kind::Device(a), Kind::Device(b)) => a == b,
            (
                Kind::OneHot {
                    depth,
                    on,
                    off,
                    dtype,
                },
                Kind::OneHot {
                    depth: depth2,
                    on: on2,
                    off: off2,
                    dtype: dtype2,
                },
            ) => {
                // bit for bit: parameters that give the same tensors are equal, NaN included
                depth == depth2
                    && on.to_bits() == on2.to_bits()
                    && off.to_bits() == off2.to_bits()
                    && dtype == dtype2
            }
            (
                Kind::Triangular { lower, adjoint },
                Kind::Triangular {
                    lower: lower2,
                    adjoint: adjoint2,
                },
            ) => lower == lower2 && adjoint == adjoint2,
            (Kind::FullMatrices(a), Kind::FullMatrices(b)) => a == b,
            _ => false,
        }
    }
}

/// Per dimension: the first index, the number of elements and the step (negative steps walk
/// backwards).
#[derive(Clone, Debug, PartialEq)]
pub struct SliceSpec {
    /// The first index of each dimension.
    pub starts: Vec<usize>,
    /// How many elements of each dimension.
    pub lens: Vec<usize>,
    /// The step of each dimension.
    pub steps: Vec<isize>,
}

/// Which kind of [`Params`] a primitive takes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum ParamsKind {
    None,
    Shape,
    Perm,
    Reduce,
    DType,
    Slice,
    Unslice,
    Axis,
    Scatter,
    Window,
    Device,
    OneHot,
    Triangular,
    FullMatrices,
}

/// The shape, dtype and device of a linear primitive's input: all its transpose needs (the
/// tape keeps no tensor for it).
pub(crate) struct InputMeta {
    pub(crate) shape: Dims<usize>,
    pub(crate) dtype: DType,
    pub(crate) device: Device,
}

impl InputMeta {
    pub(crate) fn of(x: &Tensor) -> InputMeta {
        InputMeta {
            shape: Dims::from_slice(x.shape()),
            dtype: x.dtype(),
            device: x.device(),
        }
    }
}

impl std::fmt::Debug for Primitive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name)
    }
}

/// What a gradient rule reads from the forward pass: a tape keeps only that.
#[derive(Clone, Copy, PartialEq, Debug)]
pub(crate) enum Saves {
    Nothing,
    Input,
    /// The first input only (`select`'s condition).
    FirstInput,
    Output,
    Inputs,
    InputsAndOutput,
}

/// Most inputs of a primitive defined here (`select` has three).
const MAX_INPUTS: usize = 3;

/// The tensors a rule asked to keep.
pub(crate) struct Saved {
    inputs: [Option<Tensor>; MAX_INPUTS],
    out: Option<Tensor>,
}

impl Saved {
    pub(crate) fn keep(inputs: &[&Tensor], out: &Tensor, saves: Saves) -> Saved {
        let inputs_kept = matches!(saves, Saves::Input | Saves::Inputs | Saves::InputsAndOutput);
        let keep = |i: usize| {
            (inputs_kept || (saves == Saves::FirstInput && i == 0))
                .then(|| inputs.get(i).map(|t| (*t).clone()))
                .flatten()
        };
        // written out, not `array::from_fn`: this runs for every op a tape records
        Saved {
            inputs: [keep(0), keep(1), keep(2)],
            out: matches!(saves, Saves::Output | Saves::InputsAndOutput).then(|| out.clone()),
        }
    }
    fn missing(what: std::fmt::Arguments<'_>) -> Error {
        Error::tape(
            "gradient",
            format!("rule used the {what}, which it did not save"),
        )
    }
    /// Input `i`.
    pub(crate) fn input(&self, i: usize) -> Result<&Tensor> {
        match self.inputs.get(i) {
            Some(Some(t)) => Ok(t),
            _ => Err(Saved::missing(format_args!("input {i}"))),
        }
    }
    /// The first input.
    pub(crate) fn a(&self) -> Result<&Tensor> {
        self.input(0)
    }
    /// The second input.
    pub(crate) fn b(&self) -> Result<&Tensor> {
        self.input(1)
    }
    /// The output.
    pub(crate) fn out(&self) -> Result<&Tensor> {
        self.out
            .as_ref()
            .ok_or_else(|| Saved::missing(format_args!("output")))
    }
}

/// A primitive's derivative, in the form of its family: each form gives both the gradient
/// (VJP) and the tangent (JVP) rule, written with differentiable ops, so that rules of rules
/// (higher derivatives, forward over reverse) come for free.
pub(crate) enum Derivative {
    /// None: a tape ends the path here and says so (`Tape::why_no_gradient`).
    None,
    /// An elementwise function of one input: `rule(s, g)` is `g` times its derivative, from
    /// `s`, the saved input or output. The Jacobian is diagonal, so the same rule applied to
    /// the tangent is the JVP.
    Diagonal {
        saves: Saves,
        rule: fn(&Tensor, &Tensor) -> Result<Tensor>,
    },
    /// Linear in its one input (views, `reduce_sum`, float casts): the JVP is the primitive
    /// applied to the tangent, with the same parameters, and the gradient its transpose (JAX's
    /// `deflinear`), from the input's shape and dtype.
    Linear {
        transpose: fn(&Params, &InputMeta, &Tensor) -> Result<Tensor>,
    },
    /// Linear in its first input, given the second, which has no derivative (`gather` and
    /// `scatter_add` given their int64 indices): the JVP is the primitive applied to the first
    /// input's tangent and the same second input; `transpose(params, x, second, g)` is the
    /// gradient of the first.
    LinearInFirst {
        transpose: fn(&Params, &InputMeta, &Tensor, &Tensor) -> Result<Tensor>,
    },
    /// Linear in each of any number of inputs together (`concat`): the JVP is the primitive
    /// applied to the tangents (zeros where an input has none); `transpose(params, inputs, g)`
    /// gives one gradient per input.
    LinearInAll {
        transpose: fn(&Params, &[InputMeta], &Tensor) -> Result<Vec<Tensor>>,
    },
    /// A reduction over `Params::Reduce`'s axes whose derivative with respect to each element
    /// is `weights(x, y, axes)` (`y` the result kept as size 1 over the axes): the gradient is
    /// `weights ⊙ g` broadcast back, the JVP the reduced sum of `weights ⊙ t`.
    Reduction {
        weights: fn(&Tensor, &Tensor, &[usize]) -> Result<Tensor>,
    },
    /// Linear in each of its two inputs (`matmul`): the JVP is the primitive applied with one
    /// input replaced by its tangent, summed over the inputs (the product rule);
    /// `transpose(saved, g, i)` is the gradient for input `i` before it is summed back to its
    /// shape (JAX's `defbilinear`).
    Bilinear {
        transpose: fn(&Saved, &Tensor, usize) -> Result<Tensor>,
    },
    /// An elementwise function of two or three inputs broadcast together: `partial(saved, g,
    /// i)` is `g` times its partial derivative with respect to input `i` (asked only for float
    /// inputs: `select`'s condition never is). The gradient sums it back to input `i`'s shape;
    /// the JVP is the sum of the partials applied to the tangents.
    Broadcast {
        saves: Saves,
        partial: fn(&Saved, &Tensor, usize) -> Result<Tensor>,
    },
    /// Any other rule (the decompositions and solves of `linalg`), written out whole: `vjp(saved,
    /// params, g, needs)` gives one gradient per input (`None` where `needs` says none is
    /// wanted), `jvp(saved, params, tangents)` the output's tangent (`None`: zero). Inputs and
    /// output are saved.
    #[cfg_attr(not(feature = "linalg"), allow(dead_code))]
    General { vjp: GeneralVjp, jvp: GeneralJvp },
}

/// [`Derivative::General`]'s gradient rule: saved tensors, parameters, the output's gradient
/// and which inputs need one.
pub(crate) type GeneralVjp = fn(&Saved, &Params, &Tensor, &[bool]) -> Result<Vec<Option<Tensor>>>;

/// [`Derivative::General`]'s tangent rule: saved tensors, parameters, one tangent per input.
pub(crate) type GeneralJvp = fn(&Saved, &Params, &[Option<Tensor>]) -> Result<Option<Tensor>>;

/// How a primitive runs under `vmap`.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Batching {
    /// One input, elementwise: the whole batch at once.
    Elementwise,
    /// Inputs broadcast together: each batched input gets unit axes after its batch axis.
    Broadcast,
    /// One input: `rule(batch, params)` computes the result for the whole batch (batch axis
    /// first), usually the primitive again with parameters that skip the batch axis.
    OneInput(fn(&Tensor, &Params) -> Result<Tensor>),
    /// A rule of its own over all inputs (`gather`'s, whose indices may be batched or not):
    /// `None` when no input it batches is batched.
    Inputs(fn(&[&Tensor], &Params) -> Option<Result<Tensor>>),
}
