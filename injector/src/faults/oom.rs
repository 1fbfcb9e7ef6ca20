//! `oom`: raise the container's OOM score and/or provoke a genuine kernel OOM kill.
//!
//! ```yaml
//! oom.nri-chaos.io/container.app: "{score: 1000, kill: true, after: 2m}"
//! ```
//!
//! | field | meaning |
//! |---|---|
//! | `score` | absolute `oom_score_adj` target, 0 to 1000 (restored after `duration` if given) |
//! | `kill` | `true`: fill the container's memory cgroup until the kernel OOM-kills it (CRI reason `OOMKilled`, exit 137) |
//!
//! At least one is required. `kill: true` on a container without a memory limit is refused
//! unless the admin policy sets `allow_oom_kill_without_limit` (it would exhaust the node).
//!
//! Execution, score part (over the [`ProcessTable`] seam): [`raise_scores`] sets every
//! container process's `oom_score_adj` to the target and returns what to restore, each process
//! named by PID and start time; it only ever raises — a target below a process's current score
//! is refused before anything is written, because lowering `oom_score_adj` needs
//! CAP_SYS_RESOURCE. [`restore_scores`] writes the previous values back to the processes that
//! are still the same (PID and start time match); exited or reused PIDs are skipped, and a
//! refused write (EACCES) is reported, not fatal. The kill part (filling the memory cgroup) is
//! done by a stressor; [`oom_kill_plan`] says how much it must allocate.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::fields::{FieldError, FieldSpec, FieldType, Fields};
use crate::seams::procfs::{ProcessTable, ProcfsError};

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

/// Sets `oom_score_adj` of every process in `pids` to `target` and returns what to restore.
///
/// Every current score is read first; if `target` is below any of them, nothing is written and
/// [`OomError::WouldLower`] names that process. Processes that exit meanwhile are skipped. If a
/// write fails, the processes already raised are restored before the error is returned.
pub fn raise_scores(
    procs: &dyn ProcessTable,
    pids: &[u32],
    target: i32,
) -> Result<Vec<SavedScore>, OomError> {
    let mut plan = Vec::with_capacity(pids.len());
    for &pid in pids {
        let read = procs
            .start_time(pid)
            .and_then(|start_time| Ok((start_time, procs.oom_score_adj(pid)?)));
        match read {
            Ok((start_time, current)) => {
                if target < current {
                    return Err(OomError::WouldLower {
                        pid,
                        current,
                        target,
                    });
                }
                plan.push(SavedScore {
                    pid,
                    start_time,
                    previous: current,
                });
            }
            Err(ProcfsError::Gone { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    let mut saved = Vec::with_capacity(plan.len());
    for entry in plan {
        match procs.set_oom_score_adj(entry.pid, target) {
            Ok(()) => saved.push(entry),
            Err(ProcfsError::Gone { .. }) => {}
            Err(e) => {
                let _ = restore_scores(procs, &saved);
                return Err(e.into());
            }
        }
    }
    Ok(saved)
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

/// Parameters of an `oom` fault.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OomFault {
    /// Target `oom_score_adj` (0..=1000).
    pub score: Option<u16>,
    /// Provoke an OOM kill.
    pub kill: bool,
}

impl OomFault {
    /// The fields `oom` accepts besides the timing fields.
    pub const FIELDS: &'static [FieldSpec] = &[
        FieldSpec::new(
            "score",
            FieldType::Integer { min: 0, max: 1000 },
            "-",
            "raise the oom_score_adj of the container's processes (restored at the end)",
        ),
        FieldSpec::new(
            "kill",
            FieldType::Boolean,
            "false",
            "true: a genuine kernel OOM kill of the container (needs a memory limit)",
        ),
    ];
    /// An example value (`ctl explain`; a unit test parses it).
    pub const EXAMPLE: &'static str = "{kill: true, after: 30s}";

    /// Reads the `oom` fields.
    pub(crate) fn from_fields(fields: &mut Fields) -> Result<Self, FieldError> {
        let score = fields
            .integer("score", 0, 1000)?
            .and_then(|s| u16::try_from(s).ok());
        let kill = fields.boolean("kill")?;
        if score.is_none() && kill != Some(true) {
            return Err(FieldError::Refused(
                "oom needs at least one of: score, kill: true".to_string(),
            ));
        }
        Ok(OomFault {
            score,
            kill: kill.unwrap_or(false),
        })
    }
}

impl fmt::Display for OomFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.score, self.kill) {
            (Some(s), true) => write!(f, "score={s} kill"),
            (Some(s), false) => write!(f, "score={s}"),
            (None, _) => f.write_str("kill"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::seams::procfs::FakeProcesses;

    fn table() -> FakeProcesses {
        let t = FakeProcesses::new();
        t.add(10, 1000, 0);
        t.add(11, 1100, -500);
        t.add(12, 1200, 200);
        t
    }

    #[test]
    fn raise_then_restore() {
        let t = table();
        let saved = raise_scores(&t, &[10, 11, 12, 99], 900).unwrap();
        assert_eq!(
            saved,
            vec![
                SavedScore {
                    pid: 10,
                    start_time: 1000,
                    previous: 0
                },
                SavedScore {
                    pid: 11,
                    start_time: 1100,
                    previous: -500
                },
                SavedScore {
                    pid: 12,
                    start_time: 1200,
                    previous: 200
                },
            ]
        );
        assert_eq!(t.score(11), Some(900));
        // 12 exited, 11 was reused by another process: both skipped.
        t.exit(12);
        t.add(11, 5555, 900);
        let report = restore_scores(&t, &saved).unwrap();
        assert_eq!(report.restored, vec![10]);
        assert_eq!(report.skipped, vec![11, 12]);
        assert!(report.denied.is_empty());
        assert_eq!(t.score(10), Some(0));
        assert_eq!(t.score(11), Some(900));
    }

    #[test]
    fn lowering_is_refused_before_any_write() {
        let t = table();
        let err = raise_scores(&t, &[10, 12], 100).unwrap_err();
        assert!(
            matches!(
                err,
                OomError::WouldLower {
                    pid: 12,
                    current: 200,
                    target: 100
                }
            ),
            "{err}"
        );
        assert_eq!(
            err.to_string(),
            "process 12: oom_score_adj is 200, refusing to set 100: lowering oom_score_adj \
             needs CAP_SYS_RESOURCE (the oom fault only raises scores)"
        );
        assert!(t.writes().is_empty());
    }

    #[test]
    fn eacces_on_restore_is_reported_not_fatal() {
        let t = table();
        let saved = raise_scores(&t, &[10, 11], 800).unwrap();
        // A privileged writer raised 10's minimum meanwhile: restoring 0 is refused.
        t.add(10, 1000, 800);
        let report = restore_scores(&t, &saved).unwrap();
        assert_eq!(report.restored, vec![11]);
        assert_eq!(report.denied.len(), 1);
        assert!(report.denied[0]
            .to_string()
            .contains("needs CAP_SYS_RESOURCE"));
    }

    #[test]
    fn real_processes_raise_and_restore() {
        use crate::seams::procfs::Procfs;
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let procfs = Procfs::host();
        let before = procfs.oom_score_adj(child.id()).unwrap();
        let saved = raise_scores(&procfs, &[child.id()], 1000).unwrap();
        assert_eq!(procfs.oom_score_adj(child.id()).unwrap(), 1000);
        let report = restore_scores(&procfs, &saved).unwrap();
        assert_eq!(report.restored, vec![child.id()]);
        assert_eq!(procfs.oom_score_adj(child.id()).unwrap(), before);
        child.kill().unwrap();
        child.wait().unwrap();
        let report = restore_scores(&procfs, &saved).unwrap();
        assert_eq!(report.skipped, vec![child.id()]);
    }

    #[test]
    fn kill_plan_needs_a_limit() {
        assert!(matches!(oom_kill_plan(None), Err(OomError::NoMemoryLimit)));
        assert!(matches!(
            oom_kill_plan(Some(0)),
            Err(OomError::ZeroMemoryLimit)
        ));
        assert_eq!(oom_kill_plan(Some(256 << 20)).unwrap(), 320 << 20);
        assert_eq!(oom_kill_plan(Some(8 << 20)).unwrap(), 24 << 20);
        assert_eq!(oom_kill_plan(Some(u64::MAX)).unwrap(), u64::MAX);
        assert!(oom_kill_plan(None)
            .unwrap_err()
            .to_string()
            .contains("no memory limit"));
    }
}
