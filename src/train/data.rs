//! The training data: a folder of `like/` and `nope/` images, decoded once into squares with the
//! shared preprocessing, split into training and validation, and turned into batches.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

use swipebot_core::model_info::CLASSES;
use swipebot_core::preprocess::{self, Limits, Recipe};

/// Extensions the dataset scan picks up (case-insensitive).
const EXTENSIONS: [&str; 5] = ["jpg", "jpeg", "png", "webp", "jfif"];

/// One decoded training image: its square pixels (HWC bytes) and class index.
#[derive(Debug)]
pub struct Sample {
    /// Interleaved pixels of the `square` x `square` image.
    pub pixels: Vec<u8>,
    /// Index into [`CLASSES`].
    pub label: usize,
    /// Where it came from, for reports.
    pub path: PathBuf,
}

/// A file that could not be used, and why.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Skipped {
    /// The file.
    pub path: PathBuf,
    /// What went wrong.
    pub reason: String,
}

/// The decoded dataset and what was skipped on the way.
#[derive(Debug, Default)]
pub struct Dataset {
    /// Usable images, in scan order (sorted paths, classes in [`CLASSES`] order).
    pub samples: Vec<Sample>,
    /// Unreadable, corrupt or empty files.
    pub skipped: Vec<Skipped>,
}

impl Dataset {
    /// Images per class, in [`CLASSES`] order.
    pub fn counts(&self) -> Vec<usize> {
        let mut counts = vec![0; CLASSES.len()];
        for s in &self.samples {
            counts[s.label] += 1;
        }
        counts
    }

    /// Counts as written in the model metadata: `nope=120,like=80`.
    pub fn describe_counts(&self) -> String {
        CLASSES
            .iter()
            .zip(self.counts())
            .map(|(c, n)| format!("{c}={n}"))
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// Lists the image files of each class folder under `root` (any depth), sorted for determinism.
pub fn scan(root: &Path) -> anyhow::Result<Vec<(PathBuf, usize)>> {
    if !root.is_dir() {
        bail!(
            "data folder {} does not exist: it must hold `like/` and `nope/` sub-folders of images",
            root.display()
        );
    }
    let mut files = Vec::new();
    for (label, class) in CLASSES.iter().enumerate() {
        let dir = root.join(class);
        if !dir.is_dir() {
            bail!(
                "{} is missing: the data folder must hold `like/` and `nope/` sub-folders of images",
                dir.display()
            );
        }
        let mut found = Vec::new();
        walk(&dir, &mut found).with_context(|| format!("listing {}", dir.display()))?;
        found.sort();
        files.extend(found.into_iter().map(|p| (p, label)));
    }
    Ok(files)
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            walk(&path, out)?;
        } else if path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| EXTENSIONS.iter().any(|x| x.eq_ignore_ascii_case(e)))
        {
            out.push(path);
        }
    }
    Ok(())
}

/// Decodes every file into a square with the shared preprocessing, on `threads` threads.
/// Files that fail are reported in [`Dataset::skipped`], never fatal.
pub fn load(files: &[(PathBuf, usize)], recipe: &Recipe, limits: &Limits, threads: usize) -> Dataset {
    let threads = threads.clamp(1, files.len().max(1));
    let next = std::sync::atomic::AtomicUsize::new(0);
    let mut results: Vec<(usize, Result<Vec<u8>, String>)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut done = Vec::new();
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some((path, _)) = files.get(i) else { break };
                        done.push((i, load_one(path, recipe, limits)));
                    }
                    done
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().expect("decoder thread panicked"))
            .collect()
    });
    results.sort_by_key(|(i, _)| *i);
    let mut dataset = Dataset::default();
    for (i, result) in results {
        let (path, label) = &files[i];
        match result {
            Ok(pixels) => dataset.samples.push(Sample {
                pixels,
                label: *label,
                path: path.clone(),
            }),
            Err(reason) => dataset.skipped.push(Skipped {
                path: path.clone(),
                reason,
            }),
        }
    }
    dataset
}

fn load_one(path: &Path, recipe: &Recipe, limits: &Limits) -> Result<Vec<u8>, String> {
    let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
    let image = preprocess::decode(&bytes, limits, recipe.channels).map_err(|e| e.to_string())?;
    Ok(preprocess::square_pixels(&image, recipe))
}

/// Input normalisation measured on the training images: the mean image (centre crop, planar
/// `[C, S, S]`) and one scale per channel (1 / standard deviation of the pixels).
pub fn normalization(samples: &[&Sample], recipe: &Recipe) -> (Vec<f32>, Vec<f32>) {
    let channels = recipe.channels.count();
    let len = recipe.input_len();
    let per_channel = len / channels;
    if samples.is_empty() {
        // Nothing to measure: centre the 0..=255 range and scale it to roughly unit spread.
        return (vec![127.5; len], vec![1.0 / 64.0; channels]);
    }
    let offset = preprocess::centre_offset(recipe);
    let mut sum = vec![0f64; len];
    let mut sq = vec![0f64; channels];
    let mut crop = Vec::with_capacity(len);
    for s in samples {
        crop.clear();
        preprocess::crop_to_tensor(&s.pixels, recipe, offset, offset, false, &mut crop);
        for (i, v) in crop.iter().enumerate() {
            sum[i] += f64::from(*v);
            sq[i / per_channel] += f64::from(*v) * f64::from(*v);
        }
    }
    let n = samples.len() as f64;
    let mean: Vec<f32> = sum.iter().map(|s| (s / n) as f32).collect();
    let scale = (0..channels)
        .map(|c| {
            let m: f64 = sum[c * per_channel..(c + 1) * per_channel].iter().sum::<f64>() / (n * per_channel as f64);
            let var = sq[c] / (n * per_channel as f64) - m * m;
            (1.0 / var.max(1.0).sqrt()) as f32
        })
        .collect();
    (mean, scale)
}
