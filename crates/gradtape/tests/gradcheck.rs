#![allow(clippy::redundant_closure, clippy::type_complexity)]
//! Finite-difference checks of every differentiable op, first and second order, in float64,
//! in reverse mode (the tape) and forward mode (`ForwardAccumulator`, forward over reverse for
//! the second order).
//!
//! One row per differentiable primitive of `ops::primitives()` (a row may exercise several). Each row draws
//! random shapes, broadcasting partners, axes and keepdims from a seeded generator and runs
//! several trials. A test fails when an op records on the tape without a row here, when a
//! listed op has no row that records it, or when a listed op's own JVP rule never ran.

use std::collections::BTreeSet;

use gradtape::random::Generator;
use gradtape::{
    ops, Axes, DType, ForwardAccumulator, GradientOptions, GradientTape, Result, Source, Tensor,
    UnconnectedGradients,
};
use proptest::prelude::*;

type Fun = Box<dyn Fn(&[Tensor]) -> Result<Tensor>>;

struct Case {
    inputs: Vec<Tensor>,
    f: Fun,
}

fn case(inputs: Vec<Tensor>, f: impl Fn(&[Tensor]) -> Result<Tensor> + 'static) -> Case {
    Case {
        inputs,
        f: Box::new(f),
    }
}

fn below(g: &mut Generator, n: usize) -> usize {
    (g.next_u64() % n as u64) as usize
}

fn rand_shape(g: &mut Generator, max_rank: usize) -> Vec<usize> {
    let r = below(g, max_rank + 1);
    (0..r).map(|_| 1 + below(g, 3)).collect()
}

fn rank_at_least(g: &mut Generator, min: usize, max: usize) -> Vec<usize> {
    let r = min + below(g, max - min + 1);
    (0..r).map(|_| 1 + below(g, 3)).collect()
}

/// A shape that broadcasts with `s`: some leading dimensions dropped, some set to 1.
fn partner(g: &mut Generator, s: &[usize]) -> Vec<usize> {
    let drop = below(g, s.len() + 1);
    s[drop..]
        .iter()
        .map(|&d| if below(g, 3) == 0 { 1 } else { d })
        .collect()
}

fn unif(g: &mut Generator, shape: &[usize], lo: f64, hi: f64) -> Tensor {
    g.uniform(shape, lo, hi, DType::F64).unwrap()
}

/// Values with |x| in [0.5, 2] and a random sign: away from kinks and poles.
fn away(g: &mut Generator, shape: &[usize]) -> Tensor {
    let m = unif(g, shape, 0.5, 2.0);
    let s: Vec<f64> = (0..m.numel())
        .map(|_| if below(g, 2) == 0 { -1.0 } else { 1.0 })
        .collect();
    ops::multiply(&m, &Tensor::from_vec(s, shape).unwrap()).unwrap()
}

fn rand_axes(g: &mut Generator, rank: usize) -> Axes {
    if rank == 0 || below(g, 4) == 0 {
        return Axes::All;
    }
    let mut axes: Vec<isize> = (0..rank as isize).filter(|_| below(g, 2) == 0).collect();
    if axes.is_empty() {
        axes.push(below(g, rank) as isize);
    }
    // negative spellings of some axes
    Axes::List(
        axes.into_iter()
            .map(|a| {
                if below(g, 2) == 0 {
                    a - rank as isize
                } else {
                    a
                }
            })
            .collect(),
    )
}

fn unary(
    g: &mut Generator,
    f: fn(&Tensor) -> Result<Tensor>,
    x: fn(&mut Generator, &[usize]) -> Tensor,
) -> Case {
    let s = rand_shape(g, 3);
    case(vec![x(g, &s)], move |t| f(&t[0]))
}

fn gen_any(g: &mut Generator, s: &[usize]) -> Tensor {
    unif(g, s, -2.0, 2.0)
}
fn pos(g: &mut Generator, s: &[usize]) -> Tensor {
    unif(g, s, 0.3, 3.0)
}

fn binary(
    g: &mut Generator,
    f: fn(&Tensor, &Tensor) -> Result<Tensor>,
    y_away: bool,
    x_pos: bool,
) -> Case {
    let s = rand_shape(g, 3);
    let p = partner(g, &s);
    let (a, b) = if below(g, 2) == 0 { (s, p) } else { (p, s) };
    let x = if x_pos { pos(g, &a) } else { gen_any(g, &a) };
    let y = if y_away { away(g, &b) } else { gen_any(g, &b) };
    case(vec![x, y], move |t| f(&t[0], &t[1]))
}

/// The table: op name -> a random case exercising it.
fn rows() -> Vec<(&'static str, fn(&mut Generator) -> Case)> {
    #[allow(unused_mut)]
    let mut rows: Vec<(&'static str, fn(&mut Generator) -> Case)> = vec![
        ("negative", |g| unary(g, |x| ops::negative(x), gen_any)),
        ("square", |g| unary(g, |x| ops::square(x), gen_any)),
        ("sqrt", |g| unary(g, |x| ops::sqrt(x), pos)),
        ("rsqrt", |g| unary(g, |x| ops::rsqrt(x), pos)),
        ("reciprocal", |g| unary(g, |x| ops::reciprocal(x), away)),
        ("exp", |g| unary(g, |x| ops::exp(x), gen_any)),
        ("expm1", |g| unary(g, |x| ops::expm1(x), gen_any)),
        ("log", |g| unary(g, |x| ops::log(x), pos)),
        ("log1p", |g| unary(g, |x| ops::log1p(x), pos)),
        ("abs", |g| unary(g, |x| ops::abs(x), away)),
        ("sign", |g| {
            unary(g, |x| ops::multiply(&ops::sign(x)?, &ops::square(x)?), away)
        }),
        ("sin", |g| unary(g, |x| ops::sin(x), gen_any)),
        ("cos", |g| unary(g, |x| ops::cos(x), gen_any)),
        ("tanh", |g| unary(g, |x| ops::tanh(x), gen_any)),
        ("sigmoid", |g| unary(g, |x| ops::sigmoid(x), gen_any)),
        ("relu", |g| {
            unary(g, |x| ops::multiply(&ops::relu(x)?, x), away)
        }),
        ("softplus", |g| unary(g, |x| ops::softplus(x), gen_any)),
        ("elu", |g| unary(g, |x| ops::elu(x), away)),
        ("selu", |g| unary(g, |x| ops::selu(x), away)),
        ("add", |g| binary(g, |x, y| ops::add(x, y), false, false)),
        ("subtract", |g| {
            binary(g, |x, y| ops::subtract(x, y), false, false)
        }),
        ("multiply", |g| {
            binary(g, |x, y| ops::multiply(x, y), false, false)
        }),
        ("divide", |g| {
            binary(g, |x, y| ops::divide(x, y), true, false)
        }),
        ("maximum", |g| {
            binary(g, |x, y| ops::maximum(x, y), false, false)
        }),
        ("minimum", |g| {
            binary(g, |x, y| ops::minimum(x, y), false, false)
        }),
        ("pow", |g| binary(g, |x, y| ops::pow(x, y), false, true)),
        ("clip_by_value", |g| {
            let s = rand_shape(g, 2);
            case(vec![away(g, &s)], |t| {
                ops::clip_by_value(&ops::multiply(&t[0], &t[0])?, &0.2, &3.0)
            })
        }),
        ("select", |g| {
            let s = rand_shape(g, 3);
            let (p, q) = (partner(g, &s), partner(g, &s));
            let c = ops::greater(&unif(g, &q, -1.0, 1.0), &0.0).unwrap();
            case(vec![c, gen_any(g, &s), gen_any(g, &p)], |t| {
                ops::select(&t[0], &t[1], &t[2])
            })
        }),
        ("cast", |g| {
            let s = rand_shape(g, 2);
            // through float32 and back; the finite differences use a coarse step for it
            case(vec![gen_any(g, &s)], |t| {
                ops::cast(
                    &ops::multiply(&ops::cast(&t[0], DType::F32)?, &3.0)?,
                    DType::F64,
                )
            })
        }),
        ("reduce_sum", |g| {
            let s = rand_shape(g, 3);
            let (a, k) = (rand_axes(g, s.len()), below(g, 2) == 0);
            case(vec![gen_any(g, &s)], move |t| {
                ops::reduce_sum(&ops::square(&t[0])?, a.clone(), k)
            })
        }),
        ("reduce_mean", |g| {
            let s = rand_shape(g, 3);
            let (a, k) = (rand_axes(g, s.len()), below(g, 2) == 0);
            case(vec![gen_any(g, &s)], move |t| {
                ops::reduce_mean(&ops::square(&t[0])?, a.clone(), k)
            })
        }),
        ("reduce_max", |g| {
            let s = rand_shape(g, 3);
            let (a, k) = (rand_axes(g, s.len()), below(g, 2) == 0);
            case(vec![gen_any(g, &s)], move |t| {
                ops::reduce_max(&ops::sin(&t[0])?, a.clone(), k)
            })
        }),
        ("reduce_max_first", |g| {
            let s = rand_shape(g, 3);
            let (a, k) = (rand_axes(g, s.len()), below(g, 2) == 0);
            case(vec![gen_any(g, &s)], move |t| {
                ops::reduce_max_first(&ops::sin(&t[0])?, a.clone(), k)
            })
        }),
        ("reduce_min", |g| {
            let s = rand_shape(g, 3);
            let (a, k) = (rand_axes(g, s.len()), below(g, 2) == 0);
            case(vec![gen_any(g, &s)], move |t| {
                ops::reduce_min(&t[0], a.clone(), k)
            })
        }),
        ("reduce_prod", |g| {
            let s = rand_shape(g, 3);
            let (a, k) = (rand_axes(g, s.len()), below(g, 2) == 0);
            case(vec![away(g, &s)], move |t| {
                ops::reduce_prod(&t[0], a.clone(), k)
            })
        }),
        ("reduce_logsumexp", |g| {
            let s = rand_shape(g, 3);
            let (a, k) = (rand_axes(g, s.len()), below(g, 2) == 0);
            case(vec![gen_any(g, &s)], move |t| {
                ops::reduce_logsumexp(&t[0], a.clone(), k)
            })
        }),
        ("softmax", |g| {
            let s = rank_at_least(g, 1, 3);
            let ax = -(1 + below(g, s.len()) as isize);
            case(vec![gen_any(g, &s)], move |t| {
                ops::multiply(&ops::softmax(&t[0], ax)?, &t[0])
            })
        }),
        ("log_softmax", |g| {
            let s = rank_at_least(g, 1, 3);
            let ax = below(g, s.len()) as isize;
            case(vec![gen_any(g, &s)], move |t| ops::log_softmax(&t[0], ax))
        }),
        ("matmul", |g| {
            let (m, k, n) = (1 + below(g, 3), 1 + below(g, 3), 1 + below(g, 3));
            let (ta, tb) = (below(g, 2) == 0, below(g, 2) == 0);
            let batch: Vec<usize> = rand_shape(g, 1);
            let mut sa = batch.clone();
            sa.extend(if ta { [k, m] } else { [m, k] });
            let sb = if tb { vec![n, k] } else { vec![k, n] };
            case(vec![gen_any(g, &sa), gen_any(g, &sb)], move |t| {
                ops::matmul_transposed(&t[0], &t[1], ta, tb)
            })
        }),
        ("identity", |g| {
            let s = rank_at_least(g, 0, 3);
            case(vec![gen_any(g, &s)], |t| {
                ops::multiply(&ops::identity(&t[0])?, &ops::sin(&t[0])?)
            })
        }),
        ("reshape", |g| {
            let s = rank_at_least(g, 1, 3);
            case(vec![gen_any(g, &s)], |t| {
                ops::multiply(
                    &ops::reshape(&t[0], &[-1])?,
                    &ops::reshape(&ops::sin(&t[0])?, &[-1])?,
                )
            })
        }),
        ("expand_dims_squeeze", |g| {
            let s = rand_shape(g, 2);
            case(vec![gen_any(g, &s)], |t| {
                ops::squeeze(&ops::square(&ops::expand_dims(&t[0], 0)?)?, &[0])
            })
        }),
        ("transpose", |g| {
            let s = rank_at_least(g, 2, 3);
            let mut perm: Vec<usize> = (0..s.len()).collect();
            perm.rotate_left(1 + below(g, s.len() - 1));
            case(vec![gen_any(g, &s)], move |t| {
                ops::multiply(
                    &ops::transpose(&t[0], Some(&perm))?,
                    &ops::transpose(&t[0], Some(&perm))?,
                )
            })
        }),
        ("broadcast_to", |g| {
            let s = rand_shape(g, 3);
            let p = partner(g, &s);
            case(vec![gen_any(g, &p)], move |t| {
                ops::square(&ops::broadcast_to(&t[0], &s)?)
            })
        }),
        ("slice", |g| {
            let s = rank_at_least(g, 1, 3);
            let begin: Vec<usize> = s.iter().map(|&d| below(g, d)).collect();
            let size: Vec<isize> = s
                .iter()
                .zip(&begin)
                .map(|(&d, &b)| {
                    if below(g, 3) == 0 {
                        -1
                    } else {
                        1 + below(g, d - b) as isize
                    }
                })
                .collect();
            case(vec![gen_any(g, &s)], move |t| {
                ops::square(&ops::slice(&t[0], &begin, &size)?)
            })
        }),
        ("strided_slice", |g| {
            let s = rank_at_least(g, 1, 3);
            let steps: Vec<isize> = s.iter().map(|_| [1, 2, -1, -2][below(g, 4)]).collect();
            let begin: Vec<isize> = s
                .iter()
                .zip(&steps)
                .map(|(&d, &st)| if st > 0 { 0 } else { d as isize - 1 })
                .collect();
            let end: Vec<isize> = s
                .iter()
                .zip(&steps)
                .map(|(&d, &st)| {
                    if st > 0 {
                        d as isize
                    } else {
                        -(d as isize) - 1
                    }
                })
                .collect();
            case(vec![gen_any(g, &s)], move |t| {
                ops::square(&ops::strided_slice(&t[0], &begin, &end, &steps)?)
            })
        }),
        ("pad", |g| {
            let s = rank_at_least(g, 1, 2);
            let p: Vec<[usize; 2]> = s.iter().map(|_| [below(g, 2), below(g, 2)]).collect();
            case(vec![gen_any(g, &s)], move |t| {
                ops::multiply(&ops::pad(&ops::square(&t[0])?, &p)?, &2.0)
            })
        }),
        ("concat", |g| {
            let s = rank_at_least(g, 1, 3);
            let ax = below(g, s.len());
            let mut s2 = s.clone();
            s2[ax] = 1 + below(g, 2);
            case(vec![gen_any(g, &s), gen_any(g, &s2)], move |t| {
                ops::square(&ops::concat(&[&t[0], &t[1]], ax as isize)?)
            })
        }),
        ("stack_split", |g| {
            let s = rank_at_least(g, 1, 2);
            case(vec![gen_any(g, &s), gen_any(g, &s)], |t| {
                let st = ops::stack(&[&t[0], &t[1]], 0)?;
                let parts = ops::split(&ops::square(&st)?, 2, 0)?;
                ops::multiply(&parts[0], &ops::sin(&parts[1])?)
            })
        }),
        // the primitive itself: `Tensor::to_device` to the device a tensor is on records nothing
        ("to_device", |g| {
            let s = rank_at_least(g, 0, 3);
            case(vec![gen_any(g, &s)], |t| {
                let to = ops::primitives().find(|p| p.name() == "to_device").unwrap();
                let here = ops::Params::device(t[0].device());
                ops::square(&to.apply(&[&ops::sin(&t[0])?], &here)?)
            })
        }),
        ("gather", |g| {
            let s = rank_at_least(g, 1, 3);
            let ax = below(g, s.len());
            let n = 1 + below(g, 4);
            let idx: Vec<i64> = (0..n).map(|_| below(g, s[ax]) as i64).collect();
            let i = Tensor::from_vec(idx, &[n]).unwrap();
            case(vec![gen_any(g, &s), i], move |t| {
                ops::square(&ops::gather(&t[0], &t[1], ax as isize)?)
            })
        }),
        ("gather_nd", |g| {
            let s = rank_at_least(g, 2, 3);
            let idx: Vec<i64> = (0..3)
                .flat_map(|_| [below(g, s[0]) as i64, below(g, s[1]) as i64])
                .collect();
            let i = Tensor::from_vec(idx, &[3, 2]).unwrap();
            case(vec![gen_any(g, &s), i], |t| {
                ops::square(&ops::gather_nd(&t[0], &t[1])?)
            })
        }),
        ("patches", |g| {
            // a convolution with random stride, padding, dilation and groups
            let groups = 1 + below(g, 2);
            let c = groups * (1 + below(g, 2));
            let (h, w) = (3 + below(g, 2), 3 + below(g, 2));
            let k = [1 + below(g, 2), 1 + below(g, 3)];
            let strides = [1 + below(g, 2), 1 + below(g, 2)];
            let padding = if below(g, 2) == 0 {
                ops::Padding::Valid
            } else {
                ops::Padding::Same
            };
            let dilation = [1 + below(g, 2), 1];
            let n = 1 + below(g, 2);
            let x = unif(g, &[n, h, w, c], -1.0, 1.0);
            let f = unif(g, &[k[0], k[1], c / groups, groups], -1.0, 1.0);
            case(vec![x, f], move |t| {
                let o = ops::ConvOptions { dilation, groups };
                ops::square(&ops::conv2d_with(&t[0], &t[1], strides, padding, o)?)
            })
        }),
        ("unpatches", |g| {
            let s = [1 + below(g, 2), 2, 2 + below(g, 2), 1 + below(g, 2)];
            let strides = [1 + below(g, 2), 1 + below(g, 2)];
            let padding = if below(g, 2) == 0 {
                ops::Padding::Valid
            } else {
                ops::Padding::Same
            };
            let x = unif(g, &s, -1.0, 1.0);
            let kw = 1 + below(g, 2);
            let f = unif(g, &[2, kw, 2, s[3]], -1.0, 1.0);
            case(vec![x, f], move |t| {
                ops::square(&ops::conv2d_transpose(
                    &t[0],
                    &t[1],
                    strides,
                    padding,
                    [1, 1],
                )?)
            })
        }),
        ("pooling", |g| {
            let s = [
                1 + below(g, 2),
                3 + below(g, 2),
                3 + below(g, 2),
                1 + below(g, 2),
            ];
            let k = [1 + below(g, 2), 2];
            let strides = [1 + below(g, 2), 1 + below(g, 2)];
            let padding = if below(g, 2) == 0 {
                ops::Padding::Valid
            } else {
                ops::Padding::Same
            };
            case(vec![unif(g, &s, -1.0, 1.0)], move |t| {
                let m = ops::max_pool2d(&t[0], k, strides, padding)?;
                let a = ops::avg_pool2d(&ops::square(&t[0])?, k, strides, padding)?;
                ops::add(&ops::square(&m)?, &a)
            })
        }),
        ("scatter_add", |g| {
            let s = rank_at_least(g, 1, 2);
            let ids: Vec<i64> = (0..s[0]).map(|_| below(g, 3) as i64).collect();
            let i = Tensor::from_vec(ids, &[s[0]]).unwrap();
            case(vec![gen_any(g, &s), i], |t| {
                ops::square(&ops::unsorted_segment_sum(&t[0], &t[1], 3)?)
            })
        }),
    ];
    #[cfg(feature = "linalg")]
    rows.extend(linalg_rows());
    rows
}

/// The rows of `linalg`'s primitives (feature `linalg`).
#[cfg(feature = "linalg")]
fn linalg_rows() -> Vec<(&'static str, fn(&mut Generator) -> Case)> {
    vec![
        // a general matrix kept far from singular (2.5 I added), broadcasting batches
        ("solve", |g| {
            let (n, k) = (1 + below(g, 3), 1 + below(g, 3));
            let batch = rand_shape(g, 1);
            let mut sa = batch.clone();
            sa.extend([n, n]);
            let mut sb = partner(g, &batch);
            sb.extend([n, k]);
            case(
                vec![unif(g, &sa, -0.5, 0.5), unif(g, &sb, -1.0, 1.0)],
                move |t| {
                    let a = ops::add(&t[0], &ops::multiply(&Tensor::eye(n, DType::F64)?, &2.5)?)?;
                    gradtape::linalg::solve(&a, &t[1])
                },
            )
        }),
        // log|det| of a matrix with a negative determinant half the time
        ("slogdet", |g| {
            let n = 1 + below(g, 3);
            let flip = below(g, 2) == 0;
            let mut s = rand_shape(g, 1);
            s.extend([n, n]);
            case(vec![unif(g, &s, -0.5, 0.5)], move |t| {
                let d = if flip { -2.5 } else { 2.5 };
                let a = ops::add(&t[0], &ops::multiply(&Tensor::eye(n, DType::F64)?, &d)?)?;
                Ok(gradtape::linalg::slogdet(&a)?.1)
            })
        }),
        // symmetric positive definite through X Xᵀ + n I, so every perturbation of the
        // input stays a valid (symmetric) one
        ("cholesky", |g| {
            let n = 1 + below(g, 3);
            let mut s = rand_shape(g, 1);
            s.extend([n, n]);
            case(vec![unif(g, &s, -1.0, 1.0)], move |t| {
                let spd = ops::add(
                    &ops::matmul_transposed(&t[0], &t[0], false, true)?,
                    &ops::multiply(&Tensor::eye(n, DType::F64)?, &(n as f64))?,
                )?;
                gradtape::linalg::cholesky(&spd)
            })
        }),
        // a well-conditioned triangle (diagonal 2..3), each triangle and adjoint, and batch
        // dimensions that broadcast
        ("triangular_solve", |g| {
            let (n, k) = (1 + below(g, 3), 1 + below(g, 3));
            let (lower, adjoint) = (below(g, 2) == 0, below(g, 2) == 0);
            let batch = rand_shape(g, 1);
            let mut sa = batch.clone();
            sa.extend([n, n]);
            let mut sb = partner(g, &batch);
            sb.extend([n, k]);
            case(
                vec![unif(g, &sa, -0.5, 0.5), unif(g, &sb, -1.0, 1.0)],
                move |t| {
                    let a = ops::add(&t[0], &ops::multiply(&Tensor::eye(n, DType::F64)?, &2.5)?)?;
                    gradtape::linalg::triangular_solve(&a, &t[1], lower, adjoint)
                },
            )
        }),
        // eigenvalues kept apart (a diagonal 0, 3, 6 under entries in ±0.5), any triangle's
        // entries (only the lower one is read); what the rows compute does not depend on
        // the eigenvectors' signs
        ("eigh", |g| {
            let n = 1 + below(g, 3);
            let mut s = rand_shape(g, 1);
            s.extend([n, n]);
            case(vec![unif(g, &s, -0.5, 0.5)], move |t| {
                let a = ops::add(&t[0], &spread(n, n)?)?;
                let (e, v) = gradtape::linalg::eigh(&a)?;
                let vv = ops::multiply(&ops::square(&v)?, &ops::expand_dims(&e, -2)?)?;
                let f = ops::multiply(&v, &ops::expand_dims(&ops::sin(&e)?, -2)?)?;
                ops::add(&vv, &ops::matmul_transposed(&f, &v, false, true)?)
            })
        }),
        ("eigvalsh", |g| {
            let n = 1 + below(g, 3);
            let mut s = rand_shape(g, 1);
            s.extend([n, n]);
            case(vec![unif(g, &s, -0.5, 0.5)], move |t| {
                gradtape::linalg::eigvalsh(&ops::add(&t[0], &spread(n, n)?)?)
            })
        }),
        // singular values kept apart and away from zero; tall, wide and square; full
        // matrices for square ones (the only shape forward mode takes them in)
        ("svd", |g| {
            let (m, n) = (1 + below(g, 3), 1 + below(g, 3));
            let full = m == n && below(g, 2) == 0;
            let mut s = rand_shape(g, 1);
            s.extend([m, n]);
            case(vec![unif(g, &s, -0.5, 0.5)], move |t| {
                let a = ops::add(&t[0], &spread(m, n)?)?;
                let (s, u, v) = gradtape::linalg::svd(&a, full)?;
                let us = ops::multiply(&ops::square(&u)?, &ops::expand_dims(&s, -2)?)?;
                let both = ops::matmul_transposed(&us, &ops::square(&v)?, false, true)?;
                ops::add(&both, &ops::matmul_transposed(&u, &v, false, true)?)
            })
        }),
        ("svdvals", |g| {
            let (m, n) = (1 + below(g, 3), 1 + below(g, 3));
            let mut s = rand_shape(g, 1);
            s.extend([m, n]);
            case(vec![unif(g, &s, -0.5, 0.5)], move |t| {
                gradtape::linalg::svdvals(&ops::add(&t[0], &spread(m, n)?)?)
            })
        }),
        // R's diagonal away from zero; tall, wide (TensorFlow's split rule) and complete
        // where it has a derivative (m ≤ n)
        ("qr", |g| {
            let (m, n) = (1 + below(g, 3), 1 + below(g, 3));
            let full = m <= n && below(g, 2) == 0;
            let mut s = rand_shape(g, 1);
            s.extend([m, n]);
            case(vec![unif(g, &s, -0.5, 0.5)], move |t| {
                let a = ops::add(&t[0], &spread(m, n)?)?;
                let (q, r) = gradtape::linalg::qr(&a, full)?;
                ops::matmul(&q, &ops::square(&r)?)
            })
        }),
    ]
}

/// An `m`×`n` matrix with 3, 6, 9, ... on its diagonal: added to entries in ±0.5, it keeps
/// eigenvalues and singular values apart from each other and from zero.
#[cfg(feature = "linalg")]
fn spread(m: usize, n: usize) -> Result<Tensor> {
    let v: Vec<f64> = (0..m * n)
        .map(|e| match e / n == e % n {
            true => 3.0 * (1 + e / n) as f64,
            false => 0.0,
        })
        .collect();
    Tensor::from_vec(v, &[m, n])
}

fn float_sources(inputs: &[Tensor]) -> Vec<&dyn Source> {
    inputs
        .iter()
        .filter(|t| t.dtype().is_float())
        .map(|t| t as &dyn Source)
        .collect()
}

fn dot(a: &Tensor, w: &Tensor) -> f64 {
    a.to_f64_vec()
        .unwrap()
        .iter()
        .zip(w.to_f64_vec().unwrap())
        .map(|(x, y)| x * y)
        .sum()
}

/// Gradients of `sum(f(x) * w)` by the tape.
fn tape_grads(c: &Case, inputs: &[Tensor], w: &Tensor) -> Vec<Option<Tensor>> {
    let tape = GradientTape::new();
    for t in inputs.iter().filter(|t| t.dtype().is_float()) {
        tape.watch(t);
    }
    let y = (c.f)(inputs).unwrap();
    let opts = GradientOptions {
        output_gradients: Some(vec![w.clone()]),
        ..Default::default()
    };
    tape.gradient_with(&[&y], &float_sources(inputs), &opts)
        .unwrap()
}

/// Central differences of `scalar(inputs)` with respect to every float element.
fn numeric(inputs: &[Tensor], eps: f64, scalar: &dyn Fn(&[Tensor]) -> f64) -> Vec<Vec<f64>> {
    let mut out = vec![];
    for k in 0..inputs.len() {
        if !inputs[k].dtype().is_float() {
            continue;
        }
        let base = inputs[k].to_vec::<f64>().unwrap();
        let mut d = vec![];
        for j in 0..base.len() {
            let at = |delta: f64| {
                let mut v = base.clone();
                v[j] += delta;
                let mut xs = inputs.to_vec();
                xs[k] = Tensor::from_vec(v, inputs[k].shape()).unwrap();
                scalar(&xs)
            };
            d.push((at(eps) - at(-eps)) / (2.0 * eps));
        }
        out.push(d);
    }
    out
}

fn compare(
    what: &str,
    analytic: &[Option<Tensor>],
    numeric: &[Vec<f64>],
    tol: f64,
) -> std::result::Result<(), String> {
    for (k, (a, n)) in analytic.iter().zip(numeric).enumerate() {
        let a = a
            .as_ref()
            .map(|t| t.to_f64_vec().unwrap())
            .unwrap_or(vec![0.0; n.len()]);
        let scale = 1.0 + n.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        for (j, (x, y)) in a.iter().zip(n).enumerate() {
            if (x - y).abs() > tol * scale {
                return Err(format!("{what} input {k} element {j}: tape {x}, finite differences {y}\n tape {a:?}\n  fd {n:?}"));
            }
        }
    }
    Ok(())
}

fn check(name: &str, c: &Case, g: &mut Generator) -> std::result::Result<(), String> {
    let y = (c.f)(&c.inputs).map_err(|e| format!("{name}: {e}"))?;
    let w = unif(g, y.shape(), -1.0, 1.0);
    let (eps, tol) = if name == "cast" {
        (1e-2, 1e-4)
    } else {
        (1e-6, 1e-6)
    };
    // first order
    let analytic = tape_grads(c, &c.inputs, &w);
    let num = numeric(&c.inputs, eps, &|xs| dot(&(c.f)(xs).unwrap(), &w));
    compare(&format!("{name} (1st order)"), &analytic, &num, tol)?;
    // second order: the gradient of sum_k <grad_k, v_k>, through an outer tape
    let vs: Vec<Tensor> = c
        .inputs
        .iter()
        .filter(|t| t.dtype().is_float())
        .map(|t| unif(g, t.shape(), -1.0, 1.0))
        .collect();
    let contract = |grads: &[Option<Tensor>]| -> Tensor {
        let mut s = Tensor::scalar(0.0f64);
        for (gk, v) in grads.iter().zip(&vs) {
            if let Some(gk) = gk {
                s = ops::add(
                    &s,
                    &ops::reduce_sum(&ops::multiply(gk, v).unwrap(), Axes::All, false).unwrap(),
                )
                .unwrap();
            }
        }
        s
    };
    let outer = GradientTape::new();
    for t in c.inputs.iter().filter(|t| t.dtype().is_float()) {
        outer.watch(t);
    }
    let s = contract(&tape_grads(c, &c.inputs, &w));
    let second = outer
        .gradient_with(
            &[&s],
            &float_sources(&c.inputs),
            &GradientOptions::default(),
        )
        .unwrap();
    let num2 = numeric(&c.inputs, 1e-5, &|xs| {
        contract(&tape_grads(c, xs, &w)).to_scalar::<f64>().unwrap()
    });
    compare(&format!("{name} (2nd order)"), &second, &num2, 1e-5)?;
    check_forward(name, c, &w, &analytic, &vs, &second, eps, tol)
}

/// Forward mode on the same case: with random tangents `t` for the inputs, `⟨w, J t⟩` equals
/// `Σ ⟨gradient_k, t_k⟩` from the tape and the central difference of `⟨w, f(x + εt)⟩`; and the
/// JVP of the gradients along `vs` (forward over reverse) is the Hessian-vector product the
/// outer tape gave.
#[allow(clippy::too_many_arguments)]
fn check_forward(
    name: &str,
    c: &Case,
    w: &Tensor,
    grads: &[Option<Tensor>],
    vs: &[Tensor],
    hvp: &[Option<Tensor>],
    eps: f64,
    tol: f64,
) -> std::result::Result<(), String> {
    let float: Vec<Tensor> = c
        .inputs
        .iter()
        .filter(|t| t.dtype().is_float())
        .cloned()
        .collect();
    let mut g = Generator::from_seed(float.len() as u64 + 11);
    let ts: Vec<Tensor> = float
        .iter()
        .map(|t| unif(&mut g, t.shape(), -1.0, 1.0))
        .collect();
    let acc = ForwardAccumulator::new(&float[..], &ts).unwrap();
    let y = (c.f)(&c.inputs).unwrap();
    let jvp = acc
        .jvp_with(&y, UnconnectedGradients::Zero)
        .unwrap()
        .unwrap();
    drop(acc);
    // through a float32 cast the tangent itself is rounded to float32
    let exact = if name == "cast" { 1e-6 } else { 1e-9 };
    let got = dot(&jvp, w);
    let want: f64 = grads
        .iter()
        .zip(&ts)
        .map(|(gk, tk)| gk.as_ref().map_or(0.0, |gk| dot(gk, tk)))
        .sum();
    let scale = 1.0 + want.abs();
    if (got - want).abs() > exact * scale {
        return Err(format!(
            "{name} (jvp): <w, Jt> = {got}, <J^T w, t> = {want}"
        ));
    }
    let along = |s: f64| -> f64 {
        let mut xs = c.inputs.clone();
        for (k, x) in xs.iter_mut().filter(|t| t.dtype().is_float()).enumerate() {
            *x = ops::add(&*x, &ops::multiply(&ts[k], &s).unwrap()).unwrap();
        }
        dot(&(c.f)(&xs).unwrap(), w)
    };
    let fd = (along(eps) - along(-eps)) / (2.0 * eps);
    if (got - fd).abs() > tol * (1.0 + fd.abs()) * 10.0 {
        return Err(format!("{name} (jvp): {got}, finite differences {fd}"));
    }
    // forward over reverse: the tangent of the gradients along vs
    let acc = ForwardAccumulator::new(&float[..], vs).unwrap();
    let grads = tape_grads(c, &c.inputs, w);
    for (k, (gk, hk)) in grads.iter().zip(hvp).enumerate() {
        let (Some(gk), Some(hk)) = (gk, hk) else {
            continue;
        };
        let fwd = acc
            .jvp_with(gk, UnconnectedGradients::Zero)
            .unwrap()
            .unwrap();
        let (a, b) = (fwd.to_f64_vec().unwrap(), hk.to_f64_vec().unwrap());
        let scale = 1.0 + b.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        for (j, (x, y)) in a.iter().zip(&b).enumerate() {
            if (x - y).abs() > exact * scale {
                return Err(format!(
                    "{name} (forward over reverse) input {k} element {j}: {x} vs reverse over reverse {y}"
                ));
            }
        }
    }
    Ok(())
}

#[test]
fn every_differentiable_op_matches_finite_differences() {
    check_every_op(7);
}

/// The same table with elementwise ops pending and full reductions fused at every size
/// (`gradtape::fusion`, which otherwise starts at 2¹⁸ elements).
#[test]
fn every_differentiable_op_matches_finite_differences_when_fused() {
    gradtape::fusion::set_min_elements(1);
    check_every_op(8);
}

fn check_every_op(seed: u64) {
    let mut g = Generator::from_seed(seed);
    let mut recorded = BTreeSet::new();
    let mut forward = BTreeSet::new();
    let mut failures = vec![];
    for (name, make) in rows() {
        for _ in 0..6 {
            let c = make(&mut g);
            let tape = GradientTape::new();
            for t in c.inputs.iter().filter(|t| t.dtype().is_float()) {
                tape.watch(t);
            }
            let _ = (c.f)(&c.inputs);
            recorded.extend(tape.recorded_ops());
            // the same forward pass in forward mode, and the gradient rules under it
            let float: Vec<Tensor> = c
                .inputs
                .iter()
                .filter(|t| t.dtype().is_float())
                .cloned()
                .collect();
            let ones: Vec<Tensor> = float
                .iter()
                .map(|t| Tensor::ones_like(t).unwrap())
                .collect();
            let acc = ForwardAccumulator::new(&float[..], &ones).unwrap();
            let _ = tape_grads(
                &c,
                &c.inputs,
                &Tensor::ones_like(&(c.f)(&c.inputs).unwrap()).unwrap(),
            );
            forward.extend(acc.recorded_ops());
            if let Err(e) = check(name, &c, &mut g) {
                failures.push(e);
                break;
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    let listed = differentiable();
    let unlisted: Vec<_> = recorded.difference(&listed).collect();
    assert!(
        unlisted.is_empty(),
        "ops record on the tape but are not differentiable primitives: {unlisted:?}"
    );
    let untested: Vec<_> = listed.difference(&recorded).collect();
    assert!(
        untested.is_empty(),
        "differentiable primitives without a gradient-check row: {untested:?}"
    );
    // every differentiable op has a JVP rule of its own, and it ran here
    let without: Vec<_> = listed.difference(&forward).collect();
    assert!(
        without.is_empty(),
        "differentiable primitives whose JVP rule never ran: {without:?}"
    );
    let unknown: Vec<_> = forward.difference(&listed).collect();
    assert!(
        unknown.is_empty(),
        "ops propagate tangents but are not differentiable primitives: {unknown:?}"
    );
}

/// The names of the differentiable primitives: each must have a row above, and its own JVP
/// rule must run there.
fn differentiable() -> BTreeSet<&'static str> {
    ops::primitives()
        .filter(|p| p.is_differentiable())
        .map(|p| p.name())
        .collect()
}

/// The primitive table (`ops::primitives()`): every differentiable primitive is held by the
/// test above to a gradient row and its own JVP rule; every other one, given float inputs, ends
/// a tape's path with `None` and says so (or refuses them by dtype, naming itself: the logical
/// ops); each has a name of its own.
#[test]
fn every_primitive_has_every_rule() {
    let mut names = BTreeSet::new();
    for p in ops::primitives() {
        assert!(names.insert(p.name()), "{} is defined twice", p.name());
        if p.is_differentiable() {
            continue;
        }
        let x = Tensor::from_vec(vec![0.3f64, 1.7], &[2]).unwrap();
        let tape = GradientTape::persistent();
        tape.watch(&x);
        // max pooling's mask takes x and its maximum over the axes
        let peak = ops::reduce_max(&x, 0, true).unwrap();
        let inputs = match p.name() {
            "first_equal_mask" => vec![&x, &peak],
            _ => vec![&x; p.arity().unwrap_or(1)],
        };
        // the first kind of parameters it takes
        let kinds = [
            ops::Params::NONE,
            ops::Params::axis(0),
            ops::Params::reduce(&[0], false),
            ops::Params::one_hot(3, 1.0, 0.0, gradtape::DType::F64),
        ];
        let result = kinds
            .iter()
            .map(|k| p.apply(&inputs, k))
            .find(|r| !matches!(r, Err(e) if e.to_string().contains("parameters")))
            .unwrap_or_else(|| panic!("{}: none of {kinds:?} fits it", p.name()));
        match result {
            // a bool or int result (the comparisons, argmax): no gradient can flow from it,
            // and the reason says so; a float one: the path ends at the primitive, named
            Ok(y) if !y.dtype().is_float() => {
                let why = tape.why_no_gradient(&y, &x).unwrap_or_default();
                assert!(why.contains(&y.dtype().to_string()), "{}: {why}", p.name());
            }
            Ok(y) => {
                let why = tape.why_no_gradient(&y, &x).unwrap_or_default();
                assert!(why.contains(p.name()), "{}: {why}", p.name());
                let [g] = tape.gradient(&y, [&x]).unwrap();
                assert!(g.is_none(), "{}: a gradient through it", p.name());
            }
            // float inputs refused (the logical ops and bool reductions, one_hot): by name
            Err(e) => {
                let e = e.to_string();
                let dtype = e.contains("bool") || e.contains("int64");
                assert!(e.contains(p.name()) && dtype, "{e}");
            }
        }
    }
    assert!(names.len() >= 40, "only {names:?}");
}

/// The same table on `cuda:0` when this machine has a usable GPU: every row's inputs moved to
/// the GPU and every tensor the check makes created there (`with_device`), first and second
/// order and forward mode against central differences computed on the GPU too. Rows that reach
/// an op without a GPU kernel yet are listed, not failed; a wrong number fails. Without a GPU
/// it says why on stderr (and fails when `GRADTAPE_REQUIRE_GPU` is set, as on the GPU machine).
#[cfg(feature = "cuda")]
#[test]
fn differentiable_ops_on_the_gpu_match_finite_differences() {
    use gradtape::Device;
    use std::io::Write;
    use std::panic::{catch_unwind, AssertUnwindSafe};
    let dev = Device::Cuda(0);
    if let Err(why) = dev.check() {
        if std::env::var_os("GRADTAPE_REQUIRE_GPU").is_some() {
            panic!("GRADTAPE_REQUIRE_GPU is set but there is no usable GPU: {why}");
        }
        let _ = writeln!(std::io::stderr(), "gradcheck on the GPU skipped: {why}");
        return;
    }
    let no_kernel = |msg: &str| msg.contains("only a CPU kernel");
    let mut g = Generator::from_seed(9);
    let (mut passed, mut missing, mut failures) = (vec![], vec![], vec![]);
    for (name, make) in rows() {
        let c = make(&mut g);
        let inputs: Vec<Tensor> = c.inputs.iter().map(|t| t.to_device(dev).unwrap()).collect();
        let c = Case { inputs, f: c.f };
        let run = catch_unwind(AssertUnwindSafe(|| {
            gradtape::device::with_device(dev, || check(name, &c, &mut g)).unwrap()
        }));
        let msg = match run {
            Ok(Ok(())) => {
                passed.push(name);
                continue;
            }
            Ok(Err(e)) => e,
            Err(p) => p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default(),
        };
        if no_kernel(&msg) {
            missing.push(name);
        } else {
            failures.push(format!("{name}: {msg}"));
        }
    }
    let _ = writeln!(
        std::io::stderr(),
        "gradcheck on {}: {} rows passed, {} reach ops with no GPU kernel yet: {missing:?}",
        dev.name().unwrap_or_default(),
        passed.len(),
        missing.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(!passed.is_empty(), "no row ran on the GPU");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, failure_persistence: None, ..ProptestConfig::default() })]

    /// Broadcasting: for any pair of broadcastable shapes, the gradient of `x * y + x / (1 + y²)`
    /// reaches each input summed back to its own shape and agrees with finite differences.
    #[test]
    fn broadcast_gradients_match_finite_differences(
        shape in proptest::collection::vec(1usize..4, 0..4),
        mask in proptest::collection::vec(any::<bool>(), 4),
        drop in 0usize..4,
        seed in any::<u64>(),
    ) {
        let drop = drop.min(shape.len());
        let other: Vec<usize> = shape[drop..].iter().zip(&mask).map(|(&d, &m)| if m { 1 } else { d }).collect();
        let mut g = Generator::from_seed(seed);
        let c = case(vec![gen_any(&mut g, &shape), gen_any(&mut g, &other)], |t| {
            let d = ops::add(&ops::square(&t[1])?, &1.0)?;
            ops::add(&ops::multiply(&t[0], &t[1])?, &ops::divide(&t[0], &d)?)
        });
        prop_assert!(check("broadcast", &c, &mut g).is_ok(), "{:?}", check("broadcast", &c, &mut g));
    }

    /// Reductions over any axes (negative spellings included), with and without keepdims.
    #[test]
    fn reduction_gradients_match_finite_differences(
        shape in proptest::collection::vec(1usize..4, 1..4),
        picks in proptest::collection::vec(any::<bool>(), 3),
        keepdims in any::<bool>(),
        seed in any::<u64>(),
    ) {
        let rank = shape.len() as isize;
        let mut axes: Vec<isize> = (0..rank).filter(|&i| picks[i as usize]).map(|i| if i % 2 == 0 { i - rank } else { i }).collect();
        if axes.is_empty() { axes.push(-1); }
        let mut g = Generator::from_seed(seed);
        let a2 = axes.clone();
        let c = case(vec![gen_any(&mut g, &shape)], move |t| {
            let s = ops::reduce_sum(&ops::sin(&t[0])?, a2.clone(), keepdims)?;
            let m = ops::reduce_max(&t[0], a2.clone(), keepdims)?;
            ops::add(&s, &ops::multiply(&m, &m)?)
        });
        prop_assert!(check("reductions", &c, &mut g).is_ok(), "{:?}", check("reductions", &c, &mut g));
    }
}
