//! The recorder: wraps a live source and saves every profile it fetched, with the photos it
//! downloaded, in the replay format, so the same candidates can be replayed later with another
//! model or threshold. A photo that failed to download is left out, so a replay sees it fail too.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use crate::profile::{Decision, Profile, SwipeOutcome};
use crate::source::replay::write_profile;
use crate::source::{Candidates, PhotoNeeds, ProfileSource, SetupError, SourceError};

/// A source that records what the inner source delivers.
pub struct RecordingSource {
    /// The live source being recorded.
    inner: Arc<dyn ProfileSource>,
    /// Where recorded profiles go, one folder each.
    dir: PathBuf,
    /// (profile id, photo as named by the inner source) -> file to write.
    files: Mutex<HashMap<(String, String), PathBuf>>,
}

/// A folder name for a profile id: letters, digits, `-` and `_` kept, the rest replaced.
fn folder_name(id: &str) -> String {
    let clean: String = id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if clean == id {
        clean
    } else {
        // Keep distinct ids distinct after cleaning.
        format!("{clean}-{}", &swipebot_core::model_info::sha256_hex(id.as_bytes())[..8])
    }
}

/// The file extension of a photo URL's path, when it is one the decoder reads.
fn extension(url: &str) -> &'static str {
    let path = url.split(['?', '#']).next().unwrap_or(url).to_ascii_lowercase();
    ["png", "webp", "jpeg"]
        .into_iter()
        .find(|e| path.ends_with(&format!(".{e}")))
        .unwrap_or("jpg")
}

impl RecordingSource {
    /// Records into `dir` (created if needed).
    pub fn new(inner: Arc<dyn ProfileSource>, dir: &Path) -> Result<Self, SetupError> {
        std::fs::create_dir_all(dir).map_err(|e| SetupError::Config {
            key: "source.record_dir",
            message: format!("cannot create {}: {e}", dir.display()),
        })?;
        Ok(RecordingSource {
            inner,
            dir: dir.to_path_buf(),
            files: Mutex::new(HashMap::new()),
        })
    }

    fn record_profile(&self, profile: &Profile) -> std::io::Result<()> {
        let folder = self.dir.join(folder_name(&profile.id));
        std::fs::create_dir_all(&folder)?;
        let mut local = Vec::with_capacity(profile.photos.len());
        let mut files = self.files.lock().expect("recorder lock");
        for (k, photo) in profile.photos.iter().enumerate() {
            let name = format!("{k}.{}", extension(photo));
            files.insert((profile.id.clone(), photo.clone()), folder.join(&name));
            local.push(name);
        }
        let mut saved = profile.clone();
        saved.photos = local;
        saved
            .extra
            .insert("source_photos".into(), serde_json::json!(profile.photos));
        saved
            .extra
            .insert("source".into(), serde_json::json!(self.inner.name()));
        write_profile(&folder, &saved)
    }
}

#[async_trait]
impl ProfileSource for RecordingSource {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn is_remote(&self) -> bool {
        self.inner.is_remote()
    }

    fn use_photo_needs(&self, needs: PhotoNeeds) {
        self.inner.use_photo_needs(needs);
    }

    fn longest_call(&self) -> std::time::Duration {
        self.inner.longest_call()
    }

    fn reload_credentials(&self) -> Result<(), SourceError> {
        self.inner.reload_credentials()
    }

    async fn candidates(&self) -> Result<Candidates, SourceError> {
        let result = self.inner.candidates().await?;
        if let Candidates::Profiles { profiles, .. } = &result {
            for p in profiles {
                if let Err(e) = self.record_profile(p) {
                    tracing::warn!(profile = %p.id, dir = %self.dir.display(), "could not record the profile: {e}");
                }
            }
        }
        Ok(result)
    }

    async fn photo(&self, profile: &Profile, photo: &str) -> Result<Vec<u8>, SourceError> {
        let bytes = self.inner.photo(profile, photo).await?;
        let target = self
            .files
            .lock()
            .expect("recorder lock")
            .get(&(profile.id.clone(), photo.to_string()))
            .cloned();
        if let Some(path) = target {
            let data = bytes.clone();
            let written = tokio::task::spawn_blocking(move || swipebot_core::fsutil::write_atomic(&path, &data)).await;
            if !matches!(written, Ok(Ok(()))) {
                tracing::warn!(profile = %profile.id, photo, "could not record the photo");
            }
        }
        Ok(bytes)
    }

    async fn swipe(&self, profile: &Profile, decision: Decision) -> Result<SwipeOutcome, SourceError> {
        self.inner.swipe(profile, decision).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folder_names_are_safe_and_distinct() {
        assert_eq!(folder_name("5f3a_b-1"), "5f3a_b-1");
        assert_ne!(folder_name("a/b"), folder_name("a?b"));
        assert!(!folder_name("../x").contains('/'));
        assert_eq!(extension("https://h/x/640x640_a.jpg?t=1"), "jpg");
        assert_eq!(extension("https://h/x/a.WEBP"), "webp");
    }

    #[tokio::test]
    async fn a_body_that_is_not_an_image_is_never_recorded() {
        use crate::source::replay::ReplaySource;
        use crate::source::test_server::{Reply, TestServer};
        let jpeg = b"\xFF\xD8\xFF\xE0 a photo".to_vec();
        let body = jpeg.clone();
        let server = TestServer::start(move |r| match r.path.as_str() {
            "/html.jpg" => Reply::ok(Some("text/html"), b"<html>Access denied</html>"),
            "/octet.jpg" => Reply::ok(Some("application/octet-stream"), b"<html>Access denied</html>"),
            "/none.jpg" => Reply::ok(None, b"{\"error\": \"not found\"}"),
            _ => Reply::ok(Some("image/jpeg"), &body),
        });
        let photos: Vec<String> = ["/html.jpg", "/octet.jpg", "/none.jpg", "/good.jpg"]
            .iter()
            .map(|p| server.url(p))
            .collect();
        let profile = Profile {
            photos: photos.clone(),
            ..serde_json::from_str(r#"{"id": "p1", "photos": []}"#).unwrap()
        };
        let dir = tempfile::tempdir().unwrap();
        let live = dir.path().join("live");
        std::fs::create_dir_all(live.join("p1")).unwrap();
        write_profile(&live.join("p1"), &profile).unwrap();
        let inner = ReplaySource::open(&live, 10, 1 << 20, std::time::Duration::from_secs(5), true).unwrap();
        let recorder = RecordingSource::new(Arc::new(inner), &dir.path().join("recorded")).unwrap();
        assert!(matches!(
            recorder.candidates().await.unwrap(),
            Candidates::Profiles { .. }
        ));
        for photo in &photos[..3] {
            let err = recorder.photo(&profile, photo).await.unwrap_err();
            assert!(err.to_string().contains(photo.as_str()), "{err}");
        }
        assert_eq!(recorder.photo(&profile, &photos[3]).await.unwrap(), jpeg);
        let folder = dir.path().join("recorded").join("p1");
        let mut stored: Vec<String> = std::fs::read_dir(&folder)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        stored.sort();
        assert_eq!(stored, ["3.jpg", "profile.json"], "only the image was recorded");
        assert_eq!(std::fs::read(folder.join("3.jpg")).unwrap(), jpeg);
    }
}
