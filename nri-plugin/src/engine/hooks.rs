//! Faults executed in the runtime's path, by the OCI hook `nri-chaos-hook` (`start`, early
//! `oom` scores and `netem`) or by the shim wrapper `containerd-shim-nri-chaos-v2` (`exec`): at
//! CreateContainer the engine hands them over through the NRI container adjustment: the
//! resolved plan in the container's OCI annotation [`PLAN_ANNOTATION`] (one mechanism for
//! both: the wrapper reads it from the bundle's `config.json` at the task Create), plus an OCI
//! hook entry when the hook has something to do. Containers without such a fault get no
//! adjustment at all.
//!
//! For the hook, the engine decides `count` (the firing ledger, claimed here for `start`) and
//! `probability` (drawn here); the hook acts on whatever the plan says. An `exec` fault acts
//! per exec, so the wrapper applies its window, `count` and `probability` itself.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use injector::hookplan::{hook_point, hook_timeout_secs, HookPlan, HookPoint, PLAN_ANNOTATION};
use injector::{FaultKey, FaultKind, FaultRequest, Rng, SplitMix64};

use super::kinds::{executor, Executor};
use super::{Inner, PodInfo};

/// Where the hook binary is when neither the policy nor `--hook-path` says otherwise.
pub const DEFAULT_HOOK_PATH: &str = "/opt/nri-chaos/bin/nri-chaos-hook";

/// The runtime handler (and RuntimeClass, see `deploy/`) whose shim is the wrapper.
pub const SHIM_HANDLER: &str = "nri-chaos";

/// One OCI hook entry to add to the container's spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OciHook {
    /// Hook point.
    pub point: HookPoint,
    /// The hook binary.
    pub path: String,
    /// argv, argv\[0\] first.
    pub args: Vec<String>,
    /// Seconds before the runtime kills the hook.
    pub timeout_secs: i64,
}

/// What CreateContainer answers for a container whose plan needs the hook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookAdjustment {
    /// OCI annotations to add (the plan).
    pub annotations: Vec<(String, String)>,
    /// OCI hooks to add.
    pub hooks: Vec<OciHook>,
}

impl Inner {
    /// The hook binary: policy `hook_path`, else [`DEFAULT_HOOK_PATH`].
    pub(crate) fn hook_path(&self) -> &str {
        self.policy
            .hook_path
            .as_deref()
            .unwrap_or(DEFAULT_HOOK_PATH)
    }
}

/// Why the hook binary at `path` cannot be used, or `None` when it can.
pub(crate) fn hook_unusable(path: &str) -> Option<String> {
    match std::fs::metadata(Path::new(path)) {
        Ok(meta) if meta.is_file() && meta.permissions().mode() & 0o111 != 0 => None,
        Ok(_) => Some(format!(
            "the OCI hook binary {path} is not an executable file"
        )),
        Err(err) => Some(format!("the OCI hook binary {path} cannot be used: {err}")),
    }
}

/// True when `fault` can only be executed by the hook (without it, it is refused).
pub(crate) fn needs_hook_binary(fault: &FaultRequest) -> bool {
    executor(fault.kind) == Executor::Hook
}

/// Why `fault` cannot run for this pod on this node (the whole rejection reason), or None.
/// `hook_problem`: why the hook binary cannot be used (checked once at start; None for
/// `nri-chaos validate`, which has no node). `runtime_handler`: the pod's runtime handler (for `validate`, its runtimeClassName).
pub fn runtime_problem(
    hook_problem: Option<&str>,
    runtime_handler: &str,
    fault: &FaultRequest,
) -> Option<String> {
    if fault.kind == FaultKind::Exec && runtime_handler != SHIM_HANDLER {
        let shown = match runtime_handler {
            "" => "the default runtime handler".to_string(),
            other => format!("runtime handler \"{other}\""),
        };
        return Some(format!(
            "fault 'exec' is executed by the shim wrapper, and this pod runs on {shown}, not on \"{SHIM_HANDLER}\" (set runtimeClassName: {SHIM_HANDLER}; see deploy/kubernetes/runtimeclass.yaml)"
        ));
    }
    let reason = hook_problem.filter(|_| needs_hook_binary(fault))?;
    Some(format!(
        "fault '{}' is executed by the OCI hook: {reason} (install it, or set hook_path in the policy or --hook-path)",
        fault.kind.as_str()
    ))
}

fn seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// The adjustment for a container's accepted `faults`, or `None` when neither the hook nor
/// the shim wrapper has anything to do for it.
pub(crate) fn adjustment(
    inner: &Inner,
    pod: &PodInfo,
    container_name: &str,
    faults: &[FaultRequest],
) -> Option<HookAdjustment> {
    let path = inner.hook_path();
    let mut rng = SplitMix64::new(seed());
    let mut chosen: Vec<&FaultRequest> = Vec::new();
    // The shim wrapper's faults: only the plan, no hook (the screen kept them for pods on
    // its runtime handler only).
    let execs: Vec<&FaultRequest> = faults
        .iter()
        .filter(|f| executor(f.kind) == Executor::Shim)
        .collect();
    for fault in faults {
        let Some(HookPoint::CreateRuntime) = hook_point(fault) else {
            continue;
        };
        if inner.hook_problem.is_some() {
            // `start` was refused earlier in that case; `oom` is then applied after start.
            continue;
        }
        // Keyed by its scope: netem's firings are counted per pod, by the plugin's own
        // netem fault, which also removes it; the hook only makes sure it is there first.
        let key = FaultKey::of(fault.kind, &pod.uid, container_name);
        if executor(fault.kind) == Executor::Engine {
            // The engine applies (and counts) it at start as well; the hook only makes it
            // early. Left to the engine when the count is spent or a draw must decide.
            if !inner.spent(&key, fault) && fault.timing.probability >= 1.0 {
                chosen.push(fault);
            }
            continue;
        }
        // The handler never waits: the count is durable shortly after (its ack is not awaited).
        let Some(ordinal) = inner
            .claim_firing(&key, fault.timing.count)
            .map(|claim| claim.ordinal)
        else {
            tracing::info!(pod = %pod.display_name(), container = %container_name, fault = fault.kind.as_str(), "count spent; no start fault for this container");
            continue;
        };
        let p = fault.timing.probability;
        if p < 1.0 && rng.next_f64() >= p {
            tracing::info!(pod = %pod.display_name(), container = %container_name, fault = fault.kind.as_str(), ordinal, "probability draw says not this start");
            continue;
        }
        chosen.push(fault);
    }
    // A container without such a fault gets no adjustment, on the wrapper's pods too: `ctl
    // inject` reaches the wrapper through a directory both know (`injector::exec_inject`).
    if chosen.is_empty() && execs.is_empty() {
        return None;
    }
    let plan = HookPlan::new(chosen.iter().chain(&execs).copied(), |key| {
        pod.annotations.get(key).cloned().unwrap_or_default()
    });
    let annotations = vec![(PLAN_ANNOTATION.to_string(), plan.encode())];
    for fault in &execs {
        tracing::info!(pod = %pod.display_name(), container = %container_name, fault = fault.kind.as_str(), key = %fault.key, "exec fault handed to the shim wrapper");
    }
    if chosen.is_empty() {
        return Some(HookAdjustment {
            annotations,
            hooks: Vec::new(),
        });
    }
    let owned: Vec<FaultRequest> = chosen.iter().map(|f| (*f).clone()).collect();
    let hook = OciHook {
        point: HookPoint::CreateRuntime,
        path: path.to_string(),
        args: vec![
            path.to_string(),
            HookPoint::CreateRuntime.as_str().to_string(),
        ],
        timeout_secs: hook_timeout_secs(&owned),
    };
    for fault in &chosen {
        tracing::info!(pod = %pod.display_name(), container = %container_name, fault = fault.kind.as_str(), key = %fault.key, hook = hook.point.as_str(), timeout_s = hook.timeout_secs, "OCI hook injected");
    }
    Some(HookAdjustment {
        annotations,
        hooks: vec![hook],
    })
}

#[cfg(test)]
#[path = "hooks_tests.rs"]
mod tests;
