//! `swipebot`: the daemon and its tools. All logic lives in the library.

use clap::Parser;
use swipebot::cli::{Cli, Command};

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SWIPEBOT_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::Score(args) => swipebot::cli::score(args),
    }
}
