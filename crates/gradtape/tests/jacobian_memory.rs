//! The chunk size of a jacobian bounds the memory its backward passes keep alive (a file of
//! its own: the byte counters are process-wide, so no other test may run beside it).

use gradtape::random::Generator;
use gradtape::{memory, ops, DType, GradientTape, JacobianOptions};

#[test]
fn the_chunk_size_bounds_the_bytes_alive_during_a_large_jacobian() {
    let mut rng = Generator::from_seed(9);
    // A small jacobian ([1, 128, 1, 128], 64 KiB) through a wide hidden layer: each row's
    // backward pass carries a 4096-wide cotangent, so all 128 rows at once need 2 MiB per
    // intermediate, 8 rows at a time 128 KiB.
    let x = rng.uniform(&[1, 128], -1.0, 1.0, DType::F32).unwrap();
    let w = rng.uniform(&[128, 4096], -0.05, 0.05, DType::F32).unwrap();
    let v = rng.uniform(&[4096, 128], -0.05, 0.05, DType::F32).unwrap();
    let peak_of = |chunk: Option<usize>| {
        let tape = GradientTape::new();
        tape.watch(&x);
        let y = ops::matmul(&ops::tanh(&ops::matmul(&x, &w).unwrap()).unwrap(), &v).unwrap();
        memory::reset_peak_bytes();
        let before = memory::live_bytes();
        let opts = JacobianOptions {
            chunk_size: chunk,
            ..Default::default()
        };
        let j = tape.jacobian_with(&y, &[&x], &opts).unwrap()[0]
            .clone()
            .unwrap();
        assert_eq!(j.shape(), &[1, 128, 1, 128]);
        (memory::peak_bytes() - before, j.to_vec::<f32>().unwrap())
    };
    let (whole, jw) = peak_of(None);
    let (chunked, jc) = peak_of(Some(8));
    assert_eq!(jw, jc, "same jacobian");
    let mib = |b: usize| b as f64 / (1 << 20) as f64;
    eprintln!(
        "peak: {:.2} MiB at once, {:.2} MiB in chunks of 8",
        mib(whole),
        mib(chunked)
    );
    assert!(
        whole > 2 << 20,
        "all rows at once keep {:.1} MiB",
        mib(whole)
    );
    assert!(
        chunked < whole / 4 && chunked < 1 << 20,
        "8 rows at a time keep {:.1} MiB, all at once {:.1} MiB",
        mib(chunked),
        mib(whole)
    );
}
