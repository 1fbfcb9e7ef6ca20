//! What this build executes: the faults the grammar and the policy accepted, screened for the
//! kinds this build runs and for what some of them need on the node (the OCI hook for `start`,
//! the shim wrapper's runtime handler for `exec`). The engine and `nri-chaos validate` share
//! it, so both give the same reasons.

use std::collections::HashMap;

use injector::{ContainerPlan, FaultKind, FaultRequest, Rejection, RejectionClass};

/// Whether this build executes `kind` (`start` through the OCI hook, `exec` through the shim
/// wrapper, see `hooks`). A kind it does not execute is parsed and validated, then reported as
/// not supported so that nothing is silently ignored. The kinds come from `FaultKind::ALL`.
fn executed(kind: FaultKind) -> bool {
    FaultKind::ALL.contains(&kind)
}

/// Why this build does not execute `kind` (the rejection reason), or None when it does.
/// `nri-chaos validate` reports the same text.
fn unsupported(kind: FaultKind) -> Option<String> {
    if executed(kind) {
        return None;
    }
    let supported: Vec<&str> = FaultKind::ALL
        .into_iter()
        .filter(|&k| executed(k))
        .map(FaultKind::as_str)
        .collect();
    Some(format!(
        "fault '{}' is valid but not supported by this build of nri-chaos (supported: {})",
        kind.as_str(),
        supported.join(", ")
    ))
}

/// What this build does with a container's plan: a fault it does not execute, or one that
/// `runtime_problem` says cannot run here (the whole reason: no OCI hook binary, a pod not on
/// the shim wrapper's runtime handler), becomes a rejection with the reason. Shared by the
/// engine and `nri-chaos validate`.
pub fn screen(
    plan: ContainerPlan,
    annotations: &HashMap<String, String>,
    runtime_problem: impl Fn(&FaultRequest) -> Option<String>,
) -> (Vec<FaultRequest>, Vec<Rejection>) {
    let mut rejections = plan.rejections;
    let mut faults = Vec::new();
    for fault in plan.faults {
        let value = || annotations.get(&fault.key).cloned().unwrap_or_default();
        if let Some(reason) = runtime_problem(&fault) {
            rejections.push(Rejection::new(
                RejectionClass::Unsupported,
                &fault.key,
                value(),
                reason,
            ));
        } else if let Some(reason) = unsupported(fault.kind) {
            rejections.push(Rejection::new(
                RejectionClass::Unsupported,
                &fault.key,
                value(),
                reason,
            ));
        } else {
            faults.push(fault);
        }
    }
    (faults, rejections)
}
