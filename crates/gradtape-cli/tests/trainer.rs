//! The CLI's trainer (`gradtape_cli::training`, the loop `gradtape train` runs) end to end: the
//! shipped digits data with the default configuration reaches 95% test accuracy, and
//! `fit_distributed` on two threads ends where `fit` on one does.

use std::path::{Path, PathBuf};

use gradtape::data::{read_csv, split_indices, take_rows, Standardizer, Target, Task};
use gradtape::distributed::{Communicator, LocalGroup};
use gradtape::layers::Layer;
use gradtape::random::Generator;
use gradtape::{DType, Tensor};
use gradtape_cli::training::{build_mlp, evaluate, fit, fit_distributed, TrainConfig};

#[path = "../../gradtape/tests/common/watchdog.rs"]
mod watchdog;

fn digits() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/digits.csv.gz")
}

fn targets(t: &Target, idx: &[i64]) -> Target {
    match t {
        Target::Classes { labels, names } => Target::Classes {
            labels: take_rows(labels, idx).unwrap(),
            names: names.clone(),
        },
        Target::Values(v) => Target::Values(take_rows(v, idx).unwrap()),
    }
}

#[test]
fn a_digits_mlp_reaches_95_percent_test_accuracy_with_the_defaults() {
    let table = read_csv(&digits()).unwrap();
    assert_eq!((table.rows.len(), table.columns.len()), (1797, 65));
    let d = table
        .dataset("digit", Task::Classification, DType::F32)
        .unwrap();
    let Target::Classes { names, .. } = &d.target else {
        panic!("classes expected")
    };
    assert_eq!(names.len(), 10);
    let (tr, va, te) = split_indices(1797, 0.15, 0.15, 0).unwrap();
    let x_train_raw = take_rows(&d.features, &tr).unwrap();
    let st = Standardizer::fit(&x_train_raw).unwrap();
    let prep = |idx: &[i64]| st.transform(&take_rows(&d.features, idx).unwrap()).unwrap();
    let (x_tr, x_va, x_te) = (prep(&tr), prep(&va), prep(&te));
    let (y_tr, y_va, y_te) = (
        targets(&d.target, &tr),
        targets(&d.target, &va),
        targets(&d.target, &te),
    );
    let cfg = TrainConfig::default();
    let model = build_mlp(64, &cfg.hidden, 10, &cfg).unwrap();
    let history = fit(&model, (&x_tr, &y_tr), Some((&x_va, &y_va)), &cfg, |_| {}).unwrap();
    assert_eq!(history.len(), cfg.epochs);
    assert!(history.last().unwrap().train_loss < history[0].train_loss);
    let (_, acc) = evaluate(&model, &x_te, &y_te).unwrap();
    let acc = acc.unwrap();
    assert!(acc >= 0.95, "test accuracy {acc}");
}

type Trained = (Vec<gradtape_cli::training::EpochStats>, Vec<Vec<f64>>);

/// 50 rows in batches of 16: the last batch (2 rows) splits 1 + 1, the others 8 + 8. `fit`
/// when `comm` is `None`.
fn fit_run(comm: Option<&dyn Communicator>) -> Trained {
    let cfg = TrainConfig {
        epochs: 3,
        batch_size: 16,
        hidden: vec![8],
        dtype: DType::F64,
        ..TrainConfig::default()
    };
    let mut rng = Generator::from_seed(3);
    let x = rng.uniform(&[50, 4], -1.0, 1.0, DType::F64).unwrap();
    let y = Target::Classes {
        labels: Tensor::from_vec((0..50).map(|i| i % 3).collect(), &[50]).unwrap(),
        names: vec!["a".into(), "b".into(), "c".into()],
    };
    let m = build_mlp(4, &cfg.hidden, 3, &cfg).unwrap();
    let h = match comm {
        Some(c) => fit_distributed(&m, (&x, &y), None, &cfg, c, |_| {}).unwrap(),
        None => fit(&m, (&x, &y), None, &cfg, |_| {}).unwrap(),
    };
    let w = m
        .trainable_variables()
        .iter()
        .map(|v| v.value().to_vec::<f64>().unwrap())
        .collect();
    (h, w)
}

#[test]
fn fit_distributed_on_two_threads_matches_fit_on_one() {
    let (single, single_w) = fit_run(None);
    let both: Vec<Trained> = watchdog::within("fit_distributed", || {
        std::thread::scope(|s| {
            let hs: Vec<_> = LocalGroup::new(2)
                .into_iter()
                .map(|c| s.spawn(move || fit_run(Some(&c))))
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        })
    });
    for (h, w) in &both {
        assert_eq!(h.len(), single.len());
        for (a, b) in h.iter().zip(&single) {
            assert!(
                (a.train_loss - b.train_loss).abs() < 1e-12,
                "{a:?} vs {b:?}"
            );
            assert_eq!(a.train_accuracy, b.train_accuracy);
        }
        for (a, b) in w.iter().flatten().zip(single_w.iter().flatten()) {
            assert!((a - b).abs() <= 1e-12 * (1.0 + b.abs()), "{a} vs {b}");
        }
    }
}
