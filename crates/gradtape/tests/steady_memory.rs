//! A long training loop does not grow: over 1,000 steps of a small MLP with Adam, the live
//! storages and bytes stay within the bound of the per-thread scalar-constant cache (32 scalars;
//! Adam's bias-corrected rate is a new constant every step), and RSS stays flat; the same step
//! compiled (`gradtape::function`) too. One test: the counters are process-wide.

use gradtape::layers::{Activation, Dense, Layer, Sequential};
use gradtape::losses::{sparse_categorical_crossentropy, Reduction};
use gradtape::optimizers::{Adam, Optimizer};
use gradtape::random::Generator;
use gradtape::{memory, DType, GradientTape, Source, Tensor, Variable};

fn rss_bytes() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let l = s.lines().find(|l| l.starts_with("VmRSS:"))?;
    l.split_whitespace()
        .nth(1)?
        .parse::<u64>()
        .ok()
        .map(|kb| kb * 1024)
}

#[test]
fn a_thousand_step_training_loop_does_not_grow() {
    let mut rng = Generator::from_seed(0);
    let model = Sequential::new(vec![
        Box::new(Dense::new("a", 16, 32, Activation::Relu, DType::F32, &mut rng).unwrap()),
        Box::new(Dense::new("b", 32, 4, Activation::Linear, DType::F32, &mut rng).unwrap()),
    ]);
    let x = rng.uniform(&[64, 16], -1.0, 1.0, DType::F32).unwrap();
    let y = Tensor::from_vec((0..64).map(|i| i % 4).collect::<Vec<i64>>(), &[64]).unwrap();
    let vars = model.trainable_variables();
    let opt = std::cell::RefCell::new(Adam::new(0.01));
    let step = |_: &[Tensor]| -> gradtape::Result<Tensor> {
        let tape = GradientTape::new();
        let loss = sparse_categorical_crossentropy(
            &y,
            &model.call(&x, true)?,
            true,
            Reduction::SumOverBatchSize,
        )?;
        let sources: Vec<&dyn Source> = vars.iter().map(|v| v as &dyn Source).collect();
        let grads = tape.gradient_with(&[&loss], &sources, &Default::default())?;
        let pairs: Vec<(Option<Tensor>, &Variable)> = grads.into_iter().zip(&vars).collect();
        opt.borrow_mut().apply_gradients(&pairs)?;
        Ok(loss)
    };
    stays_flat("eager", || {
        step(&[]).unwrap();
    });
    let compiled = gradtape::function(&step);
    stays_flat("compiled", || {
        let _: Tensor = compiled.call(&[]).unwrap();
    });
    assert_eq!(compiled.tracing_count(), 1);
}

/// 100 steps to warm up, then 900 with the live storages and bytes sampled every 100.
fn stays_flat(what: &str, mut step: impl FnMut()) {
    for _ in 0..100 {
        step();
    }
    let rss = rss_bytes();
    let (mut storages, mut bytes) = (vec![], vec![]);
    for i in 0..900 {
        step();
        if i % 100 == 99 {
            storages.push(memory::live_storages());
            bytes.push(memory::live_bytes());
        }
    }
    let spread = |v: &[usize]| v.iter().max().unwrap() - v.iter().min().unwrap();
    assert!(
        spread(&storages) <= 32,
        "{what}: live storages drifted: {storages:?}"
    );
    assert!(
        spread(&bytes) <= 32 * 8,
        "{what}: live bytes drifted: {bytes:?}"
    );
    if let (Some(before), Some(after)) = (rss, rss_bytes()) {
        // allocator noise only: nothing proportional to the 900 extra steps
        assert!(
            after < before + 8 * 1024 * 1024,
            "{what}: RSS grew from {before} to {after}"
        );
    }
}
