//! End-to-end tests of `gradtape train` and `gradtape predict`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

mod pictures;

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

/// A data set shipped in the repository's `data/`.
fn shipped(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../data")
        .join(name)
        .to_string_lossy()
        .into_owned()
}

fn digits() -> String {
    shipped("digits.csv.gz")
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
        let img = pictures::png(&out.join(f));
        assert_eq!((img.width, img.height), (800, 600));
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

/// The compiled step (the default) and `--eager` train the same weights, bit for bit, for the
/// MLP and the CNN (a last batch smaller than the others makes a second graph).
#[test]
fn the_compiled_step_trains_the_eager_weights() {
    let dir = scratch("compiled");
    let data = digits();
    for model in [
        &["--model", "mlp"][..],
        &["--model", "cnn", "--image", "8x8"],
    ] {
        let run = |name: &str, eager: bool| {
            let out = dir.join(name);
            let mut args = vec!["train", "--data", &data, "--target", "digit"];
            args.extend_from_slice(model);
            args.extend_from_slice(&["--epochs", "2", "--no-plots", "--json", "--out"]);
            args.push(out.to_str().unwrap());
            if eager {
                args.push("--eager");
            }
            let v = json(&gradtape(&args));
            assert!(v["held_out_accuracy"].as_f64().unwrap() > 0.3, "{v}");
            (
                std::fs::read(out.join("model.safetensors")).unwrap(),
                std::fs::read_to_string(out.join("history.csv")).unwrap(),
            )
        };
        assert!(run("c", false) == run("e", true), "{model:?}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A table never seen before: string classes, spaces in column names, features on very
/// different scales (standardisation has to do its job).
fn new_table(path: &Path, rows: usize) {
    std::fs::write(path, new_table_text(rows)).unwrap();
}

fn new_table_text(rows: usize) -> String {
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
    s
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

/// Issue 20: a target in the hundreds (house prices) underfit by 10x with the defaults (worse
/// than predicting the mean); it is standardized now, the report gives R^2 and the
/// mean-predictor baseline, and predict undoes the scaling.
#[test]
fn a_large_regression_target_is_standardized_and_scored_against_the_mean() {
    let dir = scratch("house");
    let data = dir.join("house.csv");
    let mut s = String::from("area,rooms,age,price\n");
    for i in 0..300u32 {
        let area = 50.0 + f64::from(i * 37 % 200);
        let rooms = f64::from(1 + i * 7 % 6);
        let age = f64::from(i * 13 % 80);
        let wiggle = f64::from(i * 29 % 11) - 5.0;
        let price = 100.0 + 1.5 * area + 10.0 * rooms - 0.8 * age + wiggle;
        s += &format!("{area},{rooms},{age},{price}\n");
    }
    std::fs::write(&data, s).unwrap();
    let (d, m) = (data.to_str().unwrap(), dir.join("m"));
    let train = |extra: &[&str]| {
        let mut args = vec![
            "train",
            "--data",
            d,
            "--target",
            "price",
            "--task",
            "regression",
        ];
        args.extend(["--out", m.to_str().unwrap()]);
        args.extend_from_slice(extra);
        gradtape(&args)
    };
    let v = json(&train(&["--json"]));
    let mse = v["held_out_loss"].as_f64().unwrap();
    let baseline = v["held_out_mean_predictor_loss"].as_f64().unwrap();
    let r2 = v["held_out_r2"].as_f64().unwrap();
    assert!(r2 > 0.95 && mse * 20.0 < baseline, "{v}");
    // predict scores the test rows of the training file with the same error, in price units
    let p = json(&gradtape(&[
        "predict",
        "--model",
        m.to_str().unwrap(),
        "--data",
        d,
        "--json",
    ]));
    let test_mse = p["by_split"]["test"]["mean_squared_error"]
        .as_f64()
        .unwrap();
    assert!((test_mse - mse).abs() < 1e-3 * mse, "{test_mse} vs {mse}");
    let preds = std::fs::read_to_string(m.join("predictions.csv")).unwrap();
    let first: f64 = preds
        .lines()
        .nth(1)
        .unwrap()
        .split(',')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        (first - (100.0 + 75.0 + 10.0 - 5.0)).abs() < 15.0,
        "{first}"
    );
    // the human report says it
    let o = train(&["--quiet", "--no-plots"]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("R\u{b2} 0.9"), "{text}");
    assert!(
        text.contains("always predicting the training mean"),
        "{text}"
    );
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
        "'--lr <LR>': expected a positive number",
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

// ----- issue 10: the CLI's first-contact friction -----

fn in_dir(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gradtape"))
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap()
}

/// Every file under `dir` (recursively) with its contents, to compare before and after.
fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = vec![];
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                out.push((p.clone(), vec![]));
                stack.push(p);
            } else {
                out.push((p.clone(), std::fs::read(&p).unwrap()));
            }
        }
    }
    out.sort();
    out
}

fn one_line_exit_2(o: &Output) -> String {
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err:?}");
    err
}

#[test]
fn a_failed_run_leaves_the_output_folder_exactly_as_it_found_it() {
    let dir = scratch("half-written");
    let d = digits();
    // The first reproduction: predict --out naming the model's folder.
    let o = in_dir(
        &dir,
        &[
            "train", "--data", &d, "--target", "digit", "--out", "T0", "--epochs", "5", "--quiet",
        ],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let before = snapshot(&dir);
    let o = in_dir(
        &dir,
        &["predict", "--model", "T0", "--data", &d, "--out", "T0"],
    );
    let err = one_line_exit_2(&o);
    assert!(
        err.contains("--out T0") && err.contains("is a folder"),
        "{err}"
    );
    assert_eq!(snapshot(&dir), before, "predict changed the folder");

    // The second: a folder where train wants to write history.csv.
    std::fs::create_dir_all(dir.join("T16/history.csv")).unwrap();
    let before = snapshot(&dir);
    let o = in_dir(
        &dir,
        &[
            "train", "--data", &d, "--target", "digit", "--out", "T16", "--epochs", "5",
        ],
    );
    let err = one_line_exit_2(&o);
    assert!(
        err.contains("history.csv") && err.contains("is a folder"),
        "{err}"
    );
    assert_eq!(snapshot(&dir), before, "train changed the folder");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_bad_out_is_found_before_the_work_starts() {
    let dir = scratch("out-first");
    // The data file is bad too: the error must be about --out, found first.
    let bad = dir.join("bad.csv");
    std::fs::write(&bad, "a,label\n1,x\noops,y\n").unwrap();
    let file = dir.join("a-file");
    std::fs::write(&file, b"keep me").unwrap();
    let b = bad.to_str().unwrap();
    let o = gradtape(&[
        "train",
        "--data",
        b,
        "--target",
        "label",
        "--out",
        file.to_str().unwrap(),
    ]);
    let err = one_line_exit_2(&o);
    assert!(
        err.contains("--out") && err.contains("not a folder"),
        "{err}"
    );
    assert_eq!(std::fs::read(&file).unwrap(), b"keep me");
    let o = gradtape(&["linreg", "--data", b, "--out", file.to_str().unwrap()]);
    let err = one_line_exit_2(&o);
    assert!(
        err.contains("--out") && err.contains("not a folder"),
        "{err}"
    );
    // a folder that cannot be written to (unless running as root, who may write anywhere)
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let ro = dir.join("read-only");
        std::fs::create_dir(&ro).unwrap();
        std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o555)).unwrap();
        if std::fs::write(ro.join("probe"), b"").is_err() {
            let o = gradtape(&[
                "train",
                "--data",
                b,
                "--target",
                "label",
                "--out",
                ro.to_str().unwrap(),
            ]);
            let err = one_line_exit_2(&o);
            assert!(err.contains("cannot write there"), "{err}");
        }
        std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn every_invalid_value_names_its_option_and_what_is_allowed() {
    let dir = scratch("values");
    let nv = dir.join("never");
    let n = nv.to_str().unwrap();
    let d = digits();
    let cases: &[(&[&str], &str)] = &[
        (
            &[
                "train", "--data", &d, "--target", "digit", "--out", n, "--epochs", "-5",
            ],
            "'--epochs <E>': expected a whole number of at least 1",
        ),
        (
            &[
                "train",
                "--data",
                &d,
                "--target",
                "digit",
                "--out",
                n,
                "--epochs=-5",
            ],
            "'--epochs <E>': expected a whole number of at least 1",
        ),
        (
            &[
                "train", "--data", &d, "--target", "digit", "--out", n, "--batch", "0",
            ],
            "'--batch <B>'",
        ),
        (
            &[
                "train", "--data", &d, "--target", "digit", "--out", n, "--hidden", "64,-3",
            ],
            "'--hidden <SIZES>'",
        ),
        (
            &[
                "train", "--data", &d, "--target", "digit", "--out", n, "--seed", "-1",
            ],
            "'--seed <S>': expected a whole number",
        ),
        (
            &[
                "train", "--data", &d, "--target", "digit", "--out", n, "--test", "1.5",
            ],
            "'--test <FRACTION>': expected a fraction",
        ),
        (&["linreg", "--out", n, "--epochs", "-5"], "'--epochs <E>'"),
        (&["linreg", "--out", n, "--points", "-3"], "'--points <N>'"),
        (
            &["linreg", "--out", n, "--noise", "-1"],
            "'--noise <SIGMA>': expected a number of 0 or more",
        ),
        (
            &["linreg", "--out", n, "--lr", "abc"],
            "'--lr <LR>': expected a positive number",
        ),
    ];
    for (args, fragment) in cases {
        let err = one_line_exit_2(&gradtape(args));
        assert!(err.contains(fragment), "{args:?}: {err}");
        assert!(!nv.exists());
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn predict_says_which_rows_it_scored_and_scores_the_training_split_apart() {
    let dir = scratch("predict-splits");
    let model = dir.join("m");
    let m = model.to_str().unwrap();
    let d = digits();
    let trained = json(&gradtape(&[
        "train", "--data", &d, "--target", "digit", "--out", m, "--epochs", "5", "--json",
    ]));
    let p = json(&gradtape(&[
        "predict", "--model", m, "--data", &d, "--json",
    ]));
    assert_eq!(p["training_file"], true);
    assert_eq!(p["rows_scored"], "all");
    for split in ["train", "validation", "test"] {
        assert_eq!(
            p["by_split"][split]["rows"], trained["rows"][split],
            "{split}"
        );
    }
    // the held-out test rows score what train reported for them
    let test = p["by_split"]["test"]["accuracy"].as_f64().unwrap();
    let held = trained["held_out_accuracy"].as_f64().unwrap();
    assert!((test - held).abs() < 1e-9, "{test} vs {held}");
    let train_acc = p["by_split"]["train"]["accuracy"].as_f64().unwrap();
    assert!(
        train_acc >= test,
        "seen rows score at least the held-out ones here"
    );
    let csv = std::fs::read_to_string(model.join("predictions.csv")).unwrap();
    assert!(csv.lines().next().unwrap().ends_with(",split"));
    assert_eq!(csv.lines().filter(|l| l.ends_with(",test")).count(), 270);
    let o = gradtape(&["predict", "--model", m, "--data", &d]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("Predicted all 1797 rows"), "{text}");
    assert!(text.contains("file the model was trained on"), "{text}");
    assert!(text.contains("test rows (held out, 270)"), "{text}");

    // Another file: no split, and the report says every row was scored.
    let other = dir.join("other.csv");
    let mut table = new_table_text(40);
    table = table.replace("kind of flower", "kind");
    std::fs::write(&other, &table).unwrap();
    let iris = dir.join("iris");
    let o = gradtape(&[
        "train",
        "--data",
        other.to_str().unwrap(),
        "--target",
        "kind",
        "--out",
        iris.to_str().unwrap(),
        "--epochs",
        "3",
        "--quiet",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let fresh = dir.join("fresh.csv");
    std::fs::write(&fresh, new_table_text(30).replace("kind of flower", "kind")).unwrap();
    let p = json(&gradtape(&[
        "predict",
        "--model",
        iris.to_str().unwrap(),
        "--data",
        fresh.to_str().unwrap(),
        "--json",
    ]));
    assert_eq!(p["training_file"], false);
    assert!(p.get("by_split").is_none());
    assert_eq!(p["rows"], 30);
    let o = gradtape(&[
        "predict",
        "--model",
        iris.to_str().unwrap(),
        "--data",
        fresh.to_str().unwrap(),
    ]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("over all 30 rows"), "{text}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn train_refuses_a_continuous_or_single_class_target() {
    let dir = scratch("targets");
    let nv = dir.join("never");
    let write = |name: &str, y: &dyn Fn(usize) -> String| {
        let p = dir.join(name);
        let rows: String = (0..20).map(|i| format!("{i},{}\n", y(i))).collect();
        std::fs::write(&p, format!("x,y\n{rows}")).unwrap();
        p.to_string_lossy().into_owned()
    };
    let cont = write("cont.csv", &|i| format!("{:.3}", i as f64 * 0.37));
    let one = write("one.csv", &|_| "7".into());
    let ids = write("ids.csv", &|i| i.to_string());
    for (f, fragment) in [
        (&cont, "--task regression"),
        (&one, "at least two classes"),
        (&ids, "--task regression"),
    ] {
        let o = gradtape(&[
            "train",
            "--data",
            f,
            "--target",
            "y",
            "--out",
            nv.to_str().unwrap(),
        ]);
        let err = one_line_exit_2(&o);
        assert!(err.contains(fragment) && err.contains("\"y\""), "{err}");
        assert!(!nv.exists());
    }
    // and regression takes the continuous one
    let o = gradtape(&[
        "train",
        "--data",
        &cont,
        "--target",
        "y",
        "--task",
        "regression",
        "--out",
        nv.to_str().unwrap(),
        "--epochs",
        "2",
        "--quiet",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_cnn_on_the_digits_with_the_defaults_reaches_98_5_percent_and_predicts() {
    let dir = scratch("cnn");
    let out = dir.join("model");
    let v = json(&gradtape(&[
        "train",
        "--data",
        &digits(),
        "--target",
        "digit",
        "--model",
        "cnn",
        "--image",
        "8x8",
        "--out",
        out.to_str().unwrap(),
        "--json",
    ]));
    let acc = v["held_out_accuracy"].as_f64().unwrap();
    assert!(acc >= 0.985, "held-out accuracy {acc}");
    let run: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("run.json")).unwrap()).unwrap();
    assert_eq!(run["model"], "cnn");
    assert_eq!(run["image"], serde_json::json!([8, 8, 1]));
    // predict rebuilds the CNN from the model folder
    let p = json(&gradtape(&[
        "predict",
        "--model",
        out.to_str().unwrap(),
        "--data",
        &digits(),
        "--out",
        dir.join("p.csv").to_str().unwrap(),
        "--json",
    ]));
    assert!(p["accuracy"].as_f64().unwrap() > 0.98, "{p}");
    // and the options that do not fit are refused before any work
    let never = dir.join("never");
    let n = never.to_str().unwrap();
    let base = [
        "train",
        "--data",
        &digits(),
        "--target",
        "digit",
        "--out",
        n,
    ];
    let with = |extra: &[&'static str]| -> Vec<String> {
        base.iter().chain(extra).map(|s| s.to_string()).collect()
    };
    for (extra, fragment) in [
        (&["--model", "cnn"][..], "needs --image"),
        (&["--image", "8x8"][..], "--image is for --model cnn"),
        (&["--model", "cnn", "--image", "8x9"][..], "72 pixels"),
        (&["--model", "cnn", "--image", "8xx8"][..], "HEIGHTxWIDTH"),
    ] {
        let args = with(extra);
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        refused(&refs, fragment, &never);
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn logdir_writes_a_tensorboard_event_file_and_a_bad_one_is_refused_first() {
    let dir = scratch("logdir");
    let (out, log) = (dir.join("out"), dir.join("log"));
    let o = gradtape(&[
        "train",
        "--data",
        &digits(),
        "--target",
        "digit",
        "--epochs",
        "3",
        "--out",
        out.to_str().unwrap(),
        "--logdir",
        log.to_str().unwrap(),
        "--quiet",
        "--no-plots",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let events: Vec<_> = std::fs::read_dir(&log)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(events.len(), 1);
    let name = events[0]
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    assert!(name.starts_with("events.out.tfevents."), "{name}");
    // 3 epochs of 5 scalars and 4 histograms, after the version record
    let bytes = std::fs::read(&events[0]).unwrap();
    let mut at = 0;
    let mut records = 0;
    while at < bytes.len() {
        let len = u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap()) as usize;
        at += 16 + len;
        records += 1;
    }
    assert_eq!((at, records), (bytes.len(), 1 + 3 * (5 + 4)));
    // linreg too
    let lin_log = dir.join("lin");
    let o = gradtape(&[
        "linreg",
        "--out",
        dir.join("lin-out").to_str().unwrap(),
        "--logdir",
        lin_log.to_str().unwrap(),
        "--quiet",
        "--no-plots",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(std::fs::read_dir(&lin_log).unwrap().count(), 1);
    // a log directory that is a file: refused before any work
    let file = dir.join("a-file");
    std::fs::write(&file, b"x").unwrap();
    let never = dir.join("never");
    refused(
        &[
            "train",
            "--data",
            &digits(),
            "--target",
            "digit",
            "--out",
            never.to_str().unwrap(),
            "--logdir",
            file.to_str().unwrap(),
        ],
        "a-file",
        &never,
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

// ----- issue 20: nothing lost, nothing silently wrong -----

#[test]
fn spreadsheet_files_header_only_files_and_bad_model_folders() {
    let dir = scratch("issue20");
    // a spreadsheet's export: BOM, CRLF, class names with commas in quotes
    let text = new_table_text(150)
        .replace("iris setosa", "\"setosa, bristle-pointed\"")
        .replace('\n', "\r\n");
    let data = dir.join("export.csv");
    std::fs::write(&data, format!("\u{feff}{text}")).unwrap();
    let (d, model) = (data.to_str().unwrap(), dir.join("m"));
    let m = model.to_str().unwrap();
    let v = json(&gradtape(&[
        // one hidden layer of 3 units: with 3 features and 3 classes, a model without it finds
        // an output kernel of the shape it asks for ([3, 3]) in the file
        "train",
        "--data",
        d,
        "--target",
        "kind of flower",
        "--out",
        m,
        "--json",
        "--epochs",
        "5",
        "--hidden",
        "3",
    ]));
    // the quoted comma stays inside one class name
    assert_eq!(
        v["classes"],
        serde_json::json!([
            "iris versicolor",
            "iris virginica",
            "setosa, bristle-pointed"
        ]),
        "{v}"
    );
    // a header and no rows: an error for train and predict, and predictions.csv untouched
    let header = dir.join("header.csv");
    std::fs::write(
        &header,
        "sepal length,petal width (cm),noise level,kind of flower\n",
    )
    .unwrap();
    let h = header.to_str().unwrap();
    let preds = model.join("predictions.csv");
    std::fs::write(&preds, "earlier predictions\n").unwrap();
    let err = one_line_exit_2(&gradtape(&["predict", "--model", m, "--data", h]));
    assert!(err.contains("no data rows"), "{err}");
    assert_eq!(
        std::fs::read_to_string(&preds).unwrap(),
        "earlier predictions\n"
    );
    let never = dir.join("never");
    let err = one_line_exit_2(&gradtape(&[
        "train",
        "--data",
        h,
        "--target",
        "kind of flower",
        "--out",
        never.to_str().unwrap(),
    ]));
    assert!(err.contains("no data rows"), "{err}");
    assert!(!never.exists());

    // --model naming a file blames --model, not --out
    let err = one_line_exit_2(&gradtape(&["predict", "--model", d, "--data", d]));
    assert!(
        err.contains("--model") && err.contains("not a folder"),
        "{err}"
    );

    // metadata that does not describe the weights is refused before anything is built
    let ck = gradtape::checkpoint::load(&model.join("model.safetensors")).unwrap();
    let original: Value = serde_json::from_str(&ck.metadata["gradtape"]).unwrap();
    // the first column's name has no BOM in front of it
    assert_eq!(original["features"][0], "sepal length");
    let tampered = |edit: &dyn Fn(&mut Value), fragment: &str| {
        let mut meta = original.clone();
        edit(&mut meta);
        let mut metadata = ck.metadata.clone();
        metadata.insert("gradtape".into(), meta.to_string());
        let folder = dir.join("tampered");
        std::fs::create_dir_all(&folder).unwrap();
        let tensors: Vec<(String, gradtape::Tensor)> = ck
            .tensors
            .iter()
            .map(|(k, t)| (k.clone(), t.clone()))
            .collect();
        gradtape::checkpoint::save_tensors(&folder.join("model.safetensors"), &tensors, &metadata)
            .unwrap();
        let err = one_line_exit_2(&gradtape(&[
            "predict",
            "--model",
            folder.to_str().unwrap(),
            "--data",
            d,
        ]));
        assert!(err.contains(fragment), "{fragment}: {err}");
        assert!(!folder.join("predictions.csv").exists());
    };
    tampered(
        &|m| m["hidden"] = serde_json::json!([1e12]),
        "need more weights",
    );
    tampered(&|m| m["hidden"] = serde_json::json!([]), "does not have");
    tampered(&|m| m["activation"] = "swish".into(), "unknown activation");
    tampered(
        &|m| {
            m["model"] = "cnn".into();
            m["image"] = serde_json::json!([1e9, 1e9, 1]);
        },
        "does not hold",
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

fn sunspots() -> String {
    shipped("sunspots.csv")
}

#[test]
fn an_lstm_forecasts_the_sunspots_and_predict_scores_the_same_windows() {
    let dir = scratch("sunspots");
    let out = dir.join("model");
    let v = json(&gradtape(&[
        "train",
        "--data",
        &sunspots(),
        "--target",
        "sunspots",
        "--model",
        "lstm",
        "--window",
        "12",
        "--time",
        "year",
        "--hidden",
        "32",
        "--out",
        out.to_str().unwrap(),
        "--json",
    ]));
    // 309 years, 297 windows; the held-out windows are the series' end
    assert_eq!(v["rows"]["train"], 207);
    assert_eq!(v["rows"]["test"], 45);
    assert_eq!(v["sequence"]["window"], 12);
    let mse = v["held_out_loss"].as_f64().unwrap();
    let persistence = v["held_out_last_value_loss"].as_f64().unwrap();
    // the sunspot cycle is learnt: far better than saying last year's number again
    assert!(mse < 0.6 * persistence, "{mse} vs {persistence}");
    assert!(v["held_out_r2"].as_f64().unwrap() > 0.75, "{v}");
    let img = pictures::png(&out.join("series.png"));
    assert_eq!((img.width, img.height), (800, 600));
    assert!(!out.join("confusion.png").exists());

    let preds = dir.join("p.csv");
    let p = json(&gradtape(&[
        "predict",
        "--model",
        out.to_str().unwrap(),
        "--data",
        &sunspots(),
        "--out",
        preds.to_str().unwrap(),
        "--json",
    ]));
    assert_eq!(p["rows"], 297);
    let test = p["by_split"]["test"]["mean_squared_error"]
        .as_f64()
        .unwrap();
    assert!((test - mse).abs() <= 1e-6 * mse, "{test} vs {mse}"); // f32 in training, f64 here
    let csv = std::fs::read_to_string(&preds).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines[0], "year,predicted,split");
    assert_eq!(lines.len(), 1 + 297);
    // the first window (1700-1711) predicts 1712; the last one 2008, a test year
    assert!(lines[1].starts_with("1712,") && lines[1].ends_with(",train"));
    assert!(lines[297].starts_with("2008,") && lines[297].ends_with(",test"));

    // another file of the same series: no splits, rows named by number without --time
    let short = dir.join("short.csv");
    let text = std::fs::read_to_string(sunspots()).unwrap();
    std::fs::write(&short, text.lines().take(31).collect::<Vec<_>>().join("\n")).unwrap();
    let p = json(&gradtape(&[
        "predict",
        "--model",
        out.to_str().unwrap(),
        "--data",
        short.to_str().unwrap(),
        "--json",
    ]));
    assert_eq!(
        (p["rows"].as_u64(), p["training_file"].as_bool()),
        (Some(18), Some(false))
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_gru_reads_each_digit_as_eight_rows_of_eight_pixels() {
    let dir = scratch("digit-rows");
    let out = dir.join("model");
    let v = json(&gradtape(&[
        "train",
        "--data",
        &digits(),
        "--target",
        "digit",
        "--model",
        "gru",
        "--features-per-step",
        "8",
        "--epochs",
        "8",
        "--out",
        out.to_str().unwrap(),
        "--json",
    ]));
    assert_eq!(v["sequence"]["steps"], 8);
    let acc = v["held_out_accuracy"].as_f64().unwrap();
    assert!(acc >= 0.9, "held-out accuracy {acc}");
    let p = json(&gradtape(&[
        "predict",
        "--model",
        out.to_str().unwrap(),
        "--data",
        &digits(),
        "--out",
        dir.join("p.csv").to_str().unwrap(),
        "--json",
    ]));
    let test = p["by_split"]["test"]["accuracy"].as_f64().unwrap();
    assert_eq!(test, acc);
    // a sequence of chosen columns: the digit's top two rows only, 2 steps of 8
    let cols: Vec<String> = (0..2)
        .flat_map(|r| (0..8).map(move |c| format!("pixel_{r}_{c}")))
        .collect();
    let v = json(&gradtape(&[
        "train",
        "--data",
        &digits(),
        "--target",
        "digit",
        "--model",
        "lstm",
        "--sequence",
        &cols.join(","),
        "--features-per-step",
        "8",
        "--epochs",
        "1",
        "--out",
        dir.join("top").to_str().unwrap(),
        "--json",
    ]));
    assert_eq!(v["features"], 16);
    assert_eq!(v["sequence"]["steps"], 2);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn sequence_options_out_of_place_are_refused_before_any_work() {
    let dir = scratch("bad-seq");
    let never = dir.join("never");
    let nv = never.to_str().unwrap();
    let (d, s) = (digits(), sunspots());
    let train = |extra: &[&str], data: &str, target: &str| -> Vec<String> {
        let mut v: Vec<String> = ["train", "--data", data, "--target", target, "--out", nv]
            .iter()
            .map(|s| s.to_string())
            .collect();
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    let mut cases: Vec<(Vec<String>, &str)> = vec![
        (
            train(&["--window", "5"], &s, "sunspots"),
            "--window is for the sequence models",
        ),
        (
            train(&["--model", "lstm", "--time", "year"], &s, "sunspots"),
            "--time names the time column of a series",
        ),
        (
            train(
                &[
                    "--model",
                    "gru",
                    "--window",
                    "5",
                    "--task",
                    "classification",
                ],
                &s,
                "sunspots",
            ),
            "--window forecasts the series' next value",
        ),
        (
            train(
                &["--model", "lstm", "--features-per-step", "7"],
                &d,
                "digit",
            ),
            "the 64 sequence columns do not split into steps of 7",
        ),
        (
            train(
                &["--model", "lstm", "--sequence", "pixel_0_0,digit"],
                &d,
                "digit",
            ),
            "--sequence \"digit\": the target is not a feature column",
        ),
        (
            train(&["--model", "lstm", "--window", "309"], &s, "sunspots"),
            "309 rows leave no window of 309",
        ),
        (
            train(
                &["--model", "lstm", "--window", "3", "--time", "when"],
                &s,
                "sunspots",
            ),
            "no column named \"when\"",
        ),
        (
            train(
                &[
                    "--model",
                    "gru",
                    "--window",
                    "3",
                    "--features-per-step",
                    "2",
                ],
                &s,
                "sunspots",
            ),
            "--features-per-step is for rows that are sequences",
        ),
    ];
    cases.push((
        train(
            &["--model", "lstm", "--sequence", "pixel_0_0,nope"],
            &d,
            "digit",
        ),
        "--sequence \"nope\": no such column",
    ));
    for (args, fragment) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        refused(&args, fragment, &never);
    }
    // columns --sequence leaves out are not read: a text id beside the sequence is no error
    let table = dir.join("ids.csv");
    let mut text = String::from("id,t0,t1,t2,t3,rising\n");
    for r in 0..60 {
        let up = r % 2 == 0;
        let v: Vec<String> = (0..4)
            .map(|t| {
                format!(
                    "{}",
                    if up { t } else { 3 - t } as f64 + 0.1 * (r % 7) as f64
                )
            })
            .collect();
        text += &format!(
            "row-{r},{},{}\n",
            v.join(","),
            if up { "yes" } else { "no" }
        );
    }
    std::fs::write(&table, text).unwrap();
    let out = dir.join("ids");
    let v = json(&gradtape(&[
        "train",
        "--data",
        table.to_str().unwrap(),
        "--target",
        "rising",
        "--model",
        "gru",
        "--sequence",
        "t0,t1,t2,t3",
        "--epochs",
        "30",
        "--out",
        out.to_str().unwrap(),
        "--json",
    ]));
    assert_eq!(v["sequence"]["steps"], 4);
    assert_eq!(v["held_out_accuracy"], 1.0, "{v}");
    // and predict reads the same columns of it again
    let p = json(&gradtape(&[
        "predict",
        "--model",
        out.to_str().unwrap(),
        "--data",
        table.to_str().unwrap(),
        "--json",
    ]));
    assert_eq!(p["accuracy"], 1.0, "{p}");
    std::fs::remove_dir_all(&dir).unwrap();
}
