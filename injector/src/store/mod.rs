//! The one durable store of a node: the journal of active faults and the firing ledger, in
//! one append-only log, `<state-dir>/store.log`.
//!
//! Format: one record per line, `<crc32, 8 hex digits> <JSON>\n` ([`record`]). A record is a
//! change: a fault key's firing count (`fired`), a removed pod's counts forgotten
//! (`forget_pod`), a journal entry written or replaced (`journal`), a journal entry cleared
//! (`clear`). Reading the log in order and applying each record ([`StoreState::apply`])
//! gives the state. The one writer (the daemon's store thread) appends a batch of records
//! with one `write` and one `fdatasync`, and acknowledges them only then.
//!
//! Crash at any point: a record cut short is the last line, without its end of line; it
//! was never acknowledged, so it is dropped ([`log::LogProblem::TornTail`]). A damaged line
//! in the middle is reported with its line and byte offset and skipped; the records after
//! it are kept. Neither is fatal.
//!
//! Compaction: [`StoreFile::open`] always rewrites the log as a snapshot (a header, then one
//! record per live key and entry) into a temp file, fsyncs it, renames it over `store.log`
//! and fsyncs the directory; a damaged log is first kept beside it as
//! `store.log.damaged-<unix-ms>`. The writer compacts the same way when the log has grown to
//! more than four times its live records plus [`COMPACT_SLACK`].
//!
//! Migration: the previous version's `firings.ledger` and `journal/*.json` are read once at
//! open ([`migrate`]), folded in, and removed after the snapshot that holds them is durable.

pub mod file;
pub mod log;
pub mod migrate;
pub mod record;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

pub use file::{read_state, StoreFile, LOG_NAME};
pub use record::{KeyRecord, Record};

use crate::journal::JournalEntry;
use crate::schedule::{belongs_to_pod, LedgerChange};
use crate::scope::FaultKey;

/// Records beyond four times the live ones before the writer compacts the log.
pub const COMPACT_SLACK: usize = 1024;

/// Errors of the store's files.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// A file system operation failed.
    #[error("store: {op} {}: {source}", .path.display())]
    Io {
        /// The operation (`create`, `read`, `write`, `fsync`, `rename`, `open`).
        op: &'static str,
        /// The path.
        path: PathBuf,
        /// The error.
        source: Arc<std::io::Error>,
    },
    /// A record that cannot be encoded.
    #[error("store: encoding a {what} record: {source}")]
    Encode {
        /// Which record (`journal`, `fired`, ...).
        what: &'static str,
        /// The error.
        source: Arc<serde_json::Error>,
    },
}

impl StoreError {
    pub(crate) fn io(op: &'static str, path: &std::path::Path, source: std::io::Error) -> Self {
        StoreError::Io {
            op,
            path: path.to_path_buf(),
            source: Arc::new(source),
        }
    }
}

/// Something met while loading that is reported, never fatal.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreProblem {
    /// The log has a torn or damaged record.
    #[error(transparent)]
    Log(#[from] log::LogProblem),
    /// A line or file of the previous version's state that does not parse (`line` 0: the
    /// whole file).
    #[error("previous version's state {} line {line}: {reason}", .path.display())]
    Old {
        /// The file.
        path: PathBuf,
        /// 1-based line, 0 for the whole file.
        line: usize,
        /// Why.
        reason: String,
    },
}

/// The state the log describes: firing counts and journal entries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoreState {
    /// Firings taken per fault key.
    pub firings: BTreeMap<FaultKey, u32>,
    /// Active faults, by id.
    pub journal: BTreeMap<String, JournalEntry>,
}

impl StoreState {
    /// Applies one record.
    pub fn apply(&mut self, record: Record) {
        match record {
            Record::Header { .. } => {}
            Record::Fired { key, count } => {
                let key = FaultKey::from(key);
                if count == 0 {
                    self.firings.remove(&key);
                } else {
                    self.firings.insert(key, count);
                }
            }
            Record::ForgetPod { pod_uid } => self
                .firings
                .retain(|k, _| !belongs_to_pod(k.scope.pod_uid(), &pod_uid)),
            Record::Journal { entry } => {
                self.journal.insert(entry.id.clone(), entry);
            }
            Record::Clear { id } => {
                self.journal.remove(&id);
            }
        }
    }

    /// The records of a compacted log: the header, every count, every entry.
    pub fn snapshot(&self) -> Vec<Record> {
        let mut records = Vec::with_capacity(1 + self.len());
        records.push(Record::Header {
            version: record::FORMAT_VERSION,
        });
        records.extend(self.firings.iter().map(|(key, &count)| Record::Fired {
            key: key.into(),
            count,
        }));
        records.extend(self.journal.values().map(|entry| Record::Journal {
            entry: entry.clone(),
        }));
        records
    }

    /// Live records (counts and entries).
    pub fn len(&self) -> usize {
        self.firings.len() + self.journal.len()
    }

    /// True when nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The journal entries, oldest applied first (then by id).
    pub fn journal_entries(&self) -> Vec<JournalEntry> {
        let mut entries: Vec<JournalEntry> = self.journal.values().cloned().collect();
        entries.sort_by(|a, b| (a.applied_at_unix_ms, &a.id).cmp(&(b.applied_at_unix_ms, &b.id)));
        entries
    }
}

impl From<LedgerChange> for Record {
    fn from(change: LedgerChange) -> Self {
        match change {
            LedgerChange::Fired { key, count } => Record::Fired {
                key: (&key).into(),
                count,
            },
            LedgerChange::ForgetPod { pod_uid } => Record::ForgetPod { pod_uid },
        }
    }
}

/// Encodes records as log lines.
pub fn encode(records: &[Record]) -> Result<Vec<u8>, StoreError> {
    let mut out = Vec::with_capacity(records.len() * 128);
    for record in records {
        record::encode_line(record, &mut out).map_err(|source| StoreError::Encode {
            what: match record {
                Record::Header { .. } => "header",
                Record::Fired { .. } => "fired",
                Record::ForgetPod { .. } => "forget_pod",
                Record::Journal { .. } => "journal",
                Record::Clear { .. } => "clear",
            },
            source: Arc::new(source),
        })?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
