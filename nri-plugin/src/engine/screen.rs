//! What this build executes: the faults the grammar and the policy accepted, screened for the
//! kinds this build runs and for the OCI hook that some of them need. The engine and
//! `nri-chaos validate` share it, so both give the same reasons.

use std::collections::HashMap;

use injector::{ContainerPlan, FaultKind, FaultRequest, Rejection, RejectionClass};

use super::kinds::{executor, Executor};

/// Whether this build executes `kind` (`start` through the OCI hook, see `hooks`, refused when
/// the hook binary is missing). The others are parsed and validated, then reported as not
/// supported so that nothing is silently ignored. The kinds come from `FaultKind::ALL`.
fn executed(kind: FaultKind) -> bool {
    // `exec` needs the shim wrapper's exec interception, not built yet.
    executor(kind) != Executor::Shim
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

/// What this build does with a container's plan: a fault it does not execute, or that needs
/// the OCI hook when `hook_problem` says the hook cannot run, becomes a rejection with the
/// reason. Shared by the engine and `nri-chaos validate` (which has no hook to check).
pub fn screen(
    plan: ContainerPlan,
    annotations: &HashMap<String, String>,
    hook_problem: impl Fn(&FaultRequest) -> Option<String>,
) -> (Vec<FaultRequest>, Vec<Rejection>) {
    let mut rejections = plan.rejections;
    let mut faults = Vec::new();
    for fault in plan.faults {
        let value = || annotations.get(&fault.key).cloned().unwrap_or_default();
        if let Some(reason) = hook_problem(&fault) {
            rejections.push(Rejection::new(
                RejectionClass::Unsupported,
                &fault.key,
                value(),
                format!("fault '{}' is executed by the OCI hook: {reason} (install it, or set hook_path in the policy or --hook-path)", fault.kind.as_str()),
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
