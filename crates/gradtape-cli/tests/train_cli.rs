//! End-to-end tests of `gradtape train` and `gradtape predict`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn gradtape(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gradtape"))
        .args(args)
        .output()
        .unwrap()
}

fn scratch(name: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!("gradtape-train-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&p);
    std::fs::create_dir_all(&p).unwrap();
    p
}

fn json(o: &Output) -> Value {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}

fn digits() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../data/digits.csv.gz")
        .to_string_lossy()
        .into_owned()
}

#[test]
fn train_on_digits_then_predict() {
    let dir = scratch("digits");
    let out = dir.join("model");
    let v = json(&gradtape(&[
        "train",
        "--data",
        &digits(),
        "--target",
        "digit",
        "--out",
        out.to_str().unwrap(),
        "--json",
    ]));
    assert_eq!(v["held_out"], "test");
    let acc = v["held_out_accuracy"].as_f64().unwrap();
    assert!(acc >= 0.95, "held-out accuracy {acc}");
    assert!(v["held_out_loss"].as_f64().unwrap() > 0.0);
    assert_eq!(v["classes"].as_array().unwrap().len(), 10);
    for f in ["curves.png", "confusion.png"] {
        let img = image::open(out.join(f)).unwrap();
        assert_eq!((img.width(), img.height()), (800, 600));
    }
    let history = std::fs::read_to_string(out.join("history.csv")).unwrap();
    assert_eq!(history.lines().count(), 1 + 40);
    let m = v["confusion_matrix"].as_array().unwrap();
    let total: u64 = m
        .iter()
        .flat_map(|r| r.as_array().unwrap())
        .map(|c| c.as_u64().unwrap())
        .sum();
    assert_eq!(total, v["rows"]["test"].as_u64().unwrap());

    let preds = dir.join("p.csv");
    let p = json(&gradtape(&[
        "predict",
        "--model",
        out.to_str().unwrap(),
        "--data",
        &digits(),
        "--out",
        preds.to_str().unwrap(),
        "--json",
    ]));
    assert_eq!(p["rows"], 1797);
    assert!(p["accuracy"].as_f64().unwrap() > 0.95);
    let text = std::fs::read_to_string(&preds).unwrap();
    assert_eq!(text.lines().count(), 1798);
    assert!(text.starts_with("predicted,p_0,p_1"));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A table never seen before: string classes, spaces in column names, features on very
/// different scales (standardisation has to do its job).
fn new_table(path: &Path, rows: usize) {
    let mut s = String::from("sepal length,petal width (cm),noise level,kind of flower\n");
    let mut state = 12345u64;
    let mut rnd = || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 11) as f64 / (1u64 << 53) as f64
    };
    for i in 0..rows {
        let class = i % 3;
        let a = 1000.0 * (class as f64 + rnd());
        let b = 0.01 * (2.0 - class as f64 + rnd());
        let c = rnd();
        let name = ["iris setosa", "iris versicolor", "iris virginica"][class];
        s += &format!("{a},{b},{c},{name}\n");
    }
    std::fs::write(path, s).unwrap();
}

#[test]
fn defaults_work_on_a_new_table_with_string_classes() {
    let dir = scratch("table");
    let data = dir.join("flowers.csv");
    new_table(&data, 300);
    let out = dir.join("m");
    let v = json(&gradtape(&[
        "train",
        "--data",
        data.to_str().unwrap(),
        "--target",
        "kind of flower",
        "--out",
        out.to_str().unwrap(),
        "--json",
    ]));
    assert_eq!(
        v["classes"],
        serde_json::json!(["iris setosa", "iris versicolor", "iris virginica"])
    );
    assert!(v["held_out_accuracy"].as_f64().unwrap() >= 0.9, "{v}");
    let o = gradtape(&[
        "predict",
        "--model",
        out.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains("Accuracy against the \"kind of flower\" column"),
        "{text}"
    );
    let preds = std::fs::read_to_string(out.join("predictions.csv")).unwrap();
    assert!(preds.lines().nth(1).unwrap().starts_with("iris "));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn regression_task_trains_on_a_numeric_target() {
    let dir = scratch("regression");
    let data = dir.join("r.csv");
    let mut s = String::from("x1,x2,y\n");
    for i in 0..200 {
        let (a, b) = ((i % 17) as f64 / 17.0, (i % 11) as f64 / 11.0);
        s += &format!("{a},{b},{}\n", 3.0 * a - 2.0 * b + 1.0);
    }
    std::fs::write(&data, s).unwrap();
    let v = json(&gradtape(&[
        "train",
        "--data",
        data.to_str().unwrap(),
        "--target",
        "y",
        "--task",
        "regression",
        "--out",
        dir.join("m").to_str().unwrap(),
        "--json",
        "--epochs",
        "60",
    ]));
    assert_eq!(v["task"], "regression");
    assert!(v["held_out_accuracy"].is_null());
    assert!(v["held_out_loss"].as_f64().unwrap() < 0.05, "{v}");
    std::fs::remove_dir_all(&dir).unwrap();
}

fn refused(args: &[&str], fragment: &str, never: &Path) {
    let o = gradtape(args);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err:?}");
    assert!(
        err.contains(fragment),
        "{args:?}: {err:?} lacks {fragment:?}"
    );
    assert!(!never.exists(), "{args:?} wrote {}", never.display());
}

#[test]
fn train_and_predict_refuse_bad_input_cleanly() {
    let dir = scratch("bad");
    let never = dir.join("never");
    let nv = never.to_str().unwrap();
    let bad = dir.join("bad.csv");
    std::fs::write(&bad, "a,b,label\n1,2,x\n3,oops,y\n4,5,x\n").unwrap();
    let b = bad.to_str().unwrap();
    refused(
        &["train", "--data", b, "--target", "nope", "--out", nv],
        "no column named \"nope\"",
        &never,
    );
    refused(
        &["train", "--data", b, "--target", "label", "--out", nv],
        "bad.csv:3: column \"b\": \"oops\"",
        &never,
    );
    refused(
        &[
            "train",
            "--data",
            &digits(),
            "--target",
            "digit",
            "--lr",
            "0",
            "--out",
            nv,
        ],
        "--lr 0",
        &never,
    );
    refused(
        &[
            "train",
            "--data",
            &dir.join("missing.csv").to_string_lossy(),
            "--target",
            "x",
            "--out",
            nv,
        ],
        "cannot read",
        &never,
    );
    refused(
        &[
            "train",
            "--data",
            &digits(),
            "--target",
            "digit",
            "--validation",
            "0.6",
            "--test",
            "0.6",
            "--out",
            nv,
        ],
        "fractions",
        &never,
    );
    refused(
        &["predict", "--model", nv, "--data", &digits()],
        "model.safetensors",
        &never,
    );
    // a corrupted model
    let model = dir.join("model");
    std::fs::create_dir_all(&model).unwrap();
    std::fs::write(model.join("model.safetensors"), b"not a model").unwrap();
    let preds = dir.join("preds.csv");
    refused(
        &[
            "predict",
            "--model",
            model.to_str().unwrap(),
            "--data",
            &digits(),
            "--out",
            preds.to_str().unwrap(),
        ],
        "not a valid safetensors file",
        &preds,
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
