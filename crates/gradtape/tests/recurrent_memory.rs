//! A recurrent layer over a long sequence: what the tape holds grows linearly with the steps,
//! and `recompute_grad` over chunks of steps trades most of it for one more forward pass,
//! with the same gradients (a file of its own: the byte counter is process-wide).

use std::sync::Arc;

use gradtape::layers::{Layer, GRU};
use gradtape::random::Generator;
use gradtape::{memory, ops, recompute_grad, Axes, DType, GradientTape, Tensor};

#[test]
fn a_long_sequence_holds_memory_linear_in_its_steps_and_recompute_grad_trades_it() {
    let mut rng = Generator::from_seed(5);
    let gru = Arc::new(GRU::new("gru", 16, 64, DType::F32, &mut rng).unwrap());
    let vars = gru.trainable_variables();
    let x = rng.uniform(&[8, 400, 16], -1.0, 1.0, DType::F32).unwrap();
    // the bytes the tape holds at the end of the forward pass, and the weights' gradients
    let run = |steps: usize, chunk: Option<usize>| -> (usize, Vec<Vec<f32>>) {
        let xs = ops::slice(&x, &[0, 0, 0], &[-1, steps as isize, -1]).unwrap();
        let before = memory::live_bytes();
        let tape = GradientTape::new();
        let h = match chunk {
            None => gru.call_with_state(&xs, None).unwrap().1.remove(0),
            Some(c) => {
                let mut h = Tensor::zeros(&[8, 64], DType::F32).unwrap();
                for start in (0..steps).step_by(c) {
                    let part = ops::slice(&xs, &[0, start, 0], &[-1, c as isize, -1]).unwrap();
                    let g = Arc::clone(&gru);
                    let f = recompute_grad(move |a: &[Tensor]| {
                        Ok(g.call_with_state(&a[0], Some(&a[1..]))?.1)
                    });
                    h = f(&[&part, &h]).unwrap().remove(0);
                }
                h
            }
        };
        let loss = ops::reduce_sum(&ops::square(&h).unwrap(), Axes::All, false).unwrap();
        let held = memory::live_bytes().saturating_sub(before);
        let grads = tape.gradient(&loss, &vars).unwrap();
        let grads = grads
            .into_iter()
            .map(|g| g.unwrap().to_vec::<f32>().unwrap())
            .collect();
        (held, grads)
    };
    let (b200, _) = run(200, None);
    let (b400, plain) = run(400, None);
    let ratio = b400 as f64 / b200 as f64;
    eprintln!("held: 200 steps {b200} bytes, 400 steps {b400} ({ratio:.2}x)");
    assert!(
        (1.7..=2.3).contains(&ratio),
        "not linear: {ratio:.2}x for twice the steps"
    );
    let (r400, recomputed) = run(400, Some(50));
    eprintln!("held with recompute_grad over 50-step chunks: {r400} bytes");
    assert!(
        r400 * 4 <= b400,
        "recompute_grad holds {r400} bytes, plain {b400}"
    );
    for (p, r) in plain.iter().zip(&recomputed) {
        for (a, b) in p.iter().zip(r) {
            assert!((a - b).abs() <= 1e-5 * (1.0 + a.abs()), "{a} vs {b}");
        }
    }
}
