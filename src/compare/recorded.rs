//! Recorded profiles as `swipebot compare` reads them: every folder's `profile.json` and the
//! content hash of each photo file, read with the same bounds as the replay source. Nothing is
//! fetched: a photo given as a URL was not recorded and is counted as such.

use std::path::{Path, PathBuf};

use crate::profile::Profile;
use crate::source::replay::{read_bounded, DEFAULT_MAX_PROFILE_BYTES, PROFILE_FILE};

/// One photo of a recorded profile.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedPhoto {
    /// The photo as the profile names it (a file name in its folder, or a URL).
    pub name: String,
    /// SHA-256 of the file's bytes: the key of the score cache and of folder labels. `Err` says
    /// why the photo cannot be scored (not recorded, unreadable, too large).
    pub hash: Result<String, String>,
}

/// One recorded profile.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedProfile {
    /// The profile as recorded.
    pub profile: Profile,
    /// Its folder, where its photo files are.
    pub folder: PathBuf,
    /// Its photos in order, at most `max_photos` of them (the daemon scores no more).
    pub photos: Vec<RecordedPhoto>,
}

/// What reading a folder of recorded profiles gave: the profiles, and those that could not be read
/// (folder and why), which are left out of every figure.
#[derive(Debug, Default)]
pub struct Recorded {
    /// Readable profiles, in folder-name order.
    pub profiles: Vec<RecordedProfile>,
    /// Unreadable profile folders and why.
    pub unreadable: Vec<(PathBuf, String)>,
}

/// Reads every profile folder of `dir` (folders inside it only, as the replay source does), hashing
/// each photo file of at most `max_photo_bytes`, at most `max_photos` a profile.
pub fn read(dir: &Path, max_photo_bytes: u64, max_photos: usize) -> Result<Recorded, String> {
    let root = dir
        .canonicalize()
        .map_err(|e| format!("cannot read the profiles folder {}: {e}", dir.display()))?;
    let entries =
        std::fs::read_dir(&root).map_err(|e| format!("cannot read the profiles folder {}: {e}", dir.display()))?;
    let mut folders: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir() && p.canonicalize().is_ok_and(|real| real.starts_with(&root)))
        .collect();
    folders.sort();
    let mut recorded = Recorded::default();
    for folder in folders {
        match read_one(&folder, max_photo_bytes, max_photos) {
            Ok(profile) => recorded.profiles.push(profile),
            Err(why) => recorded.unreadable.push((folder, why)),
        }
    }
    Ok(recorded)
}

/// Reads one profile folder.
fn read_one(folder: &Path, max_photo_bytes: u64, max_photos: usize) -> Result<RecordedProfile, String> {
    let bytes = read_bounded(folder, PROFILE_FILE, DEFAULT_MAX_PROFILE_BYTES)?;
    let profile: Profile =
        serde_json::from_slice(&bytes).map_err(|e| format!("{}: {e}", folder.join(PROFILE_FILE).display()))?;
    if profile.id.trim().is_empty() {
        return Err(format!("{}: `id` is empty", folder.join(PROFILE_FILE).display()));
    }
    let photos = profile
        .photos
        .iter()
        .take(max_photos)
        .map(|name| RecordedPhoto {
            name: name.clone(),
            hash: hash_photo(folder, name, max_photo_bytes),
        })
        .collect();
    Ok(RecordedProfile {
        profile,
        folder: folder.to_path_buf(),
        photos,
    })
}

/// The SHA-256 of a recorded photo file, or why there is none.
fn hash_photo(folder: &Path, name: &str, max_bytes: u64) -> Result<String, String> {
    if name.starts_with("http://") || name.starts_with("https://") {
        return Err(format!(
            "{name}: not recorded (compare never downloads; record photos with source.record_dir)"
        ));
    }
    let bytes = read_bounded(folder, name, max_bytes)?;
    Ok(swipebot_core::model_info::sha256_hex(&bytes))
}

/// Reads a recorded photo's bytes again, for scoring (bounded as when it was hashed).
pub fn photo_bytes(folder: &Path, name: &str, max_bytes: u64) -> Result<Vec<u8>, String> {
    read_bounded(folder, name, max_bytes)
}
