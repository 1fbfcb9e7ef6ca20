//! The durable journal of active faults: what to undo, written before the fault is applied.
//!
//! One JSON file per active fault, `<dir>/<fault-id>.json` (the directory is the plugin's state
//! directory + `/journal`, mode 0700). [`Journal::record`] writes an entry atomically — a temp
//! file `.<fault-id>.json.<n>.tmp`, fsync, rename over `<fault-id>.json`, fsync of the
//! directory — and the caller does it BEFORE the side effect, so a crash at any point leaves
//! either no entry and no fault, or an entry whose recovery is safe to run (thawing a thawed
//! cgroup, killing an exited process or restoring an unchanged score is a no-op).
//! [`Journal::clear`] deletes the entry after recovery. [`Journal::load`] reads every entry at
//! startup; a file that does not parse is reported with its path and moved aside to
//! `<name>.corrupt`, never fatal; leftover temp files are ignored (and removed by
//! [`Journal::open`]).
//!
//! An entry's [`Recovery`] is self-contained: [`recover_entry`] undoes the fault from the entry
//! alone, through its kind's own recovery in [`crate::faults`] (thaw a freezer location, kill
//! stressor processes named by PID and start time, restore OOM scores, remove netem), at the
//! deadline, at container stop, at shutdown, and at startup replay.

mod recover;

use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::annotations::FaultKind;
use crate::faults::oom::SavedScore;
use crate::seams::cgroup::FreezerLocation;

pub use recover::{kill_if_same, recover_entry};

/// Errors of the journal.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// A fault id that cannot be a file name.
    #[error("fault id {}: {reason}", crate::annotations::quote(.id))]
    InvalidId {
        /// The id.
        id: String,
        /// Why it is refused.
        reason: &'static str,
    },
    /// A journal file that does not parse (moved aside when possible).
    #[error("journal file {}: {reason}{}", .path.display(), match .moved_to { Some(p) => format!(" (moved to {})", p.display()), None => String::new() })]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// Why it does not parse.
        reason: String,
        /// Where it was moved.
        moved_to: Option<PathBuf>,
    },
    /// Encoding an entry failed.
    #[error("fault {id}: encoding the journal entry: {source}")]
    Encode {
        /// The fault id.
        id: String,
        /// The error.
        source: serde_json::Error,
    },
    /// A file system operation failed.
    #[error("journal: {op} {}: {source}", .path.display())]
    Io {
        /// The operation (`create`, `write`, `fsync`, `rename`, `remove`, `list`).
        op: &'static str,
        /// The path.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
}

fn io_err(op: &'static str, path: &Path, source: io::Error) -> JournalError {
    JournalError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// A process named by PID and start time (field 22 of `/proc/<pid>/stat`), so a reused PID
/// is never mistaken for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessId {
    /// The process id.
    pub pid: u32,
    /// Its start time in clock ticks after boot.
    pub start_time: u64,
}

/// How to undo a fault, from the journal alone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Recovery {
    /// Thaw this freezer (`freeze`).
    Thaw {
        /// Where the freezer is.
        freezer: FreezerLocation,
    },
    /// SIGKILL these stressor processes (`stress`, `oom` kill).
    KillStressors {
        /// The stressors.
        processes: Vec<ProcessId>,
    },
    /// Write these OOM scores back (`oom` score).
    RestoreOomScores {
        /// The previous scores.
        saved: Vec<SavedScore>,
    },
    /// Remove the netem qdiscs nri-chaos installed in this namespace, putting back what was
    /// there before (`netem`).
    RemoveNetem {
        /// The pod's network namespace (CNI bind mount or `/proc/<pid>/ns/net`).
        netns: PathBuf,
        /// The shaped interfaces.
        interfaces: Vec<crate::seams::netlink::ShapedInterface>,
    },
}

/// One active fault.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JournalEntry {
    /// The fault id ([`new_fault_id`]); also the file name.
    pub id: String,
    /// `namespace/name`.
    pub pod: String,
    /// Pod UID.
    pub pod_uid: String,
    /// Container id.
    pub container_id: String,
    /// Container name.
    pub container_name: String,
    /// The fault kind, as its name (`freeze`, `oom`, ...).
    #[serde(with = "kind_name")]
    pub kind: FaultKind,
    /// When it was applied (ms since the Unix epoch).
    pub applied_at_unix_ms: u64,
    /// When it must be recovered (ms since the Unix epoch), if it has a duration.
    pub deadline_unix_ms: Option<u64>,
    /// How to undo it.
    pub recovery: Recovery,
    /// Where it came from: the annotation key, or `ctl` (for `ctl list` after a restart).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub source: String,
    /// The annotation value, as written (for `ctl list` after a restart).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub value: String,
}

mod kind_name {
    use serde::{Deserialize, Deserializer, Serializer};

    use crate::annotations::FaultKind;

    pub fn serialize<S: Serializer>(kind: &FaultKind, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(kind.as_str())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<FaultKind, D::Error> {
        let name = String::deserialize(d)?;
        name.parse().map_err(serde::de::Error::custom)
    }
}

/// Milliseconds since the Unix epoch, now.
pub fn now_unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

static ID_COUNTER: AtomicU64 = AtomicU64::new(0);
static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A new fault id, unique across restarts and processes: `<unix-ms>-<pid>-<counter>`.
pub fn new_fault_id() -> String {
    format!(
        "{}-{}-{}",
        now_unix_ms(),
        std::process::id(),
        ID_COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

fn check_id(id: &str) -> Result<(), JournalError> {
    let bad = |reason| {
        Err(JournalError::InvalidId {
            id: id.to_string(),
            reason,
        })
    };
    if id.is_empty() || id.len() > 200 {
        return bad("must be 1 to 200 characters");
    }
    if id.starts_with('.') {
        return bad("must not start with '.'");
    }
    if !id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        return bad("may only hold ASCII letters, digits, '-', '_' and '.'");
    }
    Ok(())
}

/// The journal directory.
#[derive(Debug, Clone)]
pub struct Journal {
    dir: PathBuf,
}

const SUFFIX: &str = ".json";

/// The fault id of an entry's file name; None for temp files and other names.
fn entry_stem(name: &str) -> Option<&str> {
    name.strip_suffix(SUFFIX).filter(|_| !name.starts_with('.'))
}

impl Journal {
    /// Opens (creating it with mode 0700) the journal directory, and removes temp files left
    /// by an interrupted [`Journal::record`].
    pub fn open(dir: impl Into<PathBuf>) -> Result<Journal, JournalError> {
        let dir = dir.into();
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(|e| io_err("create", &dir, e))?;
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700))
            .map_err(|e| io_err("chmod", &dir, e))?;
        let journal = Journal { dir };
        for name in journal.names()? {
            if name.starts_with('.') && name.ends_with(".tmp") {
                let path = journal.dir.join(&name);
                if let Err(e) = fs::remove_file(&path) {
                    tracing::warn!(path = %path.display(), error = %e, "journal: cannot remove stale temp file");
                }
            }
        }
        Ok(journal)
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file of fault `id`.
    pub fn path_of(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}{SUFFIX}"))
    }

    fn names(&self) -> Result<Vec<String>, JournalError> {
        let entries = fs::read_dir(&self.dir).map_err(|e| io_err("list", &self.dir, e))?;
        let mut names: Vec<String> = entries
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .collect();
        names.sort();
        Ok(names)
    }

    /// How many entries the journal holds (names only, nothing is read).
    pub fn count(&self) -> usize {
        self.names()
            .map(|names| names.iter().filter_map(|n| entry_stem(n)).count())
            .unwrap_or(0)
    }

    fn sync_dir(&self) -> Result<(), JournalError> {
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| io_err("fsync", &self.dir, e))
    }

    /// Writes `entry` durably and atomically (temp file, fsync, rename, fsync of the
    /// directory). Call it BEFORE applying the fault.
    pub fn record(&self, entry: &JournalEntry) -> Result<(), JournalError> {
        check_id(&entry.id)?;
        let json = serde_json::to_vec_pretty(entry).map_err(|source| JournalError::Encode {
            id: entry.id.clone(),
            source,
        })?;
        let tmp = self.dir.join(format!(
            ".{}{SUFFIX}.{}.tmp",
            entry.id,
            TMP_COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let written = File::create(&tmp)
            .map_err(|e| io_err("create", &tmp, e))
            .and_then(|mut f| {
                f.write_all(&json).map_err(|e| io_err("write", &tmp, e))?;
                f.sync_all().map_err(|e| io_err("fsync", &tmp, e))
            });
        let path = self.path_of(&entry.id);
        let renamed =
            written.and_then(|()| fs::rename(&tmp, &path).map_err(|e| io_err("rename", &path, e)));
        if let Err(e) = renamed {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
        self.sync_dir()
    }

    /// Replaces the entry (same as [`Journal::record`]).
    pub fn update(&self, entry: &JournalEntry) -> Result<(), JournalError> {
        self.record(entry)
    }

    /// Deletes the entry of fault `id` after recovery; a missing file is fine.
    pub fn clear(&self, id: &str) -> Result<(), JournalError> {
        check_id(id)?;
        let path = self.path_of(id);
        match fs::remove_file(&path) {
            Ok(()) => self.sync_dir(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err("remove", &path, e)),
        }
    }

    /// Every entry, sorted by application time then id, and every problem met: a file that
    /// does not parse (or whose id is not its file name) is reported with its path and moved
    /// aside to `<name>.corrupt`. Temp files and other names are ignored. Never fails as a
    /// whole.
    pub fn load(&self) -> (Vec<JournalEntry>, Vec<JournalError>) {
        let mut entries = Vec::new();
        let mut errors = Vec::new();
        let names = match self.names() {
            Ok(names) => names,
            Err(e) => return (entries, vec![e]),
        };
        for name in names {
            let Some(stem) = entry_stem(&name) else {
                continue;
            };
            let path = self.dir.join(&name);
            let parsed = fs::read(&path)
                .map_err(|e| e.to_string())
                .and_then(|bytes| {
                    serde_json::from_slice::<JournalEntry>(&bytes).map_err(|e| e.to_string())
                })
                .and_then(|entry| {
                    if entry.id == stem {
                        Ok(entry)
                    } else {
                        Err(format!("holds fault id {:?}, not {stem:?}", entry.id))
                    }
                });
            match parsed {
                Ok(entry) => entries.push(entry),
                Err(reason) => {
                    let aside = self.dir.join(format!("{name}.corrupt"));
                    let moved_to = match fs::rename(&path, &aside) {
                        Ok(()) => Some(aside),
                        Err(e) => {
                            tracing::warn!(path = %path.display(), error = %e, "journal: cannot move corrupt file aside");
                            None
                        }
                    };
                    errors.push(JournalError::Corrupt {
                        path,
                        reason,
                        moved_to,
                    });
                }
            }
        }
        entries.sort_by(|a, b| (a.applied_at_unix_ms, &a.id).cmp(&(b.applied_at_unix_ms, &b.id)));
        (entries, errors)
    }
}

#[cfg(test)]
mod tests;
