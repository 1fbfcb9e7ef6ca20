//! The oom effect. `score` raises the container processes' oom_score_adj (raising needs no
//! CAP_SYS_RESOURCE; a lowering is refused) and restores it at the end. `kill: true` makes the
//! kernel OOM-kill the container: its processes go to score 1000, and a stressor placed in its
//! memory cgroup (below it in score) fills the cgroup until the kernel picks the container.

use std::sync::Arc;
use std::time::{Duration, Instant};

use injector::faults::oom::{oom_kill_plan, raise_scores, OomFault, SavedScore};
use injector::journal::now_unix_ms;
use injector::seams::cgroup::{resolve_from_proc, ContainerCgroup};
use injector::stressor::{oom_fill_spec, StressorSet};
use injector::{FaultKind, JournalEntry, ProcessId, Recovery};

use crate::engine::journal_ops::{entry, Journaled};
use crate::engine::runner::{Effect, FireError, FiringInfo, Holding, Target};
use crate::engine::Inner;

/// How long an OOM kill may take before the stressor is stopped anyway.
const OOM_KILL_TIMEOUT: Duration = Duration::from_secs(30);
/// The score that makes the container the kernel's choice.
const OOM_KILL_SCORE: i32 = 1000;

/// An armed oom fault.
#[derive(Debug)]
pub(in crate::engine) struct OomEffect {
    pub oom: OomFault,
    pub hold: Option<Duration>,
    pub memory_limit: Option<u64>,
}

/// Raises every process of the container to `target`, journaled first.
fn raise(
    engine: &Inner,
    target: &Target,
    cgroup: &ContainerCgroup,
    score: i32,
    hold: Option<Duration>,
) -> Result<JournalEntry, FireError> {
    let procs = engine.seams.procs.as_ref();
    let pids = cgroup
        .pids()
        .map_err(|err| FireError::TargetGone(err.to_string()))?;
    let saved: Vec<SavedScore> = pids
        .iter()
        .filter_map(|&pid| {
            Some(SavedScore {
                pid,
                start_time: procs.start_time(pid).ok()?,
                previous: procs.oom_score_adj(pid).ok()?,
            })
        })
        .collect();
    let journaled = entry(
        target,
        FaultKind::Oom,
        hold,
        Recovery::RestoreOomScores { saved },
    );
    engine
        .journal_record(&journaled)
        .map_err(FireError::Failed)?;
    if let Err(err) = raise_scores(procs, &pids, score) {
        engine.journal_clear(&journaled.id);
        return Err(FireError::Failed(err.to_string()));
    }
    Ok(journaled)
}

fn oom_kill(
    engine: &Inner,
    target: &Target,
    cgroup: &ContainerCgroup,
    limit: Option<u64>,
) -> Result<(), FireError> {
    let max_bytes = oom_kill_plan(limit).map_err(|err| FireError::Failed(err.to_string()))?;
    let procs = engine.seams.procs.as_ref();
    let init_start = procs
        .start_time(target.pid)
        .map_err(|err| FireError::TargetGone(err.to_string()))?;
    let scores = raise(engine, target, cgroup, OOM_KILL_SCORE, None)?;
    let deadline = now_unix_ms().saturating_add(OOM_KILL_TIMEOUT.as_millis() as u64);
    let spec = oom_fill_spec(max_bytes, deadline, Some(target.pid));
    let mut journaled = entry(
        target,
        FaultKind::Oom,
        Some(OOM_KILL_TIMEOUT),
        Recovery::KillStressors {
            processes: Vec::new(),
        },
    );
    engine
        .journal_record(&journaled)
        .map_err(FireError::Failed)?;
    let set = match StressorSet::spawn(&engine.seams.worker_exe, &[spec], &cgroup.procs_files()) {
        Ok(set) => set,
        Err(err) => {
            engine.recover_journaled(&scores);
            engine.journal_clear(&journaled.id);
            return Err(FireError::Failed(format!(
                "starting the memory filler: {err}"
            )));
        }
    };
    journaled.recovery = Recovery::KillStressors {
        processes: set
            .pids_with_start_times()
            .into_iter()
            .map(|(pid, start_time)| ProcessId { pid, start_time })
            .collect(),
    };
    if let Err(err) = engine.journal_update(&journaled) {
        tracing::error!(error = %err, "journaling the memory filler's pid; it still ends at its deadline");
    }
    let started = Instant::now();
    while procs.is_alive(target.pid, init_start) && started.elapsed() < OOM_KILL_TIMEOUT {
        std::thread::sleep(Duration::from_millis(10));
    }
    let killed = !procs.is_alive(target.pid, init_start);
    if let Err(err) = set.stop() {
        tracing::error!(pod = %target.pod, container = %target.container, error = %err, "stopping the memory filler");
    }
    engine.journal_clear(&journaled.id);
    engine.recover_journaled(&scores);
    if killed {
        tracing::info!(pod = %target.pod, container = %target.container, fault = "oom", memory_limit = limit.unwrap_or(0), elapsed_ms = started.elapsed().as_millis() as u64, "container OOM-killed by the kernel");
        Ok(())
    } else {
        Err(FireError::Failed(format!(
            "the kernel did not OOM-kill the container within {}s",
            OOM_KILL_TIMEOUT.as_secs()
        )))
    }
}

impl Effect for OomEffect {
    fn kind(&self) -> FaultKind {
        FaultKind::Oom
    }

    async fn fire(
        &self,
        engine: &Arc<Inner>,
        target: &Target,
        firing: FiringInfo,
    ) -> Result<Option<Box<dyn Holding>>, FireError> {
        let (engine_c, target_c) = (engine.clone(), target.clone());
        let (oom, hold, limit) = (self.oom, self.hold, self.memory_limit);
        tokio::task::spawn_blocking(move || {
            let cgroup = resolve_from_proc(&engine_c.seams.cgroups, &engine_c.seams.proc_root, target_c.pid)
                .map_err(|err| FireError::TargetGone(err.to_string()))?;
            if oom.kill {
                oom_kill(&engine_c, &target_c, &cgroup, limit)?;
                return Ok(None);
            }
            let Some(score) = oom.score else {
                return Ok(None);
            };
            let journaled = raise(&engine_c, &target_c, &cgroup, i32::from(score), hold)?;
            tracing::info!(pod = %target_c.pod, container = %target_c.container, fault = "oom", score, ordinal = firing.ordinal, "oom_score_adj raised");
            Ok(Some(Box::new(Journaled { journaled, done: "oom_score_adj restored" }) as Box<dyn Holding>))
        })
        .await
        .map_err(|err| FireError::Failed(format!("oom task: {err}")))?
    }
}
