//! `gradtape`: the command line. It parses options, reads or makes data, and calls the library;
//! the math lives in `gradtape`, the pictures in `gradtape-plot`.
//!
//! A library with a two-line binary (`main.rs`) rather than the binary itself, so that its
//! trainer (`training`) can be tested from `tests/trainer.rs`, and so that cargo may start
//! compiling it once its dependencies' metadata is ready (a binary waits until they are fully
//! built). On two cores the clean build is CPU-bound and the CLI still compiles last; the
//! earlier start gained nothing measurable there.

mod args;
mod bench;
mod data;
mod linreg;
mod output;
mod sequence;
mod train;
pub mod training;

use std::process::ExitCode;

use clap::error::ErrorKind;
use clap::{Parser, Subcommand};

/// gradtape: TensorFlow's GradientTape in Rust, from the command line.
#[derive(Parser, Debug)]
#[command(name = "gradtape", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Where tensors live and ops run: cpu, cuda or cuda:N (an NVIDIA GPU, found at run time:
    /// the driver, and NVRTC and cuBLAS from the CUDA toolkit's lib64 folder on
    /// LD_LIBRARY_PATH). An op without a GPU kernel yet stops the run with an error.
    #[arg(long, global = true, default_value = "cpu", value_name = "DEVICE", value_parser = crate::args::device)]
    device: gradtape::Device,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Fit y = a + b·x by gradient descent with a GradientTape (the seed tutorial), report the
    /// fit and draw it.
    ///
    /// With no options it reproduces the tutorial: 200 points x ~ U(0, 1),
    /// y = 0.3 + 0.5·x + N(0, 0.3²), a and b starting at 0, 70 epochs of plain gradient descent
    /// on the sum of squared errors with learning rate 0.001. Each epoch evaluates the cost,
    /// then takes one taped training step, exactly as the tutorial's loop does.
    Linreg(linreg::Args),
    /// Train a classifier (or, with --task regression, a regressor) on a CSV table: an MLP with
    /// standardised features, a validation split, per-epoch loss and accuracy, and the model
    /// saved as safetensors with curves and a confusion matrix.
    Train(train::TrainArgs),
    /// Load a model written by `gradtape train` and predict the rows of a CSV file; when the file
    /// also holds the target column, report the accuracy.
    Predict(train::PredictArgs),
    /// Run the speed workloads (all, or those named) and print a table or JSON lines.
    Bench(bench::BenchArgs),
}

/// An error for the user: one line on stderr, exit code 2.
#[derive(Debug)]
pub struct CliError(pub String);

impl<E: std::fmt::Display> From<E> for CliError {
    fn from(e: E) -> Self {
        CliError(e.to_string())
    }
}

/// Runs `f` with new tensors made on `device` (checked by the caller).
fn on(device: gradtape::Device, f: impl FnOnce() -> Result<(), CliError>) -> Result<(), CliError> {
    gradtape::device::with_device(device, f)?
}

/// The `gradtape` command: parses `std::env::args`, runs the subcommand, and gives the exit
/// code (2 with one line on stderr for a bad option, file or device).
pub fn main() -> ExitCode {
    // `gradtape linreg | head` closes the pipe early: end quietly as other command-line tools
    // do, not with println!'s "failed printing to stdout" panic. Outputs are committed before
    // the report is printed, so this never leaves them half-written.
    #[cfg(unix)]
    // SAFETY: restores the default action of one signal before any other thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            return match e.kind() {
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
                    let _ = e.print();
                    ExitCode::SUCCESS
                }
                _ => {
                    let text = e.to_string();
                    let first = text.lines().next().unwrap_or("invalid arguments");
                    eprintln!("gradtape: {}", first.trim_start_matches("error: "));
                    ExitCode::from(2)
                }
            };
        }
    };
    // Training runs on a thread of the compute pool, so that large kernels share work with it
    // rather than waking other threads and waiting (see `gradtape::threading`); `bench`
    // chooses per workload.
    // The device is checked before any work, so a missing GPU is one line and exit code 2.
    let device = cli.device;
    let result = match device.check() {
        Err(e) => Err(CliError::from(e)),
        Ok(()) => match cli.command {
            Command::Linreg(args) => {
                gradtape::threading::install(|| on(device, || linreg::run(args)))
            }
            Command::Train(args) => {
                gradtape::threading::install(|| on(device, || train::run_train(args)))
            }
            Command::Predict(args) => {
                gradtape::threading::install(|| on(device, || train::run_predict(args)))
            }
            Command::Bench(args) => bench::run(args, device),
        },
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(CliError(msg)) => {
            eprintln!("gradtape: {msg}");
            ExitCode::from(2)
        }
    }
}
