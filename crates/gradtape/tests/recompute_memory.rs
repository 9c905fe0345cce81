//! `recompute_grad`: the same gradients as the plain model, and far fewer bytes held by the
//! tape at the end of the forward pass (a file of its own: the byte counter is process-wide).

use gradtape::random::Generator;
use gradtape::{memory, ops, recompute_grad, Axes, DType, GradientTape, Result, Tensor, Variable};

const BLOCKS: usize = 16;

/// Block i: five layers of width 256 (two weight matrices, each used twice or more) and a
/// residual connection; a plain tape keeps every layer's output for the backward pass.
fn block(w1: &Variable, w2: &Variable, x: &Tensor) -> Result<Tensor> {
    let h1 = ops::relu(&ops::matmul(x, w1)?)?;
    let h2 = ops::tanh(&ops::matmul(&h1, w2)?)?;
    let h3 = ops::relu(&ops::matmul(&h2, w1)?)?;
    let h4 = ops::tanh(&ops::matmul(&h3, w2)?)?;
    ops::relu(&ops::add(&ops::matmul(&h4, w1)?, x)?)
}

#[test]
fn recompute_grad_gives_the_same_gradients_and_holds_a_quarter_of_the_bytes() {
    let mut rng = Generator::from_seed(3);
    let weights: Vec<(Variable, Variable)> = (0..BLOCKS)
        .map(|_| {
            let w = |rng: &mut Generator| {
                Variable::new(rng.uniform(&[256, 256], -0.06, 0.06, DType::F32).unwrap())
            };
            (w(&mut rng), w(&mut rng))
        })
        .collect();
    let vars: Vec<Variable> = weights
        .iter()
        .flat_map(|(a, b)| [a.clone(), b.clone()])
        .collect();
    let x = rng.uniform(&[64, 256], -1.0, 1.0, DType::F32).unwrap();

    let run = |recompute: bool| -> (usize, Vec<Vec<f32>>) {
        let before = memory::live_bytes();
        let tape = GradientTape::new();
        let mut h = x.clone();
        for (w1, w2) in &weights {
            h = if recompute {
                let (w1, w2) = (w1.clone(), w2.clone());
                let f = recompute_grad(move |xs: &[Tensor]| Ok(vec![block(&w1, &w2, &xs[0])?]));
                f(&[&h]).unwrap().remove(0)
            } else {
                block(w1, w2, &h).unwrap()
            };
        }
        let loss = ops::reduce_mean(&ops::square(&h).unwrap(), Axes::All, false).unwrap();
        let held = memory::live_bytes().saturating_sub(before);
        let grads = tape.gradient(&loss, &vars).unwrap();
        (
            held,
            grads
                .into_iter()
                .map(|g| g.unwrap().to_vec::<f32>().unwrap())
                .collect(),
        )
    };
    let (plain_bytes, plain) = run(false);
    let (recomputed_bytes, recomputed) = run(true);
    assert_eq!(plain, recomputed, "same gradients");
    eprintln!(
        "held after the forward pass: plain {plain_bytes} bytes, recompute_grad {recomputed_bytes}"
    );
    assert!(
        recomputed_bytes * 4 <= plain_bytes,
        "recompute_grad holds {recomputed_bytes} bytes, plain {plain_bytes}"
    );
}
