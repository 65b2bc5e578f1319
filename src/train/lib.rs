//! `train`: from a folder of `like/` and `nope/` images to the ONNX model the daemon loads.
//!
//! A package of its own (`swipebot-train`), so the daemon never links libtorch. One concern a file:
//! [`args`] (the command line), [`data`] (folder to decoded samples), [`cache`] (the binary dataset
//! cache), [`settings`] (the run's identity, which `--resume` checks), [`googlenet`] (the layer
//! list), [`model`] (the libtorch module), [`recipe`] (schedule, augmentation, label smoothing and
//! early stopping), [`augment`] (photo augmentation), [`training`] (the loop, as
//! [`training::Fit`]), [`optimizer`] ([`sgd`] or [`adam`]), [`checkpoint`] (resume), [`init`] (weights
//! from an earlier model, `--init`), [`calibrate`] (temperature and threshold), [`profiles`] (simulated
//! profiles for the daemon's any-photo rule), [`verdict`] (warnings about a model not worth
//! deploying), [`export`] (ONNX), [`outputs`] (the files' names, after the model's), [`report`]
//! (metrics, curves and the report) and `console` (what stderr shows); for int8 models [`precision`]
//! (calibration, gate), [`ranges`] (activation ranges), [`quantize`] (the QDQ graph) and [`interpret`]
//! (the graph run in libtorch). This file runs them in order.

pub mod adam;
pub mod args;
pub mod augment;
pub mod cache;
pub mod calibrate;
pub mod checkpoint;
mod console;
pub mod data;
pub mod export;
pub mod googlenet;
pub mod init;
pub mod interpret;
pub mod mixed;
pub mod model;
pub mod optimizer;
pub mod outputs;
pub mod precision;
pub mod profiles;
pub mod quantize;
pub mod ranges;
pub mod recipe;
pub mod report;
pub mod settings;
pub mod sgd;
pub mod training;
pub mod verdict;

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context};
use tch::nn::VarStore;

pub use args::Args;
use checkpoint::{Checkpoint, State};
use data::{Dataset, Sample};
use model::{GoogLeNet, NetShape};
use optimizer::Optimizer;
use outputs::Outputs;
use report::{DatasetReport, Files, Report};
use settings::RunSettings;
use swipebot_core::model_info::{ModelInfo, CLASSES};
use swipebot_core::preprocess::{Limits, Recipe};
use training::{Fit, FitEnd};

/// How a run of `train` ended (the binary exits 130 when interrupted); `outcome` in the report.
#[derive(Debug, Clone, Copy, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// Every epoch ran and the best one was exported.
    Completed,
    /// Ctrl-C: a checkpoint was written and the best model so far exported.
    Interrupted,
    /// `--stop-after-epochs` ended it early: checkpoint written, best model so far exported.
    Paused,
    /// The validation loss stopped improving (`--patience`): the best epoch was exported.
    #[serde(rename = "early_stopped")]
    EarlyStopped,
}

/// The decoded dataset and where it came from.
struct Loaded {
    /// The usable images and the skipped files.
    dataset: Dataset,
    /// Fingerprint of the scanned files and the preprocessing (part of the run's settings).
    fingerprint: String,
    /// The cache file the squares were read from or written to.
    cache_file: PathBuf,
    /// Whether that cache was reused or built.
    cache_status: cache::CacheStatus,
}

/// Runs `train` with parsed arguments.
pub fn run(args: Args) -> anyhow::Result<Outcome> {
    args.validate()?;
    let outputs = Outputs::for_model(&args.out);
    outputs.check()?;
    if let Some(source) = args.quantize.clone() {
        quantize_only(&args, &source, &outputs)?;
        return Ok(Outcome::Completed);
    }
    let device = args.device()?;
    if device.is_cuda() {
        // cuDNN picks the fastest convolution algorithm for each shape (fixed here) once.
        tch::Cuda::cudnn_set_benchmark(true);
    }
    let threads = args.threads();
    tch::set_num_threads(threads as i32);
    tch::manual_seed(args.seed as i64);
    let recipe = args.recipe();
    let profile_sizes = args.profile_sizes()?;

    let loaded = load(&args, &recipe, threads)?;
    let (train, val) = split(&args, &loaded.dataset)?;

    // The network, normalised on the training split, and the state the run starts from. A model
    // to fine-tune brings its own layout.
    let norm = match &args.init {
        Some(path) => init::norm_of(path, args.norm)?,
        None => args.norm(),
    };
    let shape = NetShape {
        input_size: i64::from(args.input_size),
        channels: recipe.channels.count() as i64,
        classes: CLASSES.len() as i64,
        norm,
    };
    let mut vs = VarStore::new(device);
    let mut net = GoogLeNet::new(&vs.root(), shape);
    let (mean, scale) = data::normalization(&train, &recipe);
    net.set_normalization(&mean, &scale);
    // Fine-tuning: the earlier model's weights, normalisation included, replace the fresh ones.
    let initial = match &args.init {
        Some(path) => {
            let initial = init::load_into(&mut vs, path, args.input_size, recipe.channels.count())?;
            eprintln!(
                "starting from the weights of {} ({} variables, SHA-256 {})",
                path.display(),
                initial.variables,
                &initial.sha256[..12]
            );
            Some((path.clone(), initial))
        }
        None => None,
    };
    let train_labels: Vec<usize> = train.iter().map(|s| s.label).collect();
    let hyper = args.hyper(&train_labels);
    let mut sgd = Optimizer::new(hyper.optimizer, &vs, hyper.momentum, hyper.weight_decay);
    let ckpt = Checkpoint::for_model(&args.out);
    let settings = RunSettings {
        norm,
        ..RunSettings::new(&args, &recipe, &loaded.fingerprint)
    };
    let mut state = start(&args, &ckpt, settings, &mut vs, &mut sgd)?;

    let precision = mixed::resolve(args.precision_train, device);
    let mut outcome = Outcome::Completed;
    if args.epochs > 0 {
        if let Some(warning) = &precision.warning {
            eprintln!("warning: {warning}");
        }
        eprintln!(
            "training on {} images, validating on {} ({device:?}, {threads} threads, input {}x{}, batch {}, recipe {}, \
             norm {norm}, {} steps ({}))",
            train.len(),
            val.len(),
            args.input_size,
            args.input_size,
            hyper.batch_size,
            args.recipe,
            precision.precision,
            precision.why
        );
        let stop = ctrl_c_flag()?;
        let fit = Fit {
            vs: &vs,
            net: &net,
            train: &train,
            val: &val,
            recipe: &recipe,
            hyper: &hyper,
            checkpoint: &ckpt,
            stop: &stop,
            stop_after: args.stop_after_epochs,
            precision: precision.precision,
        };
        let end = fit.run(&mut sgd, &mut state, &mut console::Console::new())?;
        outcome = ended(end, &state, &ckpt, hyper.patience);
    } else {
        // An untrained model still gets the statistics of its batch normalisations: without them
        // every layer passes its input through unnormalised and every photo scores about 0.5.
        training::measure_statistics(&net, &train, &recipe, hyper.batch_size, args.seed, device);
    }

    // Calibration on the validation split, with the weights of the best epoch (fit restored them).
    let (logits, like): (Vec<[f32; 2]>, Vec<bool>) = if args.epochs > 0 {
        let logits = training::predict_logits(&net, &val, &recipe, hyper.batch_size, device);
        (logits, val.iter().map(|s| CLASSES[s.label] == "like").collect())
    } else {
        (Vec::new(), Vec::new())
    };
    let choice = calibrate::ThresholdChoice {
        policy: args.threshold_policy(),
        fixed: args.threshold,
        sizes: &profile_sizes,
        seed: args.seed,
    };
    let (calibration, threshold) = calibrate::calibrate(&logits, &like, choice);

    let info = ModelInfo {
        input_size: args.input_size,
        recipe,
        classes: CLASSES.iter().map(|c| c.to_string()).collect(),
        threshold: threshold.value,
        temperature: calibration.temperature as f32,
        trained_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        dataset: loaded.dataset.describe_counts(),
    };
    let mut fp32 = export::build_model(&vs, shape, &info)?;
    if let Some((path, initial)) = &initial {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        fp32.metadata_props.push(onnx_protobuf::StringStringEntryProto {
            key: swipebot_core::model_info::keys::INIT_FROM.to_string(),
            value: format!("{} {name}", initial.sha256),
            ..Default::default()
        });
    }
    let (model_sha256, quantization) = match args.int8() {
        None => (precision::write(&fp32, &outputs.model), None),
        Some(settings) => {
            let calibration = precision::calibration_images(&train, settings.calibration_images);
            let (int8, q) = precision::to_int8(&fp32, &info, &calibration, &val, settings)?;
            (precision::write(&int8, &outputs.model), Some(q))
        }
    };
    let model_sha256 = model_sha256.with_context(|| format!("exporting to {}", outputs.model.display()))?;
    eprintln!("wrote {}", outputs.model.display());
    if args.epochs == 0 {
        return Ok(outcome);
    }

    // The files next to the model, named after it.
    let files = Files {
        metrics: outputs.metrics.clone(),
        curves: outputs.curves.clone(),
        checkpoint: ckpt.dir().to_path_buf(),
    };
    report::write_metrics_csv(&files.metrics, &state.history)?;
    if !report::write_curves(&files.curves, &state.history)? {
        eprintln!("note: no TrueType font found, {} has no labels", files.curves.display());
    }
    let dataset = DatasetReport {
        folder: args.data.clone(),
        counts: CLASSES
            .iter()
            .map(|c| c.to_string())
            .zip(loaded.dataset.counts())
            .collect(),
        train: train.len(),
        validation: val.len(),
        skipped: loaded.dataset.skipped.clone(),
        cache: loaded.cache_file.clone(),
        cache_status: loaded.cache_status,
    };
    let report = Report {
        model: outputs.model.clone(),
        model_sha256,
        outcome,
        dataset,
        best_epoch: state
            .best
            .and_then(|b| state.history.iter().find(|r| r.epoch == b.epoch).copied()),
        epochs_run: state.history.len(),
        training_images_per_second: report::mean_images_per_second(&state.history),
        training_precision: precision.precision.name().to_string(),
        settings: state.settings,
        warnings: verdict::warnings(&threshold, &like),
        calibration,
        threshold,
        files,
        quantization,
    };
    report::write_json(&outputs.report, &report)?;
    console::summary(&report, &outputs.report);
    Ok(outcome)
}

/// `train --quantize SOURCE`: the fp32 model at `source` to int8 at `--out`, calibrated and gated on
/// `--data` split as training splits it, with its report next to it.
fn quantize_only(args: &Args, source: &std::path::Path, outputs: &Outputs) -> anyhow::Result<()> {
    let settings = args.int8().expect("--quantize means int8");
    let (fp32, info) = precision::read_model(source)?;
    let threads = args.threads();
    tch::set_num_threads(threads as i32);
    let loaded = load(args, &info.recipe, threads)?;
    let (train, val) = split(args, &loaded.dataset)?;
    let calibration = precision::calibration_images(&train, settings.calibration_images);
    let (int8, quantization) = precision::to_int8(&fp32, &info, &calibration, &val, settings)?;
    let model_sha256 = precision::write(&int8, &outputs.model)?;
    eprintln!(
        "wrote {}: {} of {} validation decisions flipped, accuracy {:.2}% (fp32 {:.2}%)",
        outputs.model.display(),
        quantization.flips,
        quantization.validation_photos,
        100.0 * quantization.int8_accuracy,
        100.0 * quantization.fp32_accuracy
    );
    let report = precision::QuantizeOnlyReport {
        model: outputs.model.clone(),
        model_sha256,
        source_model: source.to_path_buf(),
        quantization,
    };
    let bytes = serde_json::to_vec_pretty(&report)?;
    swipebot_core::fsutil::write_atomic(&outputs.report, &bytes)
        .with_context(|| format!("writing {}", outputs.report.display()))
}

/// Scans `--data` and reads the squares from the cache, or decodes them on `threads` threads and
/// writes the cache; says on stderr which, and what was skipped.
fn load(args: &Args, recipe: &Recipe, threads: usize) -> anyhow::Result<Loaded> {
    let limits = Limits::default();
    let files = data::scan(&args.data)?;
    let cache_dir = args.cache.clone().unwrap_or_else(|| args.data.join(cache::DEFAULT_DIR));
    let cache_file = cache::file_for(&cache_dir, recipe);
    let started = Instant::now();
    let (dataset, cache_status) = cache::load_or_build(&cache_file, &files, recipe, &limits, threads)?;
    let seconds = started.elapsed().as_secs_f64();
    console::dataset(&dataset, files.len(), cache_status, &cache_file, seconds, threads);
    Ok(Loaded {
        dataset,
        fingerprint: cache::fingerprint(&files, recipe, &limits),
        cache_file,
        cache_status,
    })
}

/// The seeded stratified split into training and validation images; training needs every class.
fn split<'d>(args: &Args, dataset: &'d Dataset) -> anyhow::Result<(Vec<&'d Sample>, Vec<&'d Sample>)> {
    let labels: Vec<usize> = dataset.samples.iter().map(|s| s.label).collect();
    let (train_idx, val_idx) = training::split(&labels, args.val_fraction, args.seed);
    let train: Vec<&Sample> = train_idx.iter().map(|&i| &dataset.samples[i]).collect();
    let val: Vec<&Sample> = val_idx.iter().map(|&i| &dataset.samples[i]).collect();
    if args.epochs > 0 && (train.is_empty() || dataset.counts().contains(&0)) {
        bail!(
            "cannot train: every class needs images (found {})",
            dataset.describe_counts()
        );
    }
    Ok((train, val))
}

/// The state the run starts from: with `--resume`, the checkpoint's (which must have been made with
/// `settings`), its weights and momentum loaded into `vs` and `sgd`; otherwise a fresh one.
fn start(
    args: &Args,
    ckpt: &Checkpoint,
    settings: RunSettings,
    vs: &mut VarStore,
    sgd: &mut Optimizer,
) -> anyhow::Result<State> {
    if args.resume {
        let state = ckpt.load_state(&settings)?;
        ckpt.load_weights(vs, sgd)?;
        eprintln!(
            "resuming from {} at epoch {}, step {}",
            ckpt.dir().display(),
            state.epoch + 1,
            state.step
        );
        return Ok(state);
    }
    if ckpt.exists() && args.epochs > 0 {
        eprintln!(
            "starting afresh: overwriting the checkpoint in {} (use --resume to continue it)",
            ckpt.dir().display()
        );
    }
    Ok(State::new(settings))
}

/// A flag the first Ctrl-C raises (the loop then checkpoints at the next step); a second Ctrl-C
/// exits at once with code 130.
fn ctrl_c_flag() -> anyhow::Result<Arc<AtomicBool>> {
    let stop = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register_conditional_shutdown(signal_hook::consts::SIGINT, 130, Arc::clone(&stop))?;
    signal_hook::flag::register(signal_hook::consts::SIGINT, Arc::clone(&stop))?;
    Ok(stop)
}

/// The run's outcome for how the loop ended, said on stderr when it stopped early.
fn ended(end: FitEnd, state: &State, ckpt: &Checkpoint, patience: usize) -> Outcome {
    match end {
        FitEnd::Completed => Outcome::Completed,
        FitEnd::EarlyStopped => {
            eprintln!(
                "stopped after epoch {}: the validation loss has not improved for {patience} epochs at half the peak \
                 learning rate or less (--patience)",
                state.epoch
            );
            Outcome::EarlyStopped
        }
        FitEnd::Interrupted => {
            eprintln!(
                "interrupted at epoch {}, step {}: checkpoint in {}; continue with --resume",
                state.epoch + 1,
                state.step,
                ckpt.dir().display()
            );
            Outcome::Interrupted
        }
        FitEnd::Paused => {
            eprintln!(
                "stopped after epoch {} as asked: checkpoint in {}; continue with --resume",
                state.epoch,
                ckpt.dir().display()
            );
            Outcome::Paused
        }
    }
}

/// The tests' helpers for child processes, shared with the integration tests.
#[cfg(test)]
#[allow(dead_code)]
#[path = "../../tests/common/process.rs"]
mod test_process;

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use std::os::unix::fs::PermissionsExt;
    use std::path::Path;

    /// Set in the child process: the dataset folder and the model to train from it, `DATA:MODEL`.
    const CHILD_TRAINS: &str = "SWIPEBOT_TEST_TRAIN_DATA_MODEL";

    /// Trains `model` for one epoch on `data` in a child process (this very test, run again) started
    /// under `umask`: the umask is process-wide, so the process running the tests keeps its own.
    fn train_in_child_under(umask: &str, data: &Path, model: &Path) {
        let name = format!(
            "{}::two_models_in_one_folder_keep_their_own_files_with_the_umask_mode",
            module_path!()
        );
        let name = name.split_once("::").map_or(name.as_str(), |(_, rest)| rest);
        let job = format!("{}:{}", data.display(), model.display());
        super::test_process::rerun_test_under_umask(name, umask, (CHILD_TRAINS, job.as_ref()));
    }

    /// The permission bits of `path`.
    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    /// Two models trained into one folder keep their own metrics, curves, report and checkpoint;
    /// each report carries the SHA-256 of its own model file (the daemon's `model_sha256`); every
    /// file gets the mode the umask allows (0644 under 022, 0600 under 077), so a model trained by
    /// one user can be read by another when the umask says so.
    #[test]
    fn two_models_in_one_folder_keep_their_own_files_with_the_umask_mode() {
        if let Some(job) = std::env::var_os(CHILD_TRAINS) {
            let job = job.into_string().unwrap();
            let (data, model) = job.split_once(':').unwrap();
            let seed = if model.ends_with("a.onnx") { "1" } else { "2" };
            let args = Args::parse_from([
                "train",
                "--data",
                data,
                "--out",
                model,
                "--input-size",
                "32",
                "--grayscale",
                "--epochs",
                "1",
                "--batch-size",
                "4",
                "--threads",
                "1",
                "--seed",
                seed,
            ]);
            run(args).unwrap();
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        swipebot_core::synth::write_dataset(&data, 6, 40, 3).unwrap();
        let folder = dir.path().join("models");
        let (a, b) = (folder.join("a.onnx"), folder.join("b.onnx"));
        train_in_child_under("022", &data, &a);
        train_in_child_under("077", &data, &b);

        let mut reports = Vec::new();
        for (model, file_mode, dir_mode) in [(&a, 0o644, 0o755), (&b, 0o600, 0o700)] {
            let outputs = Outputs::for_model(model);
            for file in [&outputs.model, &outputs.metrics, &outputs.curves, &outputs.report] {
                assert_eq!(mode(file), file_mode, "{}: {:o}", file.display(), mode(file));
            }
            assert_eq!(mode(&outputs.checkpoint), dir_mode, "{}", outputs.checkpoint.display());
            let state = outputs.checkpoint.join("state.json");
            assert_eq!(mode(&state), file_mode, "{}: {:o}", state.display(), mode(&state));

            let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&outputs.report).unwrap()).unwrap();
            let bytes = std::fs::read(model).unwrap();
            assert_eq!(
                report["model_sha256"].as_str(),
                Some(swipebot_core::model_info::sha256_hex(&bytes).as_str()),
                "{}",
                outputs.report.display()
            );
            assert_eq!(report["model"].as_str(), model.to_str());
            assert_eq!(report["files"]["metrics"].as_str(), outputs.metrics.to_str());
            assert_eq!(report["files"]["checkpoint"].as_str(), outputs.checkpoint.to_str());
            let rows = std::fs::read_to_string(&outputs.metrics).unwrap().lines().count();
            assert_eq!(rows, 2, "header and one epoch in {}", outputs.metrics.display());
            reports.push(report);
        }
        assert_ne!(reports[0]["model_sha256"], reports[1]["model_sha256"]);
        assert_eq!(reports[0]["settings"]["seed"], 1, "a's report is a's");
        assert_eq!(reports[1]["settings"]["seed"], 2, "b's report is b's");
        let mut names: Vec<String> = std::fs::read_dir(&folder)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        let expected = [
            "a.checkpoint",
            "a.curves.png",
            "a.metrics.csv",
            "a.onnx",
            "a.report.json",
            "b.checkpoint",
            "b.curves.png",
            "b.metrics.csv",
            "b.onnx",
            "b.report.json",
        ];
        assert_eq!(names, expected);
    }
}
