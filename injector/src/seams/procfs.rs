//! Processes through procfs: OOM scores and process identity.
//!
//! [`Procfs`] reads a procfs root ([`Procfs::host`] is `/proc`; tests use a tempdir tree).
//! A PID alone is not an identity — PIDs are reused — so a process is named by its PID plus its
//! start time (field 22 of `/proc/<pid>/stat`, clock ticks since boot): [`Procfs::start_time`],
//! [`Procfs::is_alive`]. `oom_score_adj` is read and written through
//! `/proc/<pid>/oom_score_adj`; without CAP_SYS_RESOURCE the kernel refuses (EACCES) to lower it
//! below the minimum a privileged writer last set (for most processes, the value they started
//! with), which is reported as [`ProcfsError::NeedsCapSysResource`].
//!
//! [`ProcessTable`] is the seam the faults use; [`FakeProcesses`] is its fake.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};

/// Range the kernel accepts for `oom_score_adj`.
pub const OOM_SCORE_ADJ_RANGE: std::ops::RangeInclusive<i32> = -1000..=1000;

/// Errors of the procfs seam.
#[derive(Debug, thiserror::Error)]
pub enum ProcfsError {
    /// The process does not exist (any more).
    #[error("process {pid}: does not exist (exited)")]
    Gone {
        /// The process.
        pid: u32,
    },
    /// The kernel refused a lower `oom_score_adj` (EACCES).
    #[error("process {pid}: setting oom_score_adj to {value} was refused (EACCES): lowering oom_score_adj needs CAP_SYS_RESOURCE")]
    NeedsCapSysResource {
        /// The process.
        pid: u32,
        /// The value written.
        value: i32,
    },
    /// `oom_score_adj` outside -1000..=1000.
    #[error("process {pid}: oom_score_adj {value} is outside -1000..=1000")]
    OutOfRange {
        /// The process.
        pid: u32,
        /// The value.
        value: i32,
    },
    /// A procfs file we could not parse.
    #[error("{}: {reason} in {}", .path.display(), crate::annotations::quote(.text))]
    Malformed {
        /// The file.
        path: PathBuf,
        /// Its content.
        text: String,
        /// What is wrong.
        reason: String,
    },
    /// Any other I/O failure.
    #[error("{op} {}: {source}", .path.display())]
    Io {
        /// `read` or `write`.
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
}

/// The fields of `/proc/<pid>/stat` we use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcStat {
    /// Field 3: `R`, `S`, `D`, `Z`, `T`, ...
    pub state: char,
    /// Field 14: user CPU time, clock ticks.
    pub utime: u64,
    /// Field 15: system CPU time, clock ticks.
    pub stime: u64,
    /// Field 22: start time, clock ticks after boot.
    pub start_time: u64,
}

/// Parses `/proc/<pid>/stat` text. The command name (field 2) is in parentheses and may itself
/// contain spaces and parentheses, so the fields are counted from the LAST `)`.
pub fn parse_stat(path: &Path, text: &str) -> Result<ProcStat, ProcfsError> {
    let malformed = |reason: &str| ProcfsError::Malformed {
        path: path.to_path_buf(),
        text: text.to_string(),
        reason: reason.to_string(),
    };
    let close = text
        .rfind(')')
        .ok_or_else(|| malformed("no ')' after the command name"))?;
    // After ')': field 3 (state) is index 0, so field n is index n - 3.
    let rest: Vec<&str> = text[close + 1..].split_whitespace().collect();
    let field = |n: usize| -> Result<u64, ProcfsError> {
        rest.get(n - 3)
            .and_then(|f| f.parse::<u64>().ok())
            .ok_or_else(|| malformed(&format!("field {n} is missing or not a number")))
    };
    let state = rest
        .first()
        .and_then(|s| s.chars().next())
        .ok_or_else(|| malformed("no state field"))?;
    Ok(ProcStat {
        state,
        utime: field(14)?,
        stime: field(15)?,
        start_time: field(22)?,
    })
}

/// What the faults need from the process table.
pub trait ProcessTable: Send + Sync {
    /// The process's `oom_score_adj`.
    fn oom_score_adj(&self, pid: u32) -> Result<i32, ProcfsError>;
    /// Sets the process's `oom_score_adj`.
    fn set_oom_score_adj(&self, pid: u32, value: i32) -> Result<(), ProcfsError>;
    /// The process's start time (field 22 of `/proc/<pid>/stat`).
    fn start_time(&self, pid: u32) -> Result<u64, ProcfsError>;
    /// Whether `pid` is still the process that started at `start_time` and has not exited
    /// (a zombie counts as exited).
    fn is_alive(&self, pid: u32, start_time: u64) -> bool;
}

/// A procfs root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Procfs {
    root: PathBuf,
}

fn gone_or_io(op: &'static str, pid: u32, path: &Path, source: io::Error) -> ProcfsError {
    if source.kind() == io::ErrorKind::NotFound || source.raw_os_error() == Some(libc::ESRCH) {
        ProcfsError::Gone { pid }
    } else {
        ProcfsError::Io {
            op,
            path: path.to_path_buf(),
            source,
        }
    }
}

impl Procfs {
    /// The procfs at `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Procfs { root: root.into() }
    }

    /// The host's `/proc`.
    pub fn host() -> Self {
        Procfs::new("/proc")
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn file(&self, pid: u32, name: &str) -> PathBuf {
        self.root.join(pid.to_string()).join(name)
    }

    fn read(&self, pid: u32, name: &str) -> Result<(PathBuf, String), ProcfsError> {
        let path = self.file(pid, name);
        match std::fs::read_to_string(&path) {
            Ok(text) => Ok((path, text)),
            Err(e) => Err(gone_or_io("read", pid, &path, e)),
        }
    }

    /// The parsed `/proc/<pid>/stat`.
    pub fn stat(&self, pid: u32) -> Result<ProcStat, ProcfsError> {
        let (path, text) = self.read(pid, "stat")?;
        parse_stat(&path, &text)
    }

    /// The process's `oom_score_adj`.
    pub fn oom_score_adj(&self, pid: u32) -> Result<i32, ProcfsError> {
        let (path, text) = self.read(pid, "oom_score_adj")?;
        text.trim()
            .parse::<i32>()
            .map_err(|_| ProcfsError::Malformed {
                path,
                text: text.trim().to_string(),
                reason: "not an integer".to_string(),
            })
    }

    /// Sets the process's `oom_score_adj` (-1000..=1000). EACCES (lowering it without
    /// CAP_SYS_RESOURCE) is [`ProcfsError::NeedsCapSysResource`].
    pub fn set_oom_score_adj(&self, pid: u32, value: i32) -> Result<(), ProcfsError> {
        if !OOM_SCORE_ADJ_RANGE.contains(&value) {
            return Err(ProcfsError::OutOfRange { pid, value });
        }
        let path = self.file(pid, "oom_score_adj");
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .and_then(|mut f| f.write_all(value.to_string().as_bytes()))
            .map_err(|e| {
                if e.raw_os_error() == Some(libc::EACCES) {
                    ProcfsError::NeedsCapSysResource { pid, value }
                } else {
                    gone_or_io("write", pid, &path, e)
                }
            })
    }

    /// The process's start time (field 22 of `/proc/<pid>/stat`, clock ticks after boot).
    pub fn start_time(&self, pid: u32) -> Result<u64, ProcfsError> {
        Ok(self.stat(pid)?.start_time)
    }

    /// Whether `pid` is still the process that started at `start_time` and is not a zombie.
    pub fn is_alive(&self, pid: u32, start_time: u64) -> bool {
        matches!(self.stat(pid), Ok(s) if s.start_time == start_time && !matches!(s.state, 'Z' | 'X' | 'x'))
    }
}

impl ProcessTable for Procfs {
    fn oom_score_adj(&self, pid: u32) -> Result<i32, ProcfsError> {
        Procfs::oom_score_adj(self, pid)
    }
    fn set_oom_score_adj(&self, pid: u32, value: i32) -> Result<(), ProcfsError> {
        Procfs::set_oom_score_adj(self, pid, value)
    }
    fn start_time(&self, pid: u32) -> Result<u64, ProcfsError> {
        Procfs::start_time(self, pid)
    }
    fn is_alive(&self, pid: u32, start_time: u64) -> bool {
        Procfs::is_alive(self, pid, start_time)
    }
}

#[derive(Debug, Clone, Copy)]
struct FakeProcess {
    start_time: u64,
    score: i32,
    /// Minimum score a write may set without CAP_SYS_RESOURCE.
    min: i32,
}

/// A fake process table: processes added with [`FakeProcesses::add`], the kernel's
/// CAP_SYS_RESOURCE rule (no lowering below the starting score) applied, every successful
/// write recorded.
#[derive(Debug, Default)]
pub struct FakeProcesses {
    procs: Mutex<BTreeMap<u32, FakeProcess>>,
    writes: Mutex<Vec<(u32, i32)>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl FakeProcesses {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces: PID reuse) process `pid` started at `start_time` with `score`; the
    /// score cannot later be lowered below `score`.
    pub fn add(&self, pid: u32, start_time: u64, score: i32) {
        lock(&self.procs).insert(
            pid,
            FakeProcess {
                start_time,
                score,
                min: score,
            },
        );
    }

    /// Removes process `pid` (it exited).
    pub fn exit(&self, pid: u32) {
        lock(&self.procs).remove(&pid);
    }

    /// Every successful `(pid, value)` write, in order.
    pub fn writes(&self) -> Vec<(u32, i32)> {
        lock(&self.writes).clone()
    }

    /// The current score of `pid`.
    pub fn score(&self, pid: u32) -> Option<i32> {
        lock(&self.procs).get(&pid).map(|p| p.score)
    }
}

impl ProcessTable for FakeProcesses {
    fn oom_score_adj(&self, pid: u32) -> Result<i32, ProcfsError> {
        self.score(pid).ok_or(ProcfsError::Gone { pid })
    }

    fn set_oom_score_adj(&self, pid: u32, value: i32) -> Result<(), ProcfsError> {
        if !OOM_SCORE_ADJ_RANGE.contains(&value) {
            return Err(ProcfsError::OutOfRange { pid, value });
        }
        let mut procs = lock(&self.procs);
        let p = procs.get_mut(&pid).ok_or(ProcfsError::Gone { pid })?;
        if value < p.min {
            return Err(ProcfsError::NeedsCapSysResource { pid, value });
        }
        p.score = value;
        lock(&self.writes).push((pid, value));
        Ok(())
    }

    fn start_time(&self, pid: u32) -> Result<u64, ProcfsError> {
        lock(&self.procs)
            .get(&pid)
            .map(|p| p.start_time)
            .ok_or(ProcfsError::Gone { pid })
    }

    fn is_alive(&self, pid: u32, start_time: u64) -> bool {
        matches!(lock(&self.procs).get(&pid), Some(p) if p.start_time == start_time)
    }
}

#[cfg(test)]
mod tests;
