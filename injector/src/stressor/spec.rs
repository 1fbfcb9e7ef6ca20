//! What one stressor worker does, and its command line.
//!
//! `nri-chaos stress-worker --kind cpu --load-percent 50 --deadline-unix-ms 1767225600000
//! --watch-pid 4242`. Every flag is `--name value` (two arguments), given at most once;
//! numbers are plain decimal digits.
//!
//! | flag | kinds | meaning |
//! |---|---|---|
//! | `--kind` | all | `cpu`, `memory` or `oom-fill` |
//! | `--load-percent` | cpu | busy share of one CPU, 1 to 100 |
//! | `--bytes` | memory | memory to touch and hold, above 0 |
//! | `--step-bytes` | oom-fill | size of each chunk charged at a time, above 0 |
//! | `--max-bytes` | oom-fill | the most it charges in all, above 0 (a bound should the cgroup have no limit) |
//! | `--deadline-unix-ms` | all (required) | wall-clock time (ms since the Unix epoch) at which the worker exits |
//! | `--watch-pid` | all (optional) | exit as soon as this process (the container's init) exits |

use std::ffi::CStr;

use crate::faults::stress::{CpuStress, MemoryStress};

use super::StressorError;

/// The hidden subcommand of `nri-chaos` that runs [`super::worker_main`].
pub const WORKER_SUBCOMMAND: &str = "stress-worker";

/// Chunk size [`oom_fill_spec`] callers use unless they have a reason not to.
pub const DEFAULT_OOM_STEP_BYTES: u64 = 4 << 20;

/// What a worker does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkerKind {
    /// Hold `load_percent`% of one CPU: per 100 ms period, spin that share and sleep the rest.
    Cpu {
        /// Busy share of one CPU, 1..=100.
        load_percent: u8,
    },
    /// Touch `bytes` of anonymous memory (one write per 4 KiB page) and hold it.
    Memory {
        /// Memory to hold, above 0.
        bytes: u64,
    },
    /// Charge memory to the cgroup in `step_bytes` chunks, up to `max_bytes` in all, until the
    /// kernel OOM killer ends the container (the watched init). The memory is written into a
    /// memfd, not mapped: it is charged to the memory cgroup like any page, but it is not in
    /// the worker's RSS, so the OOM killer's badness (RSS + oom_score_adj share) ranks the
    /// container's own processes above the worker.
    OomFill {
        /// Chunk size, above 0.
        step_bytes: u64,
        /// Most bytes charged in all, above 0 (the container's memory limit is enough to force
        /// the OOM kill; this bounds the worker should the cgroup have no limit).
        max_bytes: u64,
    },
}

impl WorkerKind {
    /// The `--kind` value.
    pub fn name(&self) -> &'static str {
        match self {
            WorkerKind::Cpu { .. } => "cpu",
            WorkerKind::Memory { .. } => "memory",
            WorkerKind::OomFill { .. } => "oom-fill",
        }
    }

    /// The process name the worker sets for itself (PR_SET_NAME, at most 15 bytes).
    pub fn process_name(&self) -> &'static CStr {
        match self {
            WorkerKind::Cpu { .. } => c"nri-chaos-cpu",
            WorkerKind::Memory { .. } => c"nri-chaos-mem",
            WorkerKind::OomFill { .. } => c"nri-chaos-oom",
        }
    }
}

/// One worker: what it does, when it stops by itself, and which process it watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkerSpec {
    /// What the worker does.
    pub kind: WorkerKind,
    /// Wall-clock deadline, milliseconds since the Unix epoch; the worker exits at that time.
    pub deadline_unix_ms: u64,
    /// The worker exits as soon as this process exits (the container's init).
    pub watch_pid: Option<u32>,
}

const KIND: &str = "--kind";
const LOAD: &str = "--load-percent";
const BYTES: &str = "--bytes";
const STEP: &str = "--step-bytes";
const MAX: &str = "--max-bytes";
const DEADLINE: &str = "--deadline-unix-ms";
const WATCH: &str = "--watch-pid";
const FLAGS: [&str; 7] = [KIND, LOAD, BYTES, STEP, MAX, DEADLINE, WATCH];

fn number(flag: &'static str, value: &str) -> Result<u64, StressorError> {
    let invalid = |reason| StressorError::InvalidValue {
        flag,
        value: value.to_string(),
        reason,
    };
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid("is not a decimal number"));
    }
    value.parse::<u64>().map_err(|_| invalid("is too large"))
}

fn positive(flag: &'static str, value: &str) -> Result<u64, StressorError> {
    match number(flag, value)? {
        0 => Err(StressorError::InvalidValue {
            flag,
            value: value.to_string(),
            reason: "is zero; it must be above zero",
        }),
        n => Ok(n),
    }
}

impl WorkerSpec {
    /// The worker's arguments (after the subcommand), as [`WorkerSpec::from_args`] reads them.
    pub fn to_args(&self) -> Vec<String> {
        let mut args = vec![KIND.to_string(), self.kind.name().to_string()];
        let (flag, value) = match self.kind {
            WorkerKind::Cpu { load_percent } => (LOAD, u64::from(load_percent)),
            WorkerKind::Memory { bytes } => (BYTES, bytes),
            WorkerKind::OomFill {
                step_bytes,
                max_bytes,
            } => {
                args.extend([MAX.to_string(), max_bytes.to_string()]);
                (STEP, step_bytes)
            }
        };
        args.extend([flag.to_string(), value.to_string()]);
        args.extend([DEADLINE.to_string(), self.deadline_unix_ms.to_string()]);
        if let Some(pid) = self.watch_pid {
            args.extend([WATCH.to_string(), pid.to_string()]);
        }
        args
    }

    /// Parses the worker's arguments (after the subcommand), strictly: known flags only, each
    /// at most once, each with a value, only the flags of the chosen kind.
    pub fn from_args(args: &[String]) -> Result<WorkerSpec, StressorError> {
        let mut values: [Option<&str>; FLAGS.len()] = [None; FLAGS.len()];
        let mut it = args.iter();
        while let Some(arg) = it.next() {
            let Some(slot) = FLAGS.iter().position(|f| f == arg) else {
                return Err(StressorError::UnknownFlag { flag: arg.clone() });
            };
            let value = it
                .next()
                .ok_or_else(|| StressorError::MissingValue { flag: arg.clone() })?;
            if values[slot].replace(value).is_some() {
                return Err(StressorError::DuplicateFlag { flag: arg.clone() });
            }
        }
        let [kind, load, bytes, step, max, deadline, watch] = values;

        let kind_text = kind.ok_or(StressorError::MissingFlag { flag: KIND })?;
        let (kind, others): (WorkerKind, Vec<(&'static str, Option<&str>)>) = match kind_text {
            "cpu" => {
                let text = load.ok_or(StressorError::MissingFlag { flag: LOAD })?;
                let load_percent = match number(LOAD, text)? {
                    n @ 1..=100 => n as u8,
                    _ => {
                        return Err(StressorError::InvalidValue {
                            flag: LOAD,
                            value: text.to_string(),
                            reason: "is out of range (1 to 100)",
                        })
                    }
                };
                (
                    WorkerKind::Cpu { load_percent },
                    vec![(BYTES, bytes), (STEP, step), (MAX, max)],
                )
            }
            "memory" => {
                let text = bytes.ok_or(StressorError::MissingFlag { flag: BYTES })?;
                (
                    WorkerKind::Memory {
                        bytes: positive(BYTES, text)?,
                    },
                    vec![(LOAD, load), (STEP, step), (MAX, max)],
                )
            }
            "oom-fill" => {
                let text = step.ok_or(StressorError::MissingFlag { flag: STEP })?;
                let max_text = max.ok_or(StressorError::MissingFlag { flag: MAX })?;
                (
                    WorkerKind::OomFill {
                        step_bytes: positive(STEP, text)?,
                        max_bytes: positive(MAX, max_text)?,
                    },
                    vec![(LOAD, load), (BYTES, bytes)],
                )
            }
            other => {
                return Err(StressorError::InvalidValue {
                    flag: KIND,
                    value: other.to_string(),
                    reason: "is not a worker kind (cpu, memory, oom-fill)",
                })
            }
        };
        if let Some((flag, _)) = others.iter().find(|(_, v)| v.is_some()) {
            return Err(StressorError::FlagNotForKind {
                flag,
                kind: kind.name(),
            });
        }

        let deadline_text = deadline.ok_or(StressorError::MissingFlag { flag: DEADLINE })?;
        let deadline_unix_ms = number(DEADLINE, deadline_text)?;
        let watch_pid = match watch {
            None => None,
            Some(text) => match number(WATCH, text)? {
                n @ 1..=0x7fff_ffff => Some(n as u32),
                _ => {
                    return Err(StressorError::InvalidValue {
                        flag: WATCH,
                        value: text.to_string(),
                        reason: "is not a process id (1 to 2147483647)",
                    })
                }
            },
        };
        Ok(WorkerSpec {
            kind,
            deadline_unix_ms,
            watch_pid,
        })
    }
}

/// One CPU worker per `cpu.workers`, each holding `cpu.load`% of one CPU.
pub fn cpu_specs(
    cpu: &CpuStress,
    deadline_unix_ms: u64,
    watch_pid: Option<u32>,
) -> Vec<WorkerSpec> {
    (0..cpu.workers)
        .map(|_| WorkerSpec {
            kind: WorkerKind::Cpu {
                load_percent: cpu.load.clamp(1, 100),
            },
            deadline_unix_ms,
            watch_pid,
        })
        .collect()
}

/// `memory.workers` memory workers sharing `resolved_bytes` (the resolved `memory.size`)
/// evenly; the first workers take the remainder, one byte each. Workers that would hold
/// nothing (fewer bytes than workers) are left out.
pub fn memory_specs(
    memory: &MemoryStress,
    resolved_bytes: u64,
    deadline_unix_ms: u64,
    watch_pid: Option<u32>,
) -> Vec<WorkerSpec> {
    let workers = u64::from(memory.workers.max(1));
    let (share, rest) = (resolved_bytes / workers, resolved_bytes % workers);
    (0..workers)
        .map(|i| share + u64::from(i < rest))
        .filter(|&bytes| bytes > 0)
        .map(|bytes| WorkerSpec {
            kind: WorkerKind::Memory { bytes },
            deadline_unix_ms,
            watch_pid,
        })
        .collect()
}

/// The single worker of `oom: {kill: true}`: charges the container's memory cgroup in
/// [`DEFAULT_OOM_STEP_BYTES`] chunks, at most `max_bytes` in all (pass the container's memory
/// limit: reaching it forces the OOM kill), until the OOM killer ends the container (whose
/// processes' scores the oom fault raised) and with it the watched init.
pub fn oom_fill_spec(max_bytes: u64, deadline_unix_ms: u64, watch_pid: Option<u32>) -> WorkerSpec {
    WorkerSpec {
        kind: WorkerKind::OomFill {
            step_bytes: DEFAULT_OOM_STEP_BYTES,
            max_bytes: max_bytes.max(1),
        },
        deadline_unix_ms,
        watch_pid,
    }
}
