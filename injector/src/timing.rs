//! The timing fields shared by every fault.
//!
//! | field | meaning | default |
//! |---|---|---|
//! | `after` | delay from container start to the first firing | `0s` |
//! | `duration` | how long each firing holds (required for `freeze` and `stress`, refused for `kill`) | none: holds until the container stops |
//! | `every` | repeat period, 100ms or more; `duration` must be shorter | no repetition |
//! | `count` | total firings for this pod and container name, counted across container restarts, 1 or more | `1`, or unlimited when `every` is set |
//! | `jitter` | each firing moves by a uniform random offset in `[-jitter, +jitter]` (never before container start) | `0s` |
//! | `probability` | chance that each firing actually acts (`0.5` or `50%`) | `1` |
//!
//! A firing whose probability draw fails still uses up one of `count`: `count` counts firing
//! opportunities, so `{count: 3, probability: 50%}` acts on average 1.5 times, never more
//! than 3.
//!
//! Exceptions: for `netem`, `jitter` is the netem delay jitter, so schedule jitter is not
//! available; for `start`, only `count` and `probability` apply (the fault acts at the moment
//! the container starts; `count` is then the number of starts affected).

use std::fmt;
use std::time::Duration;

use crate::annotations::FaultKind;
use crate::fields::{FieldError, FieldSpec, FieldType, Fields};
use crate::units::format_duration;

/// The shortest repeat period `every` takes.
pub const MIN_EVERY: Duration = Duration::from_millis(100);

/// Every timing field (`ctl explain` prints this table).
pub const TIMING_FIELDS: [FieldSpec; 6] = [
    FieldSpec::new(
        "after",
        FieldType::Duration,
        "0s",
        "delay from container start to the first firing",
    ),
    FieldSpec::new(
        "duration",
        FieldType::Duration,
        "none: holds until the container stops",
        "how long each firing holds",
    ),
    FieldSpec::new(
        "every",
        FieldType::Duration,
        "no repetition",
        "repeat period, 100ms or more; must be longer than duration",
    ),
    FieldSpec::new(
        "count",
        FieldType::Integer {
            min: 1,
            max: u32::MAX as u64,
        },
        "1, or unlimited when every is set",
        "total firings for this pod and container name, across container and plugin restarts",
    ),
    FieldSpec::new(
        "jitter",
        FieldType::Duration,
        "0s",
        "each firing moves by a uniform random offset in [-jitter, +jitter]",
    ),
    FieldSpec::new(
        "probability",
        FieldType::Probability,
        "1",
        "chance that a firing acts (a failed draw still uses up one of count)",
    ),
];

/// Whether `kind` requires `duration`.
pub fn duration_required(kind: FaultKind) -> bool {
    matches!(kind, FaultKind::Freeze | FaultKind::Stress)
}

/// When and how often a fault fires.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Timing {
    /// From container start to the first firing.
    pub after: Duration,
    /// How long each firing holds; `None` = until the container stops (or instantaneous for
    /// `kill`).
    pub duration: Option<Duration>,
    /// Repeat period.
    pub every: Option<Duration>,
    /// Total firings across container restarts; `None` = unlimited.
    pub count: Option<u32>,
    /// Uniform +/- offset applied to each firing.
    pub jitter: Duration,
    /// Chance that a firing acts, 0..=1.
    pub probability: f64,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            after: Duration::ZERO,
            duration: None,
            every: None,
            count: Some(1),
            jitter: Duration::ZERO,
            probability: 1.0,
        }
    }
}

/// The timing fields that `kind` accepts, and why the others are refused.
fn refused_field(kind: FaultKind, field: &str) -> Option<&'static str> {
    match (kind, field) {
        (FaultKind::Kill, "duration") => {
            Some("a kill is instantaneous; use after, every and count")
        }
        (FaultKind::Netem, "jitter") => None, // read by netem itself as the delay jitter
        (FaultKind::Exec, "jitter") => {
            Some("an exec fault acts on each exec inside its window; there is no firing to move")
        }
        (FaultKind::Start, "after" | "every" | "duration" | "jitter") => {
            Some("a start fault acts when the container starts; only count and probability apply")
        }
        _ => None,
    }
}

/// The timing fields `kind` reads (netem's `jitter` belongs to netem).
pub fn timing_fields(kind: FaultKind) -> Vec<FieldSpec> {
    TIMING_FIELDS
        .into_iter()
        .filter(|f| refused_field(kind, f.name).is_none())
        .filter(|f| !(kind == FaultKind::Netem && f.name == "jitter"))
        .collect()
}

/// Refuses, with the reason, a timing field given to a fault kind it does not apply to.
pub(crate) fn check_refused_timing(kind: FaultKind, fields: &Fields) -> Result<(), FieldError> {
    for field in TIMING_FIELDS.map(|spec| spec.name) {
        if let (true, Some(why)) = (fields.has(field), refused_field(kind, field)) {
            return Err(FieldError::Refused(format!(
                "{field}: not accepted for {kind} ({why})"
            )));
        }
    }
    Ok(())
}

impl Timing {
    /// Reads the timing fields of a `kind` fault.
    pub(crate) fn from_fields(kind: FaultKind, fields: &mut Fields) -> Result<Timing, FieldError> {
        check_refused_timing(kind, fields)?;
        let after = fields.duration("after")?.unwrap_or_default();
        let duration = fields.positive_duration("duration")?;
        let every = fields.positive_duration("every")?;
        if let Some(e) = every.filter(|e| *e < MIN_EVERY) {
            return Err(FieldError::Invalid {
                field: "every".to_string(),
                text: format_duration(e),
                reason: format!(
                    "is shorter than {}, the shortest repeat period (a fault cannot act and be seen to act faster)",
                    format_duration(MIN_EVERY)
                ),
            });
        }
        let count = fields
            .integer("count", 1, u64::from(u32::MAX))?
            .and_then(|c| u32::try_from(c).ok());
        let jitter = if kind == FaultKind::Netem {
            Duration::ZERO
        } else {
            fields.duration("jitter")?.unwrap_or_default()
        };
        let probability = fields.probability("probability")?.unwrap_or(1.0);
        if duration.is_none() && duration_required(kind) {
            let hint = match kind {
                FaultKind::Freeze => {
                    " for freeze (how long the cgroup stays frozen, e.g. duration: 30s)"
                }
                _ => " for stress (how long the stressors run, e.g. duration: 2m)",
            };
            return Err(FieldError::Missing {
                field: "duration".to_string(),
                hint: hint.to_string(),
            });
        }
        if let (Some(d), Some(e)) = (duration, every) {
            if d >= e {
                return Err(FieldError::Refused(format!(
                    "duration ({}) must be shorter than every ({})",
                    format_duration(d),
                    format_duration(e)
                )));
            }
        }
        Ok(Timing {
            after,
            duration,
            every,
            // exec: `count` is the number of execs faulted; by default every one in the window.
            count: if every.is_some() || kind == FaultKind::Exec {
                count
            } else {
                Some(count.unwrap_or(1))
            },
            jitter,
            probability,
        })
    }
}

impl fmt::Display for Timing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "after={}", format_duration(self.after))?;
        if let Some(d) = self.duration {
            write!(f, " duration={}", format_duration(d))?;
        }
        if let Some(e) = self.every {
            write!(f, " every={}", format_duration(e))?;
        }
        match self.count {
            Some(c) => write!(f, " count={c}")?,
            None => f.write_str(" count=unlimited")?,
        }
        if !self.jitter.is_zero() {
            write!(f, " jitter={}", format_duration(self.jitter))?;
        }
        if self.probability < 1.0 {
            write!(f, " probability={}%", self.probability * 100.0)?;
        }
        Ok(())
    }
}
