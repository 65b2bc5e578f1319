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
//! The photos and the untrained model (`train --epochs 0`) are cached under
//! `target/bench-throughput/`. The Python side is `benches/baseline.py`, run with the interpreter
//! of the project's virtual environment (`$VIRTUAL_ENV` or `.venv`), which needs Pillow and numpy.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::Instant;

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
    photos: usize,
    threads: Vec<usize>,
    batch: usize,
    decode_threads: usize,
    repeats: usize,
    warmup: usize,
    channels: Channels,
    python: bool,
}

impl Options {
    fn parse() -> Result<Self, String> {
        let mut o = Options {
            photos: 48,
            threads: vec![1, 2],
            batch: 8,
            decode_threads: 1,
            repeats: 5,
            warmup: 1,
            channels: Channels::Gray,
            python: true,
        };
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            let mut value = |name: &str| args.next().ok_or(format!("{name} needs a value"));
            let number = |name: &str, v: String| {
                v.parse::<usize>()
                    .ok()
                    .filter(|&n| n > 0)
                    .ok_or(format!("{name}: `{v}` is not a positive number"))
            };
            match arg.as_str() {
                // Passed by `cargo bench` to every bench target.
                "--bench" => {}
                "--photos" => o.photos = number("--photos", value("--photos")?)?,
                "--batch" => o.batch = number("--batch", value("--batch")?)?,
                "--decode-threads" => o.decode_threads = number("--decode-threads", value("--decode-threads")?)?,
                "--repeats" => o.repeats = number("--repeats", value("--repeats")?)?,
                "--warmup" => {
                    let v = value("--warmup")?;
                    o.warmup = v.parse().map_err(|_| format!("--warmup: `{v}`"))?
                }
                "--threads" => {
                    o.threads = value("--threads")?
                        .split(',')
                        .map(|t| number("--threads", t.trim().to_string()))
                        .collect::<Result<_, _>>()?
                }
                "--rgb" => o.channels = Channels::Rgb,
                "--gray" | "--grayscale" => o.channels = Channels::Gray,
                "--no-python" => o.python = false,
                "-h" | "--help" => {
                    println!(
                        "cargo bench --bench throughput -- [--photos N] [--threads 1,2] [--batch N] \
                         [--decode-threads N] [--repeats N] [--warmup N] [--rgb] [--no-python]"
                    );
                    std::process::exit(0);
                }
                other => return Err(format!("unknown option `{other}` (see --help)")),
            }
        }
        Ok(o)
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

/// The `train` binary, from `$SWIPEBOT_TRAIN` or any usual target folder.
fn train_binary(target: &Path) -> Result<PathBuf, String> {
    if let Some(path) = std::env::var_os("SWIPEBOT_TRAIN") {
        return Ok(PathBuf::from(path));
    }
    let manifest_target = Path::new(env!("CARGO_MANIFEST_DIR")).join("target");
    [target, manifest_target.as_path()]
        .iter()
        .flat_map(|t| ["release", "debug"].map(|p| t.join(p).join("train")))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            "the `train` binary was not found in target/release or target/debug; build it with \
             `cargo build -p swipebot-train` (or point SWIPEBOT_TRAIN at it)"
                .to_string()
        })
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

/// Exports an untrained 224 model with `train --epochs 0` unless one is cached.
fn model(cache: &Path, target: &Path, channels: Channels) -> Result<PathBuf, String> {
    let name = match channels {
        Channels::Gray => "gray",
        Channels::Rgb => "rgb",
    };
    let path = cache.join(format!("model-{name}-{INPUT}.onnx"));
    if path.is_file() {
        return Ok(path);
    }
    let train = train_binary(target)?;
    let data = tempfile::tempdir().map_err(|e| e.to_string())?;
    swipebot_core::synth::write_dataset(data.path(), 4, 64, 7).map_err(|e| e.to_string())?;
    let mut cmd = Command::new(&train);
    cmd.arg("--data").arg(data.path()).arg("--out").arg(&path).args([
        "--epochs",
        "0",
        "--input-size",
        &INPUT.to_string(),
    ]);
    if channels == Channels::Gray {
        cmd.arg("--grayscale");
    }
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run {}: {e}", train.display()))?;
    if !out.status.success() || !path.is_file() {
        return Err(format!(
            "{} failed: {}",
            train.display(),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(path)
}

/// The Python interpreter of the project's virtual environment.
fn python() -> PathBuf {
    let venv = std::env::var_os("VIRTUAL_ENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv"));
    let candidate = venv.join("bin").join("python");
    if candidate.is_file() {
        candidate
    } else {
        PathBuf::from("python3")
    }
}

/// `benches/baseline.py --serve`: a Python process with its own session and photos that times one
/// run per request, so that Rust and Python runs can alternate under the same machine load.
struct Python {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
}

impl Python {
    fn start(model: &Path, photos: &Path, threads: usize, o: &Options) -> Result<Self, String> {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/baseline.py");
        let interpreter = python();
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

/// Median of some durations, in seconds.
fn median(mut times: Vec<f64>) -> f64 {
    times.sort_by(f64::total_cmp);
    let n = times.len();
    if n % 2 == 1 {
        times[n / 2]
    } else {
        (times[n / 2 - 1] + times[n / 2]) / 2.0
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

fn run() -> Result<(), String> {
    let o = Options::parse()?;
    let target = target_dir();
    let cache = target.join("bench-throughput");
    let paths = photo_folder(&cache, o.photos)?;
    let folder = paths[0].parent().expect("photos live in a folder").to_path_buf();
    let model = model(&cache, &target, o.channels)?;
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
