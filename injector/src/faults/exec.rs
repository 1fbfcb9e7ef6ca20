//! `exec`: fail or delay exec processes (exec probes, `kubectl exec`) at the task level, through
//! the nri-chaos RuntimeClass shim.
//!
//! ```yaml
//! exec.nri-chaos.io/container.app: "{fail: 50%, delay: 2s, after: 1m, duration: 5m}"
//! ```
//!
//! | field | meaning |
//! |---|---|
//! | `fail` | probability that an exec fails (`0.5` or `50%`) |
//! | `delay` | how long each exec is held before it starts |
//!
//! At least one of `fail` and `delay` is required. The timing fields delimit the window in
//! which execs are affected (`after`, `duration`, `every`, `count`, `jitter`, `probability`).

use std::fmt;
use std::time::Duration;

use crate::fields::{FieldError, FieldSpec, FieldType, Fields};
use crate::units::format_duration;

/// Parameters of an `exec` fault.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ExecFault {
    /// Probability (0..=1) that an exec fails.
    pub fail: Option<f64>,
    /// Delay added before each exec starts.
    pub delay: Option<Duration>,
}

impl ExecFault {
    /// The fields `exec` accepts besides the timing fields.
    pub const FIELDS: &'static [FieldSpec] = &[
        FieldSpec::new(
            "fail",
            FieldType::Probability,
            "-",
            "chance that an exec fails",
        ),
        FieldSpec::new(
            "delay",
            FieldType::Duration,
            "-",
            "how long each exec is held before it starts",
        ),
    ];
    /// An example value (`ctl explain`; a unit test parses it).
    pub const EXAMPLE: &'static str = "{fail: 50%, delay: 2s, after: 1m, duration: 5m}";

    /// Reads the `exec` fields.
    pub(crate) fn from_fields(fields: &mut Fields) -> Result<Self, FieldError> {
        let fault = ExecFault {
            fail: fields.probability("fail")?,
            delay: fields.positive_duration("delay")?,
        };
        if fault.fail.is_none() && fault.delay.is_none() {
            return Err(FieldError::Refused(
                "exec needs at least one of: fail, delay".to_string(),
            ));
        }
        Ok(fault)
    }
}

impl fmt::Display for ExecFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut sep = "";
        if let Some(p) = self.fail {
            write!(f, "fail={}%", p * 100.0)?;
            sep = " ";
        }
        if let Some(d) = self.delay {
            write!(f, "{sep}delay={}", format_duration(d))?;
        }
        Ok(())
    }
}
