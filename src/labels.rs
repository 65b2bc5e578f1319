//! The user's labels of recorded photos: `<state>/labels.jsonl`, one JSON object a line
//! (`{"profile_id", "photo", "label": "like"|"nope", "at"}`), append-only, the last label of a photo
//! winning. The console writes it ([`LabelFile`]); `swipebot compare` and `swipebot dataset` read it
//! ([`read_latest`]).
//!
//! Written with the journal's discipline: each append is one `write` of whole lines followed by
//! `fsync`; a failed write is cut back to the last complete line and nothing more is appended by this
//! process; a torn last line (a crash mid-write) is cut off when the file is opened again.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// File name of the labels in the state directory.
pub const LABELS: &str = "labels.jsonl";

/// The user's verdict on one photo.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Label {
    /// The user would swipe right on this photo.
    Like,
    /// The user would swipe left on this photo.
    Nope,
}

impl Label {
    /// The lowercase name written in `labels.jsonl`, and the class folder of `train --data`.
    pub fn as_str(self) -> &'static str {
        match self {
            Label::Like => "like",
            Label::Nope => "nope",
        }
    }
}

/// One line of `labels.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LabelLine {
    /// The profile's id (as in the journal).
    pub profile_id: String,
    /// The photo as the profile names it.
    pub photo: String,
    /// `like` or `nope`.
    pub label: Label,
    /// When the user gave the label (absent in hand-written files).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<DateTime<Utc>>,
}

/// The labels in force: the last one of each (profile id, photo).
pub type Latest = HashMap<(String, String), Label>;

/// Reads `path` (a missing file is no labels) and keeps the last label of each photo. A complete
/// line that is not a label is an error naming the file and line; a last line without its newline
/// (a write cut short) is ignored.
pub fn read_latest(path: &Path) -> Result<Latest, String> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Latest::new()),
        Err(e) => return Err(format!("cannot read labels {}: {e}", path.display())),
    };
    let mut latest = Latest::new();
    for (i, line) in bytes.split_inclusive(|b| *b == b'\n').enumerate() {
        if line.last() != Some(&b'\n') {
            break;
        }
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let label: LabelLine = serde_json::from_slice(line).map_err(|e| {
            format!(
                "labels {} line {}: {e} (each line is {{\"profile_id\", \"photo\", \"label\": \"like\"|\"nope\", \"at\"}})",
                path.display(),
                i + 1
            )
        })?;
        latest.insert((label.profile_id, label.photo), label.label);
    }
    Ok(latest)
}

/// `labels.jsonl` opened for appending.
#[derive(Debug)]
pub struct LabelFile {
    /// The file's path, for errors.
    path: PathBuf,
    /// The append handle.
    file: File,
    /// Length up to the end of the last complete line.
    len: u64,
    /// A write failed: nothing more is appended by this process.
    broken: bool,
}

impl LabelFile {
    /// Opens (creating) `path` for appending; a torn last line left by a crash is cut off first.
    pub fn open(path: &Path) -> Result<Self, String> {
        let named = |e: std::io::Error| format!("labels {}: {e}", path.display());
        let file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(path)
            .map_err(named)?;
        let bytes = std::fs::read(path).map_err(named)?;
        let complete = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        if complete != bytes.len() {
            tracing::warn!(file = %path.display(), cut = bytes.len() - complete, "labels ended in a torn write; cutting it off");
            file.set_len(complete as u64)
                .and_then(|()| file.sync_all())
                .map_err(named)?;
        }
        Ok(LabelFile {
            path: path.to_path_buf(),
            file,
            len: complete as u64,
            broken: false,
        })
    }

    /// Appends `lines` as one write and syncs them; on failure the file is cut back to its last
    /// complete line and every later append is refused (the disk may be full: restart the console).
    pub fn append(&mut self, lines: &[LabelLine]) -> Result<(), String> {
        if self.broken {
            return Err(format!(
                "labels {}: an earlier write failed; restart the console once the disk has room",
                self.path.display()
            ));
        }
        let mut bytes = Vec::new();
        for line in lines {
            serde_json::to_writer(&mut bytes, line).expect("labels serialise");
            bytes.push(b'\n');
        }
        match self.file.write_all(&bytes).and_then(|()| self.file.sync_data()) {
            Ok(()) => {
                self.len += bytes.len() as u64;
                Ok(())
            }
            Err(e) => {
                self.broken = true;
                if let Err(undo) = self.file.set_len(self.len).and_then(|()| self.file.sync_all()) {
                    tracing::error!(file = %self.path.display(), "could not roll back a failed label write: {undo}; the next start cuts the torn line off");
                }
                Err(format!(
                    "labels {}: write failed ({e}); rolled back to the last complete label",
                    self.path.display()
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(id: &str, photo: &str, label: Label) -> LabelLine {
        LabelLine {
            profile_id: id.into(),
            photo: photo.into(),
            label,
            at: Some(Utc::now()),
        }
    }

    #[test]
    fn appends_survive_reopen_the_last_label_wins_and_a_torn_line_is_cut() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(LABELS);
        {
            let mut f = LabelFile::open(&path).unwrap();
            f.append(&[line("a", "1.jpg", Label::Like), line("a", "2.jpg", Label::Nope)])
                .unwrap();
            f.append(&[line("a", "1.jpg", Label::Nope)]).unwrap();
        }
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(br#"{"profile_id":"b","pho"#)
            .unwrap();
        let latest = read_latest(&path).unwrap();
        assert_eq!(latest.len(), 2, "the torn line is no label");
        assert_eq!(latest[&("a".to_string(), "1.jpg".to_string())], Label::Nope);
        let mut f = LabelFile::open(&path).unwrap();
        f.append(&[line("b", "1.jpg", Label::Like)]).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 4, "{text}");
        assert!(text.lines().all(|l| l.contains("\"at\"")), "{text}");
        assert_eq!(read_latest(&path).unwrap().len(), 3);
    }

    #[test]
    fn a_failed_write_appends_nothing_more() {
        let mut full = LabelFile {
            path: PathBuf::from("/dev/full"),
            file: OpenOptions::new().append(true).open("/dev/full").unwrap(),
            len: 0,
            broken: false,
        };
        assert!(full
            .append(&[line("a", "1.jpg", Label::Like)])
            .unwrap_err()
            .contains("write failed"));
        assert!(full
            .append(&[line("a", "1.jpg", Label::Like)])
            .unwrap_err()
            .contains("earlier write failed"));
    }

    #[test]
    fn a_line_that_is_not_a_label_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(LABELS);
        std::fs::write(
            &path,
            "{\"profile_id\":\"a\",\"photo\":\"1.jpg\",\"label\":\"maybe\"}\n",
        )
        .unwrap();
        let err = read_latest(&path).unwrap_err();
        assert!(err.contains("line 1") && err.contains("maybe"), "{err}");
    }
}
