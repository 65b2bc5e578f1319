//! `train`: turns a folder of `like/` and `nope/` images into the ONNX model the daemon loads.

use clap::Parser;

fn main() -> std::process::ExitCode {
    let args = swipebot_train::Args::parse();
    match swipebot_train::run(args) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
