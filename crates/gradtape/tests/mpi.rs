//! Data-parallel training over MPI (cargo feature `mpi`): the test starts itself again under
//! `mpirun --oversubscribe -np 2`; there, two processes train on half-batches and must end with
//! the weights one process gets on whole batches, on every rank; and a failing rank must stop
//! both with its reason. Needs Open MPI (`apt-get install libopenmpi-dev openmpi-bin`); without
//! `mpirun` the test fails and says so, it does not skip.

use std::process::Command;

use gradtape::distributed::{Communicator, Mpi, SingleProcess};

mod common;
use common::train_replica;

const CHILD: &str = "GRADTAPE_MPI_CHILD";

/// Runs this test binary's `test` under `mpirun -np 2` and returns its status and output.
fn under_mpirun(test: &str, mode: &str) -> (bool, String) {
    let exe = std::env::current_exe().unwrap();
    let out = Command::new("mpirun")
        .args(["--oversubscribe", "-np", "2"])
        .arg(&exe)
        .args(["--exact", test, "--nocapture", "--test-threads", "1"])
        .env(CHILD, mode)
        .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
        .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run mpirun ({e}): install Open MPI (apt-get install libopenmpi-dev openmpi-bin)")
        });
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

#[test]
fn two_processes_on_half_batches_end_where_one_on_whole_batches_does() {
    match std::env::var(CHILD).as_deref() {
        Ok("train") => {
            let comm = Mpi::init().unwrap();
            // each rank starts from other weights; the broadcast makes them rank 0's
            let got = train_replica(&comm, 1 + comm.rank() as u64 * 100).unwrap();
            let want = train_replica(&SingleProcess, 1).unwrap();
            for (a, b) in got.iter().zip(&want) {
                assert!((a - b).abs() <= 1e-12 * (1.0 + b.abs()), "{a} vs {b}");
            }
            println!("rank {} of {}: weights match", comm.rank(), comm.size());
        }
        Ok(_) => {}
        Err(_) => {
            let (ok, text) = under_mpirun(
                "two_processes_on_half_batches_end_where_one_on_whole_batches_does",
                "train",
            );
            assert!(ok, "{text}");
            for r in 0..2 {
                assert!(
                    text.contains(&format!("rank {r} of 2: weights match")),
                    "{text}"
                );
            }
        }
    }
}

#[test]
fn a_failing_rank_stops_every_rank_with_its_reason() {
    match std::env::var(CHILD).as_deref() {
        Ok("fail") => {
            let comm = Mpi::init().unwrap();
            if comm.rank() == 1 {
                comm.fail("data/part-1.csv: line 3: not a number");
            }
            // rank 0 would wait here forever if rank 1's failure did not stop it
            let _ = train_replica(&comm, 1);
            std::thread::sleep(std::time::Duration::from_secs(60));
        }
        Ok(_) => {}
        Err(_) => {
            let start = std::time::Instant::now();
            let (ok, text) =
                under_mpirun("a_failing_rank_stops_every_rank_with_its_reason", "fail");
            assert!(!ok, "{text}");
            assert!(
                text.contains("rank 1 failed: data/part-1.csv: line 3"),
                "{text}"
            );
            assert!(
                start.elapsed().as_secs() < 50,
                "the other rank was not stopped"
            );
        }
    }
}
