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

/// Writes `profile` as `folder/profile.json` (atomically), the one writer of the replay format.
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
        let mut folders: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_dir())
            .collect();
        folders.sort();
        let photo_addresses = AddressPolicy::for_api(None, allow_private_photo_hosts);
        let http = photo::client(timeout, None, photo_addresses)?;
        Ok(ReplaySource {
            pending: Mutex::new(folders.into()),
            folders: Mutex::new(HashMap::new()),
            batch: batch.max(1),
            max_bytes,
            http,
            photo_addresses,
        })
    }

    /// Reads and checks one folder's `profile.json`; the error names the file.
    fn read_profile(folder: &Path) -> Result<Profile, String> {
        let path = folder.join(PROFILE_FILE);
        let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let profile: Profile = serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        if profile.id.trim().is_empty() {
            return Err(format!("{}: `id` is empty", path.display()));
        }
        Ok(profile)
    }
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
        let (mut profiles, mut rejected) = (Vec::new(), Vec::new());
        let mut folders = self.folders.lock().expect("replay folders lock");
        for folder in next {
            let label = folder
                .file_name()
                .map_or_else(|| folder.display().to_string(), |n| n.to_string_lossy().into_owned());
            match Self::read_profile(&folder) {
                Ok(p) if folders.contains_key(&p.id) => rejected.push(Rejected {
                    reason: format!("{label}: duplicate profile id `{}`", p.id),
                    id: p.id,
                }),
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
        let path = folder
            .ok_or_else(|| SourceError::Permanent(format!("unknown profile `{}`", profile.id)))?
            .join(name);
        let max = self.max_bytes;
        tokio::task::spawn_blocking(move || {
            let len = std::fs::metadata(&path)
                .map_err(|e| SourceError::Permanent(format!("{}: {e}", path.display())))?
                .len();
            if len > max {
                return Err(SourceError::Permanent(format!(
                    "{} is {len} bytes, over the limit of {max}",
                    path.display()
                )));
            }
            std::fs::read(&path).map_err(|e| SourceError::Permanent(format!("{}: {e}", path.display())))
        })
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
        assert_eq!(rejected.len(), 2);
        assert!(rejected[0].reason.contains("profile.json"), "{:?}", rejected[0]);
        assert!(rejected[1].reason.contains("duplicate"), "{:?}", rejected[1]);
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
