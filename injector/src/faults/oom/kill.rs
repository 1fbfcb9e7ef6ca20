//! `oom: {kill: true}`: a genuine kernel OOM kill of the container.

use std::time::{Duration, Instant};

use super::apply::{oom_kill_plan, raise_journaled, restore_logged, OomError};
use crate::faults::stress::{start_stressors, StressFault};
use crate::faults::undo::clear_logged;
use crate::faults::{Container, Fault, Kernel, UndoLog};
use crate::journal::now_unix_ms;
use crate::stressor::oom_fill_spec;

/// How long an OOM kill may take before the filler is stopped anyway.
const OOM_KILL_TIMEOUT: Duration = Duration::from_secs(30);
/// The score that makes the container the kernel's choice.
const OOM_KILL_SCORE: i32 = 1000;

/// Raises the container to score 1000, fills its memory cgroup with a stressor until the
/// kernel OOM-kills its init (or the timeout), then stops the filler and restores the scores.
pub(super) fn oom_kill(
    kernel: &Kernel<'_>,
    target: &Container,
    log: &mut dyn UndoLog,
) -> Result<(), OomError> {
    let max_bytes = oom_kill_plan(target.memory_limit)?;
    let procs = kernel.procs;
    let init_start = procs.start_time(target.pid)?;
    let pids = target.cgroup.pids().map_err(OomError::Cgroup)?;
    let (saved, scores) = raise_journaled(procs, &pids, OOM_KILL_SCORE, log)?;
    let restore = |log: &mut dyn UndoLog| match restore_logged(procs, &saved) {
        Ok(()) => scores.into_iter().for_each(|slot| clear_logged(log, slot)),
        Err(err) => {
            tracing::error!(error = %err, "restoring oom scores after the OOM kill; kept in the journal")
        }
    };
    let deadline = now_unix_ms().saturating_add(OOM_KILL_TIMEOUT.as_millis() as u64);
    let spec = oom_fill_spec(max_bytes, deadline, Some(target.pid));
    let (filler, filler_slot) = match start_stressors(kernel, target, &[spec], log) {
        Ok(started) => started,
        Err(err) => {
            restore(log);
            return Err(OomError::Filler(Box::new(err)));
        }
    };
    let started = Instant::now();
    while procs.is_alive(target.pid, init_start) && started.elapsed() < OOM_KILL_TIMEOUT {
        std::thread::sleep(Duration::from_millis(10));
    }
    let killed = !procs.is_alive(target.pid, init_start);
    match StressFault::recover(kernel, filler) {
        Ok(()) => clear_logged(log, filler_slot),
        Err(err) => {
            tracing::error!(error = %err, "stopping the memory filler; kept in the journal")
        }
    }
    restore(log);
    if killed {
        tracing::info!(
            pid = target.pid,
            memory_limit = target.memory_limit.unwrap_or(0),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "container OOM-killed by the kernel"
        );
        Ok(())
    } else {
        Err(OomError::NotKilled(OOM_KILL_TIMEOUT))
    }
}
