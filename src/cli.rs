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
    /// What models and thresholds would decide on recorded profiles (never touches a journal or a
    /// source): like rates, profiles that flip, agreement with your labels.
    Compare(CompareArgs),
    /// The journal summed up per day and per model.
    Stats(StatsArgs),
    /// A local web page of every decision (photos, scores, threshold) with a label mode that
    /// writes your likes and nopes to <state>/labels.jsonl.
    Console(ConsoleArgs),
    /// Your labels (labels.jsonl) as a like/ + nope/ folder of the recorded photos, for `train --data`.
    Dataset(DatasetArgs),
}

/// Where the console and `swipebot dataset` find the journal, the labels and the photos.
#[derive(Debug, Clone, clap::Args)]
pub struct StateArgs {
    /// Config file whose state.dir, source.record_dir (else source.replay_dir) and [console] to use.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// The state directory (decisions.jsonl, labels.jsonl); overrides the config's state.dir.
    #[arg(long, required_unless_present = "config")]
    pub state_dir: Option<PathBuf>,
    /// The recorded profiles (one folder a profile); overrides source.record_dir and replay_dir.
    #[arg(long)]
    pub record_dir: Option<PathBuf>,
}

/// Arguments of `swipebot console`.
#[derive(Debug, clap::Args)]
pub struct ConsoleArgs {
    /// Journal, labels and photos.
    #[command(flatten)]
    pub state: StateArgs,
    /// Address and port to serve on (overrides console.listen; port 0 picks a free one).
    #[arg(long)]
    pub listen: Option<String>,
}

/// Arguments of `swipebot dataset`.
#[derive(Debug, clap::Args)]
pub struct DatasetArgs {
    /// Journal, labels and photos.
    #[command(flatten)]
    pub state: StateArgs,
    /// The dataset folder: like/ and nope/ are written inside (kept in step on every run).
    #[arg(long)]
    pub out: PathBuf,
}

/// Arguments of `swipebot compare`.
#[derive(Debug, clap::Args)]
pub struct CompareArgs {
    /// Recorded profiles (the replay format: one folder a profile with profile.json and its photos).
    pub profiles: PathBuf,
    /// A model to compare; give it once per model. The first is the one the others are set against.
    #[arg(long = "model", required = true)]
    pub models: Vec<PathBuf>,
    /// A threshold to decide at; give it once per threshold (default: each model's own).
    #[arg(long = "threshold")]
    pub thresholds: Vec<f32>,
    /// Your labels: the console's labels.jsonl, or a folder with like/ and nope/.
    #[arg(long)]
    pub labels: Option<PathBuf>,
    /// The comparison as one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
    /// Also write an HTML page of the flipped profiles with their photos to this file.
    #[arg(long)]
    pub html: Option<PathBuf>,
    /// Score cache folder (default: $XDG_CACHE_HOME/swipebot/scores or ~/.cache/swipebot/scores).
    #[arg(long)]
    pub cache_dir: Option<PathBuf>,
    /// Score every photo again, reading and writing no cache.
    #[arg(long, conflicts_with = "cache_dir")]
    pub no_cache: bool,
    /// Config file whose runtime, photo limits and policy to use (default: built-in defaults).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// ONNX Runtime library (overrides the config's `runtime.library`).
    #[arg(long)]
    pub ort_library: Option<PathBuf>,
    /// Threads decoding photos.
    #[arg(long, default_value_t = 2)]
    pub decode_threads: usize,
}

/// Arguments of `swipebot stats`.
#[derive(Debug, clap::Args)]
pub struct StatsArgs {
    /// The state directory holding decisions.jsonl.
    #[arg(long, required_unless_present = "config")]
    pub state_dir: Option<PathBuf>,
    /// Or the config file whose `state.dir` to read.
    #[arg(long, conflicts_with = "state_dir")]
    pub config: Option<PathBuf>,
    /// The figures as one JSON object.
    #[arg(long)]
    pub json: bool,
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
