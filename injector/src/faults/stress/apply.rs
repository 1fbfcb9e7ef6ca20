//! The stress fault's apply and recovery: placed stressors through the spawning seam
//! ([`crate::seams::stressors`]), journaled by PID and start time, stopped at the end.
//!
//! The stressors are spawned after an empty [`Recovery::KillStressors`] is journaled, and
//! their PIDs are journaled once all run; every worker also ends by itself at its deadline
//! and when the container's init exits, so a crash between the two writes leaves nothing
//! running past the firing. A spawn that fails halfway stops the workers already running; a
//! journal update that fails does too (a fault that cannot be journaled is not applied).

use crate::annotations::FaultKind;
use crate::faults::undo::clear_logged;
use crate::faults::{Container, Fault, Kernel, Slot, Undo, UndoLog, UndoLogError};
use crate::journal::{now_unix_ms, ProcessId, Recovery};
use crate::seams::procfs::ProcessTable;
use crate::seams::signal::{SignalError, Signaller};
use crate::seams::stressors::Stressor;
use crate::stressor::{cpu_specs, memory_specs, StressorError, WorkerSpec};

use super::StressFault;
use crate::faults::kill::Signal;

/// Errors of the stress fault (and of the OOM filler, which is a stressor too).
#[derive(Debug, thiserror::Error)]
pub enum StressError {
    /// `memory.size` is a percentage and the container has no limit.
    #[error("memory size is a percentage but the container has no memory limit")]
    PercentWithoutLimit,
    /// A stressor could not be started (those already running were stopped).
    #[error("starting stressors: {0}")]
    Spawn(#[source] StressorError),
    /// The stressors could not be journaled, so they were stopped.
    #[error("not applied: {0}")]
    Log(#[from] UndoLogError),
    /// Starting (or journaling) failed and stopping the workers already running failed too.
    #[error(
        "{error}; stopping the stressors already running failed too (kept in the journal): {undo}"
    )]
    NotUndone {
        /// Why the start failed.
        error: Box<StressError>,
        /// Why the stop failed.
        undo: Box<StressError>,
    },
    /// Stopping stressors failed (every one was tried).
    #[error("stopping stressors: {}", .failures.join("; "))]
    Stop {
        /// `process <pid>: <error>` per failure.
        failures: Vec<String>,
    },
}

/// What a stress firing must undo: its stressors. Running ones (this process spawned them)
/// are stopped and reaped; journaled ones (a previous run) are SIGKILLed if still the same.
#[derive(Debug, Default)]
pub struct StressUndo {
    /// PID and start time of every stressor.
    pub processes: Vec<ProcessId>,
    running: Vec<Box<dyn Stressor>>,
}

impl StressUndo {
    /// Stressors named by the journal (a previous run spawned them).
    pub fn journaled(processes: Vec<ProcessId>) -> Self {
        StressUndo {
            processes,
            running: Vec::new(),
        }
    }

    /// How many stressors.
    pub fn len(&self) -> usize {
        self.processes.len()
    }

    /// No stressor.
    pub fn is_empty(&self) -> bool {
        self.processes.is_empty()
    }
}

impl Undo for StressUndo {
    fn recovery(&self) -> Option<Recovery> {
        Some(Recovery::KillStressors {
            processes: self.processes.clone(),
        })
    }
}

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

fn stop(kernel: &Kernel<'_>, undo: StressUndo) -> Result<(), StressError> {
    let mut failures = Vec::new();
    if undo.running.is_empty() {
        for p in &undo.processes {
            if let Err(e) = kill_if_same(kernel.signaller, kernel.procs, p.pid, p.start_time) {
                failures.push(format!("process {}: {e}", p.pid));
            }
        }
    }
    for stressor in undo.running {
        let pid = stressor.id().pid;
        if let Err(e) = stressor.stop() {
            failures.push(format!("process {pid}: {e}"));
        }
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(StressError::Stop { failures })
    }
}

/// Spawns a stressor per spec in `target`'s cgroups, journaled (see the module doc); returns
/// them and their journal slot.
pub fn start_stressors(
    kernel: &Kernel<'_>,
    target: &Container,
    specs: &[WorkerSpec],
    log: &mut dyn UndoLog,
) -> Result<(StressUndo, Slot), StressError> {
    let slot = log.record(Recovery::KillStressors {
        processes: Vec::new(),
    })?;
    let files = target.cgroup.procs_files();
    let mut undo = StressUndo::default();
    let mut failed = None;
    for spec in specs {
        match kernel.stressors.spawn(spec, &files) {
            Ok(stressor) => {
                undo.processes.push(stressor.id());
                undo.running.push(stressor);
            }
            Err(err) => {
                failed = Some(StressError::Spawn(err));
                break;
            }
        }
    }
    if failed.is_none() {
        match log.update(
            slot,
            undo.recovery().unwrap_or(Recovery::KillStressors {
                processes: Vec::new(),
            }),
        ) {
            Ok(()) => return Ok((undo, slot)),
            Err(err) => failed = Some(err.into()),
        }
    }
    let error = failed.unwrap_or(StressError::Stop {
        failures: Vec::new(),
    });
    match stop(kernel, undo) {
        Ok(()) => {
            clear_logged(log, slot);
            Err(error)
        }
        Err(undo) => Err(StressError::NotUndone {
            error: Box::new(error),
            undo: Box::new(undo),
        }),
    }
}

impl Fault for StressFault {
    const KIND: FaultKind = FaultKind::Stress;
    const RECOVERED: &'static str = "stressors stopped and reaped";
    const JOURNALS_FIRST: bool = true;
    type Target = Container;
    type Undo = StressUndo;
    type Error = StressError;

    fn apply(
        &self,
        kernel: &Kernel<'_>,
        target: &Container,
        log: &mut dyn UndoLog,
    ) -> Result<StressUndo, StressError> {
        let deadline = now_unix_ms().saturating_add(target.hold.as_millis() as u64);
        let watch = Some(target.pid);
        let mut specs = Vec::new();
        if let Some(cpu) = &self.cpu {
            specs.extend(cpu_specs(cpu, deadline, watch));
        }
        if let Some(memory) = &self.memory {
            let bytes = memory
                .size
                .resolve(target.memory_limit)
                .ok_or(StressError::PercentWithoutLimit)?;
            specs.extend(memory_specs(memory, bytes, deadline, watch));
        }
        let (undo, _) = start_stressors(kernel, target, &specs, log)?;
        tracing::info!(
            workers = undo.len(),
            cgroup = %target.cgroup.describe(),
            "stressors started in the container cgroup"
        );
        Ok(undo)
    }

    /// Stops (and reaps) the stressors; a journaled one is SIGKILLed only if its PID still
    /// names it. Every stressor is tried; the failures are returned together.
    fn recover(kernel: &Kernel<'_>, undo: StressUndo) -> Result<(), StressError> {
        stop(kernel, undo)
    }
}
