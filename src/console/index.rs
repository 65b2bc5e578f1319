//! The journal as the console reads it: a compact in-memory index of `decisions.jsonl` (where each
//! line lies, its decision, model and best score), extended by reading only what was appended since
//! the last look, so a page of 100,000 records reads and parses only the lines it shows.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};

use chrono::NaiveDate;

use crate::journal::{Record, DECISIONS};
use crate::profile::Decision;

/// One journal line, as much of it as filtering, paging and ordering need.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Byte offset of the line in `decisions.jsonl`.
    pub offset: u64,
    /// Length of the line, its newline included.
    pub len: u32,
    /// The profile's id.
    pub profile_id: Box<str>,
    /// What was decided.
    pub decision: Decision,
    /// Whether the like matched.
    pub matched: bool,
    /// Index of the model's SHA-256 in [`JournalIndex::models`].
    pub model: u16,
    /// The highest photo score, if any photo was scored.
    pub best: Option<f32>,
    /// The threshold of the decision.
    pub threshold: f32,
    /// The photos that were scored (the ones label mode offers).
    pub scored: Box<[Box<str>]>,
    /// The UTC day of the decision.
    pub day: NaiveDate,
}

/// What a page of decisions shows: one of the filters and a search.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Filter {
    /// `like`, `pass`, `skip` or `matched`; anything else (or none) shows all.
    pub decision: Option<String>,
    /// A model SHA-256 or its prefix.
    pub model: Option<String>,
    /// Part of a profile id or name, any case.
    pub search: Option<String>,
}

/// The counts of one day (or all days), as `swipebot stats` counts them.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Counts {
    /// Profiles decided.
    pub profiles: usize,
    /// Liked.
    pub likes: usize,
    /// Passed.
    pub passes: usize,
    /// Skipped.
    pub skips: usize,
    /// Likes the source acknowledged (not a like sent as a pass on purpose).
    pub likes_sent: usize,
    /// Likes that matched.
    pub matches: usize,
}

impl Counts {
    /// Counts one record in.
    fn add(&mut self, r: &Record) {
        self.profiles += 1;
        match r.decision {
            Decision::Like => self.likes += 1,
            Decision::Pass => self.passes += 1,
            Decision::Skip => self.skips += 1,
        }
        if r.sent && r.decision == Decision::Like && !r.mixed_pass {
            self.likes_sent += 1;
        }
        if r.outcome.as_ref().is_some_and(|o| o.matched) {
            self.matches += 1;
        }
    }

    /// Likes among liked and passed profiles (0 with none).
    pub fn like_rate(&self) -> f64 {
        ratio(self.likes, self.likes + self.passes)
    }

    /// Matches among likes sent (0 with none).
    pub fn match_rate(&self) -> f64 {
        ratio(self.matches, self.likes_sent)
    }
}

/// `a / b`, or 0 when `b` is 0.
fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

/// The index of one journal file.
#[derive(Debug)]
pub struct JournalIndex {
    /// `<state>/decisions.jsonl`.
    path: PathBuf,
    /// Every record line, in file order (oldest first).
    entries: Vec<Entry>,
    /// The last entry of each profile id.
    by_id: HashMap<Box<str>, usize>,
    /// Bytes of the file indexed (up to the end of its last complete line).
    scanned: u64,
    /// Device and inode of the file indexed: the daemon moves a damaged journal aside and writes a
    /// new one, which is indexed from the start.
    identity: Option<(u64, u64)>,
    /// Model SHA-256s, in order of first appearance.
    models: Vec<String>,
    /// Counts per UTC day.
    days: BTreeMap<NaiveDate, Counts>,
    /// Counts of every record.
    total: Counts,
    /// Complete lines that are not records (the daemon moves such a file aside at its next start).
    pub unreadable: usize,
}

impl JournalIndex {
    /// An empty index of `<state_dir>/decisions.jsonl`; [`JournalIndex::refresh`] reads it.
    pub fn new(state_dir: &Path) -> Self {
        JournalIndex {
            path: state_dir.join(DECISIONS),
            entries: Vec::new(),
            by_id: HashMap::new(),
            scanned: 0,
            identity: None,
            models: Vec::new(),
            days: BTreeMap::new(),
            total: Counts::default(),
            unreadable: 0,
        }
    }

    /// Reads what was appended since the last call (everything, if the file was replaced or cut).
    /// A missing journal is an empty one; a torn last line waits for its end.
    pub fn refresh(&mut self) -> Result<(), String> {
        let shown = self.path.display().to_string();
        let named = |e: std::io::Error| format!("journal {shown}: {e}");
        let mut file = match File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                *self = JournalIndex::new(self.path.parent().unwrap_or(Path::new(".")));
                return Ok(());
            }
            Err(e) => return Err(named(e)),
        };
        let meta = file.metadata().map_err(named)?;
        let identity = Some((meta.dev(), meta.ino()));
        if identity != self.identity || meta.len() < self.scanned {
            let path = self.path.clone();
            *self = JournalIndex::new(path.parent().unwrap_or(Path::new(".")));
            self.identity = identity;
        }
        if meta.len() == self.scanned {
            return Ok(());
        }
        file.seek(SeekFrom::Start(self.scanned)).map_err(named)?;
        let mut bytes = Vec::with_capacity((meta.len() - self.scanned) as usize);
        file.take(meta.len() - self.scanned)
            .read_to_end(&mut bytes)
            .map_err(named)?;
        let mut offset = self.scanned;
        for line in bytes.split_inclusive(|b| *b == b'\n') {
            if line.last() != Some(&b'\n') {
                break;
            }
            let start = offset;
            offset += line.len() as u64;
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            match serde_json::from_slice::<Record>(line) {
                Ok(r) => self.add(&r, start, line.len() as u32),
                Err(_) => self.unreadable += 1,
            }
        }
        self.scanned = offset;
        Ok(())
    }

    /// Indexes one record found at `offset`.
    fn add(&mut self, r: &Record, offset: u64, len: u32) {
        let model = match self.models.iter().position(|m| *m == r.model_sha256) {
            Some(i) => i,
            None => {
                self.models.push(r.model_sha256.clone());
                self.models.len() - 1
            }
        };
        let day = r.at.date_naive();
        self.days.entry(day).or_default().add(r);
        self.total.add(r);
        let id: Box<str> = r.profile_id.as_str().into();
        self.by_id.insert(id.clone(), self.entries.len());
        self.entries.push(Entry {
            offset,
            len,
            profile_id: id,
            decision: r.decision,
            matched: r.outcome.as_ref().is_some_and(|o| o.matched),
            model: model.min(u16::MAX as usize) as u16,
            best: r.scores.iter().filter_map(|s| s.score()).reduce(f32::max),
            threshold: r.threshold,
            scored: r
                .scores
                .iter()
                .filter_map(|s| match s {
                    crate::profile::PhotoScore::Scored { photo, .. } => Some(photo.as_str().into()),
                    crate::profile::PhotoScore::Failed { .. } => None,
                })
                .collect(),
            day,
        });
    }

    /// Every indexed record line, oldest first.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// The models seen, in order of first appearance.
    pub fn models(&self) -> &[String] {
        &self.models
    }

    /// Counts per UTC day.
    pub fn days(&self) -> &BTreeMap<NaiveDate, Counts> {
        &self.days
    }

    /// Counts of every record.
    pub fn total(&self) -> Counts {
        self.total
    }

    /// The last entry of `profile_id`.
    pub fn entry(&self, profile_id: &str) -> Option<&Entry> {
        self.by_id.get(profile_id).map(|&i| &self.entries[i])
    }

    /// Page `page` (from 0) of `size` entries matching `filter`, newest first, and how many match
    /// in all. `name` gives a profile's name, for the search.
    pub fn page<'a>(
        &'a self,
        filter: &Filter,
        page: usize,
        size: usize,
        name: impl Fn(&str) -> Option<&'a str>,
    ) -> (Vec<&'a Entry>, usize) {
        let search = filter
            .search
            .as_deref()
            .map(str::to_lowercase)
            .filter(|s| !s.is_empty());
        let model = filter.model.as_deref().filter(|m| !m.is_empty());
        let keep = |e: &&Entry| {
            let decision = match filter.decision.as_deref() {
                Some("like") => e.decision == Decision::Like,
                Some("pass") => e.decision == Decision::Pass,
                Some("skip") => e.decision == Decision::Skip,
                Some("matched") => e.matched,
                _ => true,
            };
            decision
                && model.is_none_or(|m| self.models[e.model as usize].starts_with(m))
                && search.as_deref().is_none_or(|s| {
                    e.profile_id.to_lowercase().contains(s)
                        || name(&e.profile_id).is_some_and(|n| n.to_lowercase().contains(s))
                })
        };
        let mut matching = 0;
        let mut shown = Vec::new();
        let first = page.saturating_mul(size);
        for e in self.entries.iter().rev().filter(keep) {
            if matching >= first && shown.len() < size {
                shown.push(e);
            }
            matching += 1;
        }
        (shown, matching)
    }

    /// Reads the full record of an entry (one positioned read of its line).
    pub fn record(&self, entry: &Entry) -> Result<Record, String> {
        let named = |e: &dyn std::fmt::Display| format!("journal {}: {e}", self.path.display());
        let file = File::open(&self.path).map_err(|e| named(&e))?;
        let mut line = vec![0; entry.len as usize];
        file.read_exact_at(&mut line, entry.offset).map_err(|e| named(&e))?;
        serde_json::from_slice(&line).map_err(|e| named(&format!("the line at byte {}: {e}", entry.offset)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::Journal;
    use crate::profile::{PhotoScore, SwipeOutcome};

    fn record(id: &str, decision: Decision, score: f32, matched: bool) -> Record {
        Record {
            scores: vec![PhotoScore::Scored {
                photo: "1.jpg".into(),
                score,
            }],
            threshold: 0.5,
            model_sha256: if id.starts_with('b') { "bbbb" } else { "aaaa" }.into(),
            sent: true,
            outcome: Some(SwipeOutcome {
                matched,
                ..Default::default()
            }),
            ..Record::new(id, decision, "replay")
        }
    }

    #[test]
    fn pages_come_newest_first_filtered_and_appends_are_read_incrementally() {
        let dir = tempfile::tempdir().unwrap();
        let mut journal = Journal::open(dir.path()).unwrap();
        for i in 0..10 {
            let d = if i % 2 == 0 { Decision::Like } else { Decision::Pass };
            journal
                .record(&record(&format!("a{i}"), d, 0.1 * i as f32, i == 4))
                .unwrap();
        }
        let mut index = JournalIndex::new(dir.path());
        index.refresh().unwrap();
        let ids = |entries: Vec<&Entry>| entries.iter().map(|e| e.profile_id.to_string()).collect::<Vec<_>>();
        let (page, total) = index.page(&Filter::default(), 0, 3, |_| None);
        assert_eq!((ids(page), total), (vec!["a9".into(), "a8".into(), "a7".into()], 10));
        let (page, _) = index.page(&Filter::default(), 3, 3, |_| None);
        assert_eq!(ids(page), ["a0"]);
        let likes = Filter {
            decision: Some("like".into()),
            ..Default::default()
        };
        assert_eq!(index.page(&likes, 0, 100, |_| None).1, 5);
        let matched = Filter {
            decision: Some("matched".into()),
            ..Default::default()
        };
        assert_eq!(ids(index.page(&matched, 0, 100, |_| None).0), ["a4"]);

        journal.record(&record("b1", Decision::Skip, 0.9, false)).unwrap();
        index.refresh().unwrap();
        assert_eq!(index.entries().len(), 11);
        let by_model = Filter {
            model: Some("bb".into()),
            ..Default::default()
        };
        let (page, total) = index.page(&by_model, 0, 10, |_| None);
        assert_eq!((ids(page.clone()), total), (vec!["b1".into()], 1));
        assert_eq!(
            index.record(page[0]).unwrap(),
            Journal::read_all(dir.path()).unwrap()[10]
        );
        let search = Filter {
            search: Some("ALICE".into()),
            ..Default::default()
        };
        let (page, _) = index.page(&search, 0, 10, |id| (id == "a3").then_some("Alice"));
        assert_eq!(ids(page), ["a3"]);
        let total = index.total();
        assert_eq!((total.likes, total.passes, total.skips, total.matches), (5, 5, 1, 1));
        assert!((total.match_rate() - 0.2).abs() < 1e-9);
    }

    #[test]
    fn a_torn_line_waits_and_a_replaced_file_is_read_again() {
        let dir = tempfile::tempdir().unwrap();
        let line = serde_json::to_string(&record("a1", Decision::Like, 0.9, false)).unwrap();
        let path = dir.path().join(DECISIONS);
        std::fs::write(&path, format!("{line}\n{}", &line[..20])).unwrap();
        let mut index = JournalIndex::new(dir.path());
        index.refresh().unwrap();
        assert_eq!(index.entries().len(), 1);
        std::fs::write(dir.path().join("new"), format!("{line}\n{line}\n{line}\n")).unwrap();
        std::fs::rename(dir.path().join("new"), &path).unwrap();
        index.refresh().unwrap();
        assert_eq!(index.entries().len(), 3);
    }
}
