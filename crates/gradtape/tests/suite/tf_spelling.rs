//! Issue 23's friction points, each written the way a TensorFlow or JAX user first writes it
//! (none of these compiled or worked before): products of vectors and matrices, `einsum`,
//! `tf.nn`'s cross-entropies, one window size for both axes, slicing a variable, tensors and
//! a layer's variables in one gradient call, and `tf.grad_pass_through`. Values against
//! TensorFlow's are in `tf_parity.rs` (the fixture's `matvec_*`, `tensordot_*`, `einsum_*`
//! and `*_cross_entropy_with_logits` cases).

use gradtape::layers::{Activation, Conv2D, ConvConfig, Dense, Layer, MaxPooling2D};
use gradtape::ops::{self, Padding};
use gradtape::random::Generator;
use gradtape::{function, grad_pass_through, s, vmap, Axes, DType, GradientTape, Tensor, Variable};

fn t(v: &[f64], shape: &[usize]) -> Tensor {
    Tensor::from_vec(v.to_vec(), shape).unwrap()
}

fn vals(t: &Tensor) -> Vec<f64> {
    t.to_f64_vec().unwrap()
}

/// `X @ w` with a vector `w`, `w @ X`, `u @ v`: NumPy's rank-1 rules, with the gradients of
/// the spelled-out `squeeze(matmul(X, expand_dims(w, -1)))`.
#[test]
fn matmul_takes_vectors_as_numpy_does() {
    let x = t(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[3, 2]);
    let w = Variable::new(t(&[0.5, -1.0], &[2]));
    let u = t(&[1.0, 0.0, 2.0], &[3]);
    let tape = GradientTape::new();
    let xw = ops::matmul(&x, &w).unwrap();
    assert_eq!(xw.shape(), &[3]);
    let long = ops::squeeze(
        &ops::matmul(&x, &ops::expand_dims(&w, -1).unwrap()).unwrap(),
        &[-1],
    )
    .unwrap();
    assert_eq!(vals(&xw), vals(&long));
    assert_eq!(vals(&ops::matvec(&x, &w).unwrap()), vals(&long));
    let ux = ops::matmul(&u, &x).unwrap(); // a row vector on the left
    assert_eq!(vals(&ux), vec![11.0, 14.0]);
    let uu = ops::matmul(&u, &u).unwrap();
    assert_eq!((uu.shape(), uu.item().unwrap()), (&[] as &[usize], 5.0));
    let loss = ops::reduce_sum(&ops::square(&xw).unwrap(), Axes::All, false).unwrap();
    let g = tape.gradient(&loss, &w).unwrap().unwrap();
    // d/dw Σ (Xw)² = 2 Xᵀ X w
    let xtx_w = ops::matvec(&ops::transpose(&x, None).unwrap(), &xw).unwrap();
    assert_eq!(vals(&g), vals(&ops::multiply(&xtx_w, &2.0).unwrap()));
    // errors name the op and the shapes
    let e = ops::matmul(&x, &u).unwrap_err().to_string();
    assert_eq!(e, "matmul: inner dimensions differ: [3, 2] x [3]");
    assert!(ops::matmul(&Tensor::scalar(1.0f64), &u)
        .unwrap_err()
        .to_string()
        .starts_with("matmul:"));
    assert!(ops::matvec(&u, &u)
        .unwrap_err()
        .to_string()
        .starts_with("matvec:"));
}

/// `jnp.dot` and `tf.tensordot` as JAX and TensorFlow users write them.
#[test]
fn dot_and_tensordot_follow_numpy() {
    let x = t(&[1.0, 2.0, 3.0], &[3]);
    let w = t(&[0.5, 0.5, 1.0], &[3]);
    assert_eq!(ops::dot(&x, &w).unwrap().item().unwrap(), 4.5);
    let mut rng = Generator::from_seed(1);
    let a = rng.uniform(&[2, 3, 4], -1.0, 1.0, DType::F64).unwrap();
    let b = rng.uniform(&[5, 4, 6], -1.0, 1.0, DType::F64).unwrap();
    // np.dot(a, b)[i, j, k, m] = Σ a[i, j, :] · b[k, :, m]
    let d = ops::dot(&a, &b).unwrap();
    assert_eq!(d.shape(), &[2, 3, 5, 6]);
    let e = ops::einsum("ijl,klm->ijkm", &[&a, &b]).unwrap();
    for (p, q) in vals(&d).iter().zip(vals(&e)) {
        assert!((p - q).abs() < 1e-12);
    }
    assert_eq!(
        ops::dot(&a, &x).unwrap_err().to_string().split(':').next(),
        Some("dot")
    );
    assert_eq!(
        ops::tensordot(&a, &b, ([2], [1])).unwrap().shape(),
        &[2, 3, 5, 6]
    );
    let bad = ops::tensordot(&a, &b, ([2, 2], [1, 0]))
        .unwrap_err()
        .to_string();
    assert!(bad.starts_with("tensordot: axes [2, 2]"), "{bad}");
    assert!(ops::tensordot(&a, &b, 4).is_err());
}

/// `tf.einsum`'s notation: implicit output, traces, ellipses, more than two operands, and
/// `vmap` of an einsum equal to the batched einsum; every bad equation an error, no panic.
#[test]
fn einsum_reads_tensorflows_equations() {
    let mut rng = Generator::from_seed(2);
    let a = rng.uniform(&[3, 4], -1.0, 1.0, DType::F64).unwrap();
    let b = rng.uniform(&[4, 2], -1.0, 1.0, DType::F64).unwrap();
    let m = rng.uniform(&[3, 3], -1.0, 1.0, DType::F64).unwrap();
    let close = |p: &Tensor, q: &Tensor| {
        assert_eq!(p.shape(), q.shape());
        for (x, y) in vals(p).iter().zip(vals(q)) {
            assert!((x - y).abs() < 1e-12, "{x} vs {y}");
        }
    };
    close(
        &ops::einsum("ij,jk", &[&a, &b]).unwrap(),
        &ops::matmul(&a, &b).unwrap(),
    );
    close(
        &ops::einsum("ba", &[&a]).unwrap(),
        &ops::transpose(&a, None).unwrap(),
    );
    let diag_sum = ops::reduce_sum(
        &ops::multiply(&m, &Tensor::eye(3, DType::F64).unwrap()).unwrap(),
        Axes::All,
        false,
    )
    .unwrap();
    close(&ops::einsum("ii", &[&m]).unwrap(), &diag_sum);
    close(&ops::einsum(" i i -> ", &[&m]).unwrap(), &diag_sum);
    close(
        &ops::einsum(
            "ij,jk,kl->il",
            &[&a, &b, &ops::transpose(&b, None).unwrap()],
        )
        .unwrap(),
        &ops::matmul(
            &ops::matmul(&a, &b).unwrap(),
            &ops::transpose(&b, None).unwrap(),
        )
        .unwrap(),
    );
    // `...` broadcasts; vmap of "ij,j->i" is "bij,bj->bi"
    let xs = rng.uniform(&[5, 3, 4], -1.0, 1.0, DType::F64).unwrap();
    let vs = rng.uniform(&[5, 4], -1.0, 1.0, DType::F64).unwrap();
    let batched = ops::einsum("bij,bj->bi", &[&xs, &vs]).unwrap();
    close(
        &ops::einsum("...ij,...j->...i", &[&xs, &vs]).unwrap(),
        &batched,
    );
    let mapped = vmap(|a: &[Tensor]| Ok(vec![ops::einsum("ij,j->i", &[&a[0], &a[1]])?]))
        .call(&[xs.clone(), vs.clone()])
        .unwrap();
    close(&mapped[0], &batched);
    // the gradient of a trace is the identity
    let v = Variable::new(m.clone());
    let tape = GradientTape::new();
    let tr = ops::einsum("ii->", &[&v]).unwrap();
    close(
        &tape.gradient(&tr, &v).unwrap().unwrap(),
        &Tensor::eye(3, DType::F64).unwrap(),
    );
    for (eq, ops_) in [
        ("ij,jk", vec![&a]),
        ("ij->ik", vec![&a]),
        ("i->ii", vec![&m]),
        ("ijk", vec![&a]),
        ("ij,ij->ij", vec![&a, &b]),
        ("i.j", vec![&a]),
        ("......", vec![&a]),
        ("ij->", vec![]),
        ("i1", vec![&a]),
    ] {
        let e = ops::einsum(eq, &ops_).unwrap_err().to_string();
        assert!(e.starts_with("einsum: "), "{eq}: {e}");
    }
    let ints = Tensor::from_vec(vec![1i64, 2], &[2]).unwrap();
    assert!(ops::einsum("i,i", &[&ints, &ints]).is_err());
}

/// `tf.nn.sigmoid_cross_entropy_with_logits` and friends, public and checked.
#[test]
fn tf_nn_cross_entropies_are_public_and_checked() {
    let logits = t(&[2.0, -1.0, 0.5, 0.0], &[2, 2]);
    let labels = t(&[1.0, 0.0, 0.0, 1.0], &[2, 2]);
    let soft = ops::softmax_cross_entropy_with_logits(&labels, &logits, -1).unwrap();
    let classes = Tensor::from_vec(vec![0i64, 1], &[2]).unwrap();
    let sparse = ops::sparse_softmax_cross_entropy_with_logits(&classes, &logits).unwrap();
    assert_eq!(vals(&soft), vals(&sparse));
    let per = ops::sigmoid_cross_entropy_with_logits(&labels, &logits).unwrap();
    assert_eq!(per.shape(), &[2, 2]);
    let e = ops::sparse_softmax_cross_entropy_with_logits(
        &Tensor::from_vec(vec![0i64, 2], &[2]).unwrap(),
        &logits,
    )
    .unwrap_err()
    .to_string();
    assert_eq!(
        e,
        "sparse_softmax_cross_entropy_with_logits: label 2 is not in [0, 2)"
    );
    let e = ops::sigmoid_cross_entropy_with_logits(&t(&[1.0], &[1]), &logits).unwrap_err();
    assert!(e.to_string().contains("must have the same shape"), "{e}");
    // the identity TensorFlow users reach for to split a value into two tape nodes
    assert_eq!(vals(&ops::identity(&logits).unwrap()), vals(&logits));
}

/// `tf.nn.max_pool2d(x, 2, 2, "VALID")`, `MaxPooling2D(2)`, `Conv2D(..., 3)`: one size for
/// both axes.
#[test]
fn one_window_size_serves_both_axes() {
    let x = Tensor::from_vec((0..32).map(|v| v as f32).collect(), &[1, 4, 4, 2]).unwrap();
    let one = ops::max_pool2d(&x, 2, 2, Padding::Valid).unwrap();
    let two = ops::max_pool2d(&x, [2, 2], [2, 2], Padding::Valid).unwrap();
    assert_eq!(vals(&one), vals(&two));
    assert_eq!(
        ops::avg_pool2d(&x, 2, 1, Padding::Same).unwrap().shape(),
        &[1, 4, 4, 2]
    );
    assert_eq!(
        MaxPooling2D::new(2).call(&x, false).unwrap().shape(),
        &[1, 2, 2, 2]
    );
    let mut rng = Generator::from_seed(3);
    let conv = Conv2D::new("c", 2, 5, 3, ConvConfig::default(), DType::F32, &mut rng).unwrap();
    assert_eq!(conv.call(&x, false).unwrap().shape(), &[1, 2, 2, 5]);
    let k = Tensor::ones(&[3, 3, 2, 1], DType::F32).unwrap();
    assert_eq!(
        ops::conv2d(&x, &k, 1, Padding::Same).unwrap().shape(),
        &[1, 4, 4, 1]
    );
}

/// `x[::-1]` on a variable, and gradients for a tensor and a layer's variables in one call
/// (`tape.gradient(loss, [x] + layer.trainable_variables)`), and for one source alone.
#[test]
fn variables_slice_and_sources_mix_in_one_call() {
    let v = Variable::new(t(&[1.0, 2.0, 3.0], &[3]));
    let tape = GradientTape::new();
    let r = v.slice(s![..;-1]).unwrap();
    let w = t(&[1.0, 10.0, 100.0], &[3]);
    let y = ops::reduce_sum(&ops::multiply(&r, &w).unwrap(), Axes::All, false).unwrap();
    assert_eq!(
        vals(&tape.gradient(&y, &v).unwrap().unwrap()),
        vec![100.0, 10.0, 1.0]
    );

    let mut rng = Generator::from_seed(4);
    let layer = Dense::new("d", 3, 2, Activation::Tanh, DType::F64, &mut rng).unwrap();
    let x = t(&[0.5, -0.25, 1.0], &[1, 3]);
    let tape = GradientTape::new();
    tape.watch(&x);
    let loss = ops::reduce_sum(&layer.call(&x, true).unwrap(), Axes::All, false).unwrap();
    let (dx, dvars) = tape
        .gradient(&loss, (&x, &layer.trainable_variables()))
        .unwrap();
    assert_eq!(dx.unwrap().shape(), &[1, 3]);
    assert_eq!(dvars.len(), 2);
    assert!(dvars.iter().all(Option::is_some));
}

/// TensorFlow's `GradPassThroughTest` (custom_gradient_test.py): the assign's gradient passes
/// to what was assigned (6 = d z²/dz at 3), none to the variable assigned; a straight-through
/// rounding gives ones; the same compiled.
#[test]
fn grad_pass_through_as_tensorflow_tests_it() {
    let (x, z) = (Variable::new(1.0), Variable::new(3.0));
    let assign = {
        let x = x.clone();
        grad_pass_through(move |t| {
            x.assign(t)?;
            Ok(x.value())
        })
    };
    let tape = GradientTape::persistent();
    let y = assign(&ops::square(&z).unwrap()).unwrap();
    assert_eq!(y.item().unwrap(), 9.0);
    assert_eq!(x.value().item().unwrap(), 9.0);
    assert_eq!(tape.gradient(&y, &z).unwrap().unwrap().item().unwrap(), 6.0);
    assert!(tape.gradient(&y, &x).unwrap().is_none());

    let round = grad_pass_through(|t: &Tensor| ops::round(t));
    let q = t(&[0.4, 1.6, -2.5], &[3]);
    let tape = GradientTape::new();
    tape.watch(&q);
    let r = round(&q).unwrap();
    assert_eq!(vals(&r), vec![0.0, 2.0, -2.0]);
    let loss = ops::reduce_sum(&ops::multiply(&r, &q).unwrap(), Axes::All, false).unwrap();
    // d/dq Σ round(q)·q with round's gradient the identity: q + round(q)
    assert_eq!(
        vals(&tape.gradient(&loss, &q).unwrap().unwrap()),
        vec![0.4, 3.6, -4.5]
    );

    let compiled = function(move |a: &[Tensor]| {
        let tape = GradientTape::new();
        tape.watch(&a[0]);
        let r = round(&a[0])?;
        let loss = ops::reduce_sum(&ops::multiply(&r, &a[0])?, Axes::All, false)?;
        Ok(vec![tape.gradient(&loss, &a[0])?.unwrap()])
    });
    let got: Vec<Tensor> = compiled.call(&[&q]).unwrap();
    assert_eq!(vals(&got[0]), vec![0.4, 3.6, -4.5]);
    let e = grad_pass_through(|t| ops::reduce_sum(t, Axes::All, false))(&q).unwrap_err();
    assert!(e.to_string().starts_with("grad_pass_through: "), "{e}");
}

/// JAX's `argnums`: one number or several, the same way for every transform, and the result
/// shaped as JAX's (one array for `argnums=0`, a tuple for `(0, 1)`).
#[test]
fn argnums_read_as_jax_writes_them() {
    use gradtape::func;
    let f = |a: &[Tensor]| ops::multiply(&ops::square(&a[0])?, &a[1]);
    let args = [Tensor::scalar(3.0f64), Tensor::scalar(2.0f64)];
    let one: Tensor = func::grad(f, 0)(&args).unwrap();
    let [ga, gb] = func::grad(f, [0, 1])(&args).unwrap();
    let listed = func::grad(f, &[0, 1])(&args).unwrap();
    let chosen = vec![1];
    let (v, by_vec) = func::value_and_grad(f, chosen)(&args).unwrap();
    assert_eq!(v.item().unwrap(), 18.0);
    assert_eq!(one.item().unwrap(), 12.0);
    assert_eq!((ga.item().unwrap(), gb.item().unwrap()), (12.0, 9.0));
    assert_eq!(listed.len(), 2);
    assert_eq!(by_vec[0].item().unwrap(), 9.0);
    // the jacobians take argnums the same way
    assert_eq!(func::jacfwd(f, 0)(&args).unwrap().item().unwrap(), 12.0);
    let [jr0, jr1] = func::jacrev(f, [0, 1])(&args).unwrap();
    let [jf0, jf1] = func::jacfwd(f, [0, 1])(&args).unwrap();
    for (j, want) in [(&jr0, 12.0), (&jr1, 9.0), (&jf0, 12.0), (&jf1, 9.0)] {
        assert_eq!(j.item().unwrap(), want);
    }
    // jacobians of a vector function: output.shape + arg.shape for each argnum
    let g = |a: &[Tensor]| ops::multiply(&a[0], &ops::reduce_sum(&a[1], Axes::All, false)?);
    let xs = [
        Tensor::from_vec(vec![1.0f64, 2.0], &[2]).unwrap(),
        Tensor::from_vec(vec![3.0f64, 4.0, 5.0], &[3]).unwrap(),
    ];
    let [a, b] = func::jacfwd(g, [0, 1])(&xs).unwrap();
    let [c, d] = func::jacrev(g, [0, 1])(&xs).unwrap();
    assert_eq!((a.shape(), b.shape()), (&[2, 2][..], &[2, 3][..]));
    assert_eq!(a.to_vec::<f64>().unwrap(), c.to_vec::<f64>().unwrap());
    assert_eq!(b.to_vec::<f64>().unwrap(), d.to_vec::<f64>().unwrap());
    assert_eq!(
        b.to_vec::<f64>().unwrap(),
        vec![1.0, 1.0, 1.0, 2.0, 2.0, 2.0]
    );
    assert_eq!(func::hessian(f, 0)(&args).unwrap().item().unwrap(), 4.0);
    assert!(func::grad(f, 2)(&args)
        .unwrap_err()
        .to_string()
        .contains("argnums"));
}

/// `gradient_with` (seeds, zeros for unconnected sources) takes sources in the same shapes as
/// `gradient`: one, an array, a `Vec`, a tuple mixing a tensor with a layer's variables.
#[test]
fn gradient_with_takes_sources_as_gradient_does() {
    use gradtape::{GradientOptions, UnconnectedGradients};
    let mut rng = Generator::from_seed(3);
    let layer = Dense::new("d", 2, 1, Activation::Linear, DType::F64, &mut rng).unwrap();
    let x = Tensor::from_vec(vec![1.0f64, 2.0], &[1, 2]).unwrap();
    let unused = Tensor::scalar(0.0f64);
    let options = GradientOptions {
        output_gradients: Some(vec![Tensor::from_vec(vec![3.0f64], &[1, 1]).unwrap()]),
        unconnected_gradients: UnconnectedGradients::Zero,
    };
    let tape = GradientTape::persistent();
    tape.watch(&x);
    tape.watch(&unused);
    let y = layer.call(&x, false).unwrap();
    let (gx, gw) = tape
        .gradient_with(&[&y], (&x, &layer.trainable_variables()), &options)
        .unwrap();
    let kernel = layer.kernel.value().to_vec::<f64>().unwrap();
    assert_eq!(
        gx.unwrap().to_vec::<f64>().unwrap(),
        vec![3.0 * kernel[0], 3.0 * kernel[1]]
    );
    assert_eq!(gw.len(), 2);
    assert_eq!(
        gw[0].as_ref().unwrap().to_vec::<f64>().unwrap(),
        vec![3.0, 6.0]
    );
    let [gu] = tape.gradient_with(&[&y], [&unused], &options).unwrap();
    assert_eq!(gu.unwrap().item().unwrap(), 0.0);
    let one = tape.gradient_with(&[&y], &x, &options).unwrap();
    assert!(one.is_some());
}

/// JAX's `in_axes=1` and `out_axes=-1` as one number for every argument and result, and
/// `(None, 0)` as an array.
#[test]
fn vmap_axes_read_as_jax_writes_them() {
    let a = Tensor::from_vec(vec![1.0f64, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3]).unwrap();
    let b = Tensor::from_vec(vec![6.0f64, 5.0, 4.0, 3.0, 2.0, 1.0], &[2, 3]).unwrap();
    // the dot product of matching columns: jax.vmap(jnp.dot, in_axes=1)(a, b)
    let cols = vmap(|x: &[Tensor]| ops::dot(&x[0], &x[1]))
        .in_axes(1)
        .call(&[a.clone(), b.clone()])
        .unwrap();
    assert_eq!(cols.to_vec::<f64>().unwrap(), vec![18.0, 20.0, 18.0]);
    // a shared first argument: in_axes=(None, 0), rows of b scaled by a's first row
    let shared = vmap(|x: &[Tensor]| ops::multiply(&x[0], &x[1]))
        .in_axes([None, Some(0)])
        .out_axes(-1)
        .call(&[a.slice(s![0]).unwrap(), b])
        .unwrap();
    assert_eq!(shared.shape(), &[3, 2]);
    assert_eq!(
        shared.to_vec::<f64>().unwrap(),
        vec![6.0, 3.0, 10.0, 4.0, 12.0, 3.0]
    );
}

/// `tf.custom_gradient` as TensorFlow's docs write it: one output returned as itself, one
/// gradient returned as itself, and `(input_grads, variable_grads)` when the forward reads a
/// variable. (The gradient closure's upstream parameter keeps its type, `&[Tensor]`: Rust
/// infers a closure's parameter types only where it is passed straight to a function.)
#[test]
fn custom_gradient_reads_as_tensorflow_writes_it() {
    use gradtape::custom_gradient;
    fn log1pexp(x: &Tensor) -> gradtape::Result<Tensor> {
        custom_gradient(&[x], |xs| {
            let e = ops::exp(&xs[0])?;
            Ok((ops::log1p(&e)?, move |dy: &[Tensor], _: &_| {
                let local = ops::subtract(&1.0, &ops::reciprocal(&ops::add(&e, &1.0)?)?)?;
                ops::multiply(&dy[0], &local)
            }))
        })
    }
    let x = Tensor::scalar(100.0f32);
    let tape = GradientTape::new();
    tape.watch(&x);
    let y: Tensor = log1pexp(&x).unwrap();
    assert_eq!(tape.gradient(&y, &x).unwrap().unwrap().item().unwrap(), 1.0);

    // TensorFlow's `linear` with a variable: grad(dy, variables) returns
    // (dy @ wᵀ, [xᵀ @ dy])
    let w =
        Variable::new(Tensor::from_vec(vec![1.0f64, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3]).unwrap());
    let x = Tensor::from_vec(vec![0.5f64, -1.0, 2.0, 1.5], &[2, 2]).unwrap();
    let linear = |x: &Tensor| {
        custom_gradient(&[x], |xs| {
            let (x, w) = (xs[0].clone(), w.clone());
            Ok((ops::matmul(&x, &w)?, move |dy: &[Tensor], _: &_| {
                let dx = ops::matmul_transposed(&dy[0], &w, false, true)?;
                let dw = ops::matmul_transposed(&x, &dy[0], true, false)?;
                Ok((dx, vec![dw]))
            }))
        })
    };
    let tape = GradientTape::new();
    tape.watch(&x);
    let y: Tensor = linear(&x).unwrap();
    let loss = ops::reduce_sum(&ops::square(&y).unwrap(), Axes::All, false).unwrap();
    let (gx, gw) = tape.gradient(&loss, (&x, &w)).unwrap();
    let plain = GradientTape::new();
    plain.watch(&x);
    let y2 = ops::matmul(&x, &w).unwrap();
    let loss2 = ops::reduce_sum(&ops::square(&y2).unwrap(), Axes::All, false).unwrap();
    let (px, pw) = plain.gradient(&loss2, (&x, &w)).unwrap();
    let v = |t: Option<Tensor>| t.unwrap().to_vec::<f64>().unwrap();
    assert_eq!(v(gx), v(px));
    assert_eq!(v(gw), v(pw));
}

/// Python's `with` blocks as Rust values whose drop ends the scope: the end of a block or an
/// early `?` ends them, and guards dropped out of order (a value can be moved anywhere) keep
/// the newest live scope's setting, the last restoring what was there before the first.
#[test]
fn scopes_are_guards_that_end_with_their_block() {
    use gradtape::{debugging, no_grad_guard, ForwardAccumulator};
    // an early return inside a checked, recording-off block
    let x = Tensor::scalar(2.0f64);
    let tape = GradientTape::persistent();
    tape.watch(&x);
    let failing = || -> gradtape::Result<Tensor> {
        let _check = debugging::check_numerics_guard();
        let _off = no_grad_guard();
        let _paused = tape.stop_recording_guard();
        ops::log(&ops::subtract(&x, &2.0)?) // log 0: an error under check_numerics
    };
    assert!(failing().is_err());
    assert!(!debugging::check_numerics_enabled());
    assert!(tape.is_recording());
    let y = ops::square(&x).unwrap();
    assert_eq!(tape.gradient(&y, &x).unwrap().unwrap().item().unwrap(), 4.0);

    // out of order: the setting before the first guard comes back with the last
    debugging::enable_check_numerics();
    let a = debugging::check_numerics_guard();
    debugging::disable_check_numerics();
    let b = debugging::check_numerics_guard();
    drop(a);
    assert!(debugging::check_numerics_enabled()); // b's scope is still on
    drop(b);
    assert!(debugging::check_numerics_enabled()); // what a found
    debugging::disable_check_numerics();

    let (p1, p2) = (tape.stop_recording_guard(), tape.stop_recording_guard());
    drop(p1);
    assert!(!tape.is_recording());
    drop(p2);
    assert!(tape.is_recording());

    let acc = ForwardAccumulator::new([&x], &[Tensor::scalar(1.0f64)]).unwrap();
    let (g1, g2) = (no_grad_guard(), no_grad_guard());
    drop(g1);
    let hidden = ops::square(&x).unwrap();
    drop(g2);
    let seen = ops::square(&x).unwrap();
    assert!(acc.jvp(&hidden).unwrap().is_none());
    assert!(tape.gradient(&hidden, &x).unwrap().is_none());
    assert_eq!(acc.jvp(&seen).unwrap().unwrap().item().unwrap(), 4.0);
    assert_eq!(
        tape.gradient(&seen, &x).unwrap().unwrap().item().unwrap(),
        4.0
    );
}

/// `extract_patches` and its gradient (the windows added back) against a reference written
/// element by element: windows inside the image (copied a window row at a time), at the edges
/// of SAME padding, strided and dilated (element by element), one channel and several.
#[test]
fn patches_and_their_gradient_equal_an_element_by_element_reference() {
    let mut rng = Generator::from_seed(21);
    for (c, size, stride, rate, padding) in [
        (1, [5, 5], [1, 1], [1, 1], Padding::Valid),
        (3, [3, 2], [2, 1], [1, 1], Padding::Same),
        (2, [2, 3], [1, 2], [2, 1], Padding::Same),
        (1, [2, 2], [1, 1], [1, 3], Padding::Valid),
    ] {
        let (n, h, w) = (2, 7, 8);
        let x = rng.uniform(&[n, h, w, c], -1.0, 1.0, DType::F64).unwrap();
        let tape = GradientTape::new();
        tape.watch(&x);
        let p = ops::extract_patches(&x, size, stride, rate, padding).unwrap();
        let (oh, ow) = (p.shape()[1], p.shape()[2]);
        let g = rng.uniform(p.shape(), -1.0, 1.0, DType::F64).unwrap();
        let loss = ops::reduce_sum(&ops::multiply(&p, &g).unwrap(), Axes::All, false).unwrap();
        let [dx] = tape.gradient(&loss, [&x]).unwrap();
        let (xs, gs) = (vals(&x), vals(&g));
        // TensorFlow's SAME: the padding before is half the total, rounded down
        let pad = |inp: usize, out: usize, k: usize, s: usize, r: usize| match padding {
            Padding::Valid => 0,
            _ => ((out - 1) * s + (k - 1) * r + 1).saturating_sub(inp) / 2,
        };
        let (pt, pl) = (
            pad(h, oh, size[0], stride[0], rate[0]),
            pad(w, ow, size[1], stride[1], rate[1]),
        );
        let (mut want, mut want_dx) = (vec![], vec![0.0; xs.len()]);
        for b in 0..n {
            for oy in 0..oh {
                for ox in 0..ow {
                    for ky in 0..size[0] {
                        for kx in 0..size[1] {
                            for ch in 0..c {
                                let iy = (oy * stride[0] + ky * rate[0]) as isize - pt as isize;
                                let ix = (ox * stride[1] + kx * rate[1]) as isize - pl as isize;
                                let inside =
                                    (0..h as isize).contains(&iy) && (0..w as isize).contains(&ix);
                                let at = ((b * h + iy.max(0) as usize) * w + ix.max(0) as usize)
                                    * c
                                    + ch;
                                want.push(if inside { xs[at] } else { 0.0 });
                                if inside {
                                    want_dx[at] += gs[want.len() - 1];
                                }
                            }
                        }
                    }
                }
            }
        }
        let case = format!("{c} channels, {size:?} {stride:?} {rate:?} {padding:?}");
        assert_eq!(vals(&p), want, "{case}");
        let got_dx = vals(&dx.unwrap());
        for (i, (a, b)) in got_dx.iter().zip(&want_dx).enumerate() {
            assert!((a - b).abs() <= 1e-12, "{case}: element {i}: {a} vs {b}");
        }
    }
}
