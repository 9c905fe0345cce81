//! What tapes and pending tensors hold, counted in live storages. One test function: the
//! counters are process-wide, so nothing else may run beside it.

use gradtape::{memory, ops, Axes, DType, GradientTape, Tensor};

const N: usize = 10_000;

fn chain_of_exps(x: &Tensor, k: usize) -> Tensor {
    let mut y = x.clone();
    for _ in 0..k {
        y = ops::exp(&ops::multiply(&y, &0.5).unwrap()).unwrap();
    }
    ops::reduce_sum(&y, Axes::All, false).unwrap()
}

#[test]
fn tapes_hold_only_what_gradient_rules_need_and_release_it() {
    let x = Tensor::zeros(&[N], DType::F32).unwrap();
    // Ops keep recently used scalar constants (0.5 here) in a small per-thread cache: warm it.
    drop(chain_of_exps(&x, 1));
    let base = memory::live_storages();

    // No tape: intermediates die with the expression.
    let y = chain_of_exps(&x, 10);
    drop(y);
    assert_eq!(memory::live_storages(), base, "untaped ops keep nothing");

    // A tape that does not watch `x` records nothing and keeps nothing.
    let tape = GradientTape::new();
    let y = chain_of_exps(&x, 10);
    drop(y);
    assert!(tape.recorded_ops().is_empty());
    assert_eq!(memory::live_storages(), base);
    drop(tape);

    // exp keeps its output (its gradient needs it); multiply by a constant keeps the constant.
    let tape = GradientTape::new();
    tape.watch(&x);
    let y = chain_of_exps(&x, 10);
    let held = memory::live_storages() - base;
    // 10 exp outputs + the loss; the products are not kept (the constant is cached)
    assert!(held <= 11, "tape holds {held} storages");
    let mb = memory::live_bytes();
    let [g] = tape.gradient(&y, [&x]).unwrap();
    // After the (consuming) gradient call, only the loss and the gradient remain.
    assert_eq!(
        memory::live_storages() - base,
        2,
        "non-persistent tape released its entries"
    );
    assert!(memory::live_bytes() < mb);
    drop((g, y));
    assert_eq!(memory::live_storages(), base);

    // add saves no tensors: a tape over a chain of adds holds nothing but shapes.
    let tape = GradientTape::new();
    tape.watch(&x);
    let mut y = x.clone();
    for _ in 0..10 {
        let c = Tensor::ones(&[N], DType::F32).unwrap();
        y = ops::add(&y, &c).unwrap();
    }
    drop(y);
    assert_eq!(memory::live_storages(), base, "add's rule keeps no tensor");
    drop(tape);

    // A persistent tape keeps its entries across calls until it is dropped.
    let tape = GradientTape::persistent();
    tape.watch(&x);
    let y = chain_of_exps(&x, 5);
    let [g1] = tape.gradient(&y, [&x]).unwrap();
    let [g2] = tape.gradient(&y, [&x]).unwrap();
    assert_eq!(
        g1.unwrap().to_vec::<f32>().unwrap(),
        g2.unwrap().to_vec::<f32>().unwrap()
    );
    let held = memory::live_storages() - base;
    assert!(
        held >= 5,
        "persistent tape still holds its entries ({held})"
    );
    drop(y);
    drop(tape);
    assert_eq!(
        memory::live_storages(),
        base,
        "dropping a tape releases everything"
    );

    // Dropping a non-persistent tape without calling gradient releases everything too.
    let tape = GradientTape::new();
    tape.watch(&x);
    drop(chain_of_exps(&x, 5));
    drop(tape);
    assert_eq!(memory::live_storages(), base);

    // A pending tensor (gradtape::fusion) keeps its operands alive until it is computed, then
    // holds only its own elements.
    drop(ops::multiply(&x, &3.0).unwrap()); // warm the constant cache for 3.0
    let before = memory::live_storages();
    let big = || Tensor::full(&[300_000], 2.0, DType::F32).unwrap();
    let (a, b) = (big(), big());
    let z = ops::multiply(&ops::add(&a, &b).unwrap(), &3.0).unwrap();
    assert!(!z.is_realized());
    let with_operands = memory::live_storages();
    drop((a, b));
    assert_eq!(
        memory::live_storages(),
        with_operands,
        "the graph holds a and b"
    );
    z.realize().unwrap();
    assert_eq!(
        memory::live_storages(),
        with_operands - 2 + 1,
        "once computed, only z's own storage is left"
    );
    assert_eq!(z.to_vec::<f32>().unwrap()[299_999], 12.0);
    drop(z);
    assert_eq!(memory::live_storages(), before);
}
