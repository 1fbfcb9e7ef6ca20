//! Native stressors for the `stress` fault and for `oom: {kill: true}`.
//!
//! A stressor is a separate process, `nri-chaos stress-worker <args>` (the plugin re-executes
//! itself), placed in the container's own cgroups *before it runs a single instruction*: the
//! spawn's `pre_exec` hook writes the child's pid into every `cgroup.procs` of the container
//! (each v1 controller hierarchy and the unified one), so the container's limits and accounting
//! apply and nothing escapes to the node.
//!
//! - [`WorkerSpec`]: what one worker does ([`WorkerKind`]: CPU duty cycle, held memory, OOM
//!   fill), with its command line ([`WorkerSpec::to_args`] / [`WorkerSpec::from_args`]), and the
//!   helpers turning a [`crate::faults::stress::StressFault`] into specs ([`cpu_specs`],
//!   [`memory_specs`], [`oom_fill_spec`]).
//! - [`worker_main`]: the body of `nri-chaos stress-worker`. Every worker exits by itself when
//!   its deadline passes or when the process it watches (the container's init, pinned by a
//!   pidfd) exits, so a stressor never outlives its fault or its container, even if nri-chaos
//!   dies.
//! - [`spawn_worker`], [`spawn_placed`] and [`StressorSet`]: spawning placed workers, the
//!   `(pid, start time)` pairs the journal records, and stopping (SIGKILL + reap) at the end;
//!   [`kill_orphan`] stops a worker recorded by a previous plugin run.

mod spawn;
mod spec;
mod worker;

#[cfg(test)]
mod kernel_tests;
#[cfg(test)]
mod tests;

use std::path::PathBuf;

pub use spawn::{
    kill_orphan, parse_start_time, read_start_time, spawn_placed, spawn_worker, spawn_worker_with,
    StressorSet, WorkerOutput,
};
pub use spec::{
    cpu_specs, memory_specs, oom_fill_spec, WorkerKind, WorkerSpec, DEFAULT_OOM_STEP_BYTES,
    WORKER_SUBCOMMAND,
};
pub use worker::{worker_main, EXIT_BAD_ARGS, EXIT_FAILED, EXIT_STOPPED};

/// Errors of the stressors: parsing a worker command line, spawning and stopping workers.
#[derive(Debug, thiserror::Error)]
pub enum StressorError {
    /// A flag the worker does not know.
    #[error("stress-worker: unknown flag '{flag}'")]
    UnknownFlag {
        /// The flag as given.
        flag: String,
    },
    /// A flag without its value.
    #[error("stress-worker: flag {flag} has no value")]
    MissingValue {
        /// The flag.
        flag: String,
    },
    /// A flag given more than once.
    #[error("stress-worker: flag {flag} is given more than once")]
    DuplicateFlag {
        /// The flag.
        flag: String,
    },
    /// A required flag is absent.
    #[error("stress-worker: flag {flag} is required")]
    MissingFlag {
        /// The flag.
        flag: &'static str,
    },
    /// A flag that does not belong to the chosen kind.
    #[error("stress-worker: flag {flag} does not apply to --kind {kind}")]
    FlagNotForKind {
        /// The flag.
        flag: &'static str,
        /// The kind given with `--kind`.
        kind: &'static str,
    },
    /// A flag value that does not parse or is out of range.
    #[error("stress-worker: {flag} '{value}' {reason}")]
    InvalidValue {
        /// The flag.
        flag: &'static str,
        /// The value as given.
        value: String,
        /// Why it is refused (completes the sentence).
        reason: &'static str,
    },
    /// A `cgroup.procs` path that cannot be passed to the kernel.
    #[error("cgroup file {} contains a NUL byte", file.display())]
    NulInPath {
        /// The path.
        file: PathBuf,
    },
    /// Too many `cgroup.procs` files for one spawn.
    #[error("{count} cgroup files given; at most {max} are supported")]
    TooManyProcsFiles {
        /// How many were given.
        count: usize,
        /// The most supported.
        max: usize,
    },
    /// Writing the child's pid into a `cgroup.procs` failed; the child never ran.
    #[error("placing the stressor into {}: {source}", file.display())]
    Placement {
        /// The `cgroup.procs` file.
        file: PathBuf,
        /// The error of open(2) or write(2).
        source: std::io::Error,
    },
    /// Spawning the process failed (fork or exec).
    #[error("spawning {}: {source}", exe.display())]
    Spawn {
        /// The program.
        exe: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// `/proc/<pid>/stat` could not be read or parsed.
    #[error("start time of process {pid} from {}: {reason}", file.display())]
    StartTime {
        /// The process.
        pid: u32,
        /// The stat file.
        file: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// Sending SIGKILL to a worker failed.
    #[error("killing stressor {pid}: {source}")]
    Kill {
        /// The worker.
        pid: u32,
        /// The error.
        source: std::io::Error,
    },
    /// Waiting for a worker failed.
    #[error("reaping stressor {pid}: {source}")]
    Reap {
        /// The worker.
        pid: u32,
        /// The error.
        source: std::io::Error,
    },
    /// Inside a worker: the watched process could not be pinned.
    #[error("stress-worker: watching process {pid}: {source}")]
    Watch {
        /// The watched process.
        pid: u32,
        /// The error of pidfd_open(2) or poll(2).
        source: std::io::Error,
    },
    /// Inside a worker: memory could not be reserved.
    #[error("stress-worker: cannot allocate {bytes} bytes: {reason}")]
    Allocate {
        /// The size asked for.
        bytes: u64,
        /// Why.
        reason: String,
    },
}
