//! `swipebot`: the daemon and its tools. All logic lives in the library.

use std::process::ExitCode;

use clap::Parser;
use swipebot::cli::{Cli, Command};

fn main() -> ExitCode {
    // ONNX Runtime writes a usage database under ~/.cache unless told not to; nothing of the kind is
    // wanted from a daemon (the systemd unit sets it too). Set before any thread starts.
    if std::env::var_os("ORT_DISABLE_TELEMETRY").is_none() {
        std::env::set_var("ORT_DISABLE_TELEMETRY", "1");
    }
    if swipebot::cli::asks_for_version(std::env::args_os()) {
        print!("{}", swipebot::version::render());
        return ExitCode::SUCCESS;
    }
    match Cli::parse().command {
        Command::Run { config, log_format } => swipebot::app::run(config, log_format),
        Command::Replay(args) => swipebot::app::replay(args),
        Command::CheckConfig { config } => swipebot::app::check_config(config),
        Command::DemoData {
            out,
            per_class,
            profiles,
        } => match swipebot::demo::write(&out, swipebot::demo::DemoSize { per_class, profiles }) {
            Ok(()) => {
                println!("wrote {0}/dataset and {0}/profiles", out.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: writing demo data to {}: {e}", out.display());
                ExitCode::FAILURE
            }
        },
        Command::Score(args) => match tool_logging() {
            Ok(()) => swipebot::cli::score(args),
            Err(code) => code,
        },
        Command::Compare(args) => match tool_logging() {
            Ok(()) => swipebot::compare::command::run(args),
            Err(code) => code,
        },
        Command::Stats(args) => swipebot::stats::run(args),
        Command::Console(args) => match tool_logging() {
            Ok(()) => swipebot::console::run(args),
            Err(code) => code,
        },
        Command::Dataset(args) => match tool_logging() {
            Ok(()) => swipebot::console::dataset::run(args),
            Err(code) => code,
        },
    }
}

/// Logging of the tools (`score`, `compare`, `console`, `dataset`): warnings and errors on stderr, unless
/// `SWIPEBOT_LOG` says otherwise; a bad `SWIPEBOT_LOG` is an error.
fn tool_logging() -> Result<(), ExitCode> {
    swipebot::logging::init(swipebot::config::LogFormat::Text, "warn").map_err(|e| {
        eprintln!("error: {e}");
        ExitCode::from(swipebot::cli::EXIT_FATAL)
    })
}
