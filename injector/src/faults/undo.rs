//! What every fault's apply and recovery share: the kernel seams ([`Kernel`]), the log of
//! what must be undone ([`UndoLog`]), and [`recover`], which undoes a journaled [`Recovery`]
//! by handing it to its kind's [`Fault::recover`].

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::journal::Recovery;
use crate::seams::cgroup::Freezer;
use crate::seams::netlink::Netlink;
use crate::seams::procfs::ProcessTable;
use crate::seams::signal::Signaller;
use crate::seams::stressors::StressorSpawner;

use super::freeze::{FreezeError, FreezeFault, FreezeUndo};
use super::netem::{NetemError, NetemFault, NetemUndo};
use super::oom::{OomError, OomFault, OomUndo};
use super::stress::{StressError, StressFault, StressUndo};
use super::Fault;

/// The kernel seams the faults act through: the real ones on a node, fakes in tests.
#[derive(Clone, Copy)]
pub struct Kernel<'a> {
    /// Signals by pidfd.
    pub signaller: &'a dyn Signaller,
    /// Cgroup freezer.
    pub freezer: &'a dyn Freezer,
    /// `/proc`: OOM scores and process identity.
    pub procs: &'a dyn ProcessTable,
    /// Netlink in a network namespace.
    pub netlink: &'a dyn Netlink,
    /// Stressor processes.
    pub stressors: &'a dyn StressorSpawner,
}

impl std::fmt::Debug for Kernel<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kernel").finish_non_exhaustive()
    }
}

/// One record of an [`UndoLog`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot(pub usize);

/// Errors of an [`UndoLog`].
#[derive(Debug, thiserror::Error)]
pub enum UndoLogError {
    /// The log (the journal) could not be written.
    #[error("journal {op}: {reason}")]
    Journal {
        /// `record`, `update` or `clear`.
        op: &'static str,
        /// Why.
        reason: String,
    },
}

/// Where a fault writes what must be undone BEFORE its side effect (the plugin: its durable
/// journal, so a crash leaves the recovery to the next start).
pub trait UndoLog {
    /// Records a new recovery.
    fn record(&mut self, recovery: Recovery) -> Result<Slot, UndoLogError>;
    /// Replaces the recovery of `slot` (it grew or shrank).
    fn update(&mut self, slot: Slot, recovery: Recovery) -> Result<(), UndoLogError>;
    /// Forgets `slot`: it was undone.
    fn clear(&mut self, slot: Slot) -> Result<(), UndoLogError>;
}

/// Clears `slot` after its undo; a failure leaves a record whose recovery is a no-op, so it
/// is logged, not returned.
pub(crate) fn clear_logged(log: &mut dyn UndoLog, slot: Slot) {
    if let Err(err) = log.clear(slot) {
        tracing::warn!(error = %err, "an undone fault stays in the journal (its recovery is a no-op)");
    }
}

/// No log: the standalone hook has no journal (what it installs lives as long as the
/// container's namespaces).
#[derive(Debug, Default, Clone, Copy)]
pub struct NoUndoLog;

impl UndoLog for NoUndoLog {
    fn record(&mut self, _recovery: Recovery) -> Result<Slot, UndoLogError> {
        Ok(Slot(0))
    }
    fn update(&mut self, _slot: Slot, _recovery: Recovery) -> Result<(), UndoLogError> {
        Ok(())
    }
    fn clear(&mut self, _slot: Slot) -> Result<(), UndoLogError> {
        Ok(())
    }
}

#[derive(Debug, Default)]
struct Records {
    slots: Vec<Option<Recovery>>,
    writes: usize,
    fail_from: Option<usize>,
}

/// A recording [`UndoLog`]: what is recorded now ([`RecordingUndoLog::live`]); writes
/// (record and update) fail from the n-th on when told to.
#[derive(Debug, Default, Clone)]
pub struct RecordingUndoLog {
    records: Arc<Mutex<Records>>,
}

fn lock(m: &Mutex<Records>) -> MutexGuard<'_, Records> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl RecordingUndoLog {
    /// Empty.
    pub fn new() -> Self {
        Self::default()
    }

    /// Write number `n` (0-based: records and updates) and later ones fail.
    pub fn fail_from(&self, n: usize) {
        lock(&self.records).fail_from = Some(n);
    }

    /// The recoveries recorded and not cleared, in slot order.
    pub fn live(&self) -> Vec<Recovery> {
        lock(&self.records)
            .slots
            .iter()
            .flatten()
            .cloned()
            .collect()
    }

    fn write(&self, op: &'static str) -> Result<MutexGuard<'_, Records>, UndoLogError> {
        let mut records = lock(&self.records);
        let n = records.writes;
        records.writes += 1;
        if records.fail_from.is_some_and(|from| n >= from) {
            return Err(UndoLogError::Journal {
                op,
                reason: "injected failure (disk full)".into(),
            });
        }
        Ok(records)
    }
}

impl UndoLog for RecordingUndoLog {
    fn record(&mut self, recovery: Recovery) -> Result<Slot, UndoLogError> {
        let mut records = self.write("record")?;
        records.slots.push(Some(recovery));
        Ok(Slot(records.slots.len() - 1))
    }
    fn update(&mut self, slot: Slot, recovery: Recovery) -> Result<(), UndoLogError> {
        let mut records = self.write("update")?;
        if let Some(s) = records.slots.get_mut(slot.0) {
            *s = Some(recovery);
        }
        Ok(())
    }
    fn clear(&mut self, slot: Slot) -> Result<(), UndoLogError> {
        if let Some(s) = lock(&self.records).slots.get_mut(slot.0) {
            *s = None;
        }
        Ok(())
    }
}

/// Errors of [`recover`]: the kind's own.
#[derive(Debug, thiserror::Error)]
pub enum UndoError {
    /// Thawing.
    #[error(transparent)]
    Freeze(#[from] FreezeError),
    /// Stopping stressors.
    #[error(transparent)]
    Stress(#[from] StressError),
    /// Restoring OOM scores.
    #[error(transparent)]
    Oom(#[from] OomError),
    /// Removing netem.
    #[error(transparent)]
    Netem(#[from] NetemError),
    /// Removing targeted network rules.
    #[error(transparent)]
    Net(#[from] crate::faults::net::NetError),
}

/// Undoes a journaled fault from its [`Recovery`] alone, through its kind's
/// [`Fault::recover`]; safe to repeat. The caller keeps the journal entry when this fails.
pub fn recover(kernel: &Kernel<'_>, recovery: &Recovery) -> Result<(), UndoError> {
    match recovery {
        Recovery::Thaw { freezer } => FreezeFault::recover(
            kernel,
            FreezeUndo {
                freezer: freezer.clone(),
            },
        )?,
        Recovery::KillStressors { processes } => {
            StressFault::recover(kernel, StressUndo::journaled(processes.clone()))?
        }
        Recovery::RestoreOomScores { saved } => OomFault::recover(
            kernel,
            OomUndo {
                saved: saved.clone(),
            },
        )?,
        Recovery::RemoveNetem { netns, interfaces } => NetemFault::recover(
            kernel,
            NetemUndo {
                netns: netns.clone(),
                interfaces: interfaces.clone(),
            },
        )?,
        Recovery::RemoveNetRules { netns, interfaces } => crate::faults::net::recover(
            kernel,
            &crate::faults::net::NetRulesUndo {
                netns: netns.clone(),
                interfaces: interfaces.clone(),
            },
        )?,
    }
    Ok(())
}
