//! The dataset cache: every image decoded once into its preprocessed square and kept in one compact
//! binary file (what DIGITS does with LMDB), so epochs and later runs never decode a JPEG again.
//!
//! Layout of a cache file: the magic `SWBCACHE`, a little-endian `u64` header length, a JSON header
//! ([`Header`]: format version, fingerprint, square side, channels, the samples' paths and labels, the
//! skipped files and why), then the squares' interleaved `u8` pixels back to back, in header order.
//! The fingerprint covers the sorted file list with each file's label, size and modification time,
//! plus the preprocessing settings and limits: when any of them changes the cache is rebuilt. The file
//! is written atomically and read whole.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

use crate::data::{self, Dataset, Sample, Skipped};
use swipebot_core::preprocess::{Limits, Recipe, FILTER};

/// The first bytes of every cache file.
const MAGIC: &[u8; 8] = b"SWBCACHE";
/// Bumped whenever the layout or the preprocessing code changes meaningfully.
const VERSION: u32 = 2;
/// Name of the default cache folder, inside the data folder (the class scan never looks there).
pub const DEFAULT_DIR: &str = ".swipebot-cache";

/// What the JSON header of a cache file says.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Header {
    version: u32,
    fingerprint: String,
    square: u32,
    channels: usize,
    samples: Vec<(PathBuf, usize)>,
    skipped: Vec<(PathBuf, String)>,
}

/// Whether [`load_or_build`] reused a cache file or had to decode the images.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CacheStatus {
    /// The cache matched the folder and the settings: nothing was decoded.
    Reused,
    /// There was no cache (or it did not match): every image was decoded and the cache written.
    Built,
}

/// 64-bit FNV-1a, stable across builds and platforms (unlike `std`'s hasher).
struct Fnv(u64);

impl Fnv {
    fn new() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
        // A separator, so that ("ab", "c") and ("a", "bc") differ.
        self.0 = (self.0 ^ 0xff).wrapping_mul(0x0100_0000_01b3);
    }
}

/// The fingerprint of a scanned folder under a recipe: sorted file list, labels, sizes, modification
/// times, and every setting that changes the cached pixels.
pub fn fingerprint(files: &[(PathBuf, usize)], recipe: &Recipe, limits: &Limits) -> String {
    let mut h = Fnv::new();
    h.write(&VERSION.to_le_bytes());
    h.write(
        format!(
            "square={} channels={} filter={FILTER} max_bytes={} max_pixels={}",
            recipe.square,
            recipe.channels.count(),
            limits.max_bytes,
            limits.max_pixels
        )
        .as_bytes(),
    );
    for (path, label) in files {
        h.write(path.to_string_lossy().as_bytes());
        h.write(&(*label as u64).to_le_bytes());
        match std::fs::metadata(path) {
            Ok(meta) => {
                h.write(&meta.len().to_le_bytes());
                let mtime = meta
                    .modified()
                    .ok()
                    .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                    .map_or(0, |d| d.as_nanos());
                h.write(&mtime.to_le_bytes());
            }
            Err(_) => h.write(b"unreadable"),
        }
    }
    format!("{:016x}", h.0)
}

/// The cache file for a recipe inside a cache folder: one file per square size and channel mode, so
/// switching between grayscale and RGB does not throw the other away.
pub fn file_for(dir: &Path, recipe: &Recipe) -> PathBuf {
    let mode = if recipe.channels.count() == 1 { "gray" } else { "rgb" };
    dir.join(format!("squares-{}-{mode}.bin", recipe.square))
}

/// Loads the dataset from the cache at `path` when it matches `files` and the settings; otherwise
/// decodes every file (on `threads` threads), writes the cache and returns the fresh dataset.
pub fn load_or_build(
    path: &Path,
    files: &[(PathBuf, usize)],
    recipe: &Recipe,
    limits: &Limits,
    threads: usize,
) -> anyhow::Result<(Dataset, CacheStatus)> {
    let fp = fingerprint(files, recipe, limits);
    if let Ok(Some(dataset)) = read(path, &fp, recipe) {
        return Ok((dataset, CacheStatus::Reused));
    }
    let dataset = data::load(files, recipe, limits, threads);
    write(path, &fp, recipe, &dataset).with_context(|| format!("writing the dataset cache {}", path.display()))?;
    Ok((dataset, CacheStatus::Built))
}

/// Writes `dataset` as a cache file with fingerprint `fp`, atomically.
fn write(path: &Path, fp: &str, recipe: &Recipe, dataset: &Dataset) -> anyhow::Result<()> {
    let header = Header {
        version: VERSION,
        fingerprint: fp.to_string(),
        square: recipe.square,
        channels: recipe.channels.count(),
        samples: dataset.samples.iter().map(|s| (s.path.clone(), s.label)).collect(),
        skipped: dataset
            .skipped
            .iter()
            .map(|s| (s.path.clone(), s.reason.clone()))
            .collect(),
    };
    let json = serde_json::to_vec(&header)?;
    let per = square_len(recipe);
    let mut bytes = Vec::with_capacity(16 + json.len() + per * dataset.samples.len());
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(&(json.len() as u64).to_le_bytes());
    bytes.extend_from_slice(&json);
    for s in &dataset.samples {
        bytes.extend_from_slice(&s.pixels);
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    swipebot_core::fsutil::write_atomic(path, &bytes)?;
    Ok(())
}

fn square_len(recipe: &Recipe) -> usize {
    (recipe.square as usize).pow(2) * recipe.channels.count()
}

/// Reads a cache file; `Ok(None)` when it is absent, stale or was written for other settings.
fn read(path: &Path, fp: &str, recipe: &Recipe) -> anyhow::Result<Option<Dataset>> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    if bytes.len() < 16 || &bytes[..8] != MAGIC {
        return Ok(None);
    }
    let len = u64::from_le_bytes(bytes[8..16].try_into().expect("eight bytes")) as usize;
    let Some(json) = bytes.get(16..16 + len) else {
        return Ok(None);
    };
    let Ok(header) = serde_json::from_slice::<Header>(json) else {
        return Ok(None);
    };
    if header.version != VERSION
        || header.fingerprint != fp
        || header.square != recipe.square
        || header.channels != recipe.channels.count()
    {
        return Ok(None);
    }
    let per = square_len(recipe);
    let pixels = &bytes[16 + len..];
    if pixels.len() != per * header.samples.len() {
        bail!("cache file {} is truncated", path.display());
    }
    let samples = header
        .samples
        .into_iter()
        .zip(pixels.chunks_exact(per))
        .map(|((path, label), px)| Sample {
            pixels: px.to_vec(),
            label,
            path,
        })
        .collect();
    let skipped = header
        .skipped
        .into_iter()
        .map(|(path, reason)| Skipped { path, reason })
        .collect();
    Ok(Some(Dataset { samples, skipped }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use swipebot_core::preprocess::Channels;

    #[test]
    fn the_cache_is_built_once_reused_and_rebuilt_when_the_folder_or_settings_change() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        swipebot_core::synth::write_dataset(&data, 3, 48, 1).unwrap();
        std::fs::write(data.join("like/broken.jpg"), b"not a jpeg").unwrap();
        let cache_dir = data.join(DEFAULT_DIR);
        let limits = Limits::default();
        let gray = Recipe::for_input(32, Channels::Gray);
        let load = |recipe: &Recipe| {
            let files = data::scan(&data).unwrap();
            load_or_build(&file_for(&cache_dir, recipe), &files, recipe, &limits, 2).unwrap()
        };

        let (first, status) = load(&gray);
        assert_eq!(status, CacheStatus::Built);
        assert_eq!(first.samples.len(), 6);
        assert_eq!(first.skipped.len(), 1);
        let (again, status) = load(&gray);
        assert_eq!(status, CacheStatus::Reused);
        assert_eq!(again.skipped.len(), 1, "the skip report survives the cache");
        for (a, b) in first.samples.iter().zip(&again.samples) {
            assert_eq!(
                (a.pixels.as_slice(), a.label, &a.path),
                (b.pixels.as_slice(), b.label, &b.path)
            );
        }

        // Other settings: a cache of their own.
        let rgb = Recipe::for_input(32, Channels::Rgb);
        assert_eq!(load(&rgb).1, CacheStatus::Built);
        assert_eq!(load(&rgb).1, CacheStatus::Reused);
        assert_eq!(load(&gray).1, CacheStatus::Reused);

        // A new file, then a changed file: rebuilt.
        std::fs::copy(data.join("nope/nope-0000.jpg"), data.join("nope/extra.jpg")).unwrap();
        let (grown, status) = load(&gray);
        assert_eq!(status, CacheStatus::Built);
        assert_eq!(grown.samples.len(), 7);
        std::fs::write(data.join("nope/extra.jpg"), b"").unwrap();
        let (shrunk, status) = load(&gray);
        assert_eq!(status, CacheStatus::Built);
        assert_eq!((shrunk.samples.len(), shrunk.skipped.len()), (6, 2));
    }
}
