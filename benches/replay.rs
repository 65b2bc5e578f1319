//! Replay throughput: profiles and photos per second through the whole daemon pipeline (read, decode,
//! resize, score, decide, journal with fsync) against the scorer's pure rate on already-decoded
//! tensors, side by side in one run. The pipeline should keep the scorer busy: the ratio is the share
//! of the scorer's rate the daemon achieves.
//!
//! Memory: the peak resident set of the real `swipebot replay` process on the same profiles, against
//! the Python baseline (`benches/baseline.py --only full`: Pillow + onnxruntime scoring the same photos
//! batch after batch) run right after it; both read from `/proc/PID/status` (`VmHWM`).
//!
//! `cargo bench --bench replay [-- --profiles N --photos K --threads T --batch B --input S --runs R]`
//! (the untrained model comes from the `train` binary of the same profile: a plain `cargo bench`
//! builds it, or `cargo build --release -p swipebot-train`).

#[path = "../tests/common/mod.rs"]
mod common;

use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use common::bench::{median, BenchArgs};
use swipebot::config::Settings;
use swipebot::daemon::Daemon;
use swipebot::profile::Profile;
use swipebot::shutdown::Shutdown;
use swipebot::source::replay::ReplaySource;
use swipebot::vision::scorer::{Scorer, ScorerOptions};

/// Command-line options.
struct Args {
    /// Recorded profiles.
    profiles: usize,
    /// Photos a profile.
    photos: usize,
    /// ONNX Runtime intra-op threads.
    threads: usize,
    /// Photos a batch.
    batch: usize,
    /// The model's input side.
    input: u32,
    /// Timed runs; the median is reported.
    runs: usize,
}

impl Args {
    /// Reads the options from the command line.
    fn parse() -> Result<Self, String> {
        let args = BenchArgs::parse(
            "cargo bench --bench replay -- [--profiles N] [--photos K] [--threads T] [--batch B] [--input S] [--runs R]",
            &["--profiles", "--photos", "--threads", "--batch", "--input", "--runs"],
            &[],
        )?;
        Ok(Args {
            profiles: args.number("--profiles", 24, 1)?,
            photos: args.number("--photos", 3, 1)?,
            threads: args.number("--threads", 1, 1)?,
            batch: args.number("--batch", 8, 1)?,
            input: args.number("--input", 224, 1)? as u32,
            runs: args.number("--runs", 3, 1)?,
        })
    }
}

fn main() {
    let args = Args::parse().unwrap_or_else(|e| {
        eprintln!("replay: {e}");
        std::process::exit(1);
    });
    let dir = tempfile::tempdir().unwrap();
    let model = common::models::untrained_model(dir.path(), args.input, true);

    // Recorded profiles with 640x800 JPEG photos.
    let profiles = dir.path().join("profiles");
    let flat = dir.path().join("photos");
    std::fs::create_dir_all(&flat).unwrap();
    let mut photos = Vec::new();
    for p in 0..args.profiles {
        let pdir = profiles.join(format!("{p:04}"));
        std::fs::create_dir_all(&pdir).unwrap();
        let mut names = Vec::new();
        for k in 0..args.photos {
            let bytes = swipebot_core::synth::jpeg(
                &swipebot_core::synth::photo((p + k) % 2 == 0, 640, 800, (p * 100 + k) as u64),
                90,
            );
            let name = format!("{k}.jpg");
            std::fs::write(pdir.join(&name), &bytes).unwrap();
            std::fs::write(flat.join(format!("{p:04}-{k}.jpg")), &bytes).unwrap();
            photos.push(bytes);
            names.push(name);
        }
        let profile = Profile {
            id: format!("bench{p:04}"),
            name: String::new(),
            bio: String::new(),
            photos: names,
            placeholder: false,
            extra: Default::default(),
        };
        swipebot::source::replay::write_profile(&pdir, &profile).unwrap();
    }
    let total_photos = photos.len();
    println!(
        "replay benchmark: {} profiles x {} photos (640x800 JPEG), model {s}x{s} grayscale, {} intra-op thread(s), batch {}, median of {} runs",
        args.profiles,
        args.photos,
        args.threads,
        args.batch,
        args.runs,
        s = args.input,
    );

    // The scorer's pure rate on already-decoded tensors.
    let options = ScorerOptions {
        intra_threads: args.threads,
        ..ScorerOptions::default()
    };
    let mut scorer = Scorer::load(&model, &options).unwrap();
    let mut inputs = Vec::new();
    for bytes in &photos {
        scorer.prepare(bytes, &mut inputs).unwrap();
    }
    let per = scorer.info().recipe.input_len();
    let mut pure = Vec::new();
    for _ in 0..args.runs {
        let start = Instant::now();
        for chunk in inputs.chunks(per * args.batch) {
            scorer.score(chunk).unwrap();
        }
        pure.push(total_photos as f64 / start.elapsed().as_secs_f64());
    }
    let pure = median(pure);
    drop(scorer);

    // The daemon on the replay source.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let (mut photo_rates, mut profile_rates) = (Vec::new(), Vec::new());
    for run in 0..args.runs {
        let mut settings = Settings::default();
        settings.model.path = model.clone();
        settings.source.replay_dir = Some(profiles.clone());
        settings.state.dir = dir.path().join(format!("state-{run}"));
        settings.runtime.intra_threads = args.threads;
        settings.runtime.batch_size = args.batch;
        let summary = runtime.block_on(async {
            let source = Arc::new(
                ReplaySource::open(
                    &profiles,
                    settings.source.batch,
                    settings.pipeline.max_photo_bytes,
                    std::time::Duration::from_secs(20),
                    false,
                )
                .unwrap(),
            );
            let daemon = Arc::new(Daemon::start(settings, None, source, Shutdown::new()).unwrap());
            daemon.run().await.unwrap()
        });
        assert_eq!(summary.photos_scored as usize, total_photos);
        photo_rates.push(summary.photos_per_second());
        profile_rates.push(summary.profiles as f64 / summary.seconds);
    }
    let (photos_rate, profiles_rate) = (median(photo_rates), median(profile_rates));
    println!("  scorer, pure inference on decoded tensors: {pure:8.1} photos/s");
    println!("  replay (read+decode+score+decide+journal): {photos_rate:8.1} photos/s, {profiles_rate:.1} profiles/s");
    println!(
        "  replay / pure inference:                   {:8.2}x",
        photos_rate / pure
    );

    // Peak memory of the real daemon process against the Python baseline on the same photos.
    let config = dir.path().join("bench.toml");
    std::fs::write(
        &config,
        format!(
            "[runtime]\nintra_threads = {}\nbatch_size = {}\n",
            args.threads, args.batch
        ),
    )
    .unwrap();
    let mut daemon = Command::new(common::paths::bin("swipebot"));
    daemon
        .arg("replay")
        .arg(&profiles)
        .arg("--config")
        .arg(&config)
        .arg("--model")
        .arg(&model)
        .arg("--state-dir")
        .arg(dir.path().join("state-memory"));
    let rust_kib = common::process::peak_rss_kib(&mut daemon);
    let mut baseline = Command::new(common::paths::python());
    baseline
        .arg(common::paths::repo_root().join("benches/baseline.py"))
        .args(["--model", model.to_str().unwrap(), "--photos", flat.to_str().unwrap()])
        .args([
            "--threads",
            &args.threads.to_string(),
            "--batch",
            &args.batch.to_string(),
        ])
        .args([
            "--square",
            &(args.input * 8).div_ceil(7).to_string(),
            "--crop",
            &args.input.to_string(),
        ])
        .args(["--only", "full"]);
    let python_kib = common::process::peak_rss_kib(&mut baseline);
    println!(
        "  peak memory: swipebot replay {:.0} MiB, Python Pillow+onnxruntime {:.0} MiB, ratio {:.2}x",
        rust_kib as f64 / 1024.0,
        python_kib as f64 / 1024.0,
        rust_kib as f64 / python_kib as f64
    );
}
