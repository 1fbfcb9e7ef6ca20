//! `freeze`: freeze the container's cgroup, then thaw it.
//!
//! ```yaml
//! freeze.nri-chaos.io/container.app: "{after: 1m, duration: 20s, every: 5m, count: 3}"
//! ```
//!
//! `freeze` has no fields of its own; `duration` (how long the cgroup stays frozen) is
//! required, and `after`, `every`, `count`, `jitter` and `probability` apply. With `every`,
//! `duration` must be shorter than `every`. The cgroup is thawed at the end of each firing,
//! always — also when the container stops and across plugin restarts.
//!
//! Execution goes through the freezer seam ([`crate::seams::cgroup::Freezer`]):
//! [`Fault::apply`] journals the thaw, freezes the container's cgroup and waits until it is
//! frozen (a freeze that cannot complete in time is undone and reported); [`Fault::recover`]
//! thaws it. Recovery is idempotent: thawing a
//! thawed cgroup is a no-op, and a cgroup that no longer exists (the container is gone) counts
//! as recovered.

use crate::annotations::FaultKind;
use std::fmt;

use super::undo::clear_logged;
use super::{Fault, Kernel, Undo, UndoLog, UndoLogError};
use crate::fields::{FieldError, FieldSpec, Fields};
use crate::journal::Recovery;
use crate::seams::cgroup::{CgroupError, ContainerCgroup, FreezerLocation};

/// Errors of the freeze fault.
#[derive(Debug, thiserror::Error)]
pub enum FreezeError {
    /// Freezing failed (the cgroup was left thawed).
    #[error("freeze: {0}")]
    Freeze(#[source] CgroupError),
    /// Thawing failed: the container may still be frozen.
    #[error("thaw: {0}")]
    Thaw(#[source] CgroupError),
    /// The container's cgroup has no freezer.
    #[error("the container's cgroup has no freezer: {0}")]
    NoFreezer(#[source] CgroupError),
    /// The freeze could not be journaled, so it was not applied.
    #[error("not applied: {0}")]
    Log(#[from] UndoLogError),
    /// The freeze failed and so did the thaw after it: it stays journaled for a retry.
    #[error("freeze: {freeze}; thawing after it failed too (kept in the journal): {thaw}")]
    NotUndone {
        /// Why the freeze failed.
        freeze: CgroupError,
        /// Why the thaw failed.
        thaw: Box<FreezeError>,
    },
}

/// Parameters of a `freeze` fault (none besides the timing: see [`crate::plan::Timing`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FreezeFault;

impl FreezeFault {
    /// The fields `freeze` accepts besides the timing fields.
    pub const FIELDS: &'static [FieldSpec] = &[];
    /// An example value (`ctl explain`; a unit test parses it).
    pub const EXAMPLE: &'static str = "{after: 10s, duration: 30s}";

    /// Reads the `freeze` fields (there are none).
    pub(crate) fn from_fields(_fields: &mut Fields) -> Result<Self, FieldError> {
        Ok(FreezeFault)
    }
}

/// What a freeze must undo: thaw this freezer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FreezeUndo {
    /// The container's freezer.
    pub freezer: FreezerLocation,
}

impl Undo for FreezeUndo {
    fn recovery(&self) -> Option<Recovery> {
        Some(Recovery::Thaw {
            freezer: self.freezer.clone(),
        })
    }
}

impl Fault for FreezeFault {
    const KIND: FaultKind = FaultKind::Freeze;
    const RECOVERED: &'static str = "thawed";
    const JOURNALS_FIRST: bool = true;
    type Target = ContainerCgroup;
    type Undo = FreezeUndo;
    type Error = FreezeError;

    /// Freezes the container's cgroup (blocking until frozen or timed out), journaled first.
    /// A freeze that fails is thawed (the kernel freezer does it too) and cleared.
    fn apply(
        &self,
        kernel: &Kernel<'_>,
        cg: &ContainerCgroup,
        log: &mut dyn UndoLog,
    ) -> Result<FreezeUndo, FreezeError> {
        let undo = FreezeUndo {
            freezer: cg.freezer().map_err(FreezeError::NoFreezer)?,
        };
        let slot = log.record(Recovery::Thaw {
            freezer: undo.freezer.clone(),
        })?;
        match kernel.freezer.freeze(cg) {
            Ok(report) => {
                tracing::info!(cgroup = %cg.describe(), latency_us = report.elapsed.as_micros() as u64, attempts = report.attempts, "frozen");
                Ok(undo)
            }
            Err(err) => match FreezeFault::recover(kernel, undo) {
                Ok(()) => {
                    clear_logged(log, slot);
                    Err(FreezeError::Freeze(err))
                }
                Err(thaw) => Err(FreezeError::NotUndone {
                    freeze: err,
                    thaw: Box::new(thaw),
                }),
            },
        }
    }

    /// A freeze that timed out and was thawed: a task in uninterruptible sleep (I/O, page-in
    /// under load) held the cgroup in `FREEZING`; it usually passes.
    fn transient(err: &FreezeError) -> bool {
        matches!(err, FreezeError::Freeze(e) if e.is_timeout())
    }

    /// Thaws the container's cgroup. Already thawed, or vanished (the container is gone): `Ok`.
    fn recover(kernel: &Kernel<'_>, undo: FreezeUndo) -> Result<(), FreezeError> {
        let cg = ContainerCgroup::from_freezer(&undo.freezer);
        match kernel.freezer.thaw(&cg) {
            Ok(()) => Ok(()),
            Err(e) if e.is_vanished() => {
                tracing::debug!(cgroup = %cg.describe(), "thaw: cgroup is gone, nothing to thaw");
                Ok(())
            }
            Err(e) => Err(FreezeError::Thaw(e)),
        }
    }
}

impl fmt::Display for FreezeFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("cgroup")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::faults::undo::RecordingUndoLog;
    use crate::faults::FakeKernel as Fakes;
    use crate::seams::cgroup::freezer::FreezerOp;
    use crate::seams::cgroup::FreezerState;

    fn cg() -> (ContainerCgroup, FreezerLocation) {
        let loc = FreezerLocation::V1 {
            state_file: "/cg/freezer/pod/c/freezer.state".into(),
        };
        (ContainerCgroup::from_freezer(&loc), loc)
    }

    fn undo(loc: &FreezerLocation) -> FreezeUndo {
        FreezeUndo {
            freezer: loc.clone(),
        }
    }

    #[test]
    fn apply_journals_then_freezes_and_recover_thaws() {
        let fakes = Fakes::new();
        let mut log = RecordingUndoLog::new();
        let (cg, loc) = cg();
        let done = FreezeFault.apply(&fakes.kernel(), &cg, &mut log).unwrap();
        assert_eq!(done, undo(&loc));
        assert_eq!(log.live(), vec![done.recovery().unwrap()]);
        assert_eq!(fakes.freezer.state_of(&loc), FreezerState::Frozen);
        FreezeFault::recover(&fakes.kernel(), done.clone()).unwrap();
        FreezeFault::recover(&fakes.kernel(), done).unwrap();
        assert_eq!(fakes.freezer.state_of(&loc), FreezerState::Thawed);
        let ops: Vec<FreezerOp> = fakes
            .freezer
            .calls()
            .into_iter()
            .map(|(op, _)| op)
            .collect();
        assert_eq!(ops, [FreezerOp::Freeze, FreezerOp::Thaw, FreezerOp::Thaw]);
    }

    #[test]
    fn unjournaled_freeze_is_not_applied() {
        let fakes = Fakes::new();
        let log = RecordingUndoLog::new();
        log.fail_from(0);
        let (cg, _) = cg();
        let err = FreezeFault
            .apply(&fakes.kernel(), &cg, &mut log.clone())
            .unwrap_err();
        assert!(
            err.to_string().starts_with("not applied: journal record"),
            "{err}"
        );
        assert!(fakes.freezer.calls().is_empty());
    }

    #[test]
    fn failed_freeze_is_thawed_and_cleared_or_kept_when_the_thaw_fails() {
        let fakes = Fakes::new();
        let mut log = RecordingUndoLog::new();
        let (cg, loc) = cg();
        fakes.freezer.fail(FreezerOp::Freeze);
        let err = FreezeFault
            .apply(&fakes.kernel(), &cg, &mut log)
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "freeze: cgroup /cg/freezer/pod/c: injected failure of freeze"
        );
        assert!(log.live().is_empty());
        fakes.freezer.fail(FreezerOp::Thaw);
        let err = FreezeFault
            .apply(&fakes.kernel(), &cg, &mut log)
            .unwrap_err();
        assert!(err.to_string().contains("kept in the journal"), "{err}");
        assert_eq!(log.live(), vec![undo(&loc).recovery().unwrap()]);
    }

    #[test]
    fn vanished_cgroup_is_recovered_and_failures_are_named() {
        let fakes = Fakes::new();
        let (_, loc) = cg();
        fakes.freezer.fail(FreezerOp::Thaw);
        let err = FreezeFault::recover(&fakes.kernel(), undo(&loc))
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "thaw: cgroup /cg/freezer/pod/c: injected failure of thaw"
        );
        fakes.freezer.vanish(loc.clone());
        FreezeFault::recover(&fakes.kernel(), undo(&loc)).unwrap();
    }
}
