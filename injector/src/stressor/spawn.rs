//! Spawning workers inside the container's cgroups, and stopping them.
//!
//! [`spawn_placed`] is the core: a `pre_exec` hook, running in the forked child before exec,
//! writes the child's own pid into each given `cgroup.procs` with raw syscalls (no allocation:
//! the paths are prepared as C strings before the fork). A failing write aborts the spawn, and
//! the error names the file: the hook reports `errno + (index + 1) * PLACEMENT_CODE_BASE`
//! through std's exec-error pipe, decoded here back into the file and its errno.

use std::ffi::{CString, OsString};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};

use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;
use rustix::process::{pidfd_open, pidfd_send_signal, Pid, PidfdFlags, Signal};

use super::spec::{WorkerSpec, WORKER_SUBCOMMAND};
use super::StressorError;

/// Where a worker's stdout and stderr go (stdin is always /dev/null).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WorkerOutput {
    /// Discarded.
    #[default]
    Null,
    /// The spawning process's own stdout and stderr.
    Inherit,
}

impl WorkerOutput {
    fn stdio(self) -> Stdio {
        match self {
            WorkerOutput::Null => Stdio::null(),
            WorkerOutput::Inherit => Stdio::inherit(),
        }
    }
}

/// Errno values are below 4096; the file index is carried above this.
const PLACEMENT_CODE_BASE: i32 = 1 << 16;
/// Most `cgroup.procs` files one spawn may write (the index must fit the i32 code).
const MAX_PROCS_FILES: usize = (i32::MAX / PLACEMENT_CODE_BASE - 1) as usize;

/// The error the hook returns for file `index`: no allocation (an OS-error `io::Error`).
fn placement_code(index: usize, errno: i32) -> std::io::Error {
    // index < MAX_PROCS_FILES (checked before the fork) and 0 < errno < 4096: no overflow.
    let code = (index as i32 + 1) * PLACEMENT_CODE_BASE + (errno & (PLACEMENT_CODE_BASE - 1));
    std::io::Error::from_raw_os_error(code)
}

/// Writes `pid` in decimal into `buf`, returning the digits (async-signal-safe: no allocation).
fn format_pid(pid: u32, buf: &mut [u8; 10]) -> &[u8] {
    let mut n = pid;
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &buf[i..];
        }
    }
}

/// Runs in the forked child before exec: writes the child's pid into every file.
fn place_self(paths: &[CString]) -> std::io::Result<()> {
    let mut digits = [0u8; 10];
    let pid = rustix::process::getpid()
        .as_raw_nonzero()
        .get()
        .unsigned_abs();
    let text = format_pid(pid, &mut digits);
    for (index, path) in paths.iter().enumerate() {
        let fd = rustix::fs::open(
            path.as_c_str(),
            OFlags::WRONLY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| placement_code(index, e.raw_os_error()))?;
        match rustix::io::write(&fd, text) {
            Ok(n) if n == text.len() => {}
            Ok(_) => return Err(placement_code(index, Errno::IO.raw_os_error())),
            Err(e) => return Err(placement_code(index, e.raw_os_error())),
        }
        // `fd` drops here: close(2).
    }
    Ok(())
}

/// Spawns `cmd` in its own process group, stdin null, after placing the child into every
/// `cgroup.procs` of `procs_files` before it executes anything.
///
/// Errors: [`StressorError::Placement`] naming the file that refused the pid (the child never
/// ran and is reaped), [`StressorError::Spawn`] for fork/exec failures.
pub fn spawn_placed(cmd: &mut Command, procs_files: &[PathBuf]) -> Result<Child, StressorError> {
    if procs_files.len() > MAX_PROCS_FILES {
        return Err(StressorError::TooManyProcsFiles {
            count: procs_files.len(),
            max: MAX_PROCS_FILES,
        });
    }
    let paths = procs_files
        .iter()
        .map(|p| {
            CString::new(p.as_os_str().as_bytes())
                .map_err(|_| StressorError::NulInPath { file: p.clone() })
        })
        .collect::<Result<Vec<_>, _>>()?;
    cmd.stdin(Stdio::null()).process_group(0);
    // SAFETY: the hook runs in the child between fork and exec, where only async-signal-safe
    // operations are allowed. `place_self` only calls getpid(2), open(2), write(2) and
    // close(2) through rustix's raw syscalls, formats into a stack buffer, reads the C strings
    // built before the fork, and builds its error as a raw-OS-error `io::Error` (no
    // allocation, no locks).
    unsafe {
        cmd.pre_exec(move || place_self(&paths));
    }
    cmd.spawn().map_err(|source| match source.raw_os_error() {
        Some(code) if code >= PLACEMENT_CODE_BASE => {
            let index = (code / PLACEMENT_CODE_BASE - 1) as usize;
            match procs_files.get(index) {
                Some(file) => StressorError::Placement {
                    file: file.clone(),
                    source: std::io::Error::from_raw_os_error(code % PLACEMENT_CODE_BASE),
                },
                None => StressorError::Spawn {
                    exe: PathBuf::from(cmd.get_program()),
                    source,
                },
            }
        }
        _ => StressorError::Spawn {
            exe: PathBuf::from(cmd.get_program()),
            source,
        },
    })
}

/// Spawns `exe stress-worker <spec args>` placed in `procs_files` (see [`spawn_placed`]).
pub fn spawn_worker(
    exe: &Path,
    spec: &WorkerSpec,
    procs_files: &[PathBuf],
    output: WorkerOutput,
) -> Result<Child, StressorError> {
    spawn_worker_with(exe, &[], spec, procs_files, output)
}

/// Like [`spawn_worker`], with `leading_args` before the subcommand:
/// `exe <leading_args> stress-worker <spec args>` (a test binary re-executing itself passes
/// its harness arguments there).
pub fn spawn_worker_with(
    exe: &Path,
    leading_args: &[OsString],
    spec: &WorkerSpec,
    procs_files: &[PathBuf],
    output: WorkerOutput,
) -> Result<Child, StressorError> {
    let mut cmd = Command::new(exe);
    cmd.args(leading_args)
        .arg(WORKER_SUBCOMMAND)
        .args(spec.to_args())
        .stdout(output.stdio())
        .stderr(output.stdio());
    spawn_placed(&mut cmd, procs_files)
}

/// The start time (field 22 of `/proc/<pid>/stat`, clock ticks since boot) in a stat line.
/// The command name (field 2) may hold spaces and parentheses: fields are counted after the
/// last `)`.
pub fn parse_start_time(stat: &str) -> Option<u64> {
    let after_comm = &stat[stat.rfind(')')? + 1..];
    // After the comm come field 3 (state) onwards: field 22 is the 20th.
    after_comm
        .split_ascii_whitespace()
        .nth(22 - 3)?
        .parse()
        .ok()
}

/// Reads the start time of `pid` from `<proc_root>/<pid>/stat`.
pub fn read_start_time(proc_root: &Path, pid: u32) -> Result<u64, StressorError> {
    let file = proc_root.join(pid.to_string()).join("stat");
    let text = std::fs::read_to_string(&file).map_err(|e| StressorError::StartTime {
        pid,
        file: file.clone(),
        reason: e.to_string(),
    })?;
    parse_start_time(&text).ok_or_else(|| StressorError::StartTime {
        pid,
        reason: format!("no start time (field 22) in '{}'", text.trim_end()),
        file,
    })
}

/// Stops a worker recorded by an earlier plugin run, if `pid` is still that process: the
/// process is pinned by a pidfd first, then its start time compared with `start_time`, and
/// only then SIGKILLed, so a recycled pid is never hit. `Ok(true)` when killed, `Ok(false)`
/// when that worker is already gone.
pub fn kill_orphan(proc_root: &Path, pid: u32, start_time: u64) -> Result<bool, StressorError> {
    let kill_err = |e: Errno| StressorError::Kill {
        pid,
        source: e.into(),
    };
    let Some(rpid) = i32::try_from(pid).ok().and_then(Pid::from_raw) else {
        return Ok(false);
    };
    let pidfd = match pidfd_open(rpid, PidfdFlags::empty()) {
        Ok(fd) => fd,
        Err(Errno::SRCH) => return Ok(false),
        Err(e) => return Err(kill_err(e)),
    };
    match read_start_time(proc_root, pid) {
        Ok(t) if t == start_time => {}
        // A different process now holds the pid, or it vanished meanwhile.
        _ => return Ok(false),
    }
    match pidfd_send_signal(&pidfd, Signal::KILL) {
        Ok(()) => Ok(true),
        Err(Errno::SRCH) => Ok(false),
        Err(e) => Err(kill_err(e)),
    }
}

#[derive(Debug)]
struct Worker {
    child: Child,
    start_time: u64,
}

/// The workers of one fault firing; stopping (or dropping) the set SIGKILLs and reaps them all.
#[derive(Debug, Default)]
pub struct StressorSet {
    children: Vec<Worker>,
}

impl StressorSet {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Spawns one worker per spec (`exe stress-worker ...`, output discarded), each placed in
    /// every `cgroup.procs` of `procs_files`. On failure the workers already spawned are
    /// killed and reaped.
    pub fn spawn(
        exe: &Path,
        specs: &[WorkerSpec],
        procs_files: &[PathBuf],
    ) -> Result<StressorSet, StressorError> {
        Self::spawn_with(exe, &[], specs, procs_files, WorkerOutput::Null)
    }

    /// [`StressorSet::spawn`] with leading arguments and an output choice (see
    /// [`spawn_worker_with`]).
    pub fn spawn_with(
        exe: &Path,
        leading_args: &[OsString],
        specs: &[WorkerSpec],
        procs_files: &[PathBuf],
        output: WorkerOutput,
    ) -> Result<StressorSet, StressorError> {
        let mut set = StressorSet::new();
        for spec in specs {
            let child = spawn_worker_with(exe, leading_args, spec, procs_files, output)?;
            set.adopt(child)?;
        }
        Ok(set)
    }

    /// Adds a spawned child to the set (recording its start time); on error the child is
    /// killed and reaped.
    pub fn adopt(&mut self, mut child: Child) -> Result<(), StressorError> {
        match read_start_time(Path::new("/proc"), child.id()) {
            Ok(start_time) => {
                self.children.push(Worker { child, start_time });
                Ok(())
            }
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                Err(e)
            }
        }
    }

    /// Number of workers in the set (running or exited but not yet reaped).
    pub fn len(&self) -> usize {
        self.children.len()
    }

    /// Whether the set holds no worker.
    pub fn is_empty(&self) -> bool {
        self.children.is_empty()
    }

    /// `(pid, start time)` of every worker, for the journal (see [`kill_orphan`]).
    pub fn pids_with_start_times(&self) -> Vec<(u32, u64)> {
        self.children
            .iter()
            .map(|w| (w.child.id(), w.start_time))
            .collect()
    }

    /// Reaps the workers that have exited by themselves (deadline, watched process gone, OOM
    /// kill) and returns their `(pid, status)`; the others stay in the set.
    pub fn reap_exited(&mut self) -> Result<Vec<(u32, ExitStatus)>, StressorError> {
        let mut exited = Vec::new();
        let mut i = 0;
        while i < self.children.len() {
            let pid = self.children[i].child.id();
            match self.children[i].child.try_wait() {
                Ok(Some(status)) => {
                    self.children.swap_remove(i);
                    exited.push((pid, status));
                }
                Ok(None) => i += 1,
                Err(source) => return Err(StressorError::Reap { pid, source }),
            }
        }
        Ok(exited)
    }

    /// SIGKILLs every worker and reaps them all (none is left a zombie, even when an error is
    /// returned: the first error is reported after every worker has been handled). Returns
    /// each worker's `(pid, status)`.
    pub fn stop(mut self) -> Result<Vec<(u32, ExitStatus)>, StressorError> {
        kill_and_reap(std::mem::take(&mut self.children))
    }
}

fn kill_and_reap(workers: Vec<Worker>) -> Result<Vec<(u32, ExitStatus)>, StressorError> {
    let mut first_err = None;
    let mut statuses = Vec::with_capacity(workers.len());
    // Kill all first, then reap: they die in parallel.
    let mut children: Vec<Child> = workers.into_iter().map(|w| w.child).collect();
    for child in &mut children {
        // Not yet reaped, so the pid still names our child. Ok when it already exited.
        if let Err(source) = child.kill() {
            first_err.get_or_insert(StressorError::Kill {
                pid: child.id(),
                source,
            });
        }
    }
    for mut child in children {
        match child.wait() {
            Ok(status) => statuses.push((child.id(), status)),
            Err(source) => {
                first_err.get_or_insert(StressorError::Reap {
                    pid: child.id(),
                    source,
                });
            }
        }
    }
    match first_err {
        Some(e) => Err(e),
        None => Ok(statuses),
    }
}

impl Drop for StressorSet {
    fn drop(&mut self) {
        if let Err(e) = kill_and_reap(std::mem::take(&mut self.children)) {
            tracing::warn!(error = %e, "stopping stressors on drop");
        }
    }
}
