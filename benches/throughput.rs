//! Throughput benchmark: photos per second for decode + resize + score of a folder of 640x800 JPEGs
//! with a 224 GoogLeNet, next to a Python baseline (Pillow + onnxruntime, same model, same photos,
//! same ONNX Runtime thread count and batch size) and next to the pure-inference rate on tensors that
//! are already decoded.
//!
//! ```text
//! cargo bench --bench throughput                      # grayscale 224 model, 48 photos, 1 and 2 threads
//! cargo bench --bench throughput -- --rgb --photos 64 --threads 2 --batch 8 --repeats 5
//! ```
//!
//! Options: `--photos N` (48), `--threads LIST` (ONNX Runtime intra-op threads, `1,2`),
//! `--batch N` (8), `--decode-threads N` (1), `--repeats N` (5, the median is reported),
//! `--warmup N` (1), `--rgb` (RGB model instead of the grayscale one), `--no-python`.
//!
//! The photos and the untrained model (`train --epochs 0`, from the `train` binary of the same
//! profile: `cargo build --release -p swipebot-train`, or a plain `cargo bench`, which builds every
//! package) are cached under `target/bench-throughput/`. The Python side is `benches/baseline.py`,
//! run with the interpreter of the project's virtual environment (`$VIRTUAL_ENV` or `.venv`), which
//! needs Pillow and numpy.

#[path = "../tests/common/mod.rs"]
mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::Instant;

use common::bench::{median, BenchArgs};
use swipebot::vision::batch::score_all;
use swipebot::vision::scorer::{Scorer, ScorerOptions};
use swipebot_core::preprocess::{self, Channels, Limits, Recipe};

/// Photo geometry and JPEG quality of the benchmark folder.
const WIDTH: u32 = 640;
const HEIGHT: u32 = 800;
const QUALITY: u8 = 90;
/// Network input side.
const INPUT: u32 = 224;

/// Command-line options.
struct Options {
    /// Photos in the folder.
    photos: usize,
    /// ONNX Runtime intra-op thread counts to measure, one after the other.
    threads: Vec<usize>,
    /// Photos a batch.
    batch: usize,
    /// Threads decoding for `score_all`.
    decode_threads: usize,
    /// Timed rounds; the median is reported.
    repeats: usize,
    /// Untimed rounds first.
    warmup: usize,
    /// The model's colour mode.
    channels: Channels,
    /// Whether to run the Python baseline.
    python: bool,
}

impl Options {
    /// Reads the options from the command line.
    fn parse() -> Result<Self, String> {
        let args = BenchArgs::parse(
            "cargo bench --bench throughput -- [--photos N] [--threads 1,2] [--batch N] \
             [--decode-threads N] [--repeats N] [--warmup N] [--rgb] [--no-python]",
            &[
                "--photos",
                "--threads",
                "--batch",
                "--decode-threads",
                "--repeats",
                "--warmup",
            ],
            &["--rgb", "--gray", "--grayscale", "--no-python"],
        )?;
        Ok(Options {
            photos: args.number("--photos", 48, 1)?,
            threads: args.numbers("--threads", &[1, 2], 1)?,
            batch: args.number("--batch", 8, 1)?,
            decode_threads: args.number("--decode-threads", 1, 1)?,
            repeats: args.number("--repeats", 5, 1)?,
            warmup: args.number("--warmup", 1, 0)?,
            channels: if args.flag("--rgb") {
                Channels::Rgb
            } else {
                Channels::Gray
            },
            python: !args.flag("--no-python"),
        })
    }
}

/// The target directory this bench binary was built in (`.../target/release/deps/throughput-*`).
fn target_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        let dir = PathBuf::from(dir);
        return if dir.is_absolute() {
            dir
        } else {
            Path::new(env!("CARGO_MANIFEST_DIR")).join(dir)
        };
    }
    std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.parent()?.to_path_buf()))
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"))
}

/// Writes the photo folder unless a complete one is cached; returns the sorted photo paths.
fn photo_folder(cache: &Path, count: usize) -> Result<Vec<PathBuf>, String> {
    let dir = cache.join(format!("photos-{count}-{WIDTH}x{HEIGHT}-q{QUALITY}"));
    let paths: Vec<PathBuf> = (0..count).map(|i| dir.join(format!("photo-{i:04}.jpg"))).collect();
    if !paths.iter().all(|p| p.is_file()) {
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        for (i, path) in paths.iter().enumerate() {
            let img = swipebot_core::synth::photo(i % 2 == 0, WIDTH, HEIGHT, 1000 + i as u64);
            std::fs::write(path, swipebot_core::synth::jpeg(&img, QUALITY))
                .map_err(|e| format!("{}: {e}", path.display()))?;
        }
    }
    Ok(paths)
}

/// `benches/baseline.py --serve`: a Python process with its own session and photos that times one
/// run per request, so that Rust and Python runs can alternate under the same machine load.
struct Python {
    /// The script's process.
    child: Child,
    /// Requests, one a line; closed (taken) on drop, which ends the script.
    stdin: Option<ChildStdin>,
    /// Answers, one a line.
    stdout: BufReader<ChildStdout>,
}

impl Python {
    /// Starts the script on `model` and the photos in `photos`; returns once it says it is ready.
    fn start(model: &Path, photos: &Path, threads: usize, o: &Options) -> Result<Self, String> {
        let script = common::paths::repo_root().join("benches/baseline.py");
        let interpreter = common::paths::python();
        let mut child = Command::new(&interpreter)
            .arg(&script)
            .arg("--serve")
            .arg("--model")
            .arg(model)
            .arg("--photos")
            .arg(photos)
            .args(["--threads", &threads.to_string()])
            .args(["--batch", &o.batch.to_string()])
            .args(["--channels", &o.channels.count().to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", interpreter.display()))?;
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().expect("stdout is piped"));
        let mut python = Python { child, stdin, stdout };
        match python.line() {
            Ok(line) if line == "ready" => Ok(python),
            _ => Err(format!(
                "{} {} did not start (it needs onnxruntime, Pillow and numpy: \
                 `.venv/bin/python -m pip install pillow numpy`; its error is above)",
                interpreter.display(),
                script.display()
            )),
        }
    }

    /// The script's next line.
    fn line(&mut self) -> Result<String, String> {
        let mut line = String::new();
        match self.stdout.read_line(&mut line) {
            Ok(0) => Err("baseline.py exited".to_string()),
            Ok(_) => Ok(line.trim().to_string()),
            Err(e) => Err(format!("reading from baseline.py: {e}")),
        }
    }

    /// Seconds one run of `what` (`full`, `decode` or `inference`) took in Python.
    fn time(&mut self, what: &str) -> Result<f64, String> {
        let stdin = self.stdin.as_mut().expect("stdin is open until drop");
        writeln!(stdin, "{what}")
            .and_then(|()| stdin.flush())
            .map_err(|e| format!("writing to baseline.py: {e}"))?;
        let line = self.line()?;
        line.parse()
            .map_err(|_| format!("baseline.py answered `{line}` to `{what}`"))
    }
}

impl Drop for Python {
    fn drop(&mut self) {
        // End of input ends the script.
        drop(self.stdin.take());
        let _ = self.child.wait();
    }
}

/// Seconds `f` takes.
fn time(f: impl FnOnce()) -> f64 {
    let start = Instant::now();
    f();
    start.elapsed().as_secs_f64()
}

/// Timings of one round of alternating runs, in seconds, in the order of [`LABELS`].
type Round = [Option<f64>; 6];

/// What each slot of a [`Round`] measures.
const LABELS: [&str; 6] = [
    "Rust decode+resize",
    "Rust inference",
    "Rust full",
    "Python decode+resize",
    "Python inference",
    "Python full",
];

/// The benchmark; an error says what is missing or what failed.
fn run() -> Result<(), String> {
    let o = Options::parse()?;
    let target = target_dir();
    let cache = target.join("bench-throughput");
    let paths = photo_folder(&cache, o.photos)?;
    let folder = paths[0].parent().expect("photos live in a folder").to_path_buf();
    let model = common::models::untrained_model(&cache, INPUT, o.channels == Channels::Gray);
    let n = paths.len();
    let recipe = Recipe::for_input(INPUT, o.channels);
    let limits = Limits::default();
    let load = |i: usize| std::fs::read(&paths[i]).map_err(swipebot::vision::error::PhotoError::Read);
    let per_input = recipe.input_len();

    println!(
        "throughput: {n} photos {WIDTH}x{HEIGHT} JPEG q{QUALITY} in {}",
        folder.display()
    );
    println!(
        "model {} ({} {INPUT}), batch {}, decode threads {}, {} cores; median of {} alternating \
         Rust/Python rounds after {} warm-up",
        model.display(),
        match o.channels {
            Channels::Gray => "grayscale",
            Channels::Rgb => "RGB",
        },
        o.batch,
        o.decode_threads,
        std::thread::available_parallelism().map_or(1, |c| c.get()),
        o.repeats,
        o.warmup,
    );

    let decode_all = |out: &mut Vec<f32>| {
        out.clear();
        for i in 0..n {
            let bytes = load(i).expect("photo readable");
            preprocess::prepare(&bytes, &recipe, &limits, out).expect("photo decodes");
        }
    };
    let mut tensors = Vec::with_capacity(n * per_input);
    decode_all(&mut tensors);
    let mut scratch = Vec::with_capacity(n * per_input);

    let mut best: Option<(usize, f64)> = None;
    for &threads in &o.threads {
        let options = ScorerOptions {
            intra_threads: threads,
            ..ScorerOptions::default()
        };
        let mut scorer = Scorer::load(&model, &options).map_err(|e| e.to_string())?;
        let mut python = if o.python {
            Some(Python::start(&model, &folder, threads, &o)?)
        } else {
            None
        };
        let mut round = || -> Result<Round, String> {
            let mut r: Round = [None; 6];
            r[0] = Some(time(|| decode_all(&mut scratch)));
            r[1] = Some(time(|| {
                for batch in tensors.chunks(o.batch * per_input) {
                    scorer.score(batch).expect("inference runs");
                }
            }));
            r[2] = Some(time(|| {
                let results = score_all(&mut scorer, n, load, o.batch, o.decode_threads).expect("inference runs");
                assert!(results.iter().all(Result::is_ok), "every photo scores");
            }));
            if let Some(py) = python.as_mut() {
                r[3] = Some(py.time("decode")?);
                r[4] = Some(py.time("inference")?);
                r[5] = Some(py.time("full")?);
            }
            Ok(r)
        };
        for _ in 0..o.warmup {
            round()?;
        }
        let rounds = (0..o.repeats).map(|_| round()).collect::<Result<Vec<_>, _>>()?;
        let rate = |slot: usize| -> Option<f64> {
            let times: Option<Vec<f64>> = rounds.iter().map(|r| r[slot]).collect();
            times.map(|t| n as f64 / median(t))
        };
        let rates: Vec<Option<f64>> = (0..LABELS.len()).map(rate).collect();
        let show = |slot: usize| rates[slot].map_or("-".to_string(), |r| format!("{r:7.2}"));
        println!("-- ONNX Runtime intra-op threads: {threads}");
        println!(
            "decode+resize only, 1 thread: Rust {} photos/s, Python {} photos/s",
            show(0),
            show(3)
        );
        println!(
            "(b) Rust pure inference:       {} photos/s   (Python inference only {})",
            show(1),
            show(4)
        );
        println!("(a) Rust decode+resize+score:  {} photos/s", show(2));
        println!("(c) Python Pillow+onnxruntime: {} photos/s", show(5));
        let (full, inference) = (rates[2].expect("timed"), rates[1].expect("timed"));
        let mut line = format!("(a)/(b) = {:.3} (target >= 0.9)", full / inference);
        if let Some(py) = rates[5] {
            line = format!("(a)/(c) = {:.3} (target >= 1.1)   {line}", full / py);
        }
        println!("{line}");
        if best.is_none_or(|(_, f)| full > f) {
            best = Some((threads, full));
        }
    }
    if let Some((threads, full)) = best {
        println!("best (a): {full:.2} photos/s with {threads} intra-op thread(s)");
    }
    Ok(())
}

fn main() {
    if let Err(e) = run() {
        eprintln!("throughput: {e}");
        std::process::exit(1);
    }
}
