//! The replay source: recorded profiles on disk, for test mode. Swipes are acknowledged locally and
//! never sent anywhere.
//!
//! Format (also written by the recorder): a directory with one sub-directory per profile, each holding
//! `profile.json` (`id`, `name`, `bio`, `photos`: file names relative to that sub-directory or http(s)
//! URLs; other fields are kept) and the photo files.

use std::collections::{HashMap, VecDeque};
use std::path::{Component, Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;

use crate::profile::{Decision, Profile, SwipeOutcome};
use crate::source::address::AddressPolicy;
use crate::source::{photo, Candidates, ProfileSource, Rejected, SetupError, SourceError};

/// Name of the profile file in each recorded profile's folder.
pub const PROFILE_FILE: &str = "profile.json";

/// Writes `profile` as `folder/profile.json` (atomically): the one writer of the replay format, used
/// by the recorder, the demo, the tests and the benchmarks.
pub fn write_profile(folder: &Path, profile: &Profile) -> std::io::Result<()> {
    let bytes = serde_json::to_vec_pretty(profile).expect("profiles serialise");
    swipebot_core::fsutil::write_atomic(&folder.join(PROFILE_FILE), &bytes)
}

/// Reads recorded profiles from a directory, a few at a time, in folder-name order.
pub struct ReplaySource {
    /// Profile folders not handed out yet, in name order.
    pending: Mutex<VecDeque<PathBuf>>,
    /// Each handed-out profile's folder, to find its photo files by name.
    folders: Mutex<HashMap<String, PathBuf>>,
    /// Profiles handed out per call (`source.batch`).
    batch: usize,
    /// Largest photo read, in bytes (`pipeline.max_photo_bytes`).
    max_bytes: u64,
    /// Largest `profile.json` read, in bytes (`source.max_body_bytes`).
    max_profile_bytes: u64,
    /// For recorded profiles whose photos are URLs (no credentials, every hop and address checked).
    http: reqwest::Client,
    /// Which addresses URL photos may come from: public ones, unless private ones are allowed.
    photo_addresses: AddressPolicy,
}

impl ReplaySource {
    /// Opens `dir`; fails if it is not a readable directory. URL photos on private addresses are
    /// refused unless `allow_private_photo_hosts` (there is no API whose address would allow them).
    pub fn open(
        dir: &Path,
        batch: usize,
        max_bytes: u64,
        timeout: Duration,
        allow_private_photo_hosts: bool,
    ) -> Result<Self, SetupError> {
        let entries = std::fs::read_dir(dir).map_err(|e| SetupError::Config {
            key: "source.replay_dir",
            message: format!("cannot read the replay directory {}: {e}", dir.display()),
        })?;
        // Only folders inside the replay directory: a link to a folder elsewhere is not followed.
        let root = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
        let mut folders: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_dir() && p.canonicalize().is_ok_and(|real| real.starts_with(&root)))
            .collect();
        folders.sort();
        let photo_addresses = AddressPolicy::for_api(None, allow_private_photo_hosts);
        let http = photo::client(timeout, None, photo_addresses)?;
        Ok(ReplaySource {
            pending: Mutex::new(folders.into()),
            folders: Mutex::new(HashMap::new()),
            batch: batch.max(1),
            max_bytes,
            max_profile_bytes: DEFAULT_MAX_PROFILE_BYTES,
            http,
            photo_addresses,
        })
    }

    /// Sets the largest `profile.json` read (`source.max_body_bytes`).
    pub fn with_max_profile_bytes(mut self, max: u64) -> Self {
        self.max_profile_bytes = max;
        self
    }

    /// Reads and checks one folder's `profile.json` (a regular file inside the folder, at most
    /// `max` bytes); the error names the file.
    fn read_profile(folder: &Path, max: u64) -> Result<Profile, String> {
        let path = folder.join(PROFILE_FILE);
        let bytes = read_bounded(folder, PROFILE_FILE, max)?;
        let profile: Profile = serde_json::from_slice(&bytes).map_err(|e| format!("{}: {e}", path.display()))?;
        if profile.id.trim().is_empty() {
            return Err(format!("{}: `id` is empty", path.display()));
        }
        Ok(profile)
    }
}

/// The default of `source.max_body_bytes`: far above any real profile, far below what would
/// exhaust memory.
pub const DEFAULT_MAX_PROFILE_BYTES: u64 = 4 << 20;

/// Reads `folder/name`, refusing what is not a regular file inside `folder` once links are
/// followed (a link to /dev/zero, a FIFO that would block forever, a link out of the folder) and
/// anything over `max` bytes (checked before and while reading). The error names the file.
pub fn read_bounded(folder: &Path, name: &str, max: u64) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let path = folder.join(name);
    let named = |e: &dyn std::fmt::Display| format!("{}: {e}", path.display());
    let real = path.canonicalize().map_err(|e| named(&e))?;
    let real_folder = folder.canonicalize().map_err(|e| named(&e))?;
    if !real.starts_with(&real_folder) {
        return Err(named(&format!(
            "leads out of the profile's folder (to {})",
            real.display()
        )));
    }
    let meta = std::fs::metadata(&real).map_err(|e| named(&e))?;
    if !meta.is_file() {
        return Err(named(&"not a regular file"));
    }
    if meta.len() > max {
        return Err(named(&format!("{} bytes, over the limit of {max}", meta.len())));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    std::fs::File::open(&real)
        .map_err(|e| named(&e))?
        .take(max + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| named(&e))?;
    if bytes.len() as u64 > max {
        return Err(named(&format!("grew over the limit of {max} bytes while being read")));
    }
    Ok(bytes)
}

/// A relative path that stays inside its folder (no `..`, no root).
fn is_contained(name: &str) -> bool {
    let p = Path::new(name);
    !name.is_empty()
        && p.components()
            .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
}

#[async_trait]
impl ProfileSource for ReplaySource {
    fn name(&self) -> &str {
        "replay"
    }

    fn is_remote(&self) -> bool {
        false
    }

    async fn candidates(&self) -> Result<Candidates, SourceError> {
        let next: Vec<PathBuf> = {
            let mut pending = self.pending.lock().expect("replay queue lock");
            let n = self.batch.min(pending.len());
            pending.drain(..n).collect()
        };
        if next.is_empty() {
            return Ok(Candidates::Exhausted);
        }
        // Reading files is blocking work: off the async threads.
        let max = self.max_profile_bytes;
        let read = tokio::task::spawn_blocking(move || {
            next.into_iter()
                .map(|folder| {
                    let profile = Self::read_profile(&folder, max);
                    (folder, profile)
                })
                .collect::<Vec<_>>()
        })
        .await
        .map_err(|e| SourceError::Transient(format!("profile reader stopped: {e}")))?;
        let (mut profiles, mut rejected) = (Vec::new(), Vec::new());
        let mut folders = self.folders.lock().expect("replay folders lock");
        for (folder, read) in read {
            let label = folder
                .file_name()
                .map_or_else(|| folder.display().to_string(), |n| n.to_string_lossy().into_owned());
            match read {
                Ok(p) if folders.contains_key(&p.id) => {
                    // The first folder with this id is decided; nothing is journaled for the
                    // others, which would otherwise be recorded under the first one's id.
                    tracing::warn!(
                        profile = %p.id,
                        kept = %folders[&p.id].display(),
                        ignored = %folder.display(),
                        "two recorded profiles share an id: the first is decided, the other ignored"
                    );
                }
                Ok(p) => {
                    folders.insert(p.id.clone(), folder);
                    profiles.push(p);
                }
                Err(reason) => rejected.push(Rejected { id: label, reason }),
            }
        }
        Ok(Candidates::Profiles { profiles, rejected })
    }

    async fn photo(&self, profile: &Profile, name: &str) -> Result<Vec<u8>, SourceError> {
        if photo::is_url(name) {
            let url = photo::parse_url(name)?;
            return photo::fetch(
                &self.http,
                &url,
                Default::default(),
                self.max_bytes,
                self.photo_addresses,
            )
            .await;
        }
        if !is_contained(name) {
            return Err(SourceError::Permanent(format!(
                "photo `{name}` is not a file name inside the profile's folder"
            )));
        }
        let folder = self
            .folders
            .lock()
            .expect("replay folders lock")
            .get(&profile.id)
            .cloned();
        let folder = folder.ok_or_else(|| SourceError::Permanent(format!("unknown profile `{}`", profile.id)))?;
        let (max, name) = (self.max_bytes, name.to_string());
        tokio::task::spawn_blocking(move || read_bounded(&folder, &name, max).map_err(SourceError::Permanent))
            .await
            .map_err(|e| SourceError::Transient(format!("photo reader stopped: {e}")))?
    }

    async fn swipe(&self, _profile: &Profile, _decision: Decision) -> Result<SwipeOutcome, SourceError> {
        Ok(SwipeOutcome::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn photo_names_cannot_escape_the_profile_folder() {
        assert!(is_contained("1.jpg"));
        assert!(is_contained("photos/1.jpg"));
        assert!(!is_contained("../other/1.jpg"));
        assert!(!is_contained("/etc/passwd"));
        assert!(!is_contained(""));
    }

    #[tokio::test]
    async fn only_regular_files_inside_the_folder_are_read_and_never_past_the_cap() {
        let dir = tempfile::tempdir().unwrap();
        let folder = dir.path().join("p");
        std::fs::create_dir_all(&folder).unwrap();
        write_profile(
            &folder,
            &Profile {
                id: "p".into(),
                name: String::new(),
                bio: String::new(),
                photos: vec![],
                placeholder: false,
                extra: Default::default(),
            },
        )
        .unwrap();
        std::fs::write(folder.join("ok.jpg"), vec![7u8; 100]).unwrap();
        std::fs::write(folder.join("big.jpg"), vec![7u8; 5000]).unwrap();
        std::os::unix::fs::symlink("/dev/zero", folder.join("zero.jpg")).unwrap();
        std::fs::write(dir.path().join("outside.jpg"), b"secret").unwrap();
        std::os::unix::fs::symlink(dir.path().join("outside.jpg"), folder.join("out.jpg")).unwrap();
        let fifo = folder.join("fifo.jpg");
        assert!(std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success());
        assert_eq!(read_bounded(&folder, "ok.jpg", 1000).unwrap().len(), 100);
        let err = read_bounded(&folder, "big.jpg", 1000).unwrap_err();
        assert!(err.contains("big.jpg") && err.contains("over the limit"), "{err}");
        // A link to a device would read without end; a FIFO would block forever.
        let err = read_bounded(&folder, "zero.jpg", 1000).unwrap_err();
        assert!(err.contains("leads out of the profile's folder"), "{err}");
        let err = read_bounded(&folder, "out.jpg", 1000).unwrap_err();
        assert!(err.contains("leads out of the profile's folder"), "{err}");
        let err = read_bounded(&folder, "fifo.jpg", 1000).unwrap_err();
        assert!(err.contains("not a regular file"), "{err}");
        // The same through the source, with the photo cap.
        let source = ReplaySource::open(dir.path(), 10, 1000, Duration::from_secs(5), false).unwrap();
        let Candidates::Profiles { profiles, .. } = source.candidates().await.unwrap() else {
            panic!("expected the profile")
        };
        for name in ["big.jpg", "zero.jpg", "fifo.jpg"] {
            let err = tokio::time::timeout(Duration::from_secs(5), source.photo(&profiles[0], name))
                .await
                .expect("refused at once, never hanging")
                .unwrap_err();
            assert!(err.to_string().contains(name), "{err}");
        }
    }

    #[tokio::test]
    async fn a_profile_json_over_the_cap_is_rejected_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let folder = dir.path().join("huge");
        std::fs::create_dir_all(&folder).unwrap();
        let bio = "x".repeat(200_000);
        std::fs::write(
            folder.join(PROFILE_FILE),
            format!(r#"{{"id": "h", "bio": "{bio}", "photos": []}}"#),
        )
        .unwrap();
        let source = ReplaySource::open(dir.path(), 10, 1 << 20, Duration::from_secs(5), false)
            .unwrap()
            .with_max_profile_bytes(100_000);
        let Candidates::Profiles { profiles, rejected } = source.candidates().await.unwrap() else {
            panic!("expected a batch")
        };
        assert!(profiles.is_empty());
        assert_eq!(rejected.len(), 1);
        assert!(
            rejected[0].reason.contains("huge/profile.json") && rejected[0].reason.contains("over the limit"),
            "{:?}",
            rejected[0]
        );
    }

    #[tokio::test]
    async fn reads_profiles_in_order_and_rejects_broken_ones() {
        let dir = tempfile::tempdir().unwrap();
        let write = |folder: &str, json: &str| {
            std::fs::create_dir_all(dir.path().join(folder)).unwrap();
            std::fs::write(dir.path().join(folder).join(PROFILE_FILE), json).unwrap();
        };
        write("b", r#"{"id": "p2", "photos": ["1.jpg"], "age": 30}"#);
        write("a", r#"{"id": "p1", "name": "A", "photos": []}"#);
        write("c", r#"{"photos": "#);
        write("d", r#"{"id": "p1", "photos": []}"#);
        let source = ReplaySource::open(dir.path(), 10, 1 << 20, Duration::from_secs(5), false).unwrap();
        let Candidates::Profiles { profiles, rejected } = source.candidates().await.unwrap() else {
            panic!("expected profiles")
        };
        assert_eq!(profiles.iter().map(|p| p.id.as_str()).collect::<Vec<_>>(), ["p1", "p2"]);
        assert_eq!(profiles[1].extra["age"], 30);
        // The broken folder is rejected; the second folder with id p1 is ignored, not rejected
        // under p1 (which would journal a skip over the valid profile).
        assert_eq!(rejected.len(), 1);
        assert!(rejected[0].reason.contains("profile.json"), "{:?}", rejected[0]);
        assert_eq!(rejected[0].id, "c");
        assert!(matches!(source.candidates().await.unwrap(), Candidates::Exhausted));
        let err = source.photo(&profiles[1], "1.jpg").await.unwrap_err();
        assert!(err.to_string().contains("1.jpg"), "{err}");
    }

    #[tokio::test]
    async fn url_photos_on_private_addresses_are_refused_unless_allowed() {
        use crate::source::test_server::{Reply, TestServer};
        let server = TestServer::start(|_| Reply::ok(Some("image/jpeg"), b"\xFF\xD8\xFF\xE0"));
        let port = server.addr.port();
        let dir = tempfile::tempdir().unwrap();
        let urls = [
            format!("http://127.0.0.1:{port}/a.jpg"),
            format!("http://2130706433:{port}/a.jpg"),
            format!("http://localhost:{port}/a.jpg"),
        ];
        let profile = Profile {
            photos: urls.to_vec(),
            ..serde_json::from_str(r#"{"id": "p1", "photos": []}"#).unwrap()
        };
        std::fs::create_dir(dir.path().join("a")).unwrap();
        write_profile(&dir.path().join("a"), &profile).unwrap();
        let refusing = ReplaySource::open(dir.path(), 10, 1 << 20, Duration::from_secs(5), false).unwrap();
        for u in &urls {
            let err = refusing.photo(&profile, u).await.unwrap_err();
            assert!(
                err.to_string().contains("source.allow_private_photo_hosts"),
                "{u}: {err}"
            );
        }
        assert!(server.requests().is_empty(), "a private address was reached");
        let allowing = ReplaySource::open(dir.path(), 10, 1 << 20, Duration::from_secs(5), true).unwrap();
        for u in &urls {
            assert!(allowing.photo(&profile, u).await.is_ok(), "{u}");
        }
    }
}
