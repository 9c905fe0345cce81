//! Every op under `vmap` equals the op run on each example and stacked: batched operands at
//! random axes (first, middle, last), unbatched operands shared, results at random axes, and
//! `vmap` inside `vmap`. A test fails when an op of `gradtape::ops` has no row here, so a new op
//! cannot ship without its batching rule being checked.

#[cfg(feature = "linalg")]
use gradtape::linalg;
use gradtape::random::Generator;
use gradtape::{ops, s, vmap, Axes, DType, Result, Tensor};

type Build = fn(&mut Rng) -> Vec<Tensor>;
type Op = fn(&[Tensor]) -> Result<Tensor>;

/// A small deterministic chooser plus gradtape's generator for values.
struct Rng {
    state: u64,
    values: Generator,
}

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng {
            state: seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1,
            values: Generator::from_seed(seed),
        }
    }
    fn below(&mut self, n: usize) -> usize {
        self.state ^= self.state << 13;
        self.state ^= self.state >> 7;
        self.state ^= self.state << 17;
        (self.state % n.max(1) as u64) as usize
    }
    fn u(&mut self, shape: &[usize], lo: f64, hi: f64) -> Tensor {
        self.values.uniform(shape, lo, hi, DType::F64).unwrap()
    }
    fn ints(&mut self, shape: &[usize], hi: i64) -> Tensor {
        let n: usize = shape.iter().product();
        let v: Vec<i64> = (0..n).map(|_| self.below(hi as usize) as i64).collect();
        Tensor::from_vec(v, shape).unwrap()
    }
    fn bools(&mut self, shape: &[usize]) -> Tensor {
        let n: usize = shape.iter().product();
        let v: Vec<bool> = (0..n).map(|_| self.below(2) == 1).collect();
        Tensor::from_vec(v, shape).unwrap()
    }
}

fn pos(r: &mut Rng) -> Vec<Tensor> {
    vec![r.u(&[2, 3], 0.5, 2.0)]
}
fn any(r: &mut Rng) -> Vec<Tensor> {
    vec![r.u(&[2, 3], -2.0, 2.0)]
}
fn pair(r: &mut Rng) -> Vec<Tensor> {
    vec![r.u(&[2, 3], 0.5, 2.0), r.u(&[3], 0.5, 2.0)]
}
fn bool_pair(r: &mut Rng) -> Vec<Tensor> {
    vec![r.bools(&[2, 3]), r.bools(&[3])]
}
fn rounded_pair(r: &mut Rng) -> Vec<Tensor> {
    // small integers as floats, so that equal elements occur
    let a = ops::round(&r.u(&[2, 3], 0.0, 2.0)).unwrap();
    let b = ops::round(&r.u(&[3], 0.0, 2.0)).unwrap();
    vec![a, b]
}
fn cube(r: &mut Rng) -> Vec<Tensor> {
    vec![r.u(&[2, 3, 2], -2.0, 2.0)]
}

#[cfg(feature = "linalg")]
fn square3(r: &mut Rng) -> Vec<Tensor> {
    vec![r.u(&[3, 3], -1.0, 1.0)]
}
#[cfg(feature = "linalg")]
fn square3_and_rhs(r: &mut Rng) -> Vec<Tensor> {
    vec![r.u(&[3, 3], -0.5, 0.5), r.u(&[3, 2], -1.0, 1.0)]
}
/// Symmetric positive definite: `x xᵀ + 3 I`.
#[cfg(feature = "linalg")]
fn spd(x: &Tensor) -> Result<Tensor> {
    let eye = ops::multiply(&Tensor::eye(3, DType::F64)?, &3.0)?;
    ops::add(&ops::matmul_transposed(x, x, false, true)?, &eye)
}
/// A triangle far from singular: `x + 2.5 I`.
#[cfg(feature = "linalg")]
fn well(x: &Tensor) -> Result<Tensor> {
    ops::add(x, &ops::multiply(&Tensor::eye(3, DType::F64)?, &2.5)?)
}

/// The rows of `linalg` (feature `linalg`).
#[cfg(feature = "linalg")]
fn linalg_rows() -> Vec<(&'static str, Build, Op)> {
    vec![
        ("solve", square3_and_rhs, |a| {
            linalg::solve(&well(&a[0])?, &a[1])
        }),
        ("inv", square3, |a| linalg::inv(&well(&a[0])?)),
        ("lstsq", square3_and_rhs, |a| {
            linalg::lstsq(&well(&a[0])?, &a[1], 0.25, true)
        }),
        ("lstsq", square3_and_rhs, |a| {
            linalg::lstsq(&well(&a[0])?, &a[1], 0.0, false)
        }),
        ("det", square3, |a| linalg::det(&well(&a[0])?)),
        (
            "slogdet",
            square3,
            |a| Ok(linalg::slogdet(&well(&a[0])?)?.1),
        ),
        ("cholesky", square3, |a| linalg::cholesky(&spd(&a[0])?)),
        ("triangular_solve", square3_and_rhs, |a| {
            linalg::triangular_solve(&well(&a[0])?, &a[1], true, false)
        }),
        ("triangular_solve", square3_and_rhs, |a| {
            linalg::triangular_solve(&well(&a[0])?, &a[1], false, true)
        }),
        ("cholesky_solve", square3_and_rhs, |a| {
            linalg::cholesky_solve(&linalg::cholesky(&spd(&a[0])?)?, &a[1])
        }),
        ("logdet", square3, |a| linalg::logdet(&spd(&a[0])?)),
        ("diag_part", square3, |a| linalg::diag_part(&a[0], 1)),
        ("diag", square3_and_rhs, |a| linalg::diag(&a[1], -1)),
        ("norm", square3, |a| {
            linalg::norm(
                &a[0],
                linalg::NormOrd::One,
                linalg::NormAxes::Matrix(0, 1),
                false,
            )
        }),
        ("set_diag", square3, |a| {
            linalg::set_diag(&a[0], &linalg::diag_part(&ops::square(&a[0])?, 0)?, 0)
        }),
        ("trace", square3, |a| linalg::trace(&a[0])),
        ("band_part", square3, |a| linalg::band_part(&a[0], 1, 0)),
        ("matrix_transpose", square3_and_rhs, |a| {
            linalg::matrix_transpose(&a[1])
        }),
        // the factors' signs are the same for one matrix alone and in a batch (one kernel per
        // matrix), so the rows may return the factors themselves
        ("eigh", square3, |a| {
            let (e, v) = linalg::eigh(&a[0])?;
            ops::add(&v, &ops::expand_dims(&e, 0)?)
        }),
        ("eigvalsh", square3, |a| linalg::eigvalsh(&a[0])),
        ("svd", square3_and_rhs, |a| {
            let (s, u, v) = linalg::svd(&a[1], true)?;
            let flat = |t: &Tensor| ops::reshape(t, &[-1]);
            ops::concat(&[flat(&u)?, s, flat(&v)?], 0)
        }),
        ("svdvals", square3_and_rhs, |a| linalg::svdvals(&a[1])),
        ("qr", square3_and_rhs, |a| {
            let (q, r) = linalg::qr(&a[1], true)?;
            ops::concat(&[q, r], -1)
        }),
        ("pinv", square3_and_rhs, |a| linalg::pinv(&a[1], None)),
    ]
}

macro_rules! unary_rows {
    ($build:ident: $($name:ident),*) => {
        vec![$((stringify!($name), $build as Build, (|a: &[Tensor]| ops::$name(&a[0])) as Op)),*]
    };
}
macro_rules! binary_rows {
    ($build:ident: $($name:ident),*) => {
        vec![$((stringify!($name), $build as Build, (|a: &[Tensor]| ops::$name(&a[0], &a[1])) as Op)),*]
    };
}

fn rows() -> Vec<(&'static str, Build, Op)> {
    let mut rows: Vec<(&'static str, Build, Op)> = vec![];
    rows.extend(unary_rows!(pos: negative, square, sqrt, rsqrt, reciprocal, exp, expm1, log, log1p,
        sin, cos, tanh, sigmoid, softplus, round, floor, ceil, is_finite, is_nan, stop_gradient, elu, selu));
    rows.extend(unary_rows!(any: abs, sign, relu));
    rows.extend(binary_rows!(pair: add, subtract, multiply, divide, maximum, minimum, pow));
    rows.extend(
        binary_rows!(rounded_pair: equal, not_equal, less, less_equal, greater, greater_equal),
    );
    rows.extend(binary_rows!(bool_pair: logical_and, logical_or, logical_xor));
    let more: Vec<(&'static str, Build, Op)> = vec![
        (
            "logical_not",
            |r| vec![r.bools(&[2, 3])],
            |a| ops::logical_not(&a[0]),
        ),
        (
            "select",
            |r| {
                vec![
                    r.bools(&[2, 3]),
                    r.u(&[2, 3], -1.0, 1.0),
                    r.u(&[3], -1.0, 1.0),
                ]
            },
            |a| ops::select(&a[0], &a[1], &a[2]),
        ),
        ("cast", any, |a| ops::cast(&a[0], DType::I64)),
        ("clip_by_value", any, |a| {
            ops::clip_by_value(&a[0], &-0.5, &1.0)
        }),
        ("reduce_sum", cube, |a| ops::reduce_sum(&a[0], 1, false)),
        ("reduce_max", cube, |a| ops::reduce_max(&a[0], [0, 2], true)),
        ("reduce_max_first", cube, |a| {
            ops::reduce_max_first(&a[0], [0, 2], true)
        }),
        ("reduce_min", cube, |a| {
            ops::reduce_min(&a[0], Axes::All, false)
        }),
        ("reduce_prod", cube, |a| ops::reduce_prod(&a[0], -1, false)),
        ("reduce_mean", cube, |a| {
            ops::reduce_mean(&a[0], [-1, 0], false)
        }),
        ("reduce_logsumexp", cube, |a| {
            ops::reduce_logsumexp(&a[0], 1, true)
        }),
        ("argmax", cube, |a| ops::argmax(&a[0], 1)),
        ("argmin", cube, |a| ops::argmin(&a[0], -1)),
        (
            "reduce_any",
            |r| vec![r.bools(&[2, 3])],
            |a| ops::reduce_any(&a[0], 1, false),
        ),
        (
            "reduce_all",
            |r| vec![r.bools(&[2, 3])],
            |a| ops::reduce_all(&a[0], Axes::All, true),
        ),
        ("softmax", cube, |a| ops::softmax(&a[0], -1)),
        ("log_softmax", cube, |a| ops::log_softmax(&a[0], 0)),
        ("reshape", cube, |a| ops::reshape(&a[0], &[3, -1])),
        ("identity", cube, |a| ops::identity(&a[0])),
        ("transpose", cube, |a| {
            ops::transpose(&a[0], Some(&[2, 0, 1]))
        }),
        ("expand_dims", any, |a| ops::expand_dims(&a[0], -1)),
        (
            "squeeze",
            |r| vec![r.u(&[2, 1, 3], 0.0, 1.0)],
            |a| ops::squeeze(&a[0], &[1]),
        ),
        (
            "broadcast_to",
            |r| vec![r.u(&[3], 0.0, 1.0)],
            |a| ops::broadcast_to(&a[0], &[2, 3]),
        ),
        (
            "slice",
            |r| vec![r.u(&[3, 4], 0.0, 1.0)],
            |a| ops::slice(&a[0], &[1, 0], &[2, -1]),
        ),
        (
            "strided_slice",
            |r| vec![r.u(&[3, 5], 0.0, 1.0)],
            |a| ops::strided_slice(&a[0], &[0, -1], &[3, -6], &[2, -2]),
        ),
        (
            "reverse",
            |r| vec![r.u(&[3, 5], 0.0, 1.0)],
            |a| ops::reverse(&a[0], &[-1]),
        ),
        ("slice_with", cube, |a| {
            ops::slice_with(&a[0], &s![.., 1..;2, 0])
        }),
        ("pad", any, |a| ops::pad(&a[0], &[[1, 0], [0, 2]])),
        // the primitive behind pad and the gradient of slices
        ("first_equal_mask", cube, |a| {
            // ties from rounding; axes 0 and 2 around a kept one
            let x = ops::round(&a[0])?;
            let y = ops::reduce_max(&x, [0, 2], true)?;
            let mask = ops::primitives()
                .find(|p| p.name() == "first_equal_mask")
                .unwrap();
            mask.apply(&[&x, &y], &ops::Params::reduce(&[0, 2], true))
        }),
        ("unslice", any, |a| {
            let rows = ops::Params::unslice(
                &[a[0].shape()[0] + 2, a[0].shape()[1]],
                ops::SliceSpec {
                    starts: vec![a[0].shape()[0] + 1, 0],
                    lens: a[0].shape().to_vec(),
                    steps: vec![-1, 1],
                },
            );
            let unslice = ops::primitives().find(|p| p.name() == "unslice").unwrap();
            unslice.apply(&[&a[0]], &rows)
        }),
        (
            "concat",
            |r| vec![r.u(&[2, 3], 0.0, 1.0), r.u(&[1, 3], 0.0, 1.0)],
            |a| ops::concat(&[&a[0], &a[1]], 0),
        ),
        (
            "stack",
            |r| vec![r.u(&[2, 3], 0.0, 1.0), r.u(&[2, 3], 0.0, 1.0)],
            |a| ops::stack(&[&a[0], &a[1]], 1),
        ),
        (
            "split",
            |r| vec![r.u(&[4, 2], 0.0, 1.0)],
            |a| Ok(ops::split(&a[0], 2, 0)?[1].clone()),
        ),
        (
            "split_sizes",
            |r| vec![r.u(&[2, 5], 0.0, 1.0)],
            |a| Ok(ops::split_sizes(&a[0], &[1, 4], 1)?[1].clone()),
        ),
        (
            "gather",
            |r| vec![r.u(&[4, 3], 0.0, 1.0), r.ints(&[2], 4)],
            |a| ops::gather(&a[0], &a[1], 0),
        ),
        (
            "scatter_add",
            |r| vec![r.u(&[2, 3], 0.0, 1.0), r.ints(&[2], 4)],
            |a| {
                let scatter = ops::primitives()
                    .find(|p| p.name() == "scatter_add")
                    .unwrap();
                scatter.apply(&[&a[0], &a[1]], &ops::Params::scatter(0, 4))
            },
        ),
        // the primitive itself: `Tensor::to_device` to the device a tensor is on records nothing
        ("to_device", any, |a| {
            let to = ops::primitives().find(|p| p.name() == "to_device").unwrap();
            to.apply(&[&ops::sin(&a[0])?], &ops::Params::device(a[0].device()))
        }),
        // the windows of a convolution, and their adjoint (a transposed convolution)
        (
            "patches",
            |r| vec![r.u(&[2, 4, 3, 2], -1.0, 1.0), r.u(&[2, 2, 2, 3], -1.0, 1.0)],
            |a| ops::conv2d(&a[0], &a[1], [1, 1], ops::Padding::Same),
        ),
        (
            "unpatches",
            |r| vec![r.u(&[2, 2, 3, 2], -1.0, 1.0), r.u(&[2, 2, 3, 2], -1.0, 1.0)],
            |a| ops::conv2d_transpose(&a[0], &a[1], [2, 1], ops::Padding::Valid, [1, 1]),
        ),
        (
            "unsorted_segment_sum",
            |r| vec![r.u(&[4, 3], 0.0, 1.0), r.ints(&[4], 3)],
            |a| ops::unsorted_segment_sum(&a[0], &a[1], 3),
        ),
        (
            "gather_nd",
            |r| {
                let rows = r.ints(&[2, 1], 3);
                let cols = r.ints(&[2, 1], 4);
                vec![
                    r.u(&[3, 4], 0.0, 1.0),
                    ops::concat(&[rows, cols], 1).unwrap(),
                ]
            },
            |a| ops::gather_nd(&a[0], &a[1]),
        ),
        (
            "one_hot",
            |r| vec![r.ints(&[3], 4)],
            |a| ops::one_hot(&a[0], 4, 1.0, 0.0, DType::F64),
        ),
        (
            "matmul",
            |r| vec![r.u(&[2, 3], -1.0, 1.0), r.u(&[2, 3, 4], -1.0, 1.0)],
            |a| ops::matmul(&a[0], &a[1]),
        ),
        (
            "matmul_transposed",
            |r| vec![r.u(&[3, 2], -1.0, 1.0), r.u(&[4, 3], -1.0, 1.0)],
            |a| ops::matmul_transposed(&a[0], &a[1], true, true),
        ),
        (
            "extract_patches",
            |r| vec![r.u(&[2, 4, 3, 2], -1.0, 1.0)],
            |a| ops::extract_patches(&a[0], [2, 2], [2, 1], [1, 1], ops::Padding::Same),
        ),
        (
            "conv2d",
            |r| vec![r.u(&[2, 4, 4, 2], -1.0, 1.0), r.u(&[3, 3, 2, 3], -1.0, 1.0)],
            |a| ops::conv2d(&a[0], &a[1], [2, 1], ops::Padding::Same),
        ),
        (
            "conv2d_with",
            |r| vec![r.u(&[1, 5, 4, 4], -1.0, 1.0), r.u(&[2, 2, 2, 4], -1.0, 1.0)],
            |a| {
                let o = ops::ConvOptions {
                    dilation: [2, 1],
                    groups: 2,
                };
                ops::conv2d_with(&a[0], &a[1], [1, 1], ops::Padding::Valid, o)
            },
        ),
        (
            "depthwise_conv2d",
            |r| vec![r.u(&[2, 3, 3, 2], -1.0, 1.0), r.u(&[2, 2, 2, 2], -1.0, 1.0)],
            |a| ops::depthwise_conv2d(&a[0], &a[1], [1, 1], ops::Padding::Same, [1, 1]),
        ),
        (
            "conv1d",
            |r| vec![r.u(&[2, 5, 2], -1.0, 1.0), r.u(&[3, 2, 3], -1.0, 1.0)],
            |a| ops::conv1d(&a[0], &a[1], 2, ops::Padding::Same, 1),
        ),
        (
            "conv2d_transpose",
            |r| vec![r.u(&[2, 2, 3, 2], -1.0, 1.0), r.u(&[3, 2, 3, 2], -1.0, 1.0)],
            |a| ops::conv2d_transpose(&a[0], &a[1], [2, 2], ops::Padding::Same, [1, 1]),
        ),
        (
            "max_pool2d",
            |r| vec![r.u(&[2, 5, 4, 2], -1.0, 1.0)],
            |a| ops::max_pool2d(&a[0], [2, 2], [2, 2], ops::Padding::Same),
        ),
        (
            "avg_pool2d",
            |r| vec![r.u(&[2, 5, 4, 2], -1.0, 1.0)],
            |a| ops::avg_pool2d(&a[0], [3, 2], [2, 1], ops::Padding::Same),
        ),
        (
            "max_pool1d",
            |r| vec![r.u(&[2, 5, 2], -1.0, 1.0)],
            |a| ops::max_pool1d(&a[0], 2, 2, ops::Padding::Valid),
        ),
        (
            "avg_pool1d",
            |r| vec![r.u(&[2, 5, 2], -1.0, 1.0)],
            |a| ops::avg_pool1d(&a[0], 2, 1, ops::Padding::Same),
        ),
        (
            "matvec",
            |r| vec![r.u(&[3, 4], -1.0, 1.0), r.u(&[4], -1.0, 1.0)],
            |a| ops::matvec(&a[0], &a[1]),
        ),
        (
            "tensordot",
            |r| vec![r.u(&[2, 3, 2], -1.0, 1.0), r.u(&[2, 3], -1.0, 1.0)],
            |a| ops::tensordot(&a[0], &a[1], ([0, 1], [0, 1])),
        ),
        (
            "dot",
            |r| vec![r.u(&[2, 3], -1.0, 1.0), r.u(&[3], -1.0, 1.0)],
            |a| ops::dot(&a[0], &a[1]),
        ),
        (
            "einsum",
            |r| vec![r.u(&[3, 3], -1.0, 1.0), r.u(&[3, 2], -1.0, 1.0)],
            |a| ops::einsum("ii,ij->j", &[&a[0], &a[1]]),
        ),
        (
            "sigmoid_cross_entropy_with_logits",
            |r| vec![r.u(&[3], 0.0, 1.0), r.u(&[3], -2.0, 2.0)],
            |a| ops::sigmoid_cross_entropy_with_logits(&a[0], &a[1]),
        ),
        (
            "softmax_cross_entropy_with_logits",
            |r| vec![r.u(&[2, 3], 0.0, 1.0), r.u(&[2, 3], -2.0, 2.0)],
            |a| ops::softmax_cross_entropy_with_logits(&a[0], &a[1], -1),
        ),
        (
            "sparse_softmax_cross_entropy_with_logits",
            |r| {
                let labels = (0..2).map(|_| r.below(3) as i64).collect();
                vec![
                    Tensor::from_vec(labels, &[2]).unwrap(),
                    r.u(&[2, 3], -2.0, 2.0),
                ]
            },
            |a| ops::sparse_softmax_cross_entropy_with_logits(&a[0], &a[1]),
        ),
    ];
    rows.extend(more);
    #[cfg(feature = "linalg")]
    rows.extend(linalg_rows());
    rows
}

/// `x` stacked from `examples` along `axis`.
fn stacked(examples: &[Tensor], axis: usize) -> Tensor {
    ops::stack(examples, axis as isize).unwrap()
}

fn close(a: &Tensor, b: &Tensor, what: &str) {
    assert_eq!(a.shape(), b.shape(), "{what}: shapes");
    assert_eq!(a.dtype(), b.dtype(), "{what}: dtypes");
    let (x, y) = (a.to_f64_vec().unwrap(), b.to_f64_vec().unwrap());
    for (i, (p, q)) in x.iter().zip(&y).enumerate() {
        let ok = p == q || (p - q).abs() <= 1e-12 * (1.0 + q.abs()) || (p.is_nan() && q.is_nan());
        assert!(ok, "{what}: element {i}: vmap {p} vs per example {q}");
    }
}

#[test]
fn every_op_under_vmap_equals_the_op_on_each_example() {
    for (seed, (name, build, f)) in rows().into_iter().enumerate() {
        for trial in 0..4 {
            let mut r = Rng::new(seed as u64 * 31 + trial);
            let b = 1 + r.below(4); // batch sizes 1 to 4
            let chunk = 1 + r.below(4); // and chunks of 1 to 4 examples (often the whole batch)
            let examples: Vec<Vec<Tensor>> = (0..b).map(|_| build(&mut r)).collect();
            let n = examples[0].len();
            // which operands are batched (at least one) and along which axis
            let mut batched: Vec<bool> = (0..n).map(|_| r.below(3) != 0).collect();
            if !batched.iter().any(|&x| x) {
                batched[r.below(n)] = true;
            }
            let mut args = vec![];
            let mut in_axes = vec![];
            for k in 0..n {
                if batched[k] {
                    let ax = r.below(examples[0][k].rank() + 1);
                    let ex: Vec<Tensor> = examples.iter().map(|e| e[k].clone()).collect();
                    args.push(stacked(&ex, ax));
                    in_axes.push(Some(ax as isize));
                } else {
                    args.push(examples[0][k].clone());
                    in_axes.push(None);
                }
            }
            let per_example: Vec<Tensor> = (0..b)
                .map(|i| {
                    let a: Vec<Tensor> = (0..n)
                        .map(|k| examples[if batched[k] { i } else { 0 }][k].clone())
                        .collect();
                    f(&a).unwrap()
                })
                .collect();
            let out_ax = r.below(per_example[0].rank() + 1);
            let want = stacked(&per_example, out_ax);
            let got = vmap(|xs: &[Tensor]| Ok(vec![f(xs)?]))
                .in_axes(&in_axes)
                .out_axes([out_ax as isize])
                .chunk_size(chunk)
                .call(&args)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            close(
                &got[0],
                &want,
                &format!("{name} (batch {b}, chunk {chunk}, in_axes {in_axes:?}, out {out_ax})"),
            );
        }
    }
}

#[test]
fn vmap_inside_vmap_batches_over_two_axes() {
    let (b1, b2) = (2, 3);
    for (seed, (name, build, f)) in rows().into_iter().enumerate() {
        let mut r = Rng::new(1000 + seed as u64);
        let examples: Vec<Vec<Vec<Tensor>>> = (0..b1)
            .map(|_| (0..b2).map(|_| build(&mut r)).collect())
            .collect();
        let n = examples[0][0].len();
        // the first operand batched on both levels, the others on the inner level only
        let inner_axis: Vec<usize> = (0..n)
            .map(|k| r.below(examples[0][0][k].rank() + 1))
            .collect();
        let mut args = vec![];
        let mut outer_axes = vec![];
        for k in 0..n {
            if k == 0 {
                let rows: Vec<Tensor> = (0..b1)
                    .map(|i| {
                        let ex: Vec<Tensor> = (0..b2).map(|j| examples[i][j][0].clone()).collect();
                        stacked(&ex, inner_axis[0])
                    })
                    .collect();
                args.push(stacked(&rows, 0));
                outer_axes.push(Some(0));
            } else {
                let ex: Vec<Tensor> = (0..b2).map(|j| examples[0][j][k].clone()).collect();
                args.push(stacked(&ex, inner_axis[k]));
                outer_axes.push(None);
            }
        }
        let want_rows: Vec<Tensor> = (0..b1)
            .map(|i| {
                let per: Vec<Tensor> = (0..b2)
                    .map(|j| {
                        let a: Vec<Tensor> = (0..n)
                            .map(|k| examples[if k == 0 { i } else { 0 }][j][k].clone())
                            .collect();
                        f(&a).unwrap()
                    })
                    .collect();
                stacked(&per, 0)
            })
            .collect();
        let want = stacked(&want_rows, 0);
        let inner_axes: Vec<Option<isize>> = inner_axis.iter().map(|&a| Some(a as isize)).collect();
        let got = vmap(|xs: &[Tensor]| {
            vmap(|ys: &[Tensor]| Ok(vec![f(ys)?]))
                .in_axes(&inner_axes)
                .call(xs)
        })
        .in_axes(&outer_axes)
        .call(&args)
        .unwrap_or_else(|e| panic!("{name}: {e}"));
        close(&got[0], &want, &format!("{name} nested"));
    }
}

/// Every public op of `gradtape::ops` (a primitive of `ops::primitives()`, a `pub fn`, or a
/// row of the `extreme!` reductions) has a row above.
#[test]
fn every_op_has_a_batching_row() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../gradtape-core/src/ops");
    let mut names: Vec<String> = gradtape::ops::primitives()
        .map(|p| p.name().to_string())
        .collect();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        // linalg's ops exist only with its feature
        if !cfg!(feature = "linalg")
            && (path.ends_with("decomp.rs") || path.ends_with("factors.rs"))
        {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        for line in text.lines() {
            let name = if let Some(rest) = line.strip_prefix("pub fn ") {
                rest.split(['(', '<']).next()
            } else if line.starts_with("    reduce_") && line.contains(", ") {
                line.trim().split(',').next()
            } else {
                None
            };
            if let Some(n) = name.filter(|&n| n != "primitives") {
                if n.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
                {
                    names.push(n.to_string());
                }
            }
        }
    }
    assert!(names.len() > 60, "found only {names:?}");
    let covered: Vec<&str> = rows().iter().map(|r| r.0).collect();
    let missing: Vec<&String> = names
        .iter()
        .filter(|n| !covered.contains(&n.as_str()))
        .collect();
    assert!(missing.is_empty(), "ops without a vmap row: {missing:?}");
}

#[test]
fn vmap_reports_bad_axes_and_sizes_and_refuses_reading_an_example() {
    let x = Tensor::zeros(&[3, 2], DType::F32).unwrap();
    let y = Tensor::zeros(&[4, 2], DType::F32).unwrap();
    let id = |xs: &[Tensor]| Ok(xs.to_vec());
    let e = vmap(id).call(&[x.clone(), y]).unwrap_err().to_string();
    assert!(
        e.contains("argument 0 has 3") && e.contains("argument 1 has 4"),
        "{e}"
    );
    let e = vmap(id)
        .in_axes([Some(2)])
        .call(std::slice::from_ref(&x))
        .unwrap_err()
        .to_string();
    assert!(e.contains("in_axes[0] = 2"), "{e}");
    let e = vmap(id)
        .in_axes([None])
        .call(std::slice::from_ref(&x))
        .unwrap_err()
        .to_string();
    assert!(e.contains("no argument is batched"), "{e}");
    let e = vmap(id)
        .out_axes([5])
        .call(std::slice::from_ref(&x))
        .unwrap_err()
        .to_string();
    assert!(e.contains("out_axes[0] = 5"), "{e}");
    let e = vmap(|xs: &[Tensor]| Ok(vec![Tensor::scalar(xs[0].to_vec::<f32>()?[0])]))
        .call(std::slice::from_ref(&x))
        .unwrap_err()
        .to_string();
    assert!(e.contains("cannot be read inside vmap"), "{e}");
    // an example's tensor that escapes its vmap cannot be used afterwards
    let escaped = std::cell::RefCell::new(None);
    vmap(|xs: &[Tensor]| {
        *escaped.borrow_mut() = Some(xs[0].clone());
        Ok(xs.to_vec())
    })
    .call(std::slice::from_ref(&x))
    .unwrap();
    let e = ops::add(escaped.borrow().as_ref().unwrap(), &1.0)
        .unwrap_err()
        .to_string();
    assert!(e.contains("escaped"), "{e}");
    // a result that does not depend on the batch is repeated; chunks give the same answer
    let out = vmap(|_: &[Tensor]| Ok(vec![Tensor::scalar(7.0f32)]))
        .call(std::slice::from_ref(&x))
        .unwrap();
    assert_eq!(out[0].to_vec::<f32>().unwrap(), vec![7.0; 3]);
    let z = Tensor::from_vec((0..12).map(|v| v as f64).collect(), &[6, 2]).unwrap();
    let sq = |xs: &[Tensor]| Ok(vec![ops::reduce_sum(&ops::square(&xs[0])?, 0, false)?]);
    let whole = vmap(sq).call(std::slice::from_ref(&z)).unwrap();
    let chunked = vmap(sq).chunk_size(4).call(&[z]).unwrap();
    assert_eq!(
        whole[0].to_vec::<f64>().unwrap(),
        chunked[0].to_vec::<f64>().unwrap()
    );
}

#[test]
fn a_tape_outside_vmap_differentiates_through_it() {
    // d/dw Σ_i (x_i · w)² = Σ_i 2 (x_i · w) x_i
    let x = Tensor::from_vec(vec![1.0f64, 2.0, 3.0, 4.0, 5.0, 6.0], &[3, 2]).unwrap();
    let w = gradtape::Variable::new(Tensor::from_vec(vec![0.5f64, -1.0], &[2]).unwrap());
    let tape = gradtape::GradientTape::new();
    let wv = w.value();
    let y = vmap(|xs: &[Tensor]| {
        let dot = ops::reduce_sum(&ops::multiply(&xs[0], &xs[1])?, 0, false)?;
        Ok(vec![ops::square(&dot)?])
    })
    .in_axes([Some(0), None])
    .call(&[x.clone(), ops::multiply(&w, &1.0).unwrap()])
    .unwrap();
    let loss = ops::reduce_sum(&y[0], Axes::All, false).unwrap();
    let [g] = tape.gradient(&loss, [&w]).unwrap();
    let xs = x.to_vec::<f64>().unwrap();
    let wv = wv.to_vec::<f64>().unwrap();
    let mut want = [0.0; 2];
    for i in 0..3 {
        let d = xs[2 * i] * wv[0] + xs[2 * i + 1] * wv[1];
        want[0] += 2.0 * d * xs[2 * i];
        want[1] += 2.0 * d * xs[2 * i + 1];
    }
    assert_eq!(g.unwrap().to_vec::<f64>().unwrap(), want.to_vec());
}

#[test]
fn a_tape_inside_vmap_gives_per_example_gradients_for_every_kind_of_source() {
    // loss_i = (x_i · w)², so d loss_i / d w = 2 (x_i · w) x_i and d loss_i / d x_i = 2 (x_i · w) w
    let x = Tensor::from_vec(vec![1.0f64, 2.0, 3.0, 4.0, 5.0, 6.0], &[3, 2]).unwrap();
    let w_tensor = Tensor::from_vec(vec![0.5f64, -1.0], &[2]).unwrap();
    let w_var = gradtape::Variable::new(w_tensor.clone());
    let f = |xs: &[Tensor]| -> Result<Vec<Tensor>> {
        let tape = gradtape::GradientTape::new();
        tape.watch(&xs[0]);
        tape.watch(&w_tensor); // an unbatched tensor, shared by the examples
        let a = ops::reduce_sum(&ops::multiply(&xs[0], &w_tensor)?, 0, false)?;
        let b = ops::reduce_sum(&ops::multiply(&xs[0], &w_var)?, 0, false)?;
        let loss = ops::add(&ops::square(&a)?, &ops::square(&b)?)?;
        let [gx, gw, gv] =
            tape.gradient(&loss, [&xs[0] as &dyn gradtape::Source, &w_tensor, &w_var])?;
        Ok(vec![gx.unwrap(), gw.unwrap(), gv.unwrap()])
    };
    let g = vmap(f).call(std::slice::from_ref(&x)).unwrap();
    let (xs, w) = (x.to_vec::<f64>().unwrap(), [0.5, -1.0]);
    for i in 0..3 {
        let d = xs[2 * i] * w[0] + xs[2 * i + 1] * w[1];
        let gx: Vec<f64> = (0..2).map(|k| 4.0 * d * w[k]).collect(); // both terms
        let gw: Vec<f64> = (0..2).map(|k| 2.0 * d * xs[2 * i + k]).collect();
        let row = |t: &Tensor| t.to_vec::<f64>().unwrap()[2 * i..2 * i + 2].to_vec();
        assert_eq!(row(&g[0]), gx, "d/dx, example {i}");
        assert_eq!(row(&g[1]), gw, "d/dw (tensor), example {i}");
        assert_eq!(row(&g[2]), gw, "d/dw (variable), example {i}");
    }
}

/// Issue 21: a jacobian inside `vmap` (refused before) is each example's jacobian, with
/// respect to the example's own tensor and to a variable shared by every example.
#[test]
fn a_jacobian_inside_vmap_is_each_examples_jacobian() {
    let x = Tensor::from_vec(vec![1.0f32, 2.0, 3.0, 4.0], &[2, 2]).unwrap();
    let w = gradtape::Variable::new(Tensor::from_vec(vec![0.5f32, -1.0], &[2]).unwrap());
    let w2 = w.clone();
    let out = vmap(move |xs: &[Tensor]| {
        let tape = gradtape::GradientTape::persistent();
        tape.watch(&xs[0]);
        // y = x² · w, so dy/dx = diag(2 x w) and dy/dw = diag(x²)
        let y = ops::multiply(&ops::square(&xs[0])?, &w2.value())?;
        let [jx] = tape.jacobian(&y, [&xs[0]])?;
        let [jw] = tape.jacobian(&y, [&w2])?;
        Ok(vec![jx.unwrap(), jw.unwrap()])
    })
    .call(std::slice::from_ref(&x))
    .unwrap();
    assert_eq!(out[0].shape(), [2, 2, 2]);
    assert_eq!(
        out[0].to_vec::<f32>().unwrap(),
        [1.0, 0.0, 0.0, -4.0, 3.0, 0.0, 0.0, -8.0]
    );
    assert_eq!(
        out[1].to_vec::<f32>().unwrap(),
        [1.0, 0.0, 0.0, 4.0, 9.0, 0.0, 0.0, 16.0]
    );
    drop(w);
}

/// `batch_jacobian` inside `vmap` is refused with a message (the target is one example's
/// tensor), never a wrong or unreadable value.
#[test]
fn a_batch_jacobian_inside_vmap_is_refused() {
    let x = Tensor::from_vec(vec![1.0f32, 2.0, 3.0, 4.0], &[2, 2]).unwrap();
    let e = vmap(|xs: &[Tensor]| {
        let tape = gradtape::GradientTape::new();
        tape.watch(&xs[0]);
        let y = ops::square(&xs[0])?;
        Ok(vec![tape.batch_jacobian(&y, &xs[0])?.unwrap()])
    })
    .call(std::slice::from_ref(&x))
    .unwrap_err()
    .to_string();
    assert!(e.contains("not supported yet"), "{e}");
}

/// Issue 21: a tape inside two nested vmaps (refused before) gives each example's gradient
/// and jacobian, with respect to the example's own tensor, an unbatched tensor and a
/// variable shared by every example; checked against the same function run on each example.
#[test]
fn a_tape_inside_nested_vmaps_gives_each_examples_gradients_and_jacobians() {
    let x = Tensor::from_vec((0..12).map(|v| 0.3 * v as f64 - 1.0).collect(), &[2, 3, 2]).unwrap();
    let w_tensor = Tensor::from_vec(vec![0.5f64, -1.5], &[2]).unwrap();
    let w_var = gradtape::Variable::new(Tensor::from_vec(vec![2.0f64, 0.25], &[2]).unwrap());
    // per example: y = sin(x) · w_tensor + x² · w_var, a vector of 2
    let f = {
        let (w_tensor, w_var) = (w_tensor.clone(), w_var.clone());
        move |xs: &[Tensor]| -> Result<Vec<Tensor>> {
            let tape = gradtape::GradientTape::persistent();
            tape.watch(&xs[0]);
            tape.watch(&w_tensor);
            let y = ops::add(
                &ops::multiply(&ops::sin(&xs[0])?, &w_tensor)?,
                &ops::multiply(&ops::square(&xs[0])?, &w_var)?,
            )?;
            let loss = ops::reduce_sum(&ops::square(&y)?, Axes::All, false)?;
            let sources: [&dyn gradtape::Source; 3] = [&xs[0], &w_tensor, &w_var];
            let [gx, gw, gv] = tape.gradient(&loss, sources)?;
            let [jx, jw, jv] = tape.jacobian(&y, sources)?;
            Ok([gx, gw, gv, jx, jw, jv]
                .into_iter()
                .map(Option::unwrap)
                .collect())
        }
    };
    let nested = {
        let f = f.clone();
        vmap(move |xs: &[Tensor]| vmap(f.clone()).call(xs))
    };
    let got = nested.call(std::slice::from_ref(&x)).unwrap();
    for i in 0..2 {
        for j in 0..3 {
            let example = x.slice(s![i as isize, j as isize, ..]).unwrap();
            let want = f(&[example]).unwrap();
            for (k, (g, w)) in got.iter().zip(&want).enumerate() {
                let g = g.slice(s![i as isize, j as isize]).unwrap();
                close(&g, w, &format!("result {k} of example ({i}, {j})"));
            }
        }
    }
}
