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
use std::io::Write;
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

/// File in the state directory that the running daemon holds locked (and writes its pid into).
pub const LOCK: &str = "lock";

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
    /// A write failed (a full disk, a short write): the file was rolled back to its last complete
    /// line and nothing more is appended by this process.
    #[error("journal {path}: write failed ({source}); rolled back to the last complete record, nothing more is written until a restart", path = path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// Another daemon holds the state directory.
    #[error("state directory {dir} is in use by another swipebot (pid {pid}); stop it, or give this one another state.dir", dir = dir.display())]
    Locked {
        /// The state directory.
        dir: PathBuf,
        /// The holder's pid as it wrote it ("unknown" if unreadable).
        pid: String,
    },
}

impl JournalError {
    /// Whether the failure may pass by itself (a full disk, another daemon on the state
    /// directory), so a restart later can succeed: the process exits with EX_TEMPFAIL (75), which
    /// systemd restarts.
    pub fn is_temporary(&self) -> bool {
        use std::io::ErrorKind::{QuotaExceeded, StorageFull, WriteZero};
        match self {
            JournalError::Write { .. } | JournalError::Locked { .. } => true,
            JournalError::Io { source, .. } => matches!(source.kind(), StorageFull | QuotaExceeded | WriteZero),
        }
    }
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
    /// `decisions.jsonl`.
    decisions: AppendFile,
    /// `pending.jsonl`.
    pending: AppendFile,
    /// The state directory's lock, held as long as the journal is open.
    _lock: File,
}

impl Files {
    /// Appends and syncs a final record to `decisions.jsonl`.
    pub(crate) fn append_record(&mut self, record: &Record) -> Result<(), JournalError> {
        self.decisions.append(record)
    }

    /// Appends and syncs a swipe intent to `pending.jsonl`.
    pub(crate) fn append_intent(&mut self, record: &Record) -> Result<(), JournalError> {
        self.pending.append(record)
    }
}

/// One JSON Lines file opened for appending, with the length of its last complete line, so a
/// failed write can be rolled back and never leaves half a line for later appends to follow.
#[derive(Debug)]
struct AppendFile {
    /// The file.
    path: PathBuf,
    /// The open handle (append mode).
    file: File,
    /// Length up to the end of the last complete line written.
    len: u64,
    /// A write failed: this process appends nothing more (the disk may be full).
    broken: bool,
}

impl AppendFile {
    /// Opens `path` for appending (creating it).
    fn open(path: &Path) -> Result<Self, JournalError> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(io_err(path))?;
        let len = file.metadata().map_err(io_err(path))?.len();
        Ok(AppendFile {
            path: path.to_path_buf(),
            file,
            len,
            broken: false,
        })
    }

    /// Writes one record as a line and syncs it; on failure, cuts the file back to its last
    /// complete line and refuses every later append.
    fn append(&mut self, record: &Record) -> Result<(), JournalError> {
        if self.broken {
            return Err(JournalError::Write {
                path: self.path.clone(),
                source: std::io::Error::other("an earlier write failed"),
            });
        }
        let mut line = serde_json::to_vec(record).expect("records serialise");
        line.push(b'\n');
        match self.file.write_all(&line).and_then(|()| self.file.sync_data()) {
            Ok(()) => {
                self.len += line.len() as u64;
                Ok(())
            }
            Err(source) => {
                self.broken = true;
                if let Err(e) = self.file.set_len(self.len).and_then(|()| self.file.sync_all()) {
                    tracing::error!(file = %self.path.display(), "could not roll back a failed write: {e}; the next start cuts the torn line off");
                }
                Err(JournalError::Write {
                    path: self.path.clone(),
                    source,
                })
            }
        }
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

/// Reads the records of a JSON Lines file. A last line without its newline is a write cut short:
/// it is cut off (nothing was acted on for it). A complete line that is not a record is damage: the
/// file is moved aside whole (kept, named in an error log line) and a new file with the valid
/// records takes its place, so the daemon carries on from them.
fn read_records(path: &Path) -> Result<Vec<Record>, JournalError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err(path)(e)),
    };
    // Where each valid record's line lies: copied out only if a damaged line forces a rewrite.
    let (mut records, mut valid, mut damaged) = (Vec::new(), Vec::new(), Vec::new());
    let mut complete_len = 0;
    for (i, line) in bytes.split_inclusive(|b| *b == b'\n').enumerate() {
        if line.last() != Some(&b'\n') {
            break;
        }
        let start = complete_len;
        complete_len += line.len();
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match serde_json::from_slice::<Record>(line) {
            Ok(r) => {
                records.push(r);
                valid.push(start..complete_len);
            }
            Err(e) => damaged.push(format!("line {}: {e}", i + 1)),
        }
    }
    if !damaged.is_empty() {
        let aside = path.with_extension(format!(
            "jsonl.damaged-{}",
            chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ")
        ));
        let kept: Vec<u8> = valid.into_iter().flat_map(|r| bytes[r].iter().copied()).collect();
        std::fs::rename(path, &aside).map_err(io_err(path))?;
        swipebot_core::fsutil::write_atomic(path, &kept).map_err(io_err(path))?;
        tracing::error!(
            file = %path.display(),
            moved_to = %aside.display(),
            damaged = %damaged.join("; "),
            kept = records.len(),
            "journal lines that are not records: the file was moved aside (kept as it was) and the valid records carried on; look at it before deleting it"
        );
    } else if complete_len != bytes.len() {
        tracing::warn!(file = %path.display(), cut = bytes.len() - complete_len, "journal ended in a torn write; cutting it off");
        let f = OpenOptions::new().write(true).open(path).map_err(io_err(path))?;
        f.set_len(complete_len as u64).map_err(io_err(path))?;
        f.sync_all().map_err(io_err(path))?;
    }
    Ok(records)
}

/// Checks that `dir` can hold a journal now: it exists or can be made, it is writable, and no
/// other daemon holds it (the lock is taken and let go at once). Nothing else is written.
pub fn check_dir(dir: &Path) -> Result<(), JournalError> {
    std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    lock_dir(dir).map(drop)
}

/// Syncs a directory, so the files created in it survive a crash. File systems that cannot sync a
/// directory (they return an error for the attempt) are left as they are.
fn sync_dir(dir: &Path) -> Result<(), JournalError> {
    let d = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    match File::open(d).and_then(|f| f.sync_all()) {
        Err(e) if e.kind() == std::io::ErrorKind::StorageFull => Err(io_err(d)(e)),
        _ => Ok(()),
    }
}

/// Takes the state directory's exclusive lock (`flock` on `dir/lock`) and writes this process's
/// pid into it; another daemon holding it is [`JournalError::Locked`], naming its pid.
fn lock_dir(dir: &Path) -> Result<File, JournalError> {
    let path = dir.join(LOCK);
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&path)
        .map_err(io_err(&path))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let pid = std::fs::read_to_string(&path).unwrap_or_default().trim().to_string();
            return Err(JournalError::Locked {
                dir: dir.to_path_buf(),
                pid: if pid.is_empty() { "unknown".into() } else { pid },
            });
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(io_err(&path)(e)),
    }
    file.set_len(0).map_err(io_err(&path))?;
    file.write_all(format!("{}\n", std::process::id()).as_bytes())
        .map_err(io_err(&path))?;
    Ok(file)
}

impl Journal {
    /// Opens (creating if needed) the journal in `dir` and recovers from any crash.
    pub fn open(dir: &Path) -> Result<Self, JournalError> {
        let created = !dir.join(DECISIONS).exists();
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        let lock = lock_dir(dir)?;
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
        let files = Files {
            decisions: AppendFile::open(&decisions_path)?,
            pending: AppendFile::open(&pending_path)?,
            _lock: lock,
        };
        if created {
            // A new journal's directory entries must survive a crash too: sync the state
            // directory and the folder it was created in.
            for d in [Some(dir), dir.parent()].into_iter().flatten() {
                sync_dir(d)?;
            }
        }
        Ok(Journal {
            files,
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
    use chrono::{DateTime, Utc};

    fn record(id: &str, decision: Decision, sent: bool) -> Record {
        Record {
            scores: vec![PhotoScore::Scored {
                photo: "1.jpg".into(),
                score: 0.5,
            }],
            threshold: 0.4,
            model_sha256: "ab".into(),
            sent,
            ..Record::new(id, decision, "replay")
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
    fn a_like_counts_on_the_day_it_was_sent_not_the_day_it_was_decided() {
        let dir = tempfile::tempdir().unwrap();
        let day = |s: &str| chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
        let at = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        let mut late = record("a", Decision::Like, true);
        late.at = at("2026-11-28T23:59:50Z");
        late.sent_at = Some(at("2026-11-29T00:00:05Z"));
        {
            let mut j = Journal::open(dir.path()).unwrap();
            j.record(&late).unwrap();
            assert_eq!(j.likes_on(day("2026-11-28")), 0);
            assert_eq!(j.likes_on(day("2026-11-29")), 1);
        }
        let j = Journal::open(dir.path()).unwrap();
        assert_eq!(j.likes_on(day("2026-11-29")), 1, "and so after a restart");
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
    fn a_damaged_line_moves_the_file_aside_and_the_valid_records_carry_on() {
        let dir = tempfile::tempdir().unwrap();
        let a = serde_json::to_string(&record("a", Decision::Pass, true)).unwrap();
        let c = serde_json::to_string(&record("c", Decision::Like, true)).unwrap();
        // A complete line that is not a record, in the middle and as the last line (a model that
        // wrote `"score": null` before non-finite scores became photo errors).
        let null_score = a.replace("0.5", "null").replace("\"a\"", "\"b\"");
        let original = format!("{a}\nnot json\n{c}\n{null_score}\n");
        std::fs::write(dir.path().join(DECISIONS), &original).unwrap();
        let j = Journal::open(dir.path()).unwrap();
        assert!(j.is_decided("a") && j.is_decided("c") && !j.is_decided("b"));
        let aside: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.to_string_lossy().contains(".damaged-"))
            .collect();
        assert_eq!(aside.len(), 1, "{aside:?}");
        assert_eq!(std::fs::read_to_string(&aside[0]).unwrap(), original, "kept as it was");
        assert_eq!(
            std::fs::read_to_string(dir.path().join(DECISIONS)).unwrap(),
            format!("{a}\n{c}\n")
        );
    }

    #[test]
    fn a_second_journal_on_the_same_directory_is_refused_naming_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let _first = Journal::open(dir.path()).unwrap();
        let err = Journal::open(dir.path()).unwrap_err();
        assert!(err.is_temporary());
        let text = err.to_string();
        assert!(text.contains(&format!("pid {}", std::process::id())), "{text}");
        drop(_first);
        Journal::open(dir.path()).expect("free again once the first is closed");
    }

    #[test]
    fn a_failed_write_appends_nothing_more() {
        // /dev/full answers every write with ENOSPC.
        let mut full = AppendFile::open(Path::new("/dev/full")).unwrap();
        let err = full.append(&record("a", Decision::Pass, true)).unwrap_err();
        assert!(err.is_temporary(), "{err}");
        assert!(matches!(err, JournalError::Write { .. }));
        let again = full.append(&record("b", Decision::Pass, true)).unwrap_err();
        assert!(again.to_string().contains("earlier write failed"), "{again}");
    }
}
