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
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use injector::hookplan::{
    hook_point, hook_timeout_secs, HookPlan, HookPoint, PlannedFault, PLAN_ANNOTATION, PLAN_VERSION,
};
use injector::{FaultKey, FaultKind, FaultRequest, Rng, SplitMix64};

use super::kinds::{executor, Executor};
use super::runner::Target;
use super::state::ArmedFault;
use super::{introspect, Inner, PodInfo};

/// Where the hook binary is when neither the policy nor `--hook-path` says otherwise.
pub const DEFAULT_HOOK_PATH: &str = "/opt/nri-chaos/bin/nri-chaos-hook";

/// The runtime handler (and RuntimeClass, see `deploy/`) whose shim is the wrapper.
pub const SHIM_HANDLER: &str = "nri-chaos";

/// Where `ctl inject` puts a container's injected exec faults for its shim wrapper:
/// `<state dir>/exec/<container id>.json` (the state dir holds the ledger).
fn exec_inject_path(inner: &Inner, container_id: &str) -> PathBuf {
    inner
        .state_dir
        .join("exec")
        .join(format!("{container_id}.json"))
}

/// At start: injected exec faults of a previous run end with it, as its other injected
/// faults do (the wrappers see their files go).
pub(crate) fn clear_exec_injections(state_dir: &Path) {
    let _ = std::fs::remove_dir_all(state_dir.join("exec"));
}

/// `ctl inject` of an `exec` fault into a running container of a wrapped pod: its plan is
/// written to the file the container's wrapper watches (named in the container's plan
/// annotation at creation); the fault holds until it is stopped (`ctl recover`, the
/// container's end), which removes the file. Runs on the control socket, not in an NRI
/// handler.
pub(super) fn inject_exec(
    inner: &Arc<Inner>,
    target: &Target,
    key: &str,
    value: &str,
) -> Result<ArmedFault, String> {
    let path = exec_inject_path(inner, &target.container_id);
    let plan = HookPlan {
        version: PLAN_VERSION,
        faults: vec![PlannedFault {
            kind: FaultKind::Exec.as_str().to_string(),
            key: key.to_string(),
            value: value.to_string(),
        }],
        inject: None,
    };
    let write = || -> std::io::Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, plan.encode())?;
        std::fs::rename(&tmp, &path)
    };
    write().map_err(|err| {
        format!(
            "writing the exec plan for the shim wrapper to {}: {err}",
            path.display()
        )
    })?;
    let id = inner.next_fault_id.fetch_add(1, Ordering::Relaxed);
    let record = introspect::NewFault {
        id,
        pod: &target.pod,
        container: &target.container,
        container_id: &target.container_id,
        kind: FaultKind::Exec,
        value,
        source: "ctl",
        holds: true,
    };
    Ok(inner.handed_to_shim(record, target, Some(path)))
}

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

/// The adjustment for a container's accepted `faults`, or `None` when the hook has nothing
/// to do for it.
pub(crate) fn adjustment(
    inner: &Inner,
    pod: &PodInfo,
    container_name: &str,
    container_id: &str,
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
    // Every container of a wrapped pod gets a plan: it names where `ctl inject` can reach
    // the wrapper later.
    let wrapped = pod.runtime_handler == SHIM_HANDLER;
    if chosen.is_empty() && execs.is_empty() && !wrapped {
        return None;
    }
    let mut plan = HookPlan::new(chosen.iter().chain(&execs).copied(), |key| {
        pod.annotations.get(key).cloned().unwrap_or_default()
    });
    if wrapped {
        plan.inject = Some(exec_inject_path(inner, container_id).display().to_string());
    }
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
mod tests {
    use std::collections::HashMap;
    use std::sync::Arc;

    use injector::seams::cgroup::{CgroupFs, RecordingFreezer};
    use injector::seams::procfs::FakeProcesses;
    use injector::seams::signal::RecordingSignaller;
    use injector::{FaultKind, Policy};

    use super::super::{ContainerInfo, Engine, Seams};
    use super::*;

    fn engine(dir: &Path, hook: Option<&Path>, strict: bool) -> Engine {
        let seams = Seams {
            signaller: Arc::new(RecordingSignaller::new()),
            freezer: Arc::new(RecordingFreezer::new()),
            procs: Arc::new(FakeProcesses::default()),
            cgroups: CgroupFs::new(dir.join("cgroup")),
            proc_root: dir.join("proc"),
            netlink: Arc::new(injector::seams::netlink::RecordingNetlink::new()),
            stressors: Arc::new(injector::seams::stressors::RecordingSpawner::new()),
        };
        let policy = Policy {
            strict,
            hook_path: Some(
                hook.map(|p| p.display().to_string())
                    .unwrap_or_else(|| dir.join("no-such-hook").display().to_string()),
            ),
            ..Policy::default()
        };
        Engine::new(policy, seams, dir).unwrap()
    }

    fn fake_hook(dir: &Path) -> std::path::PathBuf {
        let path = dir.join("nri-chaos-hook");
        std::fs::write(&path, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    fn pod(annotations: &[(&str, &str)]) -> PodInfo {
        PodInfo {
            id: "sandbox-1".into(),
            name: "web".into(),
            namespace: "default".into(),
            uid: "uid-1".into(),
            annotations: annotations
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<HashMap<_, _>>(),
            host_network: false,
            netns: None,
            pid: 0,
            runtime_handler: String::new(),
        }
    }

    fn container(id: &str, name: &str) -> ContainerInfo {
        ContainerInfo {
            id: id.into(),
            pod_sandbox_id: "sandbox-1".into(),
            name: name.into(),
            ..ContainerInfo::default()
        }
    }

    #[test]
    fn unannotated_and_plugin_only_faults_get_no_adjustment() {
        let dir = tempfile::tempdir().unwrap();
        let hook = fake_hook(dir.path());
        let engine = engine(dir.path(), Some(&hook), false);
        let none = engine.create_container(pod(&[]), container("c1", "app"));
        assert_eq!(none.unwrap(), None);
        let kill = pod(&[("kill.nri-chaos.io/container.app", "{after: 2s}")]);
        assert_eq!(
            engine
                .create_container(kill, container("c2", "app"))
                .unwrap(),
            None
        );
        let later = pod(&[("oom.nri-chaos.io", "{score: 500, after: 1s}")]);
        assert_eq!(
            engine
                .create_container(later, container("c3", "app"))
                .unwrap(),
            None
        );
    }

    #[test]
    fn start_delay_is_handed_to_the_hook_with_the_plan() {
        let dir = tempfile::tempdir().unwrap();
        let hook = fake_hook(dir.path());
        let engine = engine(dir.path(), Some(&hook), false);
        let key = "start.nri-chaos.io/container.app";
        let p = pod(&[(key, "{delay: 3s}")]);
        let adj = engine
            .create_container(p.clone(), container("c1", "app"))
            .unwrap()
            .unwrap();
        let path = hook.display().to_string();
        assert_eq!(
            adj.hooks,
            vec![OciHook {
                point: HookPoint::CreateRuntime,
                path: path.clone(),
                args: vec![path, "createRuntime".into()],
                timeout_secs: 8,
            }]
        );
        assert_eq!(adj.annotations.len(), 1);
        assert_eq!(adj.annotations[0].0, PLAN_ANNOTATION);
        let faults = HookPlan::decode(&adj.annotations[0].1).unwrap();
        assert_eq!(faults.len(), 1);
        assert_eq!(faults[0].0.key, key);
        assert_eq!(faults[0].1, "{delay: 3s}");
        // Another container of the pod is not named by the key.
        let other = engine.create_container(p.clone(), container("c2", "sidecar"));
        assert_eq!(other.unwrap(), None);
        // The restarted container (same pod UID and name): count 1 is spent.
        let again = engine.create_container(p, container("c3", "app"));
        assert_eq!(again.unwrap(), None);
    }

    #[test]
    fn count_allows_several_starts() {
        let dir = tempfile::tempdir().unwrap();
        let hook = fake_hook(dir.path());
        let engine = engine(dir.path(), Some(&hook), false);
        let p = pod(&[("start.nri-chaos.io", "{fail: {exit_code: 3}, count: 2}")]);
        let hooked: Vec<bool> = (0..3)
            .map(|i| {
                engine
                    .create_container(p.clone(), container(&format!("c{i}"), "app"))
                    .unwrap()
                    .is_some()
            })
            .collect();
        assert_eq!(hooked, vec![true, true, false]);
    }

    #[test]
    fn oom_score_at_start_goes_to_the_hook_too() {
        let dir = tempfile::tempdir().unwrap();
        let hook = fake_hook(dir.path());
        let engine = engine(dir.path(), Some(&hook), false);
        let p = pod(&[("oom.nri-chaos.io/pod", "{score: 700}")]);
        let adj = engine
            .create_container(p, container("c1", "app"))
            .unwrap()
            .unwrap();
        assert_eq!(adj.hooks[0].timeout_secs, 5);
        let faults = HookPlan::decode(&adj.annotations[0].1).unwrap();
        assert_eq!(faults[0].0.kind, FaultKind::Oom);
    }

    #[test]
    fn a_missing_hook_binary_refuses_start_faults() {
        let dir = tempfile::tempdir().unwrap();
        let key = "start.nri-chaos.io/container.app";
        let p = pod(&[(key, "{delay: 3s}")]);
        let lenient = engine(dir.path(), None, false);
        assert_eq!(
            lenient
                .create_container(p.clone(), container("c1", "app"))
                .unwrap(),
            None
        );
        let strict_dir = tempfile::tempdir().unwrap();
        let strict = engine(strict_dir.path(), None, true);
        let err = strict
            .create_container(p, container("c1", "app"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("annotation start.nri-chaos.io/container.app: \"{delay: 3s}\": fault 'start' is executed by the OCI hook: the OCI hook binary"),
            "{err}"
        );
        assert!(err.contains("no-such-hook cannot be used"), "{err}");
        // Without the hook, an early oom score is left to the engine (no adjustment).
        let oom_dir = tempfile::tempdir().unwrap();
        let engine = engine(oom_dir.path(), None, true);
        let oom = pod(&[("oom.nri-chaos.io", "{score: 700}")]);
        assert_eq!(
            engine
                .create_container(oom, container("c2", "app"))
                .unwrap(),
            None
        );
    }

    #[test]
    fn exec_goes_to_the_shim_wrapper_as_a_plan_without_a_hook() {
        let dir = tempfile::tempdir().unwrap();
        let engine = engine(dir.path(), None, false);
        let key = "exec.nri-chaos.io/container.app";
        let value = "{fail: {exit_code: 7}, match: healthz}";
        let wrapped = |annotations: &[(&str, &str)]| PodInfo {
            runtime_handler: SHIM_HANDLER.into(),
            ..pod(annotations)
        };
        let adj = engine
            .create_container(wrapped(&[(key, value)]), container("c1", "app"))
            .unwrap()
            .unwrap();
        assert_eq!(adj.hooks, vec![]);
        let faults = HookPlan::decode(&adj.annotations[0].1).unwrap();
        assert_eq!(faults.len(), 1);
        assert_eq!(
            (faults[0].0.kind, faults[0].1.as_str()),
            (FaultKind::Exec, value)
        );
        // Every container of a wrapped pod is told where injected exec faults will be.
        let plain = engine
            .create_container(wrapped(&[]), container("c2", "sidecar"))
            .unwrap()
            .unwrap();
        let plan = HookPlan::read(&plain.annotations[0].1).unwrap();
        assert!(plan.faults.is_empty());
        assert_eq!(
            plan.inject.map(PathBuf::from),
            Some(dir.path().join("exec/c2.json"))
        );
    }

    /// An exec fault planned from an annotation is listed like the other kinds: in force
    /// (`applied`) while its container lives, `recovered` once it is gone.
    #[tokio::test]
    async fn exec_from_an_annotation_is_listed_while_its_container_lives() {
        let dir = tempfile::tempdir().unwrap();
        let engine = engine(dir.path(), None, false);
        let key = "exec.nri-chaos.io/container.app";
        let value = "{fail: {exit_code: 7}, match: healthz}";
        let pod = PodInfo {
            runtime_handler: SHIM_HANDLER.into(),
            ..pod(&[(key, value)])
        };
        engine
            .create_container(pod.clone(), container("c1", "app"))
            .unwrap();
        let started = ContainerInfo {
            pid: 4242,
            running: true,
            ..container("c1", "app")
        };
        engine.container_started(pod, started);
        let (faults, rejected) = engine.registry().snapshot();
        assert!(rejected.is_empty(), "{rejected:?}");
        assert_eq!(faults.len(), 1, "{faults:?}");
        let listed = &faults[0];
        assert_eq!(
            (listed.kind, listed.source.as_str(), listed.value.as_str()),
            (FaultKind::Exec, key, value)
        );
        assert_eq!(
            (listed.container.as_str(), listed.container_id.as_str()),
            ("app", "c1")
        );
        assert_eq!(listed.state.as_str(), "applied");
        engine.container_gone("c1");
        let id = listed.id;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
        while engine.registry().get(id).unwrap().state.as_str() != "recovered" {
            assert!(std::time::Instant::now() < deadline, "not recovered");
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    }

    #[test]
    fn exec_on_a_pod_off_the_wrapper_handler_is_rejected_with_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        let strict = engine(dir.path(), None, true);
        let key = "exec.nri-chaos.io/container.app";
        let on_runc = PodInfo {
            runtime_handler: "runc".into(),
            ..pod(&[(key, "{hang: true}")])
        };
        let err = strict
            .create_container(on_runc, container("c1", "app"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("annotation exec.nri-chaos.io/container.app: \"{hang: true}\": fault 'exec' is executed by the shim wrapper, and this pod runs on runtime handler \"runc\", not on \"nri-chaos\""),
            "{err}"
        );
        let lenient_dir = tempfile::tempdir().unwrap();
        let lenient = engine(lenient_dir.path(), None, false);
        let on_default = PodInfo {
            runtime_handler: String::new(),
            ..pod(&[(key, "{hang: true}")])
        };
        assert_eq!(
            lenient
                .create_container(on_default, container("c1", "app"))
                .unwrap(),
            None
        );
        let (_, rejected) = lenient.registry().snapshot();
        assert_eq!(rejected.len(), 1, "{rejected:?}");
        assert!(
            rejected[0].reason.contains("the default runtime handler"),
            "{rejected:?}"
        );
        assert_eq!(rejected[0].class.as_str(), "unsupported");
    }
}
