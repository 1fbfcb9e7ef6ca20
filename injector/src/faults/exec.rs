//! `exec`: exec processes (exec probes, `kubectl exec`) that fail, hang or start late, executed
//! at the task API by the shim wrapper `containerd-shim-nri-chaos-v2` (pods on the runtime
//! handler `nri-chaos`).
//!
//! ```yaml
//! exec.nri-chaos.io/container.app: "{fail: {exit_code: 7}, match: healthz, after: 1m, duration: 40s}"
//! exec.nri-chaos.io/container.app: "{hang: true}"
//! exec.nri-chaos.io/container.app: "{delay: 2s, count: 5}"
//! ```
//!
//! | field | meaning |
//! |---|---|
//! | `match` | a substring of the exec's command line (argv joined by spaces); absent = every exec |
//! | `fail` | `{exit_code: 1..255}` (`fail: {}` = exit code 1): the command is not run, the exec exits N |
//! | `hang` | `true`: the exec never exits until it is killed (the caller's timeout fires) |
//! | `delay` | the exec starts this late, then runs normally |
//!
//! Exactly one of `fail`, `hang` and `delay`. Timing fields: `after` (from container start),
//! `duration` (the window in which execs are faulted; with `every`, the window repeats),
//! `count` (how many execs are faulted; default: every matching exec in the window),
//! `probability` (drawn per exec). `jitter` does not apply.

use std::fmt;
use std::time::Duration;

use crate::annotations::quote;
use crate::fields::{FieldError, FieldSpec, FieldType, Fields};
use crate::timing::Timing;
use crate::units::format_duration;

/// The fields of `fail`.
const FAIL_FIELDS: &[FieldSpec] = &[FieldSpec::new(
    "exit_code",
    FieldType::Integer { min: 1, max: 255 },
    "1",
    "the exit code the exec reports; the command is not run",
)];

/// Longest `match` text.
const MAX_MATCH_BYTES: usize = 1024;

/// What a faulted exec does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExecAction {
    /// The command is not run; the exec exits with this code.
    Fail {
        /// 1..=255.
        exit_code: u8,
    },
    /// The exec never exits until it is killed.
    Hang,
    /// The exec starts this late, then runs normally.
    Delay(Duration),
}

/// Parameters of an `exec` fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecFault {
    /// Substring of the command line (argv joined by spaces); `None` = every exec.
    pub matches: Option<String>,
    /// What a faulted exec does.
    pub action: ExecAction,
}

impl ExecFault {
    /// The fields `exec` accepts besides the timing fields.
    pub const FIELDS: &'static [FieldSpec] = &[
        FieldSpec::new(
            "match",
            FieldType::Text,
            "every exec",
            "a substring of the exec's command line (argv joined by spaces)",
        ),
        FieldSpec::new(
            "fail",
            FieldType::Mapping(FAIL_FIELDS),
            "-",
            "the command is not run; the exec exits with exit_code (one of fail, hang, delay)",
        ),
        FieldSpec::new(
            "hang",
            FieldType::Boolean,
            "-",
            "true: the exec never exits until it is killed, so the caller's timeout fires",
        ),
        FieldSpec::new(
            "delay",
            FieldType::Duration,
            "-",
            "the exec starts this late, then runs normally",
        ),
    ];
    /// An example value (`ctl explain`; a unit test parses it).
    pub const EXAMPLE: &'static str =
        "{fail: {exit_code: 7}, match: healthz, after: 1m, duration: 40s}";

    /// Reads the `exec` fields.
    pub(crate) fn from_fields(fields: &mut Fields) -> Result<Self, FieldError> {
        let matches = fields.text("match")?;
        if let Some(m) = &matches {
            if m.is_empty() || m.len() > MAX_MATCH_BYTES {
                return Err(FieldError::Invalid {
                    field: "match".to_string(),
                    text: m.clone(),
                    reason: format!("must be 1 to {MAX_MATCH_BYTES} bytes long (omit match to fault every exec)"),
                });
            }
        }
        let fail = match fields.mapping("fail")? {
            None => None,
            Some(mut fail) => {
                fail.only_specs(FAIL_FIELDS)?;
                let code = fail.integer("exit_code", 1, 255)?.unwrap_or(1);
                Some(ExecAction::Fail {
                    exit_code: u8::try_from(code).unwrap_or(1),
                })
            }
        };
        let hang = match fields.boolean("hang")? {
            Some(true) => Some(ExecAction::Hang),
            Some(false) => {
                return Err(FieldError::Invalid {
                    field: "hang".to_string(),
                    text: "false".to_string(),
                    reason: "is refused: only hang: true means something (omit hang otherwise)"
                        .to_string(),
                })
            }
            None => None,
        };
        let delay = fields.positive_duration("delay")?.map(ExecAction::Delay);
        let actions: Vec<ExecAction> = [fail, hang, delay].into_iter().flatten().collect();
        match actions.as_slice() {
            [action] => Ok(ExecFault {
                matches,
                action: *action,
            }),
            [] => Err(FieldError::Refused(
                "exec needs exactly one of: fail, hang, delay (none given)".to_string(),
            )),
            _ => Err(FieldError::Refused(
                "exec needs exactly one of: fail, hang, delay (several given)".to_string(),
            )),
        }
    }

    /// Whether an exec with command line `argv` is one this fault targets.
    pub fn matches_argv<S: AsRef<str>>(&self, argv: &[S]) -> bool {
        let Some(needle) = &self.matches else {
            return true;
        };
        let line: Vec<&str> = argv.iter().map(AsRef::as_ref).collect();
        line.join(" ").contains(needle.as_str())
    }
}

/// Refuses timing combinations that mean nothing for exec windows.
pub(crate) fn check_timing(timing: &Timing) -> Result<(), FieldError> {
    if timing.every.is_some() && timing.duration.is_none() {
        return Err(FieldError::Refused(
            "every: for exec it repeats the window given by duration; add duration".to_string(),
        ));
    }
    Ok(())
}

/// The decisions of one exec fault on one container: which execs it hits. Kept by the shim
/// wrapper per container (name) of its pod.
#[derive(Debug, Clone)]
pub struct ExecWindow {
    fault: ExecFault,
    timing: Timing,
    faulted: u32,
}

impl ExecWindow {
    /// A window of `fault` with `timing`, nothing faulted yet.
    pub fn new(fault: ExecFault, timing: Timing) -> ExecWindow {
        ExecWindow {
            fault,
            timing,
            faulted: 0,
        }
    }

    /// The fault.
    pub fn fault(&self) -> &ExecFault {
        &self.fault
    }

    /// Whether `elapsed` (since the container started) is inside a window.
    pub fn in_window(&self, elapsed: Duration) -> bool {
        let Some(since) = elapsed.checked_sub(self.timing.after) else {
            return false;
        };
        match (self.timing.duration, self.timing.every) {
            (None, _) => true,
            (Some(d), None) => since < d,
            (Some(d), Some(every)) => {
                let every = every.as_nanos().max(1);
                Duration::from_nanos((since.as_nanos() % every) as u64) < d
            }
        }
    }

    /// Decides for one exec with command line `argv`, started `elapsed` after the container;
    /// `draw` is a uniform number in `[0, 1)` for `probability`. Counts it when faulted.
    pub fn decide<S: AsRef<str>>(
        &mut self,
        argv: &[S],
        elapsed: Duration,
        draw: f64,
    ) -> Option<ExecAction> {
        if !self.fault.matches_argv(argv) || !self.in_window(elapsed) {
            return None;
        }
        if self.timing.count.is_some_and(|c| self.faulted >= c) {
            return None;
        }
        // A failed draw uses up one of count, as for every fault.
        self.faulted += 1;
        (draw < self.timing.probability).then_some(self.fault.action)
    }
}

impl fmt::Display for ExecFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.action {
            ExecAction::Fail { exit_code } => write!(f, "fail.exit_code={exit_code}")?,
            ExecAction::Hang => f.write_str("hang")?,
            ExecAction::Delay(d) => write!(f, "delay={}", format_duration(d))?,
        }
        if let Some(m) = &self.matches {
            write!(f, " match={}", quote(m))?;
        }
        Ok(())
    }
}
