//! Stressor-spawning seam: starting one placed stressor process (`<exe> stress-worker ...`,
//! see [`crate::stressor`]) and stopping it. [`WorkerSpawner`] is the real one,
//! [`RecordingSpawner`] the recording fake (spawns can be told to fail from the n-th on).

use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::journal::ProcessId;
use crate::stressor::{spawn_worker, StressorError, StressorSet, WorkerOutput, WorkerSpec};

/// A running stressor: its identity, and a way to stop (SIGKILL and reap) it.
pub trait Stressor: Send + std::fmt::Debug {
    /// PID and start time, for the journal.
    fn id(&self) -> ProcessId;
    /// SIGKILLs and reaps it (already exited: fine).
    fn stop(self: Box<Self>) -> Result<(), StressorError>;
}

/// Starts stressors placed in a container's cgroups before they run.
pub trait StressorSpawner: Send + Sync {
    /// Spawns one worker for `spec`, written into every file of `procs_files` first.
    fn spawn(
        &self,
        spec: &WorkerSpec,
        procs_files: &[PathBuf],
    ) -> Result<Box<dyn Stressor>, StressorError>;
}

/// The real spawner: re-executes `exe` (`/proc/self/exe` in the plugin) as `stress-worker`.
#[derive(Debug, Clone)]
pub struct WorkerSpawner {
    exe: PathBuf,
}

impl WorkerSpawner {
    /// Spawns `exe stress-worker ...`.
    pub fn new(exe: impl Into<PathBuf>) -> Self {
        WorkerSpawner { exe: exe.into() }
    }
}

impl StressorSpawner for WorkerSpawner {
    fn spawn(
        &self,
        spec: &WorkerSpec,
        procs_files: &[PathBuf],
    ) -> Result<Box<dyn Stressor>, StressorError> {
        let child = spawn_worker(&self.exe, spec, procs_files, WorkerOutput::Null)?;
        let mut set = StressorSet::new();
        set.adopt(child)?;
        Ok(Box::new(set))
    }
}

/// A set of one: the real stressor.
impl Stressor for StressorSet {
    fn id(&self) -> ProcessId {
        let (pid, start_time) = self
            .pids_with_start_times()
            .first()
            .copied()
            .unwrap_or_default();
        ProcessId { pid, start_time }
    }

    fn stop(self: Box<Self>) -> Result<(), StressorError> {
        StressorSet::stop(*self).map(|_| ())
    }
}

#[derive(Debug, Default)]
struct Log {
    spawned: Vec<(ProcessId, WorkerSpec)>,
    stopped: Vec<u32>,
    fail_from: Option<usize>,
    fail_stop: bool,
}

/// The fake spawner: hands out PIDs 5000, 5001, ... (start time = PID * 10), records each
/// spawn and stop.
#[derive(Debug, Default, Clone)]
pub struct RecordingSpawner {
    log: Arc<Mutex<Log>>,
}

fn lock(m: &Mutex<Log>) -> MutexGuard<'_, Log> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl RecordingSpawner {
    /// Nothing spawned yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Spawns number `n` (0-based, counted over the fake's life) and later ones fail.
    pub fn fail_from(&self, n: usize) {
        lock(&self.log).fail_from = Some(n);
    }

    /// Stops fail (the kill is refused).
    pub fn fail_stops(&self) {
        lock(&self.log).fail_stop = true;
    }

    /// Every spawned stressor and its spec.
    pub fn spawned(&self) -> Vec<(ProcessId, WorkerSpec)> {
        lock(&self.log).spawned.clone()
    }

    /// PIDs of the stressors stopped, in order.
    pub fn stopped(&self) -> Vec<u32> {
        lock(&self.log).stopped.clone()
    }

    /// PIDs spawned and not stopped.
    pub fn running(&self) -> Vec<u32> {
        let log = lock(&self.log);
        log.spawned
            .iter()
            .map(|(p, _)| p.pid)
            .filter(|pid| !log.stopped.contains(pid))
            .collect()
    }
}

impl StressorSpawner for RecordingSpawner {
    fn spawn(
        &self,
        spec: &WorkerSpec,
        _procs_files: &[PathBuf],
    ) -> Result<Box<dyn Stressor>, StressorError> {
        let mut log = lock(&self.log);
        let n = log.spawned.len();
        if log.fail_from.is_some_and(|from| n >= from) {
            return Err(StressorError::Spawn {
                exe: PathBuf::from("fake-stressor"),
                source: std::io::Error::from_raw_os_error(libc::EAGAIN),
            });
        }
        let pid = 5000 + u32::try_from(n).unwrap_or(0);
        let id = ProcessId {
            pid,
            start_time: u64::from(pid) * 10,
        };
        log.spawned.push((id, *spec));
        Ok(Box::new(FakeStressor {
            id,
            log: self.log.clone(),
        }))
    }
}

#[derive(Debug)]
struct FakeStressor {
    id: ProcessId,
    log: Arc<Mutex<Log>>,
}

impl Stressor for FakeStressor {
    fn id(&self) -> ProcessId {
        self.id
    }

    fn stop(self: Box<Self>) -> Result<(), StressorError> {
        let mut log = lock(&self.log);
        if log.fail_stop {
            return Err(StressorError::Kill {
                pid: self.id.pid,
                source: std::io::Error::from_raw_os_error(libc::EPERM),
            });
        }
        log.stopped.push(self.id.pid);
        Ok(())
    }
}
