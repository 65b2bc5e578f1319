//! The score cache of `swipebot compare`: one file a model, `<dir>/<model SHA-256>.jsonl`, one line a
//! photo (`{"photo": <content SHA-256>, "score": p}` or `{"photo": …, "error": why}`). A score depends
//! only on the model's bytes and the photo's bytes, so a second compare, or a sweep of thresholds, scores
//! nothing again. Lines are appended; a line that does not parse (a run killed mid-write) is ignored
//! and its photo scored again. It is a cache: deleting the folder loses nothing but time.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// One cached result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Line {
    /// SHA-256 of the photo's bytes.
    photo: String,
    /// The LIKE probability.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    score: Option<f32>,
    /// Why the photo has no score (it does not decode, it is too large).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// The cached results of one model.
#[derive(Debug)]
pub struct ModelCache {
    /// The model's file of results; `None` with the cache turned off.
    path: Option<PathBuf>,
    /// What is known, by photo hash.
    known: HashMap<String, Result<f32, String>>,
}

impl ModelCache {
    /// Loads the results of the model with `model_sha256` from `dir` (none yet is fine); with `dir`
    /// `None` the cache is off and nothing is read or written.
    pub fn open(dir: Option<&Path>, model_sha256: &str) -> Result<Self, String> {
        let Some(dir) = dir else {
            return Ok(ModelCache {
                path: None,
                known: HashMap::new(),
            });
        };
        let path = dir.join(format!("{model_sha256}.jsonl"));
        let mut known = HashMap::new();
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                for line in text.lines() {
                    let Ok(line) = serde_json::from_str::<Line>(line) else {
                        continue;
                    };
                    let result = match (line.score, line.error) {
                        (Some(score), _) if score.is_finite() => Ok(score),
                        (_, Some(error)) => Err(error),
                        _ => continue,
                    };
                    known.insert(line.photo, result);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(format!("cannot read the score cache {}: {e}", path.display())),
        }
        Ok(ModelCache {
            path: Some(path),
            known,
        })
    }

    /// The cached result of the photo with content hash `photo`.
    pub fn get(&self, photo: &str) -> Option<&Result<f32, String>> {
        self.known.get(photo)
    }

    /// Results cached.
    pub fn len(&self) -> usize {
        self.known.len()
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.known.is_empty()
    }

    /// Adds new results, appending them to the model's file (created, with its folder, if needed).
    pub fn add(&mut self, results: Vec<(String, Result<f32, String>)>) -> Result<(), String> {
        if results.is_empty() {
            return Ok(());
        }
        if let Some(path) = &self.path {
            let mut text = String::new();
            for (photo, result) in &results {
                let line = Line {
                    photo: photo.clone(),
                    score: result.as_ref().ok().copied(),
                    error: result.as_ref().err().cloned(),
                };
                text.push_str(&serde_json::to_string(&line).expect("cache lines serialise"));
                text.push('\n');
            }
            let named = |e: std::io::Error| format!("cannot write the score cache {}: {e}", path.display());
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).map_err(named)?;
            }
            let mut file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(named)?;
            // One write of whole lines: a kill leaves at most one partial line, which is ignored.
            file.write_all(text.as_bytes()).map_err(named)?;
        }
        self.known.extend(results);
        Ok(())
    }
}

/// The default cache folder: `$XDG_CACHE_HOME/swipebot/scores`, else `~/.cache/swipebot/scores`;
/// `None` when neither is known (the cache is then off).
pub fn default_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|v| !v.is_empty())
                .map(|h| PathBuf::from(h).join(".cache"))
        })?;
    Some(base.join("swipebot").join("scores"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_survive_a_reopen_and_a_torn_line_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let mut cache = ModelCache::open(Some(dir.path()), "abc").unwrap();
        assert!(cache.is_empty());
        cache
            .add(vec![("p1".into(), Ok(0.25)), ("p2".into(), Err("not an image".into()))])
            .unwrap();
        // A run killed mid-line.
        let file = dir.path().join("abc.jsonl");
        let mut f = std::fs::OpenOptions::new().append(true).open(&file).unwrap();
        f.write_all(b"{\"photo\":\"p3\",\"sco").unwrap();
        let again = ModelCache::open(Some(dir.path()), "abc").unwrap();
        assert_eq!(again.len(), 2);
        assert_eq!(again.get("p1"), Some(&Ok(0.25)));
        assert_eq!(again.get("p2"), Some(&Err("not an image".to_string())));
        assert_eq!(again.get("p3"), None);
        // Another model's results are its own.
        assert!(ModelCache::open(Some(dir.path()), "def").unwrap().is_empty());
        // Off: nothing written.
        let mut off = ModelCache::open(None, "abc").unwrap();
        off.add(vec![("p9".into(), Ok(0.5))]).unwrap();
        assert_eq!(off.get("p9"), Some(&Ok(0.5)));
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
