//! `oom`: raise the container's OOM score and/or provoke a genuine kernel OOM kill.
//!
//! ```yaml
//! oom.nri-chaos.io/container.app: "{score: 1000, kill: true, after: 2m}"
//! ```
//!
//! | field | meaning |
//! |---|---|
//! | `score` | absolute `oom_score_adj` target, 0 to 1000 (restored after `duration` if given) |
//! | `kill` | `true`: fill the container's memory cgroup until the kernel OOM-kills it (CRI reason `OOMKilled`, exit 137) |
//!
//! At least one is required. `kill: true` on a container without a memory limit is refused
//! unless the admin policy sets `allow_oom_kill_without_limit` (it would exhaust the node).
//!
//! Execution, score part (over the [`ProcessTable`] seam): [`raise_scores`] sets every
//! container process's `oom_score_adj` to the target and returns what to restore, each process
//! named by PID and start time; it only ever raises — a target below a process's current score
//! is refused before anything is written, because lowering `oom_score_adj` needs
//! CAP_SYS_RESOURCE. [`restore_scores`] writes the previous values back to the processes that
//! are still the same (PID and start time match); exited or reused PIDs are skipped, and a
//! refused write (EACCES) is reported, not fatal. The kill part (filling the memory cgroup) is
//! done by a stressor; [`oom_kill_plan`] says how much it must allocate.

use std::fmt;

use crate::fields::{FieldError, FieldSpec, FieldType, Fields};

/// Parameters of an `oom` fault.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OomFault {
    /// Target `oom_score_adj` (0..=1000).
    pub score: Option<u16>,
    /// Provoke an OOM kill.
    pub kill: bool,
}

impl OomFault {
    /// The fields `oom` accepts besides the timing fields.
    pub const FIELDS: &'static [FieldSpec] = &[
        FieldSpec::new(
            "score",
            FieldType::Integer { min: 0, max: 1000 },
            "-",
            "raise the oom_score_adj of the container's processes (restored at the end)",
        ),
        FieldSpec::new(
            "kill",
            FieldType::Boolean,
            "false",
            "true: a genuine kernel OOM kill of the container (needs a memory limit)",
        ),
    ];
    /// An example value (`ctl explain`; a unit test parses it).
    pub const EXAMPLE: &'static str = "{kill: true, after: 30s}";

    /// Reads the `oom` fields.
    pub(crate) fn from_fields(fields: &mut Fields) -> Result<Self, FieldError> {
        let score = fields
            .integer("score", 0, 1000)?
            .and_then(|s| u16::try_from(s).ok());
        let kill = fields.boolean("kill")?;
        if score.is_none() && kill != Some(true) {
            return Err(FieldError::Refused(
                "oom needs at least one of: score, kill: true".to_string(),
            ));
        }
        Ok(OomFault {
            score,
            kill: kill.unwrap_or(false),
        })
    }
}

impl fmt::Display for OomFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.score, self.kill) {
            (Some(s), true) => write!(f, "score={s} kill"),
            (Some(s), false) => write!(f, "score={s}"),
            (None, _) => f.write_str("kill"),
        }
    }
}

mod apply;
mod kill;
#[cfg(test)]
mod tests;

pub use apply::{
    oom_kill_plan, raise_scores, restore_scores, OomError, OomUndo, RestoreReport, SavedScore,
};
