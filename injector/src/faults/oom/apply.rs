//! The oom fault's apply and recovery over the process table and the stressor seam (see the
//! module doc of [`crate::faults::oom`]).

use crate::annotations::FaultKind;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::faults::stress::StressError;
use crate::faults::undo::clear_logged;
use crate::faults::{Container, Fault, Kernel, Slot, Undo, UndoLog, UndoLogError};
use crate::journal::Recovery;
use crate::seams::cgroup::CgroupError;
use crate::seams::procfs::{ProcessTable, ProcfsError};

use super::OomFault;

/// Errors of the oom fault.
#[derive(Debug, thiserror::Error)]
pub enum OomError {
    /// The target is below a process's current score.
    #[error("process {pid}: oom_score_adj is {current}, refusing to set {target}: lowering oom_score_adj needs CAP_SYS_RESOURCE (the oom fault only raises scores)")]
    WouldLower {
        /// The process.
        pid: u32,
        /// Its current score.
        current: i32,
        /// The requested score.
        target: i32,
    },
    /// `kill: true` on a container without a memory limit.
    #[error("oom kill refused: the container has no memory limit, so filling its memory cgroup would exhaust the node instead of OOM-killing the container")]
    NoMemoryLimit,
    /// `kill: true` on a container whose memory limit is 0.
    #[error("oom kill refused: the container's memory limit is 0 bytes")]
    ZeroMemoryLimit,
    /// Reading or writing a score failed.
    #[error("oom score: {0}")]
    Procfs(#[from] ProcfsError),
    /// The container's processes could not be listed.
    #[error("listing the container's processes: {0}")]
    Cgroup(#[source] CgroupError),
    /// The scores could not be journaled, so none was raised.
    #[error("not applied: {0}")]
    Log(#[from] UndoLogError),
    /// Raising failed and restoring the scores already raised failed too.
    #[error("oom score: {error}; restoring the scores already raised failed too (kept in the journal): {undo}")]
    NotUndone {
        /// Why the raise failed.
        error: ProcfsError,
        /// Why the restore failed.
        undo: String,
    },
    /// The memory filler of an OOM kill.
    #[error("memory filler: {0}")]
    Filler(#[source] Box<StressError>),
    /// The kernel did not OOM-kill the container in time.
    #[error("the kernel did not OOM-kill the container within {}s", .0.as_secs())]
    NotKilled(Duration),
}

/// A process whose score was raised, and the score to restore.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedScore {
    /// The process.
    pub pid: u32,
    /// Its start time (field 22 of `/proc/<pid>/stat`): identity against PID reuse.
    pub start_time: u64,
    /// Its `oom_score_adj` before the fault.
    pub previous: i32,
}

/// What [`restore_scores`] did.
#[derive(Debug, Default)]
pub struct RestoreReport {
    /// Processes whose previous score was written back.
    pub restored: Vec<u32>,
    /// Processes skipped: exited, or their PID now names another process.
    pub skipped: Vec<u32>,
    /// Writes the kernel refused (EACCES: the process's minimum was raised meanwhile by a
    /// privileged writer); reported, not fatal.
    pub denied: Vec<ProcfsError>,
}

/// Sets `oom_score_adj` of every process in `pids` to `target`, journaled, and returns what to
/// restore (see [`raise_journaled`]).
pub fn raise_scores(
    procs: &dyn ProcessTable,
    pids: &[u32],
    target: i32,
    log: &mut dyn UndoLog,
) -> Result<Vec<SavedScore>, OomError> {
    raise_journaled(procs, pids, target, log).map(|(saved, _)| saved)
}

/// Every current score is read first, and a process whose score cannot be read is never
/// raised: an exited one is skipped, any other failure stops before anything is written, as
/// does a `target` below a current score ([`OomError::WouldLower`]). What will be raised is
/// journaled, then raised; the processes that exit meanwhile are left out of the result (and of
/// the journal). If a write fails, the processes already raised are restored and the entry is
/// cleared; if that restore fails too, the entry stays and [`OomError::NotUndone`] says so.
pub(super) fn raise_journaled(
    procs: &dyn ProcessTable,
    pids: &[u32],
    target: i32,
    log: &mut dyn UndoLog,
) -> Result<(Vec<SavedScore>, Option<Slot>), OomError> {
    let mut plan = Vec::with_capacity(pids.len());
    for &pid in pids {
        let read = procs
            .start_time(pid)
            .and_then(|start_time| Ok((start_time, procs.oom_score_adj(pid)?)));
        match read {
            Ok((_, current)) if target < current => {
                return Err(OomError::WouldLower {
                    pid,
                    current,
                    target,
                })
            }
            Ok((start_time, current)) => plan.push(SavedScore {
                pid,
                start_time,
                previous: current,
            }),
            Err(ProcfsError::Gone { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    if plan.is_empty() {
        return Ok((plan, None));
    }
    let slot = log.record(Recovery::RestoreOomScores {
        saved: plan.clone(),
    })?;
    let mut raised = Vec::with_capacity(plan.len());
    for entry in &plan {
        match procs.set_oom_score_adj(entry.pid, target) {
            Ok(()) => raised.push(*entry),
            Err(ProcfsError::Gone { .. }) => {}
            Err(error) => {
                let undo = match restore_scores(procs, &raised) {
                    Ok(report) if report.denied.is_empty() => {
                        clear_logged(log, slot);
                        return Err(error.into());
                    }
                    Ok(report) => report
                        .denied
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join("; "),
                    Err(e) => e.to_string(),
                };
                return Err(OomError::NotUndone { error, undo });
            }
        }
    }
    if raised.len() != plan.len() {
        let recovery = Recovery::RestoreOomScores {
            saved: raised.clone(),
        };
        if let Err(err) = log.update(slot, recovery) {
            // The entry lists a few exited processes more; restoring skips them.
            tracing::warn!(error = %err, "journaling the raised oom scores");
        }
    }
    Ok((raised, Some(slot)))
}

/// Writes back the previous score of every saved process that is still the same process
/// (PID and start time match). Exited or reused PIDs are skipped; EACCES is collected in
/// [`RestoreReport::denied`]. Any other failure is returned after every process was tried.
pub fn restore_scores(
    procs: &dyn ProcessTable,
    saved: &[SavedScore],
) -> Result<RestoreReport, OomError> {
    let mut report = RestoreReport::default();
    let mut first_error = None;
    for s in saved {
        if !procs.is_alive(s.pid, s.start_time) {
            report.skipped.push(s.pid);
            continue;
        }
        match procs.set_oom_score_adj(s.pid, s.previous) {
            Ok(()) => report.restored.push(s.pid),
            Err(ProcfsError::Gone { .. }) => report.skipped.push(s.pid),
            Err(e @ ProcfsError::NeedsCapSysResource { .. }) => report.denied.push(e),
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    match first_error {
        Some(e) => Err(e.into()),
        None => Ok(report),
    }
}

/// How many bytes an OOM-kill stressor must allocate and touch in a container whose memory
/// limit is `memory_limit`: the limit plus a quarter of it (at least 16 MiB more), so the
/// kernel has to OOM-kill inside the cgroup before the allocation completes. Refused without a
/// limit (it would exhaust the node) and for a 0 limit.
pub fn oom_kill_plan(memory_limit: Option<u64>) -> Result<u64, OomError> {
    const MIN_EXTRA: u64 = 16 << 20;
    match memory_limit {
        None => Err(OomError::NoMemoryLimit),
        Some(0) => Err(OomError::ZeroMemoryLimit),
        Some(limit) => Ok(limit.saturating_add((limit / 4).max(MIN_EXTRA))),
    }
}

/// What an oom firing must undo: the scores it raised.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OomUndo {
    /// The processes raised and their previous scores.
    pub saved: Vec<SavedScore>,
}

impl Undo for OomUndo {
    /// Nothing raised (an OOM kill restores its own scores): nothing to hold or undo.
    fn recovery(&self) -> Option<Recovery> {
        (!self.saved.is_empty()).then(|| Recovery::RestoreOomScores {
            saved: self.saved.clone(),
        })
    }
}

pub(super) fn restore_logged(
    procs: &dyn ProcessTable,
    saved: &[SavedScore],
) -> Result<(), OomError> {
    let report = restore_scores(procs, saved)?;
    for denied in &report.denied {
        tracing::warn!(error = %denied, "oom score not restored");
    }
    tracing::debug!(
        restored = report.restored.len(),
        skipped = report.skipped.len(),
        denied = report.denied.len(),
        "oom scores restored"
    );
    Ok(())
}

impl Fault for OomFault {
    const KIND: FaultKind = FaultKind::Oom;
    const RECOVERED: &'static str = "oom_score_adj restored";
    const JOURNALS_FIRST: bool = true;
    type Target = Container;
    type Undo = OomUndo;
    type Error = OomError;

    /// `kill: true`: an OOM kill, complete when this returns (nothing is left to undo).
    /// Otherwise `score`: every process of the container is raised (see [`raise_scores`]).
    fn apply(
        &self,
        kernel: &Kernel<'_>,
        target: &Container,
        log: &mut dyn UndoLog,
    ) -> Result<OomUndo, OomError> {
        if self.kill {
            super::kill::oom_kill(kernel, target, log)?;
            return Ok(OomUndo::default());
        }
        let Some(score) = self.score else {
            return Ok(OomUndo::default());
        };
        let pids = target.cgroup.pids().map_err(OomError::Cgroup)?;
        let saved = raise_scores(kernel.procs, &pids, i32::from(score), log)?;
        tracing::info!(score, processes = saved.len(), "oom_score_adj raised");
        Ok(OomUndo { saved })
    }

    /// Writes the previous scores back (see [`restore_scores`]); EACCES is logged.
    fn recover(kernel: &Kernel<'_>, undo: OomUndo) -> Result<(), OomError> {
        restore_logged(kernel.procs, &undo.saved)
    }

    fn target_gone(err: &OomError) -> bool {
        matches!(
            err,
            OomError::Procfs(ProcfsError::Gone { .. }) | OomError::Cgroup(_)
        )
    }
}
