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
//! Execution goes through the freezer seam ([`Freezer`]): [`FreezeFault::apply`] freezes the
//! container's cgroup and waits until it is frozen (a freeze that cannot complete in time is
//! undone and reported); [`FreezeFault::recover`] thaws it. Recovery is idempotent: thawing a
//! thawed cgroup is a no-op, and a cgroup that no longer exists (the container is gone) counts
//! as recovered.

use std::fmt;

use crate::fields::{FieldError, FieldSpec, Fields};
use crate::seams::cgroup::{CgroupError, ContainerCgroup, FreezeReport, Freezer};

/// Errors of the freeze fault.
#[derive(Debug, thiserror::Error)]
pub enum FreezeError {
    /// Freezing failed (the cgroup was left thawed).
    #[error("freeze: {0}")]
    Freeze(#[source] CgroupError),
    /// Thawing failed: the container may still be frozen.
    #[error("thaw: {0}")]
    Thaw(#[source] CgroupError),
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

impl FreezeFault {
    /// Freezes the container's cgroup (blocking until frozen or timed out).
    pub fn apply(
        &self,
        freezer: &dyn Freezer,
        cg: &ContainerCgroup,
    ) -> Result<FreezeReport, FreezeError> {
        freezer.freeze(cg).map_err(FreezeError::Freeze)
    }

    /// Thaws the container's cgroup. Already thawed, or vanished (the container is gone): `Ok`.
    pub fn recover(freezer: &dyn Freezer, cg: &ContainerCgroup) -> Result<(), FreezeError> {
        match freezer.thaw(cg) {
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
    use crate::seams::cgroup::freezer::FreezerOp;
    use crate::seams::cgroup::{FreezerLocation, FreezerState, RecordingFreezer};

    fn cg() -> (ContainerCgroup, FreezerLocation) {
        let loc = FreezerLocation::V1 {
            state_file: "/cg/freezer/pod/c/freezer.state".into(),
        };
        (ContainerCgroup::from_freezer(&loc), loc)
    }

    #[test]
    fn apply_freezes_and_recover_thaws() {
        let fake = RecordingFreezer::new();
        let (cg, loc) = cg();
        let report = FreezeFault.apply(&fake, &cg).unwrap();
        assert_eq!(report.attempts, 1);
        assert_eq!(fake.state_of(&loc), FreezerState::Frozen);
        FreezeFault::recover(&fake, &cg).unwrap();
        FreezeFault::recover(&fake, &cg).unwrap();
        assert_eq!(fake.state_of(&loc), FreezerState::Thawed);
        let ops: Vec<FreezerOp> = fake.calls().into_iter().map(|(op, _)| op).collect();
        assert_eq!(ops, [FreezerOp::Freeze, FreezerOp::Thaw, FreezerOp::Thaw]);
    }

    #[test]
    fn vanished_cgroup_is_recovered_and_failures_are_named() {
        let fake = RecordingFreezer::new();
        let (cg, loc) = cg();
        fake.fail(FreezerOp::Freeze);
        fake.fail(FreezerOp::Thaw);
        let err = FreezeFault.apply(&fake, &cg).unwrap_err().to_string();
        assert_eq!(
            err,
            "freeze: cgroup /cg/freezer/pod/c: injected failure of freeze"
        );
        let err = FreezeFault::recover(&fake, &cg).unwrap_err().to_string();
        assert_eq!(
            err,
            "thaw: cgroup /cg/freezer/pod/c: injected failure of thaw"
        );
        fake.vanish(loc);
        FreezeFault::recover(&fake, &cg).unwrap();
        assert!(FreezeFault.apply(&fake, &cg).is_err());
    }
}
