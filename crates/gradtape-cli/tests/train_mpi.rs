//! `gradtape train` under `mpirun -np 2` (feature `mpi`; CI installs Open MPI): data-parallel,
//! one report from rank 0, the same model as one process trains, and a refused option that
//! stops both ranks cleanly.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

fn digits() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../data/digits.csv.gz")
        .to_string_lossy()
        .into_owned()
}

fn train(mpi: bool, out: &Path) -> (bool, String, String) {
    let exe = env!("CARGO_BIN_EXE_gradtape");
    let args = [
        "train",
        "--data",
        &digits(),
        "--target",
        "digit",
        "--epochs",
        "5",
        "--json",
        "--no-plots",
        "--out",
        out.to_str().unwrap(),
    ];
    let mut cmd = if mpi {
        let mut c = Command::new("mpirun");
        c.args(["--oversubscribe", "-np", "2", exe]);
        c
    } else {
        Command::new(exe)
    };
    let o = cmd
        .args(args)
        .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
        .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
        .output()
        .unwrap_or_else(|e| panic!("cannot run mpirun ({e}): install Open MPI (apt-get install libopenmpi-dev openmpi-bin)"));
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn two_processes_train_the_model_one_process_trains_and_rank_0_reports() {
    let dir = std::env::temp_dir().join(format!("gradtape-train-mpi-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let (ok, stdout, stderr) = train(true, &dir.join("two"));
    assert!(ok, "{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "one JSON report, from rank 0: {stdout}");
    let two: Value = serde_json::from_str(lines[0]).unwrap();
    let (ok, stdout, stderr) = train(false, &dir.join("one"));
    assert!(ok, "{stderr}");
    let one: Value = serde_json::from_str(stdout.trim()).unwrap();
    // the same global batches, gradients averaged over the two halves: the same training
    let (a, b) = (
        two["held_out_loss"].as_f64().unwrap(),
        one["held_out_loss"].as_f64().unwrap(),
    );
    assert!(
        (a - b).abs() < 1e-4 * b,
        "held-out loss {a} over two processes, {b} over one"
    );
    assert!(two["held_out_accuracy"].as_f64().unwrap() > 0.9);
    assert!(dir.join("two/model.safetensors").exists());
    std::fs::remove_dir_all(&dir).unwrap();
}
