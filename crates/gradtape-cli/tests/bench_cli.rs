//! `gradtape bench --quick`: every workload runs and reports the contract's fields.

use std::process::Command;

use serde_json::Value;

#[test]
fn every_workload_reports_its_figures() {
    let o = Command::new(env!("CARGO_BIN_EXE_gradtape"))
        .args(["bench", "--quick", "--json"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let lines: Vec<Value> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let names: Vec<&str> = lines.iter().map(|v| v["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "seed",
            "linreg-10m",
            "mlp",
            "chain",
            "matmul",
            "elementwise",
            "reduce",
            "batch-jacobian",
            "jacobian-w",
            "per-example-grads",
            "hvp",
            "cnn",
            "allreduce",
            "seed-compiled",
            "linreg-10m-compiled",
            "mlp-compiled",
            "cnn-compiled",
            "hvp-compiled",
            "per-example-grads-compiled",
            "lstm-train",
            "gru-infer"
        ]
    );
    for n in ["lstm-train", "gru-infer"] {
        let v = lines.iter().find(|v| v["name"] == n).unwrap();
        assert!(
            v["units"].as_u64().unwrap() > 0 && v["steps"].as_u64().unwrap() > 0,
            "{v}"
        );
    }
    for v in &lines {
        for k in ["iters", "median_us", "min_us", "max_us"] {
            assert!(v[k].as_f64().unwrap() > 0.0, "{k} in {v}");
        }
        assert!(
            v["min_us"].as_f64() <= v["median_us"].as_f64()
                && v["median_us"].as_f64() <= v["max_us"].as_f64()
        );
        assert!(v["peak_rss_bytes"].as_u64().unwrap_or(1) > 0);
    }
    let by = |n: &str| lines.iter().find(|v| v["name"] == n).unwrap();
    assert!(by("chain")["us_per_op"].as_f64().unwrap() > 0.0);
    assert!(by("matmul")["gflops"].as_f64().unwrap() > 0.0);
    assert_eq!(by("matmul")["sizes"].as_array().unwrap().len(), 4);
    assert!(by("elementwise")["gbps"].as_f64().unwrap() > 0.0);
    assert!(by("reduce")["gbps"].as_f64().unwrap() > 0.0);
    // a compiled workload reports its first call and its graph, smaller after the passes
    // where the step computes something twice (the seed's cost and the taped loss)
    for v in lines
        .iter()
        .filter(|v| v["name"].as_str().unwrap().ends_with("-compiled"))
    {
        assert!(v["first_call_us"].as_f64().unwrap() > 0.0, "{v}");
        assert!(v["graph_nodes"].as_u64().unwrap() <= v["traced_nodes"].as_u64().unwrap());
    }
    let seed = by("seed-compiled");
    assert!(
        seed["graph_nodes"].as_u64() < seed["traced_nodes"].as_u64(),
        "{seed}"
    );
}

#[test]
fn an_unknown_workload_is_refused() {
    let o = Command::new(env!("CARGO_BIN_EXE_gradtape"))
        .args(["bench", "--quick", "fast"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("unknown workload \"fast\"") && err.contains("linreg-10m"),
        "{err}"
    );
}
