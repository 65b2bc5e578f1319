//! The `swipebot compare` command: its arguments turned into [`CompareOptions`], the report printed
//! (text, or JSON with `--json`), the HTML page written (`--html`). Exit 0 when the comparison was
//! made, 2 when it could not be (a model, the profiles or the labels unreadable: named).

use std::process::ExitCode;

use super::{cache, compare, report, CompareOptions};
use crate::cli::{CompareArgs, EXIT_FATAL};
use crate::config::Settings;

/// Runs `swipebot compare`.
pub fn run(args: CompareArgs) -> ExitCode {
    let settings = match &args.config {
        Some(path) => match Settings::load(path) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(EXIT_FATAL);
            }
        },
        None => Settings::default(),
    };
    let mut scorer = crate::daemon::live::scorer_options(&settings);
    if args.ort_library.is_some() {
        scorer.library = args.ort_library.clone();
    }
    let options = CompareOptions {
        profiles: args.profiles.clone(),
        models: args.models.clone(),
        thresholds: args.thresholds.clone(),
        labels: args.labels.clone(),
        cache_dir: if args.no_cache {
            None
        } else {
            args.cache_dir.clone().or_else(cache::default_dir)
        },
        scorer,
        batch_size: settings.runtime.batch_size,
        decode_threads: args.decode_threads.max(1),
        max_photos: settings.pipeline.max_photos_per_profile,
        no_photos: settings.policy.no_photos,
    };
    if let Some(bad) = options.thresholds.iter().find(|t| !(0.0..=1.0).contains(*t)) {
        eprintln!("error: --threshold {bad} is not a probability between 0 and 1");
        return ExitCode::from(EXIT_FATAL);
    }
    let comparison = match compare(&options) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_FATAL);
        }
    };
    if args.json {
        println!(
            "{}",
            serde_json::to_string(&comparison).expect("the comparison serialises")
        );
    } else {
        print!("{}", report::text(&comparison));
    }
    if let Some(path) = &args.html {
        if let Err(e) = swipebot_core::fsutil::write_atomic(path, report::html(&comparison).as_bytes()) {
            eprintln!("error: cannot write {}: {e}", path.display());
            return ExitCode::from(EXIT_FATAL);
        }
    }
    ExitCode::SUCCESS
}
