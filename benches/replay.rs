//! Replay throughput: profiles and photos per second through the whole daemon pipeline (read, decode,
//! resize, score, decide, journal with fsync) against the scorer's pure rate on already-decoded
//! tensors, side by side in one run. The pipeline should keep the scorer busy: the ratio is the share
//! of the scorer's rate the daemon achieves.
//!
//! Memory: the peak resident set of the real `swipebot replay` process on the same profiles, against
//! the Python baseline (`benches/baseline.py --only full`: Pillow + onnxruntime scoring the same photos
//! batch after batch) run right after it; both read from `/proc/PID/status` (`VmHWM`).
//!
//! `cargo bench --bench replay [-- --profiles N --photos K --threads T --batch B --input S]`

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use swipebot::config::Settings;
use swipebot::daemon::Daemon;
use swipebot::shutdown::Shutdown;
use swipebot::source::replay::ReplaySource;
use swipebot::vision::scorer::{Scorer, ScorerOptions};

struct Args {
    profiles: usize,
    photos: usize,
    threads: usize,
    batch: usize,
    input: u32,
    runs: usize,
}

fn parse_args() -> Args {
    let mut a = Args {
        profiles: 24,
        photos: 3,
        threads: 1,
        batch: 8,
        input: 224,
        runs: 3,
    };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < argv.len() {
        let value = || argv.get(i + 1).and_then(|v| v.parse::<usize>().ok());
        match argv[i].as_str() {
            "--profiles" => a.profiles = value().expect("--profiles N"),
            "--photos" => a.photos = value().expect("--photos K"),
            "--threads" => a.threads = value().expect("--threads T"),
            "--batch" => a.batch = value().expect("--batch B"),
            "--input" => a.input = value().expect("--input S") as u32,
            "--runs" => a.runs = value().expect("--runs R"),
            // cargo bench passes --bench; ignore flags that are not ours.
            _ => {
                i += 1;
                continue;
            }
        }
        i += 2;
    }
    a
}

/// The `train` binary of this workspace (built by `cargo build -p swipebot-train`).
fn train_binary() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    ["target/release/train", "target/debug/train"]
        .iter()
        .map(|p| root.join(p))
        .find(|p| p.exists())
        .expect("the train binary is missing: run `source scripts/env.sh && cargo build -p swipebot-train` first")
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn main() {
    let args = parse_args();
    let dir = tempfile::tempdir().unwrap();
    swipebot_core::synth::write_dataset(&dir.path().join("data"), 2, 96, 3).unwrap();
    let model = dir.path().join("model.onnx");
    let status = Command::new(train_binary())
        .args([
            "--data",
            dir.path().join("data").to_str().unwrap(),
            "--out",
            model.to_str().unwrap(),
        ])
        .args(["--epochs", "0", "--grayscale", "--input-size", &args.input.to_string()])
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "train failed");

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
        let json = serde_json::json!({"id": format!("bench{p:04}"), "photos": names});
        std::fs::write(pdir.join("profile.json"), json.to_string()).unwrap();
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
    let mut daemon = Command::new(env!("CARGO_BIN_EXE_swipebot"));
    daemon
        .arg("replay")
        .arg(&profiles)
        .arg("--config")
        .arg(&config)
        .arg("--model")
        .arg(&model)
        .arg("--state-dir")
        .arg(dir.path().join("state-memory"));
    let rust_kib = peak_rss_kib(&mut daemon);
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let python = std::env::var_os("VIRTUAL_ENV")
        .map(|v| PathBuf::from(v).join("bin/python"))
        .unwrap_or_else(|| root.join(".venv/bin/python"));
    let mut baseline = Command::new(python);
    baseline
        .arg(root.join("benches/baseline.py"))
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
    let python_kib = peak_rss_kib(&mut baseline);
    println!(
        "  peak memory: swipebot replay {:.0} MiB, Python Pillow+onnxruntime {:.0} MiB, ratio {:.2}x",
        rust_kib as f64 / 1024.0,
        python_kib as f64 / 1024.0,
        rust_kib as f64 / python_kib as f64
    );
}

/// Runs `command` to completion (output discarded) and returns its peak resident set in KiB, read
/// from `VmHWM` in `/proc/PID/status` while it runs (the kernel keeps the high-water mark, so the
/// last reading before exit is the peak).
fn peak_rss_kib(command: &mut Command) -> u64 {
    let mut child = command
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("starting the process");
    let status_path = format!("/proc/{}/status", child.id());
    let mut peak = 0;
    loop {
        if let Ok(text) = std::fs::read_to_string(&status_path) {
            if let Some(kib) = text
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            {
                peak = peak.max(kib);
            }
        }
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "{command:?} failed: {status}");
            return peak;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}
