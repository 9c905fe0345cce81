//! The seed program (examples/linear_regression.rs, compiled in here as it is) on the data the
//! TensorFlow reference script used: the same cost at every epoch and the same final a and b.

#[allow(dead_code)]
#[path = "../../examples/linear_regression.rs"]
mod linear_regression;

use serde_json::Value;

fn rel(a: f64, b: f64) -> f64 {
    (a - b).abs() / b.abs().max(1e-12)
}

#[test]
fn the_seed_program_matches_tensorflow_epoch_by_epoch() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");
    let (x, y) = linear_regression::read_csv(&format!("{dir}/seed_data.csv")).unwrap();
    assert_eq!(x.len(), 200);
    let tf: Value =
        serde_json::from_str(&std::fs::read_to_string(format!("{dir}/seed_tf.json")).unwrap())
            .unwrap();
    let epochs = tf["epochs"].as_u64().unwrap() as usize;
    let lr = tf["lr"].as_f64().unwrap();
    let h = linear_regression::fit(&x, &y, epochs, lr, false).unwrap();
    let want: Vec<f64> = tf["cost_val"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    assert_eq!(h.cost_val.len(), want.len());
    for (e, (&ours, &theirs)) in h.cost_val.iter().zip(&want).enumerate() {
        assert!(
            rel(ours as f64, theirs) < 1e-4,
            "epoch {e}: gradtape {ours}, TensorFlow {theirs}"
        );
    }
    let a = h.model.a.value().to_scalar::<f32>().unwrap() as f64;
    let b = h.model.b.value().to_scalar::<f32>().unwrap() as f64;
    assert!(
        rel(a, tf["a"].as_f64().unwrap()) < 1e-4,
        "a: {a} vs {}",
        tf["a"]
    );
    assert!(
        rel(b, tf["b"].as_f64().unwrap()) < 1e-4,
        "b: {b} vs {}",
        tf["b"]
    );
    // The seed's printed line for epoch 0.
    assert_eq!(
        format!("Epoch: 0, Loss: {:.2}", h.cost_val[0]),
        "Epoch: 0, Loss: 80.99"
    );
}
