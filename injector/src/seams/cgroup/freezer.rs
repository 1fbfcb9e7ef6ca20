//! The freezer seam: freeze, thaw and read the state of a container's cgroup.
//!
//! [`KernelFreezer`] drives the kernel files. v1: write `FROZEN` to `freezer.state` and poll it
//! until it reads `FROZEN`; `FREEZING` is transient, but under load a task can keep the cgroup
//! in `FREEZING`, so after each `retry` step without success it writes `THAWED` and `FROZEN`
//! again (what runc does), until `timeout`. v2: write `1` to `cgroup.freeze` and poll
//! `cgroup.events` until it says `frozen 1`. A freeze that times out is undone (thawed) before
//! the error is returned, so a failed freeze never leaves a half-frozen container. A thaw writes
//! `THAWED` / `0` and verifies it took (`freezer.state` reads `THAWED`, `cgroup.events` says
//! `frozen 0`). A cgroup that no longer exists yields [`CgroupError::Vanished`].
//!
//! [`RecordingFreezer`] is the fake: it records every call and can be told to fail.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::io::Write;
use std::path::Path;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use super::{io_error, CgroupError, ContainerCgroup, FreezerLocation};

/// State of a cgroup freezer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FreezerState {
    /// Running.
    Thawed,
    /// Being frozen (v1 `FREEZING`; v2 `cgroup.freeze` 1 while `cgroup.events` says `frozen 0`).
    Freezing,
    /// Every task is frozen.
    Frozen,
}

impl FreezerState {
    /// The v1 spelling: `THAWED`, `FREEZING`, `FROZEN`.
    pub const fn as_str(self) -> &'static str {
        match self {
            FreezerState::Thawed => "THAWED",
            FreezerState::Freezing => "FREEZING",
            FreezerState::Frozen => "FROZEN",
        }
    }
}

impl fmt::Display for FreezerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a successful freeze took.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FreezeReport {
    /// From the first write to the frozen state being observed.
    pub elapsed: Duration,
    /// How many times the frozen state was written (1 unless the freeze had to be retried).
    pub attempts: u32,
}

/// Freezes and thaws container cgroups.
pub trait Freezer: Send + Sync {
    /// Freezes the cgroup and waits until every task is frozen.
    fn freeze(&self, cg: &ContainerCgroup) -> Result<FreezeReport, CgroupError>;
    /// Thaws the cgroup and verifies it is running again.
    fn thaw(&self, cg: &ContainerCgroup) -> Result<(), CgroupError>;
    /// Reads the freezer state.
    fn state(&self, cg: &ContainerCgroup) -> Result<FreezerState, CgroupError>;
}

/// The kernel freezer (v1 `freezer.state`, v2 `cgroup.freeze` / `cgroup.events`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KernelFreezer {
    /// Give up (and thaw) when the cgroup is not frozen after this long.
    pub timeout: Duration,
    /// v1: after this long in `FREEZING`, write `THAWED` then `FROZEN` again.
    pub retry: Duration,
}

impl Default for KernelFreezer {
    fn default() -> Self {
        KernelFreezer {
            timeout: Duration::from_secs(2),
            retry: Duration::from_millis(100),
        }
    }
}

const V1_STATE: &str = "freezer.state";
const V2_FREEZE: &str = "cgroup.freeze";
const V2_EVENTS: &str = "cgroup.events";
const V1_THREADS: &str = "tasks";
const V2_THREADS: &str = "cgroup.threads";
const POLL_MIN: Duration = Duration::from_millis(1);
const POLL_MAX: Duration = Duration::from_millis(10);

/// Writes `value` to an existing kernel file (never creates it: a missing file means the
/// cgroup vanished).
fn write_existing(path: &Path, value: &str) -> Result<(), CgroupError> {
    std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(path)
        .and_then(|mut f| f.write_all(value.as_bytes()))
        .map_err(|e| io_error("write", path, e))
}

fn read(path: &Path) -> Result<String, CgroupError> {
    std::fs::read_to_string(path).map_err(|e| io_error("read", path, e))
}

fn read_v1(state_file: &Path) -> Result<FreezerState, CgroupError> {
    let text = read(state_file)?;
    match text.trim() {
        "THAWED" => Ok(FreezerState::Thawed),
        "FREEZING" => Ok(FreezerState::Freezing),
        "FROZEN" => Ok(FreezerState::Frozen),
        other => Err(CgroupError::Malformed {
            what: state_file.display().to_string(),
            value: other.to_string(),
            reason: "expected THAWED, FREEZING or FROZEN".to_string(),
        }),
    }
}

/// Reads `frozen 0|1` from a v2 `cgroup.events`.
fn read_v2_frozen(dir: &Path) -> Result<bool, CgroupError> {
    let path = dir.join(V2_EVENTS);
    let text = read(&path)?;
    match text.lines().find_map(|l| l.strip_prefix("frozen ")) {
        Some(v) if v.trim() == "1" => Ok(true),
        Some(v) if v.trim() == "0" => Ok(false),
        _ => Err(CgroupError::Malformed {
            what: path.display().to_string(),
            value: text.trim().to_string(),
            reason: "no 'frozen 0' or 'frozen 1' line (cgroup v2 freezer needs Linux 5.2+)"
                .to_string(),
        }),
    }
}

fn read_v2(dir: &Path) -> Result<FreezerState, CgroupError> {
    let path = dir.join(V2_FREEZE);
    let wanted = read(&path)?.trim() == "1";
    let frozen = read_v2_frozen(dir)?;
    Ok(match (wanted, frozen) {
        (true, true) => FreezerState::Frozen,
        (true, false) => FreezerState::Freezing,
        // Frozen through an ancestor: the tasks are frozen all the same.
        (false, true) => FreezerState::Frozen,
        (false, false) => FreezerState::Thawed,
    })
}

/// How many of a cgroup's threads a timeout names.
const TASKS_NAMED: usize = 8;

/// `; tasks: <tid> <comm> <state> <wchan>, ...` for the first threads listed in `threads_file`
/// (v1 `tasks`, v2 `cgroup.threads`), read from `/proc`; best effort (what cannot be read is
/// left out), for a timeout's message: a thread stuck in `D` names where it waits.
fn describe_tasks(threads_file: &Path) -> String {
    let Ok(list) = std::fs::read_to_string(threads_file) else {
        return String::new();
    };
    let tids: Vec<&str> = list.split_whitespace().collect();
    let mut described: Vec<String> = tids
        .iter()
        .take(TASKS_NAMED)
        .filter_map(|tid| {
            let stat = std::fs::read_to_string(format!("/proc/{tid}/stat")).ok()?;
            // `pid (comm) S ...`: comm may hold spaces and parentheses, so split at the last ')'.
            let (head, rest) = stat.rsplit_once(')')?;
            let comm = head.split_once('(').map_or("?", |(_, c)| c);
            let state = rest.split_whitespace().next().unwrap_or("?");
            let wchan = std::fs::read_to_string(format!("/proc/{tid}/wchan"))
                .ok()
                .filter(|w| !w.is_empty() && w != "0")
                .unwrap_or_else(|| "-".to_string());
            Some(format!("{tid} {comm} {state} {wchan}"))
        })
        .collect();
    if tids.len() > TASKS_NAMED {
        described.push(format!("and {} more", tids.len() - TASKS_NAMED));
    }
    if described.is_empty() {
        return String::new();
    }
    format!("; tasks: {}", described.join(", "))
}

/// The freeze loop, over `write(state)` and `read()`: write `FROZEN`, poll until `FROZEN`;
/// after each `retry` step write `THAWED` + `FROZEN` again; at `timeout` describe the tasks
/// (`describe`, before they are thawed), thaw and fail.
fn freeze_loop(
    dir: &Path,
    file: &'static str,
    timeout: Duration,
    retry: Duration,
    write: &mut dyn FnMut(FreezerState) -> Result<(), CgroupError>,
    read: &mut dyn FnMut() -> Result<FreezerState, CgroupError>,
    describe: &mut dyn FnMut() -> String,
) -> Result<FreezeReport, CgroupError> {
    let start = Instant::now();
    let mut attempts = 0u32;
    loop {
        if attempts > 0 {
            write(FreezerState::Thawed)?;
        }
        write(FreezerState::Frozen)?;
        attempts += 1;
        let step = Instant::now();
        let mut poll = POLL_MIN;
        loop {
            let state = read()?;
            if state == FreezerState::Frozen {
                return Ok(FreezeReport {
                    elapsed: start.elapsed(),
                    attempts,
                });
            }
            if start.elapsed() >= timeout {
                let tasks = describe();
                // Never leave a half-frozen cgroup behind; the timeout is the error to report.
                let _ = write(FreezerState::Thawed);
                return Err(CgroupError::Timeout {
                    dir: dir.to_path_buf(),
                    file,
                    state: state.as_str(),
                    wanted: FreezerState::Frozen.as_str(),
                    elapsed: start.elapsed(),
                    attempts,
                    tasks: tasks.into(),
                });
            }
            if step.elapsed() >= retry {
                break;
            }
            std::thread::sleep(poll);
            poll = (poll * 2).min(POLL_MAX);
        }
    }
}

/// Waits until `read()` says thawed; a timeout names the tasks (`threads_file`).
fn thaw_wait(
    dir: &Path,
    file: &'static str,
    timeout: Duration,
    read: &mut dyn FnMut() -> Result<FreezerState, CgroupError>,
    threads_file: &Path,
) -> Result<(), CgroupError> {
    let start = Instant::now();
    let mut poll = POLL_MIN;
    loop {
        let state = read()?;
        if state == FreezerState::Thawed {
            return Ok(());
        }
        if start.elapsed() >= timeout {
            return Err(CgroupError::Timeout {
                dir: dir.to_path_buf(),
                file,
                state: state.as_str(),
                wanted: FreezerState::Thawed.as_str(),
                elapsed: start.elapsed(),
                attempts: 1,
                tasks: describe_tasks(threads_file).into(),
            });
        }
        std::thread::sleep(poll);
        poll = (poll * 2).min(POLL_MAX);
    }
}

impl Freezer for KernelFreezer {
    fn freeze(&self, cg: &ContainerCgroup) -> Result<FreezeReport, CgroupError> {
        match cg.freezer()? {
            FreezerLocation::V1 { state_file } => {
                let dir = state_file.parent().unwrap_or(&state_file).to_path_buf();
                freeze_loop(
                    &dir,
                    V1_STATE,
                    self.timeout,
                    self.retry,
                    &mut |s| write_existing(&state_file, s.as_str()),
                    &mut || read_v1(&state_file),
                    &mut || describe_tasks(&dir.join(V1_THREADS)),
                )
            }
            FreezerLocation::V2 { dir } => {
                let freeze_file = dir.join(V2_FREEZE);
                freeze_loop(
                    &dir,
                    V2_EVENTS,
                    self.timeout,
                    self.retry,
                    &mut |s| {
                        let v = if s == FreezerState::Frozen { "1" } else { "0" };
                        write_existing(&freeze_file, v)
                    },
                    &mut || {
                        Ok(if read_v2_frozen(&dir)? {
                            FreezerState::Frozen
                        } else {
                            FreezerState::Freezing
                        })
                    },
                    &mut || describe_tasks(&dir.join(V2_THREADS)),
                )
            }
        }
    }

    fn thaw(&self, cg: &ContainerCgroup) -> Result<(), CgroupError> {
        match cg.freezer()? {
            FreezerLocation::V1 { state_file } => {
                write_existing(&state_file, FreezerState::Thawed.as_str())?;
                let dir = state_file.parent().unwrap_or(&state_file).to_path_buf();
                let threads = dir.join(V1_THREADS);
                thaw_wait(
                    &dir,
                    V1_STATE,
                    self.timeout,
                    &mut || read_v1(&state_file),
                    &threads,
                )
            }
            FreezerLocation::V2 { dir } => {
                write_existing(&dir.join(V2_FREEZE), "0")?;
                let threads = dir.join(V2_THREADS);
                thaw_wait(
                    &dir,
                    V2_EVENTS,
                    self.timeout,
                    &mut || {
                        Ok(if read_v2_frozen(&dir)? {
                            FreezerState::Freezing
                        } else {
                            FreezerState::Thawed
                        })
                    },
                    &threads,
                )
            }
        }
    }

    fn state(&self, cg: &ContainerCgroup) -> Result<FreezerState, CgroupError> {
        match cg.freezer()? {
            FreezerLocation::V1 { state_file } => read_v1(&state_file),
            FreezerLocation::V2 { dir } => read_v2(&dir),
        }
    }
}

/// A freezer operation, for [`RecordingFreezer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FreezerOp {
    /// [`Freezer::freeze`].
    Freeze,
    /// [`Freezer::thaw`].
    Thaw,
    /// [`Freezer::state`].
    State,
}

impl FreezerOp {
    const fn as_str(self) -> &'static str {
        match self {
            FreezerOp::Freeze => "freeze",
            FreezerOp::Thaw => "thaw",
            FreezerOp::State => "state",
        }
    }
}

/// A fake freezer: records `(op, location)` calls, keeps a state per location (thawed until
/// frozen), fails the operations told to with [`CgroupError::Injected`], and reports
/// [`CgroupError::Vanished`] for locations marked vanished.
#[derive(Debug, Default)]
pub struct RecordingFreezer {
    calls: Mutex<Vec<(FreezerOp, FreezerLocation)>>,
    states: Mutex<HashMap<FreezerLocation, FreezerState>>,
    failing: Mutex<HashSet<FreezerOp>>,
    vanished: Mutex<HashSet<FreezerLocation>>,
    time_outs: Mutex<u32>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl RecordingFreezer {
    /// A fake with nothing recorded.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every call so far, in order.
    pub fn calls(&self) -> Vec<(FreezerOp, FreezerLocation)> {
        lock(&self.calls).clone()
    }

    /// From now on, `op` fails with [`CgroupError::Injected`].
    pub fn fail(&self, op: FreezerOp) {
        lock(&self.failing).insert(op);
    }

    /// The next `times` freezes time out ([`CgroupError::Timeout`], left thawed), as the
    /// kernel's do while a task is in uninterruptible sleep.
    pub fn time_out(&self, times: u32) {
        *lock(&self.time_outs) = times;
    }

    /// From now on, every operation on `location` fails with [`CgroupError::Vanished`].
    pub fn vanish(&self, location: FreezerLocation) {
        lock(&self.vanished).insert(location);
    }

    /// The state the fake holds for `location`.
    pub fn state_of(&self, location: &FreezerLocation) -> FreezerState {
        lock(&self.states)
            .get(location)
            .copied()
            .unwrap_or(FreezerState::Thawed)
    }

    fn call(&self, op: FreezerOp, cg: &ContainerCgroup) -> Result<FreezerLocation, CgroupError> {
        let location = cg.freezer()?;
        lock(&self.calls).push((op, location.clone()));
        if lock(&self.vanished).contains(&location) {
            return Err(CgroupError::Vanished {
                path: location.dir().to_path_buf(),
            });
        }
        if lock(&self.failing).contains(&op) {
            return Err(CgroupError::Injected {
                op: op.as_str(),
                dir: location.dir().to_path_buf(),
            });
        }
        Ok(location)
    }
}

impl Freezer for RecordingFreezer {
    fn freeze(&self, cg: &ContainerCgroup) -> Result<FreezeReport, CgroupError> {
        let location = self.call(FreezerOp::Freeze, cg)?;
        let mut time_outs = lock(&self.time_outs);
        if *time_outs > 0 {
            *time_outs -= 1;
            return Err(CgroupError::Timeout {
                dir: location.dir().to_path_buf(),
                file: V1_STATE,
                state: FreezerState::Freezing.as_str(),
                wanted: FreezerState::Frozen.as_str(),
                elapsed: Duration::from_secs(2),
                attempts: 20,
                tasks: "; tasks: 7 app D folio_wait_bit_common".into(),
            });
        }
        drop(time_outs);
        lock(&self.states).insert(location, FreezerState::Frozen);
        Ok(FreezeReport {
            elapsed: Duration::ZERO,
            attempts: 1,
        })
    }

    fn thaw(&self, cg: &ContainerCgroup) -> Result<(), CgroupError> {
        let location = self.call(FreezerOp::Thaw, cg)?;
        lock(&self.states).insert(location, FreezerState::Thawed);
        Ok(())
    }

    fn state(&self, cg: &ContainerCgroup) -> Result<FreezerState, CgroupError> {
        let location = self.call(FreezerOp::State, cg)?;
        Ok(self.state_of(&location))
    }
}

#[cfg(test)]
mod tests;
