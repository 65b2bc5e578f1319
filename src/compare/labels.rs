//! The user's own labels, for measuring models against them: either the console's
//! `labels.jsonl` (read by `crate::labels`, the last label of a photo winning), or a `like/` +
//! `nope/` folder like the one `train` reads, matched to the recorded photos by content.

use std::collections::HashMap;
use std::path::Path;

use crate::labels::Label;
use crate::source::replay::read_bounded;

/// Labels of photos, by (profile id, photo name) or by photo content.
#[derive(Debug, Default)]
pub struct Labels {
    /// From `labels.jsonl`: LIKE or not, by profile id and photo name.
    by_name: HashMap<(String, String), bool>,
    /// From a `like/`/`nope/` folder: LIKE or not, by the SHA-256 of the photo's bytes.
    by_hash: HashMap<String, bool>,
}

impl Labels {
    /// Reads `path`: a `labels.jsonl` file, or a folder with `like/` and `nope/` (files of at most
    /// `max_bytes`). A line that is not a label is an error naming the file and line.
    pub fn read(path: &Path, max_bytes: u64) -> Result<Self, String> {
        if path.is_dir() {
            return Self::read_folder(path, max_bytes);
        }
        if !path.exists() {
            return Err(format!("cannot read labels {}: no such file", path.display()));
        }
        let by_name = crate::labels::read_latest(path)?
            .into_iter()
            .map(|(key, label)| (key, label == Label::Like))
            .collect();
        Ok(Labels {
            by_name,
            by_hash: HashMap::new(),
        })
    }

    /// Reads a `like/` + `nope/` folder; a photo in both is a conflict, named.
    fn read_folder(dir: &Path, max_bytes: u64) -> Result<Self, String> {
        let mut by_hash = HashMap::new();
        for (class, like) in [("like", true), ("nope", false)] {
            let folder = dir.join(class);
            let entries = std::fs::read_dir(&folder).map_err(|e| {
                format!(
                    "labels folder {}: cannot read {class}/ ({e}); it needs like/ and nope/",
                    dir.display()
                )
            })?;
            for entry in entries.filter_map(Result::ok) {
                let name = entry.file_name().to_string_lossy().into_owned();
                let Ok(bytes) = read_bounded(&folder, &name, max_bytes) else {
                    continue;
                };
                let hash = swipebot_core::model_info::sha256_hex(&bytes);
                if by_hash.insert(hash, like) == Some(!like) {
                    return Err(format!(
                        "labels folder {}: {class}/{name} is also in the other class",
                        dir.display()
                    ));
                }
            }
        }
        Ok(Labels {
            by_name: HashMap::new(),
            by_hash,
        })
    }

    /// The label of a photo: by profile id and name, else by content hash.
    pub fn of(&self, profile_id: &str, photo: &str, hash: Option<&str>) -> Option<bool> {
        self.by_name
            .get(&(profile_id.to_string(), photo.to_string()))
            .or_else(|| hash.and_then(|h| self.by_hash.get(h)))
            .copied()
    }

    /// Labels read.
    pub fn len(&self) -> usize {
        self.by_name.len() + self.by_hash.len()
    }

    /// Whether none was read.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_label_of_a_photo_wins_and_a_bad_line_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("labels.jsonl");
        std::fs::write(
            &file,
            concat!(
                r#"{"profile_id":"a","photo":"1.jpg","label":"like","at":"2026-01-01T00:00:00Z"}"#,
                "\n",
                r#"{"profile_id":"a","photo":"1.jpg","label":"nope","at":"2026-01-01T00:01:00Z"}"#,
                "\n",
                r#"{"profile_id":"b","photo":"2.jpg","label":"like"}"#,
                "\n"
            ),
        )
        .unwrap();
        let labels = Labels::read(&file, 1 << 20).unwrap();
        assert_eq!(labels.of("a", "1.jpg", None), Some(false));
        assert_eq!(labels.of("b", "2.jpg", None), Some(true));
        assert_eq!(labels.of("b", "3.jpg", None), None);
        std::fs::write(
            &file,
            "{\"profile_id\":\"a\",\"photo\":\"1.jpg\",\"label\":\"maybe\"}\n",
        )
        .unwrap();
        let err = Labels::read(&file, 1 << 20).unwrap_err();
        assert!(err.contains("line 1") && err.contains("maybe"), "{err}");
    }

    #[test]
    fn a_folder_labels_photos_by_content() {
        let dir = tempfile::tempdir().unwrap();
        for class in ["like", "nope"] {
            std::fs::create_dir(dir.path().join(class)).unwrap();
        }
        std::fs::write(dir.path().join("like/x.jpg"), b"liked bytes").unwrap();
        std::fs::write(dir.path().join("nope/y.jpg"), b"noped bytes").unwrap();
        let labels = Labels::read(dir.path(), 1 << 20).unwrap();
        let hash = swipebot_core::model_info::sha256_hex(b"liked bytes");
        assert_eq!(labels.of("any", "other-name.jpg", Some(&hash)), Some(true));
        let hash = swipebot_core::model_info::sha256_hex(b"noped bytes");
        assert_eq!(labels.of("any", "z.jpg", Some(&hash)), Some(false));
        std::fs::write(dir.path().join("nope/x-again.jpg"), b"liked bytes").unwrap();
        assert!(Labels::read(dir.path(), 1 << 20)
            .unwrap_err()
            .contains("also in the other class"));
    }
}
