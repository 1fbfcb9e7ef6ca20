//! `stress`: CPU and/or memory stressors placed inside the container's own cgroup (its limits
//! and accounting apply; nothing escapes to the node).
//!
//! ```yaml
//! stress.nri-chaos.io/container.app: |
//!   duration: 2m
//!   cpu: {workers: 2, load: 80}
//!   memory: {size: 50%}
//! ```
//!
//! | field | meaning |
//! |---|---|
//! | `cpu.workers` | number of CPU stressors, 1 or more (default 1; capped by policy `stress.max_cpu_workers`) |
//! | `cpu.load` | busy percentage of each CPU stressor, 1 to 100 (`80` or `80%`; default 100) |
//! | `memory.size` | memory to hold: `256Mi`, `1G`, or `50%` of the container memory limit (required; at most 128Ti) |
//! | `memory.workers` | number of memory stressors sharing `size`, 1 to 64 (default 1) |
//!
//! At least one of `cpu` and `memory` is required, and so is `duration`.

use std::fmt;

use crate::fields::{FieldError, FieldSpec, FieldType, Fields};
use crate::units::Size;

/// Most memory stressors one fault may run.
pub const MAX_MEMORY_WORKERS: u64 = 64;
/// Largest memory stressor, whatever the policy says: the user address space of one process
/// on x86-64 and arm64 (47 bits). No node has more; a larger request is a typo (`1Ei`).
pub const MAX_MEMORY_BYTES: u64 = 1 << 47;
/// Hard upper bound on CPU workers, whatever the policy says.
pub const MAX_CPU_WORKERS: u64 = 1024;

/// The fields of `cpu`.
const CPU_FIELDS: &[FieldSpec] = &[
    FieldSpec::new(
        "workers",
        FieldType::Integer {
            min: 1,
            max: MAX_CPU_WORKERS,
        },
        "1",
        "number of CPU stressors (capped by policy stress.max_cpu_workers)",
    ),
    FieldSpec::new(
        "load",
        FieldType::Percent,
        "100",
        "busy percentage of each CPU stressor",
    ),
];

/// The fields of `memory`.
const MEMORY_FIELDS: &[FieldSpec] = &[
    FieldSpec::new(
        "size",
        FieldType::Size,
        "- (required)",
        "memory to hold (capped by policy stress.max_memory)",
    ),
    FieldSpec::new(
        "workers",
        FieldType::Integer {
            min: 1,
            max: MAX_MEMORY_WORKERS,
        },
        "1",
        "number of memory stressors sharing size",
    ),
];

/// CPU stress parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuStress {
    /// Number of CPU stressors.
    pub workers: u32,
    /// Busy percentage of each stressor, 1..=100.
    pub load: u8,
}

/// Memory stress parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MemoryStress {
    /// Total memory to hold.
    pub size: Size,
    /// Number of stressors sharing `size`.
    pub workers: u32,
}

/// Parameters of a `stress` fault.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct StressFault {
    /// CPU stress, if requested.
    pub cpu: Option<CpuStress>,
    /// Memory stress, if requested.
    pub memory: Option<MemoryStress>,
}

fn load(fields: &mut Fields) -> Result<u8, FieldError> {
    let Some(text) = fields.text("load")? else {
        return Ok(100);
    };
    let digits = text.strip_suffix('%').unwrap_or(&text);
    match digits.parse::<u8>() {
        Ok(v @ 1..=100) if digits.bytes().all(|b| b.is_ascii_digit()) => Ok(v),
        _ => Err(FieldError::Invalid {
            field: fields.name("load"),
            text,
            reason: "is not a load percentage (expected 1 to 100, e.g. 80 or 80%)".to_string(),
        }),
    }
}

impl StressFault {
    /// The fields `stress` accepts besides the timing fields.
    pub const FIELDS: &'static [FieldSpec] = &[
        FieldSpec::new(
            "cpu",
            FieldType::Mapping(CPU_FIELDS),
            "-",
            "CPU stressors (at least one of cpu, memory)",
        ),
        FieldSpec::new(
            "memory",
            FieldType::Mapping(MEMORY_FIELDS),
            "-",
            "memory stressors (at least one of cpu, memory)",
        ),
    ];
    /// An example value (`ctl explain`; a unit test parses it).
    pub const EXAMPLE: &'static str =
        "{duration: 2m, cpu: {workers: 2, load: 80}, memory: {size: 50%}}";

    /// Reads the `stress` fields.
    pub(crate) fn from_fields(fields: &mut Fields) -> Result<Self, FieldError> {
        let cpu = match fields.mapping("cpu")? {
            None => None,
            Some(mut cpu) => {
                cpu.only_specs(CPU_FIELDS)?;
                let workers = cpu.integer("workers", 1, MAX_CPU_WORKERS)?.unwrap_or(1);
                Some(CpuStress {
                    workers: u32::try_from(workers).unwrap_or(1),
                    load: load(&mut cpu)?,
                })
            }
        };
        let memory = match fields.mapping("memory")? {
            None => None,
            Some(mut mem) => {
                mem.only_specs(MEMORY_FIELDS)?;
                let size = mem
                    .size_at_most(
                        "size",
                        MAX_MEMORY_BYTES,
                        "128Ti, the most memory one process can map (no node has more)",
                    )?
                    .ok_or_else(|| FieldError::Missing {
                        field: mem.name("size"),
                        hint: " (e.g. memory: {size: 256Mi} or {size: 50%})".to_string(),
                    })?;
                if size == Size::Bytes(0) {
                    return Err(FieldError::Invalid {
                        field: mem.name("size"),
                        text: "0".to_string(),
                        reason: "is zero; it must be above zero".to_string(),
                    });
                }
                let workers = mem.integer("workers", 1, MAX_MEMORY_WORKERS)?.unwrap_or(1);
                Some(MemoryStress {
                    size,
                    workers: u32::try_from(workers).unwrap_or(1),
                })
            }
        };
        if cpu.is_none() && memory.is_none() {
            return Err(FieldError::Refused(
                "stress needs at least one of: cpu, memory".to_string(),
            ));
        }
        Ok(StressFault { cpu, memory })
    }
}

impl fmt::Display for StressFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut sep = "";
        if let Some(c) = self.cpu {
            write!(f, "cpu={}x{}%", c.workers, c.load)?;
            sep = " ";
        }
        if let Some(m) = self.memory {
            write!(f, "{sep}memory={}x{}", m.workers, m.size)?;
        }
        Ok(())
    }
}

mod apply;
#[cfg(test)]
mod tests;

pub use apply::{kill_if_same, start_stressors, StressError, StressUndo};
