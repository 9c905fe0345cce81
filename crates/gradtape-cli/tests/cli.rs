//! End-to-end tests of the `gradtape` binary: every file, every picture, the JSON contract,
//! TensorFlow parity on the seed's data, and every bad input (exit 2, one line, nothing written).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

mod pictures;

struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let p = std::env::temp_dir().join(format!("gradtape-cli-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        Scratch(p)
    }
    fn join(&self, s: &str) -> PathBuf {
        self.0.join(s)
    }
    fn file(&self, name: &str, text: &str) -> PathBuf {
        let p = self.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn gradtape(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gradtape"))
        .args(args)
        .output()
        .unwrap()
}

fn linreg(out: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["linreg", "--out", out.to_str().unwrap()];
    args.extend_from_slice(extra);
    gradtape(&args)
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}
fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn json(o: &Output) -> Value {
    assert!(o.status.success(), "{}", stderr(o));
    serde_json::from_str(stdout(o).trim()).unwrap_or_else(|e| panic!("{e}: {}", stdout(o)))
}

fn png_size(p: &Path) -> (u32, u32) {
    let img = pictures::png(p);
    (img.width, img.height)
}

#[test]
fn the_default_run_reproduces_the_seed_and_writes_every_file() {
    let s = Scratch::new("default");
    let out = s.join("out");
    let o = linreg(&out, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(text.contains("Epoch: 0, Loss: "), "{text}");
    assert!(text.contains("Epoch: 69, Loss: "));
    assert!(!text.contains("Epoch: 70"));
    for key in ["Fitted:", "Least squares:", "R²:", "Saturation:"] {
        assert!(text.contains(key), "{key} missing from\n{text}");
    }
    for name in ["fit.png", "cost.png", "params.png", "landscape.png"] {
        assert_eq!(png_size(&out.join(name)), (800, 600), "{name}");
    }
    let history = std::fs::read_to_string(out.join("history.csv")).unwrap();
    let rows: Vec<&str> = history.lines().collect();
    assert_eq!(rows[0], "epoch,a,b,cost");
    assert_eq!(rows.len(), 1 + 70 + 1);
    assert!(rows[1].starts_with("0,0,0,"));
    let run: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("run.json")).unwrap()).unwrap();
    assert_eq!(run["epochs"], 70);
    assert_eq!(run["points"], 200);
    assert_eq!(run["lr"], 0.001);
    assert_eq!(run["generated"]["true_b"], 0.5);
    // nothing else (no leftover temporary files)
    let mut names: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "cost.png",
            "fit.png",
            "history.csv",
            "landscape.png",
            "params.png",
            "run.json"
        ]
    );
}

#[test]
fn json_output_follows_the_contract() {
    let s = Scratch::new("json");
    let v = json(&linreg(
        &s.join("out"),
        &["--json", "--epochs", "30", "--no-plots"],
    ));
    for key in [
        "a",
        "b",
        "loss",
        "final_loss",
        "epochs",
        "lr",
        "points",
        "closed_form",
        "r2",
        "saturation_epoch",
        "train_seconds",
    ] {
        assert!(!v[key].is_null(), "missing {key} in {v}");
    }
    let loss = v["loss"].as_array().unwrap();
    assert_eq!(loss.len(), 30);
    assert!(loss[29].as_f64().unwrap() < loss[0].as_f64().unwrap());
    assert!(v["final_loss"].as_f64().unwrap() <= loss[29].as_f64().unwrap());
    assert!(v["closed_form"]["a"].is_f64() && v["closed_form"]["b"].is_f64());
    let r2 = v["r2"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&r2));
    let t = v["train_seconds"].as_f64().unwrap();
    assert!(t > 0.0);
    // no pictures with --no-plots
    assert!(!s.join("out/fit.png").exists());
    assert!(s.join("out/history.csv").exists());
}

#[test]
fn the_seed_data_gives_tensorflows_numbers() {
    let fixtures = concat!(env!("CARGO_MANIFEST_DIR"), "/../gradtape/tests/fixtures");
    let tf: Value =
        serde_json::from_str(&std::fs::read_to_string(format!("{fixtures}/seed_tf.json")).unwrap())
            .unwrap();
    let s = Scratch::new("parity");
    let v = json(&linreg(
        &s.join("out"),
        &[
            "--data",
            &format!("{fixtures}/seed_data.csv"),
            "--json",
            "--no-plots",
        ],
    ));
    let rel = |a: f64, b: f64| (a - b).abs() / b.abs();
    for (e, (ours, theirs)) in v["loss"]
        .as_array()
        .unwrap()
        .iter()
        .zip(tf["cost_val"].as_array().unwrap())
        .enumerate()
    {
        let (o, t) = (ours.as_f64().unwrap(), theirs.as_f64().unwrap());
        assert!(rel(o, t) < 1e-4, "epoch {e}: {o} vs TensorFlow {t}");
    }
    assert!(rel(v["a"].as_f64().unwrap(), tf["a"].as_f64().unwrap()) < 1e-4);
    assert!(rel(v["b"].as_f64().unwrap(), tf["b"].as_f64().unwrap()) < 1e-4);
    assert!(
        rel(
            v["final_loss"].as_f64().unwrap(),
            tf["final_loss"].as_f64().unwrap()
        ) < 1e-4
    );
}

#[test]
fn svg_pictures_hold_one_marker_per_point_and_the_fitted_line() {
    let s = Scratch::new("svg");
    let out = s.join("out");
    let o = linreg(&out, &["--format", "both", "--points", "57", "--quiet"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let svg = std::fs::read_to_string(out.join("fit.svg")).unwrap();
    // 57 data markers and 1 in the legend
    assert_eq!(svg.matches("<circle").count(), 58);
    assert!(svg.contains("#FF0000"), "the fitted line is red");
    for name in ["cost.svg", "params.svg", "landscape.svg"] {
        let t = std::fs::read_to_string(out.join(name)).unwrap();
        assert!(
            t.starts_with("<svg") && t.trim_end().ends_with("</svg>"),
            "{name}"
        );
    }
    assert_eq!(png_size(&out.join("fit.png")), (800, 600));
}

#[test]
fn gif_shows_the_line_converging() {
    let s = Scratch::new("gif");
    let out = s.join("out");
    let o = linreg(&out, &["--gif", "--epochs", "12", "--quiet"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let (size, frames) = pictures::gif_frames(&out.join("fit.gif"));
    assert_eq!(frames, 13, "one frame per epoch and the final fit");
    assert_eq!(size, (480, 360));
    // Issue 20: the default run's GIF was 3 MB
    let o = linreg(&out, &["--gif", "--quiet"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let bytes = std::fs::metadata(out.join("fit.gif")).unwrap().len();
    assert!(bytes < 1_000_000, "fit.gif is {bytes} bytes");
}

/// Issue 20, the pictures decoded: the landscape has a colour bar (the 14 bands top to
/// bottom, each a solid box), and the report gives both readings of saturation.
#[test]
fn the_landscape_has_a_colour_bar_and_both_saturations_are_printed() {
    let s = Scratch::new("bar");
    let out = s.join("out");
    let o = linreg(&out, &["--quiet"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(text.contains("within 1% of the final cost"), "{text}");
    assert!(text.contains("two-decimal loss"), "{text}");
    let img = pictures::png(&out.join("landscape.png"));
    // a column through the bar (the rightmost 110 pixels, labels on its right)
    let column: Vec<[u8; 3]> = (0..img.height).map(|y| img.pixel(717, y)).collect();
    let mut runs: Vec<([u8; 3], usize)> = vec![];
    for px in column
        .into_iter()
        .filter(|p| *p != [255, 255, 255] && p.iter().any(|&c| c > 60))
    {
        match runs.last_mut() {
            Some((c, n)) if *c == px => *n += 1,
            _ => runs.push((px, 1)),
        }
    }
    let boxes: Vec<&([u8; 3], usize)> = runs.iter().filter(|(_, n)| *n >= 15).collect();
    assert!(boxes.len() >= 13, "colour bar boxes: {runs:?}");
    let run: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("run.json")).unwrap()).unwrap();
    assert!(run.get("saturation_two_decimals_epoch").is_some(), "{run}");
}

#[test]
fn csv_files_with_and_without_header_and_chosen_columns() {
    let s = Scratch::new("csv");
    let rows: Vec<(f64, f64)> = (0..40)
        .map(|i| (i as f64 / 40.0, 1.0 + 2.0 * i as f64 / 40.0))
        .collect();
    let plain: String = rows.iter().map(|(x, y)| format!("{x},{y}\n")).collect();
    let named = format!(
        "id,weight kg,height\n{}",
        rows.iter()
            .enumerate()
            .map(|(i, (x, y))| format!("{i},{y},{x}\n"))
            .collect::<String>()
    );
    let runs: Vec<(PathBuf, Vec<&str>)> = vec![
        (s.file("plain.csv", &plain), vec![]),
        (s.file("header.csv", &format!("x,y\n{plain}")), vec![]),
        (
            s.file("named.csv", &named),
            vec!["--x", "height", "--y", "weight kg"],
        ),
        (s.file("indexed.csv", &named), vec!["--x", "2", "--y", "1"]),
    ];
    for (path, cols) in runs {
        let mut args = vec![
            "--data",
            path.to_str().unwrap(),
            "--json",
            "--no-plots",
            "--epochs",
            "5",
            "--lr",
            "0.01",
        ];
        args.extend(cols);
        let v = json(&linreg(&s.join("out"), &args));
        assert_eq!(v["points"], 40, "{}", path.display());
        // exact data: the closed form recovers a = 1, b = 2
        assert!(
            (v["closed_form"]["a"].as_f64().unwrap() - 1.0).abs() < 1e-9,
            "{}",
            path.display()
        );
        assert!(
            (v["closed_form"]["b"].as_f64().unwrap() - 2.0).abs() < 1e-9,
            "{}",
            path.display()
        );
    }
}

/// Exit 2, one line on stderr containing every fragment, and no output folder.
fn refused(s: &Scratch, extra: &[&str], fragments: &[&str]) {
    let out = s.join("never");
    let o = linreg(&out, extra);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{extra:?}: {err}");
    assert_eq!(
        err.trim_end().lines().count(),
        1,
        "{extra:?}: one line, got {err:?}"
    );
    for f in fragments {
        assert!(err.contains(f), "{extra:?}: {err:?} lacks {f:?}");
    }
    assert!(!out.exists(), "{extra:?} left {out:?} behind");
}

#[test]
fn bad_input_is_one_line_exit_2_and_nothing_written() {
    let s = Scratch::new("bad");
    let p = |name: &str, text: &str| s.file(name, text).to_str().unwrap().to_string();
    let word = p("word.csv", "x,y\n1,2\n2,abc\n3,4\n");
    let nan = p("nan.csv", "1,2\n2,NaN\n");
    let inf = p("inf.csv", "1,2\ninf,3\n4,5\n");
    let one = p("one.csv", "x,y\n1,2\n");
    let cols = p("cols.csv", "a,b\n1,2\n3,4\n");
    let short = p("short.csv", "1,2\n3\n");
    refused(
        &s,
        &["--data", &s.join("missing.csv").to_string_lossy()],
        &["missing.csv", "cannot read"],
    );
    refused(
        &s,
        &["--data", &word],
        &["word.csv:3", "column 1", "\"abc\" is not a number"],
    );
    refused(&s, &["--data", &nan], &["nan.csv:2", "not a finite number"]);
    refused(&s, &["--data", &inf], &["inf.csv:2", "not a finite number"]);
    refused(&s, &["--data", &one], &["at least 2 data rows"]);
    refused(
        &s,
        &["--data", &cols, "--x", "height"],
        &["--x \"height\"", "no such column", "a, b"],
    );
    refused(
        &s,
        &["--data", &short],
        &["short.csv:2", "the row has 1 cells"],
    );
    refused(&s, &["--lr", "0"], &["'0' for '--lr <LR>'", "positive"]);
    refused(&s, &["--lr", "-0.1"], &["'-0.1' for '--lr <LR>'"]);
    refused(&s, &["--lr", "nan"], &["'nan' for '--lr <LR>'"]);
    refused(&s, &["--epochs", "0"], &["'0' for '--epochs <E>'"]);
    refused(&s, &["--points", "1"], &["--points 1"]);
    refused(&s, &["--optimizer", "nadam"], &["nadam"]);
    refused(&s, &["--format", "jpg"], &["jpg"]);
    refused(&s, &["--no-such-option"], &["--no-such-option"]);
    refused(
        &s,
        &["--device", "tpu"],
        &["'tpu' for '--device <DEVICE>'", "cuda:N"],
    );
    // A GPU that cannot be used: the reason names the missing piece (driver, GPU, NVRTC,
    // cuBLAS), and nothing is written.
    if !gradtape::Device::Cuda(0).is_available() {
        let why = gradtape::Device::Cuda(0).check().unwrap_err().to_string();
        refused(&s, &["--device", "cuda"], &[why.as_str()]);
        refused(&s, &["--device", "/GPU:0"], &[why.as_str()]);
    }
    refused(&s, &["--device", "cuda:999"], &["cuda:999"]);
    // an --out that cannot be a folder
    let file = s.file("plain-file", "x");
    let o = linreg(&file.join("sub"), &["--quiet"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("cannot create the folder"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn divergence_stops_with_the_epoch_and_advice() {
    let s = Scratch::new("diverge");
    refused(
        &s,
        &["--lr", "10"],
        &["epoch", "diverged", "smaller learning rate"],
    );
}

#[test]
fn explain_lists_the_recorded_operations_and_writes_a_graph() {
    let s = Scratch::new("explain");
    let dot = s.join("tape.dot");
    let o = linreg(
        &s.join("out"),
        &[
            "--explain",
            "--quiet",
            "--no-plots",
            "--tape-dot",
            dot.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    for op in [
        "ReadVariableOp",
        "multiply",
        "add",
        "subtract",
        "square",
        "reduce_sum",
        "x [200]",
        "Gradients returned: da = ",
    ] {
        assert!(text.contains(op), "{op} missing from\n{text}");
    }
    let graph = std::fs::read_to_string(&dot).unwrap();
    assert!(graph.starts_with("digraph tape {") && graph.ends_with("}\n"));
    // the tape's seven operations, then the compiled step as a cluster with its fusion groups
    let (tape, compiled) = graph.split_once("subgraph \"cluster_compiled_\"").unwrap();
    assert_eq!(tape.matches("shape=box").count(), 7);
    assert!(compiled.contains("label=\"linreg_step\""), "{compiled}");
    assert!(compiled.contains("read_variable 'a'"), "{compiled}");
    assert!(compiled.contains("cluster_compiled_fusion_0"), "{compiled}");
    assert_eq!(graph.matches('{').count(), graph.matches('}').count());
    // the compiled step: the passes' work and the graph each call runs
    for part in [
        "Compiled (gradtape::function",
        "common subexpressions",
        // the seed's step is small: its calls run over the graph's own buffers
        "over buffers of its own",
        "graph linreg_step() {",
        "assign 'a'(%",
        "assign 'b'(%",
    ] {
        assert!(text.contains(part), "{part} missing from\n{text}");
    }
    let e = linreg(
        &s.join("eager"),
        &["--explain", "--quiet", "--no-plots", "--eager"],
    );
    assert!(!stdout(&e).contains("Compiled"), "{}", stdout(&e));
}

/// The compiled step (the default) and `--eager` write the same files, bit for bit, with
/// every update rule and both precisions.
#[test]
fn the_compiled_step_gives_the_eager_numbers() {
    let s = Scratch::new("compiled");
    for (k, extra) in [
        &["--optimizer", "sgd"][..],
        &["--optimizer", "momentum", "--dtype", "f64"],
        &["--optimizer", "adam", "--loss", "mse"],
    ]
    .into_iter()
    .enumerate()
    {
        let run = |name: &str, eager: bool| {
            let out = s.join(&format!("{name}{k}"));
            let mut args = vec!["--quiet", "--no-plots", "--epochs", "30"];
            args.extend_from_slice(extra);
            if eager {
                args.push("--eager");
            }
            let o = linreg(&out, &args);
            assert!(o.status.success(), "{}", stderr(&o));
            let run: Value =
                serde_json::from_str(&std::fs::read_to_string(out.join("run.json")).unwrap())
                    .unwrap();
            assert_eq!(run["compiled"], !eager);
            std::fs::read(out.join("history.csv")).unwrap()
        };
        assert_eq!(run("compiled", false), run("eager", true), "{extra:?}");
    }
}

#[test]
fn float64_and_mse_options_train() {
    let s = Scratch::new("f64");
    let v = json(&linreg(
        &s.join("out"),
        &[
            "--dtype",
            "f64",
            "--loss",
            "mse",
            "--lr",
            "0.5",
            "--epochs",
            "200",
            "--json",
            "--no-plots",
        ],
    ));
    assert_eq!(v["dtype"], "float64");
    let (a, b) = (v["a"].as_f64().unwrap(), v["b"].as_f64().unwrap());
    let (ca, cb) = (
        v["closed_form"]["a"].as_f64().unwrap(),
        v["closed_form"]["b"].as_f64().unwrap(),
    );
    assert!(
        (a - ca).abs() < 0.05 && (b - cb).abs() < 0.1,
        "({a}, {b}) vs ({ca}, {cb})"
    );
}

#[test]
fn momentum_and_adam_reach_the_least_squares_fit() {
    let s = Scratch::new("optimizers");
    for (opt, lr) in [("momentum", "0.001"), ("adam", "0.05")] {
        let v = json(&linreg(
            &s.join("out"),
            &[
                "--optimizer",
                opt,
                "--lr",
                lr,
                "--epochs",
                "300",
                "--json",
                "--no-plots",
            ],
        ));
        assert_eq!(v["optimizer"], opt);
        let (a, ca) = (
            v["a"].as_f64().unwrap(),
            v["closed_form"]["a"].as_f64().unwrap(),
        );
        let (b, cb) = (
            v["b"].as_f64().unwrap(),
            v["closed_form"]["b"].as_f64().unwrap(),
        );
        assert!(
            (a - ca).abs() < 0.02 && (b - cb).abs() < 0.04,
            "{opt}: ({a}, {b}) vs ({ca}, {cb})"
        );
    }
}

#[test]
fn help_explains_every_option() {
    let o = gradtape(&["linreg", "--help"]);
    assert!(o.status.success());
    let h = stdout(&o);
    for opt in [
        "--data",
        "--x",
        "--y",
        "--points",
        "--seed",
        "--noise",
        "--true-a",
        "--true-b",
        "--epochs",
        "--lr",
        "--loss",
        "--optimizer",
        "--dtype",
        "--out",
        "--format",
        "--no-plots",
        "--gif",
        "--json",
        "--quiet",
        "--explain",
        "--tape-dot",
        "--eager",
    ] {
        assert!(h.contains(opt), "{opt} missing from help");
    }
}
