//! Lazy fusion (`gradtape::fusion`): pending graphs give the same bits as eager ops, fused
//! reductions sum in the eager order, one pass serves a loss and its gradients. (What a
//! pending graph holds is counted in `tests/memory.rs`, where nothing runs beside it.)
//!
//! Sizes here are above `fusion::DEFAULT_MIN_ELEMENTS` and `PAR_MIN` (2¹⁷), so the parallel
//! paths run; every test sets its thread's threshold itself (tests run on their own threads).

use gradtape::random::Generator;
use gradtape::{fusion, ops, Axes, DType, GradientTape, Result, Tensor, Variable};

const N: usize = 300_001; // not a multiple of the block size

/// `f` evaluated eagerly and with fusion, on the same inputs.
fn both(f: impl Fn() -> Result<Tensor>) -> Result<(Tensor, Tensor)> {
    fusion::set_min_elements(usize::MAX);
    let eager = f()?;
    fusion::set_min_elements(fusion::DEFAULT_MIN_ELEMENTS);
    let fused = f()?;
    Ok((eager, fused))
}

fn bits<T: gradtape::Element + Into<f64>>(t: &Tensor) -> Vec<u64> {
    t.to_vec::<T>()
        .unwrap()
        .into_iter()
        .map(|v| Into::<f64>::into(v).to_bits())
        .collect()
}

fn same_bits(eager: &Tensor, fused: &Tensor) {
    assert_eq!(eager.shape(), fused.shape());
    match eager.dtype() {
        DType::F32 => assert!(bits::<f32>(eager) == bits::<f32>(fused), "values differ"),
        _ => assert!(bits::<f64>(eager) == bits::<f64>(fused), "values differ"),
    }
}

type Unary = fn(&Tensor) -> Result<Tensor>;
type Binary = fn(&Tensor, &Tensor) -> Result<Tensor>;

#[test]
fn every_fusable_op_gives_the_eager_bits() -> Result<()> {
    let unary: Vec<(&str, Unary)> = vec![
        ("negative", |x| ops::negative(x)),
        ("square", |x| ops::square(x)),
        ("sqrt", |x| ops::sqrt(x)),
        ("rsqrt", |x| ops::rsqrt(x)),
        ("reciprocal", |x| ops::reciprocal(x)),
        ("exp", |x| ops::exp(x)),
        ("expm1", |x| ops::expm1(x)),
        ("log", |x| ops::log(x)),
        ("log1p", |x| ops::log1p(x)),
        ("abs", |x| ops::abs(x)),
        ("sign", |x| ops::sign(x)),
        ("sin", |x| ops::sin(x)),
        ("cos", |x| ops::cos(x)),
        ("tanh", |x| ops::tanh(x)),
        ("sigmoid", |x| ops::sigmoid(x)),
        ("relu", |x| ops::relu(x)),
        ("softplus", |x| ops::softplus(x)),
    ];
    let binary: Vec<(&str, Binary)> = vec![
        ("add", |a, b| ops::add(a, b)),
        ("subtract", |a, b| ops::subtract(a, b)),
        ("multiply", |a, b| ops::multiply(a, b)),
        ("divide", |a, b| ops::divide(a, b)),
        ("maximum", |a, b| ops::maximum(a, b)),
        ("minimum", |a, b| ops::minimum(a, b)),
        ("pow", |a, b| ops::pow(a, b)),
    ];
    let mut g = Generator::from_seed(11);
    for dtype in [DType::F32, DType::F64] {
        let x = g.uniform(&[N], -3.0, 3.0, dtype)?;
        let p = g.uniform(&[N], 0.1, 2.0, dtype)?;
        let s = Tensor::full(&[], 0.7, dtype).unwrap();
        for (name, f) in &unary {
            // Inputs made by a pending op, so the op under test is inlined into a graph.
            let (e, u) = both(|| f(&ops::multiply(&x, &1.5)?))?;
            assert!(!u.is_realized(), "{name} should be pending");
            same_bits(&e, &u);
            let (e, u) =
                both(|| ops::reduce_sum(&f(&ops::multiply(&x, &1.5)?)?, Axes::All, false))?;
            same_bits(&e, &u);
        }
        for (name, f) in &binary {
            for (a, b) in [(&p, &x), (&p, &s), (&s, &x)] {
                let (e, u) = both(|| f(&ops::add(a, &0.0)?, b))?;
                assert!(!u.is_realized(), "{name} should be pending");
                same_bits(&e, &u);
            }
        }
    }
    Ok(())
}

#[test]
fn fused_reductions_sum_in_the_eager_order() -> Result<()> {
    let mut g = Generator::from_seed(12);
    let x = g.normal(&[N], 1.0, 3.0, DType::F32)?;
    let y = g.normal(&[3, N / 3 + 1], 0.0, 1.0, DType::F32)?;
    // float32 sums of 300,000 terms depend on the order; equal bits mean equal order.
    let (e, u) = both(|| ops::reduce_sum(&ops::square(&x)?, Axes::All, false))?;
    same_bits(&e, &u);
    let (e, u) = both(|| ops::reduce_mean(&ops::exp(&y)?, Axes::All, true))?;
    same_bits(&e, &u);
    let (e, u) = both(|| ops::reduce_max(&ops::sin(&x)?, Axes::All, false))?;
    same_bits(&e, &u);
    let (e, u) = both(|| ops::reduce_min(&ops::cos(&y)?, Axes::List(vec![0, 1]), false))?;
    same_bits(&e, &u);
    // A reduction that keeps an axis computes the graph, then reduces as usual.
    let (e, u) = both(|| ops::reduce_sum(&ops::exp(&y)?, 1, false))?;
    same_bits(&e, &u);
    Ok(())
}

/// The seed's regression at N points: the tape's gradients with and without fusion.
fn regression_step(x: &Tensor, y: &Tensor) -> Result<(Tensor, Tensor, Tensor)> {
    let (a, b) = (Variable::new(0.3), Variable::new(-0.2));
    let tape = GradientTape::new();
    let pred = ops::add(&a, &ops::multiply(&b, x)?)?;
    let loss = ops::reduce_sum(&ops::square(&ops::subtract(y, &pred)?)?, Axes::All, false)?;
    let [da, db] = tape.gradient(&loss, [&a, &b])?;
    Ok((loss, da.unwrap(), db.unwrap()))
}

#[test]
fn one_pass_computes_the_loss_and_both_gradients() -> Result<()> {
    let mut g = Generator::from_seed(13);
    let x = g.uniform(&[N], 0.0, 1.0, DType::F32)?;
    let y = ops::add(
        &ops::multiply(&x, &0.5)?,
        &g.normal(&[N], 0.3, 0.3, DType::F32)?,
    )?;
    y.realize().unwrap();

    fusion::set_min_elements(usize::MAX);
    let (loss, da, db) = regression_step(&x, &y)?;
    fusion::set_min_elements(fusion::DEFAULT_MIN_ELEMENTS);
    let (f_loss, f_da, f_db) = regression_step(&x, &y)?;
    // Nothing has been computed yet: the loss and the gradients are pending reductions.
    assert!(!f_loss.is_realized() && !f_da.is_realized() && !f_db.is_realized());
    // Reading one gradient runs one pass that also yields the other gradient and the loss.
    same_bits(&da, &f_da);
    assert!(f_db.is_realized(), "db was not computed in da's pass");
    assert!(
        f_loss.is_realized(),
        "the loss was not computed in da's pass"
    );
    same_bits(&db, &f_db);
    same_bits(&loss, &f_loss);
    Ok(())
}

#[test]
fn a_variable_stores_computed_values() -> Result<()> {
    fusion::set_min_elements(fusion::DEFAULT_MIN_ELEMENTS);
    let v = Variable::new(Tensor::ones(&[N], DType::F32).unwrap());
    let step = ops::multiply(&Tensor::ones(&[N], DType::F32).unwrap(), &0.5)?;
    assert!(!step.is_realized());
    v.assign_sub(&step)?;
    assert!(v.value().is_realized());
    assert_eq!(v.value().to_vec::<f32>()?[0], 0.5);
    Ok(())
}

#[test]
fn long_chains_and_shared_subgraphs_stay_bounded_and_exact() -> Result<()> {
    let mut g = Generator::from_seed(14);
    let x = g.uniform(&[N], -1.0, 1.0, DType::F64)?;
    // 200 ops in a chain: graphs are capped, so some links are computed on the way.
    let chain = || {
        let mut y = x.clone();
        for i in 0..200 {
            y = ops::add(&ops::multiply(&y, &0.99)?, &(i as f64 * 1e-3))?;
        }
        Ok(y)
    };
    let (e, u) = both(chain)?;
    same_bits(&e, &u);
    // y = y + y doubles the graph each time if shared nodes were copied; they are not.
    let doubling = || {
        let mut y = ops::multiply(&x, &1.0)?;
        for _ in 0..40 {
            y = ops::add(&y, &y)?;
        }
        ops::reduce_sum(&y, Axes::All, false)
    };
    let (e, u) = both(doubling)?;
    same_bits(&e, &u);
    Ok(())
}

#[test]
fn views_of_pending_tensors() -> Result<()> {
    let mut g = Generator::from_seed(15);
    let x = g.uniform(&[600, 500], -1.0, 1.0, DType::F32)?;
    fusion::set_min_elements(fusion::DEFAULT_MIN_ELEMENTS);
    let y = ops::exp(&x)?;
    // A reshape of a pending tensor stays in the graph; a transpose computes it.
    let r = ops::multiply(&ops::reshape(&y, &[300_000])?, &2.0)?;
    assert!(!y.is_realized() && !r.is_realized());
    let t = ops::multiply(&ops::transpose(&y, None)?, &2.0)?;
    fusion::set_min_elements(usize::MAX);
    let want_r = ops::multiply(&ops::reshape(&ops::exp(&x)?, &[300_000])?, &2.0)?;
    let want_t = ops::multiply(&ops::transpose(&ops::exp(&x)?, None)?, &2.0)?;
    same_bits(&want_r, &r);
    same_bits(&want_t, &t);
    Ok(())
}

#[test]
fn errors_are_reported_when_the_op_is_called() {
    fusion::set_min_elements(1);
    let x = Tensor::ones(&[4], DType::F32).unwrap();
    let e = ops::add(&x, &Tensor::ones(&[3], DType::F32).unwrap()).unwrap_err();
    assert!(e.to_string().contains("add"), "{e}");
    let e = ops::add(&x, &Tensor::ones(&[4], DType::F64).unwrap()).unwrap_err();
    assert!(e.to_string().contains("dtype"), "{e}");
    let e = ops::exp(&Tensor::ones(&[4], DType::I64).unwrap()).unwrap_err();
    assert!(e.to_string().contains("exp"), "{e}");
}
