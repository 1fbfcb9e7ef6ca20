//! Faults executed by the OCI hook `nri-chaos-hook`: at CreateContainer the engine hands them
//! to the hook through the NRI container adjustment: an OCI hook entry at the right point and
//! the resolved plan in the container's OCI annotation [`PLAN_ANNOTATION`]. Containers
//! without such a fault get no adjustment at all.
//!
//! The engine decides `count` (the firing ledger, claimed here for `start`) and
//! `probability` (drawn here); the hook acts on whatever the plan says.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use injector::hookplan::{hook_point, hook_timeout_secs, HookPlan, HookPoint, PLAN_ANNOTATION};
use injector::{FaultKey, FaultRequest, Rng, SplitMix64};

use super::kinds::{executor, Executor};
use super::{Inner, PodInfo};

/// Where the hook binary is when neither the policy nor `--hook-path` says otherwise.
pub const DEFAULT_HOOK_PATH: &str = "/opt/nri-chaos/bin/nri-chaos-hook";

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
    faults: &[FaultRequest],
) -> Option<HookAdjustment> {
    let path = inner.hook_path();
    let mut rng = SplitMix64::new(seed());
    let mut chosen: Vec<&FaultRequest> = Vec::new();
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
    if chosen.is_empty() {
        return None;
    }
    let plan = HookPlan::new(chosen.iter().copied(), |key| {
        pod.annotations.get(key).cloned().unwrap_or_default()
    });
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
        annotations: vec![(PLAN_ANNOTATION.to_string(), plan.encode())],
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
}
