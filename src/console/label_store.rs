//! The labels the console keeps: `<state>/labels.jsonl` (written through [`crate::labels::LabelFile`],
//! synced before a POST is answered) and, in memory, the label in force for each photo.

use std::path::{Path, PathBuf};

use crate::labels::{read_latest, Label, LabelFile, LabelLine, Latest, LABELS};

/// `labels.jsonl` and the labels in force.
#[derive(Debug)]
pub struct LabelStore {
    /// `<state>/labels.jsonl`.
    path: PathBuf,
    /// Opened on the first label, so a console that only looks writes nothing.
    file: Option<LabelFile>,
    /// The label in force of each (profile id, photo).
    latest: Latest,
}

impl LabelStore {
    /// Reads `<state_dir>/labels.jsonl` (none yet is no labels).
    pub fn open(state_dir: &Path) -> Result<Self, String> {
        let path = state_dir.join(LABELS);
        let latest = read_latest(&path)?;
        Ok(LabelStore {
            path,
            file: None,
            latest,
        })
    }

    /// Appends and syncs the labels of one profile's photos (one write), then takes them in force.
    pub fn add(&mut self, profile_id: &str, labels: &[(String, Label)]) -> Result<(), String> {
        if labels.is_empty() {
            return Ok(());
        }
        let file = match &mut self.file {
            Some(f) => f,
            None => self.file.insert(LabelFile::open(&self.path)?),
        };
        let at = Some(chrono::Utc::now());
        let lines: Vec<LabelLine> = labels
            .iter()
            .map(|(photo, label)| LabelLine {
                profile_id: profile_id.to_string(),
                photo: photo.clone(),
                label: *label,
                at,
            })
            .collect();
        file.append(&lines)?;
        for (photo, label) in labels {
            self.latest.insert((profile_id.to_string(), photo.clone()), *label);
        }
        Ok(())
    }

    /// The label in force of a photo.
    pub fn get(&self, profile_id: &str, photo: &str) -> Option<Label> {
        self.latest.get(&(profile_id.to_string(), photo.to_string())).copied()
    }

    /// Every label in force.
    pub fn latest(&self) -> &Latest {
        &self.latest
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_in_force_at_once_and_after_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = LabelStore::open(dir.path()).unwrap();
        assert!(!dir.path().join(LABELS).exists(), "nothing written before a label");
        store
            .add("p1", &[("1.jpg".into(), Label::Like), ("2.jpg".into(), Label::Nope)])
            .unwrap();
        store.add("p1", &[("1.jpg".into(), Label::Nope)]).unwrap();
        assert_eq!(store.get("p1", "1.jpg"), Some(Label::Nope));
        let again = LabelStore::open(dir.path()).unwrap();
        assert_eq!(again.get("p1", "1.jpg"), Some(Label::Nope));
        assert_eq!(again.get("p1", "2.jpg"), Some(Label::Nope));
        assert_eq!(again.latest().len(), 2);
    }
}
