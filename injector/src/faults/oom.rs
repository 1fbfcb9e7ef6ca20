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

use std::fmt;

use crate::fields::{FieldError, Fields};

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
    pub const FIELDS: &'static [&'static str] = &["score", "kill"];

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
