//! Training throughput of the GoogLeNet in Rust (tch) against PyTorch in Python, side by side: the
//! same libtorch build (the `torch` wheel), network, input size, batch, thread count, loss and
//! optimizer, in fp32 and in mixed precision (bf16 against PyTorch's CPU autocast, when the CPU
//! computes bf16 natively); both sides in the original's LRN layout, and the Rust step also in the
//! default recipe's batch-normalised one (`--norm batch`). Also the data pipeline's own rates:
//! decoding into the cache and assembling batches.
//!
//! `cargo bench -p swipebot-train --bench train_throughput [-- SIZE [ITERS [BATCH]]]`
//! (defaults 112, 10, 32). Not a timed test: it prints figures for the README.

#[path = "../tests/common/mod.rs"]
mod common;

use std::process::Command;
use std::time::Instant;

use common::bench::BenchArgs;
use rand::rngs::StdRng;
use rand::SeedableRng;
use swipebot_core::preprocess::{Channels, Limits, Recipe};
use swipebot_train::data::{self, Sample};
use swipebot_train::googlenet::Norm;
use swipebot_train::mixed::{self, TrainPrecision};
use swipebot_train::model::{GoogLeNet, NetShape};
use swipebot_train::optimizer::Update;
use swipebot_train::sgd::Sgd;
use swipebot_train::training;
use tch::{nn, Device, Kind, Tensor};

/// The benchmark's settings from the command line: input size, timed iterations, batch size.
fn settings() -> Result<(usize, usize, usize), String> {
    let args = BenchArgs::parse(
        "cargo bench -p swipebot-train --bench train_throughput [-- SIZE [ITERS [BATCH]]]",
        &[],
        &[],
    )?;
    Ok((
        args.positional(0, 112, 1)?,
        args.positional(1, 10, 1)?,
        args.positional(2, 32, 1)?,
    ))
}

fn main() {
    let (size, iters, batch) = settings().unwrap_or_else(|e| {
        eprintln!("train_throughput: {e}");
        std::process::exit(1);
    });
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    tch::set_num_threads(threads as i32);
    let recipe = Recipe::for_input(size as u32, Channels::Rgb);
    println!(
        "GoogLeNet training step, input {size}x{size}x3, batch {batch}, {threads} threads, {iters} timed iterations"
    );

    // Data pipeline: decode a synthetic folder into squares (all cores), then assemble batches.
    let dir = tempfile::tempdir().unwrap();
    swipebot_core::synth::write_dataset(dir.path(), 64, 320, 1).unwrap();
    let files = data::scan(dir.path()).unwrap();
    let t = Instant::now();
    let dataset = data::load(&files, &recipe, &Limits::default(), threads);
    let decode = files.len() as f64 / t.elapsed().as_secs_f64();
    let samples: Vec<&Sample> = dataset.samples.iter().collect();
    let mut rng = StdRng::seed_from_u64(1);
    let t = Instant::now();
    let mut assembled = 0;
    while t.elapsed().as_secs_f64() < 1.0 {
        let (x, _) = training::batch(
            &samples[..batch.min(samples.len())],
            &recipe,
            Some(&mut rng),
            Device::Cpu,
        );
        assembled += x.size()[0] as usize;
    }
    let assemble = assembled as f64 / t.elapsed().as_secs_f64();
    println!("data pipeline: decode+resize {decode:.0} images/s ({threads} threads), batch assembly from the cache {assemble:.0} images/s (one thread)");

    // Rust: the training step `train` runs (batches come from another thread, so they cost nothing
    // here), in the original LRN layout, as the PyTorch side has it, unless `norm` says otherwise.
    let x = Tensor::rand([batch as i64, 3, size as i64, size as i64], (Kind::Float, Device::Cpu)) * 255.0;
    let y = Tensor::randint(2, [batch as i64], (Kind::Int64, Device::Cpu));
    let rust_in = |precision: TrainPrecision, norm: Norm| {
        tch::manual_seed(0);
        let vs = nn::VarStore::new(Device::Cpu);
        let shape = NetShape {
            input_size: size as i64,
            channels: 3,
            classes: 2,
            norm,
        };
        let mut net = GoogLeNet::new(&vs.root(), shape);
        net.set_normalization(&vec![127.0; 3 * size * size], &[1.0 / 64.0; 3]);
        let mut sgd = Sgd::new(&vs, 0.9, 2e-4);
        let mut step = || {
            let loss = training::loss(&net.logits_in(&x, true, precision.kind()), &y, None);
            sgd.backward_step(&loss, 0.01);
            loss.double_value(&[])
        };
        step();
        let t = Instant::now();
        for _ in 0..iters {
            step();
        }
        (iters * batch) as f64 / t.elapsed().as_secs_f64()
    };
    let rust = |precision: TrainPrecision| rust_in(precision, Norm::Lrn);
    let fp32 = rust(TrainPrecision::Fp32);
    println!("{:<32}{fp32:8.2} images/s", "fp32: rust (tch, channels-last)");
    // The default recipe's layout: a batch normalisation after every convolution, no LRN.
    let batch_norm = rust_in(TrainPrecision::Fp32, Norm::Batch);
    println!(
        "{:<32}{batch_norm:8.2} images/s   batch norm / LRN {:5.2}x",
        "fp32: rust, --norm batch",
        batch_norm / fp32
    );
    // The default layout, as a typical script runs it, then channels-last, as `train` runs it.
    for (label, extra) in [
        ("fp32: pytorch", &[][..]),
        ("fp32: pytorch channels-last", &["--channels-last"][..]),
    ] {
        compare(label, fp32, &pytorch(size, iters, batch, threads, extra));
    }

    // Mixed precision, `train`'s default where the CPU computes bf16 natively.
    if !mixed::cpu_has_bf16() {
        println!(
            "bf16 rows left out: this CPU has no native bf16 (AVX512-BF16), where `--precision-train auto` stays fp32"
        );
        return;
    }
    let bf16 = rust(TrainPrecision::Bf16);
    println!(
        "{:<32}{bf16:8.2} images/s   bf16 / fp32 {:5.2}x",
        "bf16: rust (tch, channels-last)",
        bf16 / fp32
    );
    let bf16_batch_norm = rust_in(TrainPrecision::Bf16, Norm::Batch);
    println!(
        "{:<32}{bf16_batch_norm:8.2} images/s   batch norm / LRN {:5.2}x",
        "bf16: rust, --norm batch",
        bf16_batch_norm / bf16
    );
    compare(
        "bf16: pytorch autocast, c-l",
        bf16,
        &pytorch(size, iters, batch, threads, &["--channels-last", "--bf16"]),
    );
}

/// Runs `benches/train_baseline.py` (same wheel) with `extra` flags; its images/s or why not.
fn pytorch(size: usize, iters: usize, batch: usize, threads: usize, extra: &[&str]) -> Result<f64, String> {
    let out = Command::new(common::paths::python())
        .arg(common::paths::repo_root().join("benches/train_baseline.py"))
        .args(["--size", &size.to_string(), "--batch", &batch.to_string()])
        .args(["--iters", &iters.to_string(), "--threads", &threads.to_string()])
        .args(extra)
        .output()
        .map_err(|e| format!("running the PyTorch baseline: {e}"))?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("pytorch images/s "))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| String::from_utf8_lossy(&out.stderr).into_owned())
}

/// Prints a baseline's row with Rust's rate over it.
fn compare(label: &str, rust: f64, torch: &Result<f64, String>) {
    match torch {
        Ok(torch) => println!("{label:<32}{torch:8.2} images/s   rust / this {:5.2}x", rust / torch),
        Err(e) => println!("{label}: baseline failed: {e}"),
    }
}
