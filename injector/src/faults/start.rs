//! `start`: delay or fail the container start, applied by the nri-chaos OCI hook.
//!
//! ```yaml
//! start.nri-chaos.io/container.app: "{delay: 20s}"
//! start.nri-chaos.io/container.app: "{fail: {exit_code: 3}, count: 2}"
//! ```
//!
//! | field | meaning |
//! |---|---|
//! | `delay` | how long the start is held (above zero) |
//! | `fail` | `{exit_code: 1..255}`: the start fails with this code (`fail: {}` means exit code 1) |
//!
//! At least one is required. A start fault acts at the moment the container starts, so only
//! `count` (how many starts of this container, across restarts, are affected; default 1) and
//! `probability` apply; `after`, `every`, `duration` and `jitter` are refused.

use std::fmt;
use std::time::Duration;

use crate::fields::{FieldError, FieldSpec, FieldType, Fields};
use crate::units::format_duration;

/// The fields of `fail`.
const FAIL_FIELDS: &[FieldSpec] = &[FieldSpec::new(
    "exit_code",
    FieldType::Integer { min: 1, max: 255 },
    "1",
    "the exit code the start fails with",
)];

/// Parameters of a `start` fault.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StartFault {
    /// Delay added before the container process starts.
    pub delay: Option<Duration>,
    /// Fail the start with this exit code (1..=255).
    pub fail_exit_code: Option<u8>,
}

impl StartFault {
    /// The fields `start` accepts besides the timing fields.
    pub const FIELDS: &'static [FieldSpec] = &[
        FieldSpec::new(
            "delay",
            FieldType::Duration,
            "-",
            "hold the container start this long",
        ),
        FieldSpec::new(
            "fail",
            FieldType::Mapping(FAIL_FIELDS),
            "-",
            "fail the container start (at least one of delay, fail)",
        ),
    ];
    /// An example value (`ctl explain`; a unit test parses it).
    pub const EXAMPLE: &'static str = "{delay: 5s, count: 2}";

    /// Reads the `start` fields.
    pub(crate) fn from_fields(fields: &mut Fields) -> Result<Self, FieldError> {
        let delay = fields.positive_duration("delay")?;
        let fail_exit_code = match fields.mapping("fail")? {
            None => None,
            Some(mut fail) => {
                fail.only_specs(FAIL_FIELDS)?;
                let code = fail.integer("exit_code", 1, 255)?.unwrap_or(1);
                Some(u8::try_from(code).unwrap_or(1))
            }
        };
        if delay.is_none() && fail_exit_code.is_none() {
            return Err(FieldError::Refused(
                "start needs at least one of: delay, fail".to_string(),
            ));
        }
        Ok(StartFault {
            delay,
            fail_exit_code,
        })
    }
}

impl fmt::Display for StartFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut sep = "";
        if let Some(d) = self.delay {
            write!(f, "delay={}", format_duration(d))?;
            sep = " ";
        }
        if let Some(c) = self.fail_exit_code {
            write!(f, "{sep}fail.exit_code={c}")?;
        }
        Ok(())
    }
}
