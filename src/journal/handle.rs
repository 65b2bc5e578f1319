//! The daemon's one way to the journal, for async code.
//!
//! Writes (each synced before it returns) run on tokio's blocking pool, holding the files' lock only
//! there; the index of what has been decided lives behind a lock of its own that is never held
//! across I/O, so a lookup from a runtime thread never waits for a disk sync.

use std::sync::{Arc, Mutex};

use crate::journal::{Claim, Files, Index, Journal, JournalError, Record};

/// An open journal shared by the daemon's tasks.
#[derive(Debug)]
pub struct JournalHandle {
    /// The append-only files; locked only on blocking threads.
    files: Arc<Mutex<Files>>,
    /// What has been decided; updated after each synced write.
    index: Mutex<Index>,
}

impl JournalHandle {
    /// Wraps an open journal; returns the handle and the intents a crash left unacknowledged
    /// (oldest first), which the daemon must resend.
    pub fn new(journal: Journal) -> (Self, Vec<Record>) {
        let (files, index, unresolved) = journal.into_parts();
        let handle = JournalHandle {
            files: Arc::new(Mutex::new(files)),
            index: Mutex::new(index),
        };
        (handle, unresolved)
    }

    /// Whether `profile_id` was decided before (recorded, or an intent awaiting resolution).
    pub fn is_decided(&self, profile_id: &str) -> bool {
        self.index.lock().expect("journal index lock").is_decided(profile_id)
    }

    /// Claims `profile_id` for deciding: [`Claim::New`] once, until it is recorded or released;
    /// a repeat while it is in flight or after it was decided gets the other answers.
    pub fn claim(&self, profile_id: &str) -> Claim {
        self.index.lock().expect("journal index lock").claim(profile_id)
    }

    /// Gives up a claim whose task ended without writing a record or an intent (abandoned at
    /// shutdown, or stopped by an error), so the profile can be decided another time.
    pub fn release(&self, profile_id: &str) {
        self.index.lock().expect("journal index lock").release(profile_id);
    }

    /// Likes acknowledged on a given (UTC) day.
    pub fn likes_on(&self, day: chrono::NaiveDate) -> u64 {
        self.index.lock().expect("journal index lock").likes_on(day)
    }

    /// Writes and syncs a final record, then notes it in the index.
    pub async fn record(&self, record: Record) -> Result<(), JournalError> {
        let record = self.write(record, Files::append_record).await?;
        self.index.lock().expect("journal index lock").note_record(&record);
        Ok(())
    }

    /// Writes and syncs a swipe intent (call before sending the swipe), then notes it in the index.
    pub async fn record_intent(&self, record: Record) -> Result<(), JournalError> {
        let record = self.write(record, Files::append_intent).await?;
        self.index.lock().expect("journal index lock").note_intent(&record);
        Ok(())
    }

    /// Runs one append on the blocking pool and hands the record back.
    async fn write(
        &self,
        record: Record,
        append: fn(&mut Files, &Record) -> Result<(), JournalError>,
    ) -> Result<Record, JournalError> {
        let files = Arc::clone(&self.files);
        tokio::task::spawn_blocking(move || {
            append(&mut files.lock().expect("journal files lock"), &record)?;
            Ok(record)
        })
        .await
        .expect("journal writer panicked")
    }
}
