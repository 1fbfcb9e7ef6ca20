//! Undoing a journaled fault: [`recover_entry`] and the PID-reuse-safe [`kill_if_same`].

use crate::faults::freeze::FreezeFault;
use crate::faults::kill::Signal;
use crate::faults::oom::restore_scores;
use crate::seams::cgroup::{ContainerCgroup, Freezer};
use crate::seams::procfs::ProcessTable;
use crate::seams::signal::{SignalError, Signaller};

use super::{JournalEntry, JournalError, Recovery};

/// Sends SIGKILL to `pid` only if it is still the process that started at `start_time`.
///
/// The process is pinned with a pidfd first, then its start time is checked, so the signal can
/// only reach the process that was checked. Returns whether a signal was sent (`false`: the
/// process exited or the PID now names another process). Reaping is the caller's business.
pub fn kill_if_same(
    signaller: &dyn Signaller,
    procs: &dyn ProcessTable,
    pid: u32,
    start_time: u64,
) -> Result<bool, SignalError> {
    let handle = match signaller.open(pid) {
        Ok(h) => h,
        Err(SignalError::Exited { .. }) => return Ok(false),
        Err(e) => return Err(e),
    };
    if !procs.is_alive(pid, start_time) {
        return Ok(false);
    }
    match signaller.send(&handle, Signal::KILL) {
        Ok(()) => Ok(true),
        Err(SignalError::Exited { .. }) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Performs the recovery an entry describes; safe to repeat.
///
/// - [`Recovery::Thaw`]: thaws the freezer (already thawed or vanished: done).
/// - [`Recovery::KillStressors`]: calls `stop_process(pid, start_time)` for every listed process
///   still alive with the same start time (the engine passes [`kill_if_same`] with the pidfd
///   signaller); a process that exited meanwhile is fine; every other failure is collected into
///   one [`JournalError::KillStressors`] after all processes were tried.
/// - [`Recovery::RestoreOomScores`]: writes the previous scores back to the same processes;
///   exited or reused PIDs are skipped, EACCES is logged and not fatal.
///
/// The caller clears the entry from the journal when this returns `Ok`.
pub fn recover_entry(
    entry: &JournalEntry,
    freezer: &dyn Freezer,
    procs: &dyn ProcessTable,
    stop_process: &dyn Fn(u32, u64) -> Result<(), SignalError>,
) -> Result<(), JournalError> {
    let id = &entry.id;
    match &entry.recovery {
        Recovery::Thaw { freezer: location } => {
            FreezeFault::recover(freezer, &ContainerCgroup::from_freezer(location)).map_err(
                |source| JournalError::Thaw {
                    id: id.clone(),
                    source: Box::new(source),
                },
            )?;
            tracing::info!(fault = %id, pod = %entry.pod, container = %entry.container_name, freezer = %location.dir().display(), "recovered: thawed");
            Ok(())
        }
        Recovery::KillStressors { processes } => {
            let mut failures = Vec::new();
            let mut stopped = 0usize;
            for p in processes {
                if !procs.is_alive(p.pid, p.start_time) {
                    continue;
                }
                match stop_process(p.pid, p.start_time) {
                    Ok(()) => stopped += 1,
                    Err(SignalError::Exited { .. }) => {}
                    Err(e) => failures.push(format!("process {}: {e}", p.pid)),
                }
            }
            if !failures.is_empty() {
                return Err(JournalError::KillStressors {
                    id: id.clone(),
                    failures: failures.join("; "),
                });
            }
            tracing::info!(fault = %id, pod = %entry.pod, container = %entry.container_name, stopped, listed = processes.len(), "recovered: stressors stopped");
            Ok(())
        }
        Recovery::RestoreOomScores { saved } => {
            let report =
                restore_scores(procs, saved).map_err(|source| JournalError::RestoreScores {
                    id: id.clone(),
                    source: Box::new(source),
                })?;
            for denied in &report.denied {
                tracing::warn!(fault = %id, pod = %entry.pod, container = %entry.container_name, error = %denied, "oom score not restored");
            }
            tracing::info!(fault = %id, pod = %entry.pod, container = %entry.container_name, restored = report.restored.len(), skipped = report.skipped.len(), denied = report.denied.len(), "recovered: oom scores");
            Ok(())
        }
        Recovery::RemoveNetem { netns, interfaces } => {
            crate::seams::netlink::remove_netem(netns, interfaces).map_err(|source| {
                JournalError::RemoveNetem {
                    id: id.clone(),
                    source: Box::new(source),
                }
            })?;
            tracing::info!(fault = %id, pod = %entry.pod, netns = %netns.display(), interfaces = interfaces.len(), "recovered: netem removed");
            Ok(())
        }
    }
}
