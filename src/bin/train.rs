//! `train`: turns a folder of `like/` and `nope/` images into the ONNX model the daemon loads.
//! Exits 0 when done, 1 on error, 130 when interrupted by Ctrl-C (after exporting the best model so
//! far and writing a checkpoint).

use clap::Parser;

fn main() -> std::process::ExitCode {
    let args = swipebot_train::Args::parse();
    match swipebot_train::run(args) {
        Ok(swipebot_train::Outcome::Interrupted) => std::process::ExitCode::from(130),
        Ok(_) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
