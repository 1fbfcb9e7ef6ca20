//! The plan the OCI hook `nri-chaos-hook` executes, and where it runs.
//!
//! The NRI plugin plans a container with [`crate::plan_container`] (one parser, one policy),
//! then hands the faults that must act inside the runtime's start path to the hook: it adds
//! the hook to the container's OCI spec and writes the resolved plan into the container's OCI
//! annotation [`PLAN_ANNOTATION`]. The hook reads it back with [`HookPlan::decode`], which
//! re-parses every fault with [`FaultRequest::parse`] so the hook and the plugin share the
//! grammar.
//!
//! The annotation value is compact, versioned JSON:
//!
//! ```json
//! {"version":1,"faults":[{"kind":"start","key":"start.nri-chaos.io/container.app","value":"{delay: 3s}"}]}
//! ```
//!
//! `key` and `value` are the pod annotation exactly as written, so every message the hook
//! prints names them. The plugin has already applied the policy, `count` (the firing ledger)
//! and `probability`: a fault in the plan acts every time the hook runs.
//!
//! Which faults the hook executes ([`hook_point`]): `start` (delay / fail) and `oom` with a
//! `score`, no `after` and no `duration` (set before the app runs), both at `createRuntime`:
//! runc runs it in the runtime namespace during `runc create`, once the container's init
//! process and namespaces exist and before the user process is started.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::annotations::{quote, FaultKind};
use crate::plan::{FaultRequest, FaultSpec};

/// The OCI annotation carrying the resolved plan (written by the plugin).
pub const PLAN_ANNOTATION: &str = "nri-chaos.io/plan";

/// The plan format this build writes and reads.
pub const PLAN_VERSION: u32 = 1;

/// Seconds the hook may take beyond the delays it applies (process start, reading the state
/// and the bundle config, writing procfs) before runc kills it.
pub const HOOK_TIMEOUT_MARGIN: Duration = Duration::from_secs(5);

/// Errors reading a plan annotation.
#[derive(Debug, thiserror::Error)]
pub enum HookPlanError {
    /// Not JSON of the expected shape.
    #[error("annotation {PLAN_ANNOTATION}: {text}: not a nri-chaos plan ({reason})")]
    Malformed {
        /// The annotation value (quoted, cut).
        text: String,
        /// The JSON error.
        reason: String,
    },
    /// A plan version this hook does not read.
    #[error("annotation {PLAN_ANNOTATION}: plan version {found} is not supported by this nri-chaos-hook (it reads version {PLAN_VERSION}); install the hook of the same release as the plugin")]
    Version {
        /// The version found.
        found: u32,
    },
    /// A fault of the plan does not parse.
    #[error("annotation {PLAN_ANNOTATION}: fault from annotation {key}: {value}: {reason}")]
    Fault {
        /// The pod annotation key it came from.
        key: String,
        /// Its value (quoted, cut).
        value: String,
        /// Why it does not parse.
        reason: String,
    },
}

/// The OCI hook points the hook knows (`nri-chaos-hook <point>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookPoint {
    /// During `runc create`, runtime namespace, container namespaces already made.
    CreateRuntime,
    /// During `runc create`, inside the container namespaces (before pivot_root).
    CreateContainer,
    /// During `runc start`, inside the container, just before the user process.
    StartContainer,
    /// After the user process started.
    Poststart,
    /// After the container was deleted.
    Poststop,
}

impl HookPoint {
    /// Every hook point.
    pub const ALL: [HookPoint; 5] = [
        HookPoint::CreateRuntime,
        HookPoint::CreateContainer,
        HookPoint::StartContainer,
        HookPoint::Poststart,
        HookPoint::Poststop,
    ];

    /// The OCI runtime-spec name (`createRuntime`, ...).
    pub const fn as_str(self) -> &'static str {
        match self {
            HookPoint::CreateRuntime => "createRuntime",
            HookPoint::CreateContainer => "createContainer",
            HookPoint::StartContainer => "startContainer",
            HookPoint::Poststart => "poststart",
            HookPoint::Poststop => "poststop",
        }
    }
}

impl fmt::Display for HookPoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Error of [`HookPoint::from_str`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown hook point {} (known: createRuntime, createContainer, startContainer, poststart, poststop)", quote(.0))]
pub struct UnknownHookPoint(pub String);

impl FromStr for HookPoint {
    type Err = UnknownHookPoint;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        HookPoint::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| UnknownHookPoint(s.to_string()))
    }
}

/// Where the hook must run for `fault`, or `None` when the plugin executes it itself.
pub fn hook_point(fault: &FaultRequest) -> Option<HookPoint> {
    match &fault.spec {
        FaultSpec::Start(_) => Some(HookPoint::CreateRuntime),
        FaultSpec::Oom(oom)
            if oom.score.is_some()
                && fault.timing.after.is_zero()
                && fault.timing.duration.is_none() =>
        {
            Some(HookPoint::CreateRuntime)
        }
        // netem from the first instant: installed at createRuntime, when the container's
        // network namespace (the pod's) exists and the app has not sent a packet. A targeted
        // netem (`to`) takes a slot of the shared tree: the engine alone applies it.
        FaultSpec::Netem(n) if fault.timing.after.is_zero() && n.to.is_none() => {
            Some(HookPoint::CreateRuntime)
        }
        _ => None,
    }
}

/// How long runc lets the hook run for `faults`: their start delays plus
/// [`HOOK_TIMEOUT_MARGIN`], in whole seconds (the OCI `timeout` unit), rounded up.
pub fn hook_timeout_secs(faults: &[FaultRequest]) -> i64 {
    let delays: Duration = faults
        .iter()
        .filter_map(|f| match &f.spec {
            FaultSpec::Start(start) => start.delay,
            _ => None,
        })
        .sum();
    let total = delays.saturating_add(HOOK_TIMEOUT_MARGIN);
    let secs = total.as_secs() + u64::from(total.subsec_nanos() > 0);
    i64::try_from(secs).unwrap_or(i64::MAX)
}

/// One fault of a plan: the pod annotation it came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedFault {
    /// Fault kind (`start`, `oom`).
    pub kind: String,
    /// The pod annotation key.
    pub key: String,
    /// The pod annotation value, as written.
    pub value: String,
}

/// The resolved plan of one container, as carried in [`PLAN_ANNOTATION`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HookPlan {
    /// [`PLAN_VERSION`].
    pub version: u32,
    /// The faults the hook (or the shim wrapper, for `exec`) executes.
    pub faults: Vec<PlannedFault>,
}

impl HookPlan {
    /// The plan of `faults`; `value_of` gives the annotation value of a key.
    pub fn new<'a>(
        faults: impl IntoIterator<Item = &'a FaultRequest>,
        value_of: impl Fn(&str) -> String,
    ) -> HookPlan {
        HookPlan {
            version: PLAN_VERSION,
            faults: faults
                .into_iter()
                .map(|f| PlannedFault {
                    kind: f.kind.as_str().to_string(),
                    key: f.key.clone(),
                    value: value_of(&f.key),
                })
                .collect(),
        }
    }

    /// The annotation value.
    pub fn encode(&self) -> String {
        // Serializing plain strings and integers cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Reads an annotation value back into faults, each with the annotation value it came
    /// from (no policy: the plugin applied it).
    pub fn decode(text: &str) -> Result<Vec<(FaultRequest, String)>, HookPlanError> {
        HookPlan::read(text)?.requests()
    }

    /// Reads an annotation value (version checked; the faults are not parsed yet).
    pub fn read(text: &str) -> Result<HookPlan, HookPlanError> {
        #[derive(Deserialize)]
        struct Versioned {
            version: u32,
        }
        let malformed = |err: serde_json::Error| HookPlanError::Malformed {
            text: quote(text),
            reason: err.to_string(),
        };
        let versioned: Versioned = serde_json::from_str(text).map_err(malformed)?;
        if versioned.version != PLAN_VERSION {
            return Err(HookPlanError::Version {
                found: versioned.version,
            });
        }
        serde_json::from_str(text).map_err(malformed)
    }

    /// The plan's faults, parsed with the grammar, each with its annotation value.
    pub fn requests(&self) -> Result<Vec<(FaultRequest, String)>, HookPlanError> {
        self.faults
            .iter()
            .map(|f| {
                let fault_error = |reason: String| HookPlanError::Fault {
                    key: f.key.clone(),
                    value: quote(&f.value),
                    reason,
                };
                let kind = FaultKind::from_str(&f.kind).map_err(|e| fault_error(e.to_string()))?;
                FaultRequest::parse(kind, &f.key, &f.value)
                    .map(|req| (req, f.value.clone()))
                    .map_err(|e| fault_error(e.to_string()))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(kind: FaultKind, key: &str, value: &str) -> FaultRequest {
        FaultRequest::parse(kind, key, value).unwrap()
    }

    #[test]
    fn hook_points_round_trip() {
        for p in HookPoint::ALL {
            assert_eq!(p.as_str().parse::<HookPoint>(), Ok(p));
        }
        let err = "prestart".parse::<HookPoint>().unwrap_err().to_string();
        assert!(err.contains("unknown hook point \"prestart\""), "{err}");
    }

    #[test]
    fn which_faults_need_the_hook() {
        let start = req(FaultKind::Start, "start.nri-chaos.io", "{delay: 3s}");
        assert_eq!(hook_point(&start), Some(HookPoint::CreateRuntime));
        let score = req(FaultKind::Oom, "oom.nri-chaos.io", "{score: 800}");
        assert_eq!(hook_point(&score), Some(HookPoint::CreateRuntime));
        let later = req(
            FaultKind::Oom,
            "oom.nri-chaos.io",
            "{score: 800, after: 1s}",
        );
        assert_eq!(hook_point(&later), None);
        let held = req(
            FaultKind::Oom,
            "oom.nri-chaos.io",
            "{score: 800, duration: 5s}",
        );
        assert_eq!(hook_point(&held), None);
        let kill = req(FaultKind::Oom, "oom.nri-chaos.io", "{kill: true}");
        assert_eq!(hook_point(&kill), None);
        let k = req(FaultKind::Kill, "kill.nri-chaos.io", "{after: 1s}");
        assert_eq!(hook_point(&k), None);
    }

    #[test]
    fn timeout_covers_the_delay_plus_margin() {
        let delay = req(FaultKind::Start, "start.nri-chaos.io", "{delay: 2500ms}");
        assert_eq!(hook_timeout_secs(&[delay]), 8);
        let fail = req(
            FaultKind::Start,
            "start.nri-chaos.io",
            "{fail: {exit_code: 3}}",
        );
        assert_eq!(hook_timeout_secs(&[fail]), 5);
        assert_eq!(hook_timeout_secs(&[]), 5);
    }

    #[test]
    fn plan_round_trips() {
        let key = "start.nri-chaos.io/container.app";
        let value = "{delay: 3s, fail: {exit_code: 3}}";
        let faults = vec![req(FaultKind::Start, key, value)];
        let plan = HookPlan::new(&faults, |_| value.to_string());
        let text = plan.encode();
        assert!(text.starts_with("{\"version\":1,"), "{text}");
        let back = HookPlan::decode(&text).unwrap();
        assert_eq!(back, vec![(faults[0].clone(), value.to_string())]);
    }

    #[test]
    fn bad_plans_are_named() {
        let err = HookPlan::decode("v1;start").unwrap_err().to_string();
        assert!(
            err.starts_with("annotation nri-chaos.io/plan: \"v1;start\": not a nri-chaos plan"),
            "{err}"
        );
        let err = HookPlan::decode(r#"{"version":2,"faults":[]}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("plan version 2 is not supported"), "{err}");
        let err = HookPlan::decode(
            r#"{"version":1,"faults":[{"kind":"start","key":"start.nri-chaos.io","value":"{delay: 3x}"}]}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("fault from annotation start.nri-chaos.io: \"{delay: 3x}\": delay"),
            "{err}"
        );
        let err =
            HookPlan::decode(r#"{"version":1,"faults":[{"kind":"stall","key":"k","value":"{}"}]}"#)
                .unwrap_err()
                .to_string();
        assert!(err.contains("unknown fault kind \"stall\""), "{err}");
    }
}
