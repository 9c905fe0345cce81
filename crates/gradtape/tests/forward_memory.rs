//! A long loop under a `ForwardAccumulator` holds the tangents of the tensors still alive, not
//! of every tensor it ever saw (TensorFlow drops a tangent with its tensor). A file of its own:
//! the byte counter is process-wide.

use gradtape::{memory, ops, DType, ForwardAccumulator, Tensor};

#[test]
fn tangents_of_dropped_tensors_are_released() {
    let x = Tensor::ones(&[1000], DType::F64).unwrap();
    let acc = ForwardAccumulator::new([&x], &[Tensor::ones(&[1000], DType::F64).unwrap()]).unwrap();
    let before = memory::live_bytes();
    let mut y = x.clone();
    // 10,000 steps of 8 KB tensors: 80 MB of tangents if they were all kept
    for _ in 0..10_000 {
        y = ops::multiply(&y, &0.9999).unwrap();
    }
    let held = memory::live_bytes().saturating_sub(before);
    assert!(held < 24_000_000, "{held} bytes held after the loop");
    // and the tangent of the live result is right: 0.9999^10000 along ones
    let dy = acc.jvp(&y).unwrap().unwrap().to_vec::<f64>().unwrap();
    assert!((dy[0] - 0.9999f64.powi(10_000)).abs() < 1e-9, "{}", dy[0]);
}
