//! The daemon's journal as the tests read it.

use std::collections::HashMap;
use std::path::Path;

use swipebot::journal::{Journal, Record};

/// Records by profile id; panics on a profile journaled twice (what a crash must never cause).
pub fn by_id(records: impl IntoIterator<Item = Record>) -> HashMap<String, Record> {
    let mut out = HashMap::new();
    for r in records {
        let id = r.profile_id.clone();
        assert!(out.insert(id.clone(), r).is_none(), "profile {id} journaled twice");
    }
    out
}

/// Every record of the journal in `state`, by profile id (see [`by_id`]).
pub fn journaled(state: &Path) -> HashMap<String, Record> {
    let records = Journal::read_all(state).unwrap_or_else(|e| panic!("{e}"));
    by_id(records)
}

/// Complete lines of a journal file (0 when it does not exist yet), without parsing them: cheap
/// enough to poll every millisecond while a daemon writes.
pub fn lines(file: &Path) -> usize {
    std::fs::read(file).map_or(0, |bytes| bytes.iter().filter(|&&b| b == b'\n').count())
}
