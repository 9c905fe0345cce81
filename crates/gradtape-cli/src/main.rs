//! The `gradtape` command; the code is the `gradtape_cli` library (see its `lib.rs` for why).

fn main() -> std::process::ExitCode {
    gradtape_cli::main()
}
