//! `freeze`: freeze the container's cgroup, then thaw it.
//!
//! ```yaml
//! freeze.nri-chaos.io/container.app: "{after: 1m, duration: 20s, every: 5m, count: 3}"
//! ```
//!
//! `freeze` has no fields of its own; `duration` (how long the cgroup stays frozen) is
//! required, and `after`, `every`, `count`, `jitter` and `probability` apply. With `every`,
//! `duration` must be shorter than `every`. The cgroup is thawed at the end of each firing,
//! always — also when the container stops and across plugin restarts.

use std::fmt;

use crate::fields::{FieldError, Fields};

/// Parameters of a `freeze` fault (none besides the timing: see [`crate::plan::Timing`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FreezeFault;

impl FreezeFault {
    /// The fields `freeze` accepts besides the timing fields.
    pub const FIELDS: &'static [&'static str] = &[];

    /// Reads the `freeze` fields (there are none).
    pub(crate) fn from_fields(_fields: &mut Fields) -> Result<Self, FieldError> {
        Ok(FreezeFault)
    }
}

impl fmt::Display for FreezeFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("cgroup")
    }
}
