//! The crash-safe decision journal.
//!
//! `<state_dir>/decisions.jsonl` holds one JSON object per profile, appended and synced, never
//! rewritten. A swipe is first written as an intent to `<state_dir>/pending.jsonl` (synced) before it
//! is sent; once the source acknowledges it, the full record goes to `decisions.jsonl`. After a crash
//! or `kill -9`:
//! - a torn last line (a write cut short) is cut off: nothing was acted on for it;
//! - profiles in `decisions.jsonl` or `pending.jsonl` are never decided again;
//! - intents without a record are *unresolved*: the daemon sends the same swipe again (like and pass
//!   are idempotent at the source) and records it, so nothing acted on is lost or duplicated.

use std::collections::{HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::profile::Decision;

mod handle;
mod record;

pub use handle::JournalHandle;

pub use record::Record;

/// File name of the decision records.
pub const DECISIONS: &str = "decisions.jsonl";
/// File name of the swipe intents.
pub const PENDING: &str = "pending.jsonl";

/// The journal could not be opened or written.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// An I/O error on a journal file.
    #[error("journal {path}: {source}", path = path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A complete line that is not a record: something else wrote to the file.
    #[error("journal {path}, line {line}: not a decision record ({message}); move the file aside to start a new journal", path = path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// The parse error.
        message: String,
    },
}

/// An open journal: its files, what has been decided so far, and the intents a crash left
/// unacknowledged. Synchronous; the daemon reaches it only through [`JournalHandle`].
#[derive(Debug)]
pub struct Journal {
    /// The append handles.
    files: Files,
    /// What has been decided, for lookups.
    index: Index,
    /// Intents found at open without a record: the daemon sends them again.
    unresolved: HashMap<String, Record>,
}

/// The journal's two append-only files, each write synced before it returns.
#[derive(Debug)]
pub(crate) struct Files {
    /// The state directory.
    dir: PathBuf,
    /// `decisions.jsonl`, opened for appending.
    decisions: File,
    /// `pending.jsonl`, opened for appending.
    pending: File,
}

impl Files {
    /// Appends and syncs a final record to `decisions.jsonl`.
    pub(crate) fn append_record(&mut self, record: &Record) -> Result<(), JournalError> {
        append(&mut self.decisions, &self.dir.join(DECISIONS), record)
    }

    /// Appends and syncs a swipe intent to `pending.jsonl`.
    pub(crate) fn append_intent(&mut self, record: &Record) -> Result<(), JournalError> {
        append(&mut self.pending, &self.dir.join(PENDING), record)
    }
}

/// What the journal says has been decided: kept in memory, updated after each synced write, so a
/// lookup never touches the disk.
#[derive(Debug, Default)]
pub(crate) struct Index {
    /// Profiles recorded or with an intent written: never decided again.
    decided: HashSet<String>,
    /// Likes acknowledged per UTC day (of sending), for the daily like budget.
    likes_by_day: HashMap<chrono::NaiveDate, u64>,
    /// Profiles claimed by a task of this run and not recorded yet: a repeat is dropped.
    in_flight: HashSet<String>,
}

/// What a profile id is to the daemon when a source offers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// New: it is now claimed by the caller, who must record it or release it.
    New,
    /// A task of this run is deciding it right now.
    InFlight,
    /// Recorded, or an intent awaits resolution.
    Decided,
}

impl Index {
    /// Takes note of a record written to `decisions.jsonl`.
    pub(crate) fn note_record(&mut self, record: &Record) {
        self.in_flight.remove(&record.profile_id);
        self.decided.insert(record.profile_id.clone());
        if record.decision == Decision::Like && record.sent {
            let day = record.sent_at.unwrap_or(record.at).date_naive();
            *self.likes_by_day.entry(day).or_insert(0) += 1;
        }
    }

    /// Takes note of an intent written to `pending.jsonl`.
    pub(crate) fn note_intent(&mut self, record: &Record) {
        self.in_flight.remove(&record.profile_id);
        self.decided.insert(record.profile_id.clone());
    }

    /// Claims `profile_id` for deciding, unless it is decided or being decided.
    pub(crate) fn claim(&mut self, profile_id: &str) -> Claim {
        if self.decided.contains(profile_id) {
            Claim::Decided
        } else if self.in_flight.insert(profile_id.to_string()) {
            Claim::New
        } else {
            Claim::InFlight
        }
    }

    /// Gives up a claim that ended without a record or an intent.
    pub(crate) fn release(&mut self, profile_id: &str) {
        self.in_flight.remove(profile_id);
    }

    /// Whether `profile_id` was decided before (recorded, or an intent awaiting resolution).
    pub(crate) fn is_decided(&self, profile_id: &str) -> bool {
        self.decided.contains(profile_id)
    }

    /// Likes sent on a given (UTC) day.
    pub(crate) fn likes_on(&self, day: chrono::NaiveDate) -> u64 {
        self.likes_by_day.get(&day).copied().unwrap_or(0)
    }
}

/// Wraps an I/O error on `path` into a [`JournalError`] naming the file.
fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> JournalError + '_ {
    move |source| JournalError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Reads the records of a JSON Lines file, cutting off a torn last line.
fn read_records(path: &Path) -> Result<Vec<Record>, JournalError> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err(path)(e)),
    };
    let mut reader = BufReader::new(file);
    let (mut records, mut good_len, mut line_no) = (Vec::new(), 0u64, 0usize);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        let n = reader.read_until(b'\n', &mut buf).map_err(io_err(path))?;
        if n == 0 {
            break;
        }
        line_no += 1;
        // A last line without its newline is a write cut short, whatever it holds.
        if buf.last() != Some(&b'\n') {
            break;
        }
        match serde_json::from_slice::<Record>(&buf) {
            Ok(r) => {
                records.push(r);
                good_len += n as u64;
            }
            Err(e) => {
                // A complete but unparsable line is only acceptable as the very last one (torn
                // inside a partially flushed write); anywhere else it is corruption.
                let mut rest = Vec::new();
                std::io::Read::read_to_end(&mut reader, &mut rest).map_err(io_err(path))?;
                if rest.iter().all(u8::is_ascii_whitespace) {
                    break;
                }
                return Err(JournalError::Corrupt {
                    path: path.to_path_buf(),
                    line: line_no,
                    message: e.to_string(),
                });
            }
        }
    }
    let len = std::fs::metadata(path).map_err(io_err(path))?.len();
    if len != good_len {
        tracing::warn!(file = %path.display(), cut = len - good_len, "journal ended in a torn write; cutting it off");
        let f = OpenOptions::new().write(true).open(path).map_err(io_err(path))?;
        f.set_len(good_len).map_err(io_err(path))?;
        f.sync_all().map_err(io_err(path))?;
    }
    Ok(records)
}

/// Opens `path` for appending, creating it.
fn open_append(path: &Path) -> Result<File, JournalError> {
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(io_err(path))?;
    f.seek(SeekFrom::End(0)).map_err(io_err(path))?;
    Ok(f)
}

/// Writes one record as a line and syncs it.
fn append(file: &mut File, path: &Path, record: &Record) -> Result<(), JournalError> {
    let mut line = serde_json::to_vec(record).expect("records serialise");
    line.push(b'\n');
    file.write_all(&line).map_err(io_err(path))?;
    file.sync_data().map_err(io_err(path))
}

impl Journal {
    /// Opens (creating if needed) the journal in `dir` and recovers from any crash.
    pub fn open(dir: &Path) -> Result<Self, JournalError> {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        let decisions_path = dir.join(DECISIONS);
        let pending_path = dir.join(PENDING);
        let records = read_records(&decisions_path)?;
        let intents = read_records(&pending_path)?;
        let mut index = Index::default();
        for r in &records {
            index.note_record(r);
        }
        let unresolved: HashMap<String, Record> = intents
            .into_iter()
            .filter(|r| !index.is_decided(&r.profile_id))
            .map(|r| (r.profile_id.clone(), r))
            .collect();
        // Keep only the unresolved intents, so the file does not grow without bound.
        let mut kept: Vec<&Record> = unresolved.values().collect();
        kept.sort_by_key(|r| r.at);
        let mut bytes = Vec::new();
        for r in kept {
            serde_json::to_writer(&mut bytes, r).expect("records serialise");
            bytes.push(b'\n');
        }
        swipebot_core::fsutil::write_atomic(&pending_path, &bytes).map_err(io_err(&pending_path))?;
        for r in unresolved.values() {
            index.note_intent(r);
        }
        Ok(Journal {
            files: Files {
                decisions: open_append(&decisions_path)?,
                pending: open_append(&pending_path)?,
                dir: dir.to_path_buf(),
            },
            index,
            unresolved,
        })
    }

    /// Whether `profile_id` was decided before (recorded, or an intent awaiting resolution).
    pub fn is_decided(&self, profile_id: &str) -> bool {
        self.index.is_decided(profile_id)
    }

    /// Writes and syncs a swipe intent: call before sending the swipe.
    pub fn record_intent(&mut self, record: &Record) -> Result<(), JournalError> {
        self.files.append_intent(record)?;
        self.index.note_intent(record);
        Ok(())
    }

    /// Writes and syncs a final record.
    pub fn record(&mut self, record: &Record) -> Result<(), JournalError> {
        self.files.append_record(record)?;
        self.index.note_record(record);
        Ok(())
    }

    /// Likes sent on a given (UTC) day, for the daily like budget.
    pub fn likes_on(&self, day: chrono::NaiveDate) -> u64 {
        self.index.likes_on(day)
    }

    /// Splits the journal into what the async facade keeps apart: the files (written on blocking
    /// threads), the index (read from async code) and the unresolved intents.
    pub(crate) fn into_parts(self) -> (Files, Index, Vec<Record>) {
        let mut unresolved: Vec<Record> = self.unresolved.into_values().collect();
        unresolved.sort_by_key(|r| r.at);
        (self.files, self.index, unresolved)
    }

    /// Reads every record of a journal directory (for tools and tests).
    pub fn read_all(dir: &Path) -> Result<Vec<Record>, JournalError> {
        read_records(&dir.join(DECISIONS))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::PhotoScore;
    use chrono::Utc;

    fn record(id: &str, decision: Decision, sent: bool) -> Record {
        Record {
            profile_id: id.into(),
            decision,
            scores: vec![PhotoScore::Scored {
                photo: "1.jpg".into(),
                score: 0.5,
            }],
            threshold: 0.4,
            model_sha256: "ab".into(),
            source: "replay".into(),
            at: Utc::now(),
            sent,
            sent_at: None,
            outcome: None,
            error: None,
            dry_run: false,
            resolved_after_restart: false,
            mixed_pass: false,
        }
    }

    #[test]
    fn records_survive_reopen_and_intents_become_unresolved() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut j = Journal::open(dir.path()).unwrap();
            j.record(&record("a", Decision::Like, true)).unwrap();
            j.record_intent(&record("b", Decision::Pass, false)).unwrap();
            j.record_intent(&record("c", Decision::Like, false)).unwrap();
            j.record(&record("c", Decision::Like, true)).unwrap();
        }
        let j = Journal::open(dir.path()).unwrap();
        assert!(j.is_decided("a") && j.is_decided("b") && j.is_decided("c") && !j.is_decided("d"));
        assert_eq!(j.likes_on(Utc::now().date_naive()), 2);
        let (_, _, unresolved) = j.into_parts();
        assert_eq!(unresolved.len(), 1);
        assert_eq!(unresolved[0].profile_id, "b");
        // The intent file was compacted to the one unresolved intent.
        let pending = std::fs::read_to_string(dir.path().join(PENDING)).unwrap();
        assert_eq!(pending.lines().count(), 1);
    }

    #[test]
    fn a_torn_last_line_is_cut_off_and_appends_continue_cleanly() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut j = Journal::open(dir.path()).unwrap();
            j.record(&record("a", Decision::Pass, true)).unwrap();
        }
        let path = dir.path().join(DECISIONS);
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(br#"{"profile_id":"b","decis"#).unwrap();
        drop(f);
        {
            let mut j = Journal::open(dir.path()).unwrap();
            assert!(!j.is_decided("b"));
            j.record(&record("b", Decision::Pass, true)).unwrap();
        }
        let all = Journal::read_all(dir.path()).unwrap();
        assert_eq!(
            all.iter().map(|r| r.profile_id.as_str()).collect::<Vec<_>>(),
            ["a", "b"]
        );
    }

    #[test]
    fn corruption_in_the_middle_is_an_error_naming_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let line = serde_json::to_string(&record("a", Decision::Pass, true)).unwrap();
        std::fs::write(dir.path().join(DECISIONS), format!("{line}\nnot json\n{line}\n")).unwrap();
        let err = Journal::open(dir.path()).unwrap_err().to_string();
        assert!(err.contains("line 2") && err.contains(DECISIONS), "{err}");
    }
}
