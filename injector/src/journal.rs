//! The journal of active faults: what to undo, made durable before the fault is applied.
//!
//! A [`JournalEntry`] is written to the store (`crate::store`, one log with the firing
//! ledger) BEFORE the side effect, so a crash at any point leaves either no entry and no
//! fault, or an entry whose recovery is safe to run (thawing a thawed cgroup, killing an
//! exited process or restoring an unchanged score is a no-op). It is cleared after recovery.
//!
//! An entry's [`Recovery`] is self-contained: [`recover_entry`] undoes the fault from the entry
//! alone, through its kind's own recovery in [`crate::faults`] (thaw a freezer location, kill
//! stressor processes named by PID and start time, restore OOM scores, remove netem), at the
//! deadline, at container stop, at shutdown, and at startup replay.

mod recover;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::annotations::FaultKind;
use crate::faults::oom::SavedScore;
use crate::seams::cgroup::FreezerLocation;

pub use recover::{kill_if_same, recover_entry};

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
    /// Remove one targeted network fault's filters and band from our tree in this namespace
    /// (the last one out deletes the tree and puts the foreign root qdisc back)
    /// (`partition`, `bandwidth`, `netem` with `to`).
    RemoveNetRules {
        /// The pod's network namespace.
        netns: PathBuf,
        /// The interfaces, each with its slot and saved root qdisc.
        interfaces: Vec<crate::faults::net::RuledInterface>,
    },
}

/// One active fault.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JournalEntry {
    /// The fault id ([`new_fault_id`]).
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

pub(crate) mod kind_name {
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

/// A new fault id, unique across restarts and processes: `<unix-ms>-<pid>-<counter>`.
pub fn new_fault_id() -> String {
    format!(
        "{}-{}-{}",
        now_unix_ms(),
        std::process::id(),
        ID_COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

#[cfg(test)]
mod tests;
