//! The stress effect: native stressor processes (this binary, `stress-worker`), placed in the
//! container's own cgroups before they run, so its limits and accounting apply. They stop at
//! the end of `duration`; they also stop by themselves at their deadline or when the
//! container's init exits, even if nri-chaos is gone.

use std::sync::{Arc, Mutex};

use futures_core::future::BoxFuture;
use injector::faults::stress::StressFault;
use injector::journal::now_unix_ms;
use injector::seams::cgroup::resolve_from_proc;
use injector::stressor::{cpu_specs, memory_specs, StressorSet};
use injector::{FaultKind, JournalEntry, ProcessId, Recovery};

use crate::engine::journal_ops::entry;
use crate::engine::runner::{Effect, FireError, FiringInfo, Holding, Target};
use crate::engine::Inner;

/// An armed stress fault.
#[derive(Debug)]
pub(in crate::engine) struct StressEffect {
    pub stress: StressFault,
    pub hold: std::time::Duration,
    pub memory_limit: Option<u64>,
}

impl Effect for StressEffect {
    fn kind(&self) -> FaultKind {
        FaultKind::Stress
    }

    async fn fire(
        &self,
        engine: &Arc<Inner>,
        target: &Target,
        firing: FiringInfo,
    ) -> Result<Option<Box<dyn Holding>>, FireError> {
        let (engine_c, target_c) = (engine.clone(), target.clone());
        let (stress, hold, limit) = (self.stress, self.hold, self.memory_limit);
        tokio::task::spawn_blocking(move || {
            let cgroup = resolve_from_proc(&engine_c.seams.cgroups, &engine_c.seams.proc_root, target_c.pid)
                .map_err(|err| FireError::TargetGone(err.to_string()))?;
            let deadline = now_unix_ms().saturating_add(hold.as_millis() as u64);
            let watch = Some(target_c.pid);
            let mut specs = Vec::new();
            if let Some(cpu) = &stress.cpu {
                specs.extend(cpu_specs(cpu, deadline, watch));
            }
            if let Some(memory) = &stress.memory {
                let bytes = memory.size.resolve(limit).ok_or_else(|| {
                    FireError::Failed("memory size is a percentage but the container has no memory limit".to_string())
                })?;
                specs.extend(memory_specs(memory, bytes, deadline, watch));
            }
            // Recorded before any stressor exists; the pids are added as soon as they do.
            // (Stressors end by themselves at their deadline, so even a crash between the two
            // writes leaves nothing running past it.)
            let mut journaled = entry(&target_c, FaultKind::Stress, Some(hold), Recovery::KillStressors { processes: Vec::new() });
            engine_c.journal_record(&journaled).map_err(FireError::Failed)?;
            let spawned = StressorSet::spawn(&engine_c.seams.worker_exe, &specs, &cgroup.procs_files());
            let set = match spawned {
                Ok(set) => set,
                Err(err) => {
                    engine_c.journal_clear(&journaled.id);
                    return Err(FireError::Failed(format!("starting stressors: {err}")));
                }
            };
            journaled.recovery = Recovery::KillStressors {
                processes: set
                    .pids_with_start_times()
                    .into_iter()
                    .map(|(pid, start_time)| ProcessId { pid, start_time })
                    .collect(),
            };
            if let Err(err) = engine_c.journal_update(&journaled) {
                tracing::error!(error = %err, "journaling stressor pids; they still end at their deadline");
            }
            tracing::info!(
                pod = %target_c.pod,
                container = %target_c.container,
                fault = "stress",
                workers = set.len(),
                cgroup = %cgroup.describe(),
                ordinal = firing.ordinal,
                lateness_us = firing.lateness.as_micros() as u64,
                "stressors started in the container cgroup"
            );
            Ok(Some(Box::new(Stressing { journaled, set: Mutex::new(Some(set)) }) as Box<dyn Holding>))
        })
        .await
        .map_err(|err| FireError::Failed(format!("stress task: {err}")))?
    }
}

/// Running stressors, to stop and reap.
struct Stressing {
    journaled: JournalEntry,
    set: Mutex<Option<StressorSet>>,
}

impl Holding for Stressing {
    fn recover(self: Box<Self>, engine: &Arc<Inner>, target: &Target) -> BoxFuture<'static, ()> {
        let (engine, target) = (engine.clone(), target.clone());
        Box::pin(async move {
            let set = self.set.lock().ok().and_then(|mut set| set.take());
            let id = self.journaled.id.clone();
            let stopped = tokio::task::spawn_blocking(move || set.map(StressorSet::stop)).await;
            match stopped {
                Ok(Some(Err(err))) => {
                    tracing::error!(pod = %target.pod, container = %target.container, error = %err, "stopping stressors")
                }
                Err(err) => {
                    tracing::error!(pod = %target.pod, container = %target.container, error = %err, "stopping stressors")
                }
                _ => {
                    tracing::info!(pod = %target.pod, container = %target.container, fault = "stress", "stressors stopped and reaped")
                }
            }
            engine.journal_clear(&id);
        })
    }
}
