//! The `swipebot` command line: subcommands and what each prints.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::LogFormat;
use crate::vision::batch;
use crate::vision::error::PhotoError;
use crate::vision::scorer::{Device, Scorer, ScorerOptions};

/// Command-line arguments of `swipebot`.
///
/// `--version` is answered before the command line is parsed ([`asks_for_version`]), so that it
/// works after any subcommand without that subcommand's required arguments.
#[derive(Debug, Parser)]
#[command(
    name = "swipebot",
    disable_version_flag = true,
    about = "Score dating-profile photos with your own GoogLeNet and swipe accordingly"
)]
pub struct Cli {
    /// Print the version, the git commit, the ONNX Runtime library found and its version, and the
    /// model contract version (after any subcommand too).
    #[arg(long, short = 'V')]
    pub version: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Whether the command line asks for the version: `--version` or `-V` anywhere before a `--`.
pub fn asks_for_version<I: IntoIterator<Item = std::ffi::OsString>>(args: I) -> bool {
    args.into_iter()
        .skip(1)
        .take_while(|a| a != "--")
        .any(|a| a == "--version" || a == "-V")
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon with a config file (the systemd service runs this).
    Run {
        /// The config file (see config/swipebot.toml).
        #[arg(long)]
        config: PathBuf,
        /// Log format (default: the config's `log.format`).
        #[arg(long, value_enum)]
        log_format: Option<LogFormat>,
    },
    /// Test mode: decide on recorded profiles; swipes are journaled, never sent anywhere.
    Replay(ReplayArgs),
    /// Check a config file and print the effective settings (environment overrides applied).
    CheckConfig {
        /// The config file.
        #[arg(long)]
        config: PathBuf,
    },
    /// Generate a demo dataset (for `train`) and recorded profiles (for `replay`).
    DemoData {
        /// Output folder: `dataset/` and `profiles/` are written inside.
        #[arg(long)]
        out: PathBuf,
        /// Training images per class.
        #[arg(long, default_value_t = 120)]
        per_class: usize,
        /// Recorded profiles.
        #[arg(long, default_value_t = 40)]
        profiles: usize,
    },
    /// Print each image's LIKE probability and the decision at the model's threshold.
    Score(ScoreArgs),
}

/// Arguments of `swipebot replay`.
#[derive(Debug, clap::Args)]
pub struct ReplayArgs {
    /// Recorded profiles: one sub-folder per profile with profile.json and its photos.
    pub dir: PathBuf,
    /// Config file for everything else (optional: built-in defaults otherwise).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// The model (overrides `model.path`).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Journal directory (overrides `state.dir`).
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
    /// Decision threshold (overrides `model.threshold`).
    #[arg(long)]
    pub threshold: Option<f32>,
    /// Log format.
    #[arg(long, value_enum)]
    pub log_format: Option<LogFormat>,
}

/// Arguments of `swipebot score`.
#[derive(Debug, clap::Args)]
pub struct ScoreArgs {
    /// ONNX model exported by `train`.
    #[arg(long)]
    pub model: PathBuf,
    /// One JSON object per image instead of tab-separated text.
    #[arg(long)]
    pub json: bool,
    /// Decision threshold (default: the one recommended in the model).
    #[arg(long)]
    pub threshold: Option<f32>,
    /// `cpu` or `cuda` (falls back to the CPU with a warning when CUDA cannot be used).
    #[arg(long, value_enum, default_value = "cpu")]
    pub device: DeviceArg,
    /// ONNX Runtime library (default: ORT_DYLIB_PATH, then where scripts/setup.sh installs it).
    #[arg(long)]
    pub ort_library: Option<PathBuf>,
    /// Images per inference batch.
    #[arg(long, default_value_t = 8)]
    pub batch_size: usize,
    /// Threads inside ONNX Runtime.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Images to score (JPEG, PNG or WebP).
    #[arg(required = true)]
    pub images: Vec<PathBuf>,
}

/// `--device` values.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum DeviceArg {
    /// ONNX Runtime's CPU provider.
    Cpu,
    /// ONNX Runtime's CUDA provider.
    Cuda,
}

/// Exit code when some images could not be scored (the others were).
pub const EXIT_SOME_FAILED: u8 = 1;
/// Exit code when nothing could run (model or runtime missing).
pub const EXIT_FATAL: u8 = 2;

/// Runs `swipebot score`: one line per image on stdout, errors on stderr (and in the JSON lines).
pub fn score(args: ScoreArgs) -> ExitCode {
    let options = ScorerOptions {
        library: args.ort_library.clone(),
        device: match args.device {
            DeviceArg::Cpu => Device::Cpu,
            DeviceArg::Cuda => Device::Cuda,
        },
        intra_threads: args.threads,
        ..ScorerOptions::default()
    };
    let mut scorer = match Scorer::load(&args.model, &options) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_FATAL);
        }
    };
    let threshold = args.threshold.unwrap_or(scorer.info().threshold);
    let decode_threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let images = &args.images;
    let results = match batch::score_all(
        &mut scorer,
        images.len(),
        |i| std::fs::read(&images[i]).map_err(PhotoError::Read),
        args.batch_size,
        decode_threads,
    ) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_FATAL);
        }
    };
    let mut failed = 0;
    for (path, result) in images.iter().zip(results) {
        match result {
            Ok(score) => {
                let decision = if score >= threshold { "like" } else { "pass" };
                if args.json {
                    println!(
                        "{}",
                        serde_json::json!({"image": path, "score": score, "threshold": threshold, "decision": decision})
                    );
                } else {
                    println!("{}\t{score:.4}\t{decision}", path.display());
                }
            }
            Err(e) => {
                failed += 1;
                if args.json {
                    println!("{}", serde_json::json!({"image": path, "error": e.to_string()}));
                }
                eprintln!("error: {}: {e}", path.display());
            }
        }
    }
    if failed > 0 {
        ExitCode::from(EXIT_SOME_FAILED)
    } else {
        ExitCode::SUCCESS
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_is_asked_for_after_any_subcommand_but_not_after_a_double_dash() {
        let asks = |line: &str| asks_for_version(line.split(' ').map(std::ffi::OsString::from));
        assert!(asks("swipebot --version"));
        assert!(asks("swipebot run --version"));
        assert!(asks("swipebot score -V"));
        assert!(!asks("swipebot score --model m.onnx -- --version"));
        assert!(!asks("swipebot run --config c.toml"));
        // The program's own name is not an argument.
        assert!(!asks("--version run"));
    }
}
