//! The records the registry keeps: a fault's life, a rejected annotation, a fault being
//! armed.

use injector::FaultKind;
pub use injector::RejectionClass;

/// Where a fault is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultState {
    /// Waiting for its first planned firing.
    Armed,
    /// Applied at least once (and holding, for faults with a duration, or done for kill).
    Applied,
    /// Held, then recovered.
    Recovered,
    /// Stopped before it fired (container gone, `ctl recover`, shutdown).
    Stopped,
    /// Could not be applied.
    Failed,
}

impl FaultState {
    /// Lower-case name, as shown by `ctl list`.
    pub fn as_str(self) -> &'static str {
        match self {
            FaultState::Armed => "armed",
            FaultState::Applied => "applied",
            FaultState::Recovered => "recovered",
            FaultState::Stopped => "stopped",
            FaultState::Failed => "failed",
        }
    }

    /// The fault still has a task (it can be recovered).
    pub fn is_active(self) -> bool {
        matches!(self, FaultState::Armed | FaultState::Applied)
    }
}

/// One fault the engine armed.
#[derive(Debug, Clone, PartialEq)]
pub struct FaultRecord {
    /// The engine's fault id (what `ctl recover ID` takes).
    pub id: u64,
    /// `namespace/name` of the pod.
    pub pod: String,
    /// Container name.
    pub container: String,
    /// Container id.
    pub container_id: String,
    /// Fault kind.
    pub kind: FaultKind,
    /// The annotation value (parameters), as written.
    pub value: String,
    /// The annotation key it came from, or `ctl` for an injected fault.
    pub source: String,
    /// Next (or last) planned firing.
    pub planned_unix_ms: Option<u64>,
    /// Last firing actually applied.
    pub applied_unix_ms: Option<u64>,
    /// Where it is.
    pub state: FaultState,
    /// Why it failed.
    pub error: String,
    /// Firings applied so far.
    pub firings: u32,
    /// Whether the fault holds (has a recovery) or is instantaneous (kill).
    pub(super) holds: bool,
}

impl FaultRecord {
    pub(super) fn new(fault: &NewFault<'_>) -> FaultRecord {
        FaultRecord {
            id: fault.id,
            pod: fault.pod.to_string(),
            container: fault.container.to_string(),
            container_id: fault.container_id.to_string(),
            kind: fault.kind,
            value: fault.value.to_string(),
            source: fault.source.to_string(),
            planned_unix_ms: None,
            applied_unix_ms: None,
            state: FaultState::Armed,
            error: String::new(),
            firings: 0,
            holds: fault.holds,
        }
    }
}

/// One rejected annotation.
#[derive(Debug, Clone, PartialEq)]
pub struct RejectionRecord {
    /// `namespace/name` of the pod.
    pub pod: String,
    /// Container name.
    pub container: String,
    /// Annotation key.
    pub key: String,
    /// Annotation value.
    pub value: String,
    /// Why.
    pub reason: String,
    /// Class of the reason.
    pub class: RejectionClass,
    /// When.
    pub at_unix_ms: u64,
    /// The container instance (dedupes repeated reports).
    pub container_id: String,
}

/// The identity of a fault being armed.
#[derive(Debug, Clone)]
pub struct NewFault<'a> {
    /// Fault id.
    pub id: u64,
    /// `namespace/name`.
    pub pod: &'a str,
    /// Container name.
    pub container: &'a str,
    /// Container id.
    pub container_id: &'a str,
    /// Kind.
    pub kind: FaultKind,
    /// Annotation value.
    pub value: &'a str,
    /// Annotation key or `ctl`.
    pub source: &'a str,
    /// Whether it holds (has a `duration` or is recovered when stopped).
    pub holds: bool,
}
