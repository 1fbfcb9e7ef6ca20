//! The freeze effect: freeze the container's cgroup (v1 freezer.state / v2 cgroup.freeze),
//! wait for the kernel to confirm, hold, thaw and verify.

use std::sync::Arc;

use injector::faults::freeze::FreezeFault;
use injector::seams::cgroup::{resolve_from_proc, ContainerCgroup};
use injector::{FaultKind, Recovery};

use crate::engine::journal_ops::{entry, Journaled};
use crate::engine::runner::{Effect, FireError, FiringInfo, Holding, Target};
use crate::engine::Inner;

/// An armed freeze fault.
#[derive(Debug)]
pub(in crate::engine) struct FreezeEffect {
    pub hold: Option<std::time::Duration>,
}

fn resolve(engine: &Inner, pid: u32) -> Result<ContainerCgroup, FireError> {
    resolve_from_proc(&engine.seams.cgroups, &engine.seams.proc_root, pid).map_err(|err| {
        if err.is_vanished() {
            FireError::TargetGone(err.to_string())
        } else {
            FireError::Failed(format!("finding the container's cgroup: {err}"))
        }
    })
}

impl Effect for FreezeEffect {
    fn kind(&self) -> FaultKind {
        FaultKind::Freeze
    }

    async fn fire(
        &self,
        engine: &Arc<Inner>,
        target: &Target,
        firing: FiringInfo,
    ) -> Result<Option<Box<dyn Holding>>, FireError> {
        let (engine_c, target_c, hold) = (engine.clone(), target.clone(), self.hold);
        tokio::task::spawn_blocking(move || {
            let cgroup = resolve(&engine_c, target_c.pid)?;
            let location = cgroup.freezer().map_err(|err| {
                FireError::Failed(format!("container cgroup has no freezer: {err}"))
            })?;
            let journaled = entry(
                &target_c,
                FaultKind::Freeze,
                hold,
                Recovery::Thaw { freezer: location },
            );
            engine_c
                .journal_record(&journaled)
                .map_err(FireError::Failed)?;
            match FreezeFault.apply(engine_c.seams.freezer.as_ref(), &cgroup) {
                Ok(report) => {
                    tracing::info!(
                        pod = %target_c.pod,
                        container = %target_c.container,
                        fault = "freeze",
                        cgroup = %cgroup.describe(),
                        ordinal = firing.ordinal,
                        latency_us = report.elapsed.as_micros() as u64,
                        attempts = report.attempts,
                        lateness_us = firing.lateness.as_micros() as u64,
                        "frozen"
                    );
                    Ok(Some(Box::new(Journaled {
                        journaled,
                        done: "thawed",
                    }) as Box<dyn Holding>))
                }
                Err(err) => {
                    // The freezer thaws on a failed freeze; make sure and clear the record.
                    engine_c.recover_journaled(&journaled);
                    Err(FireError::Failed(err.to_string()))
                }
            }
        })
        .await
        .map_err(|err| FireError::Failed(format!("freeze task: {err}")))?
    }
}
