//! Unit tests of [`super`]: the container adjustment per fault kind and executor.

use std::collections::HashMap;

use injector::{FaultKind, Policy};

use super::super::{ContainerInfo, Engine};
use super::*;

fn engine(dir: &Path, hook: Option<&Path>, strict: bool) -> Engine {
    let policy = Policy {
        strict,
        hook_path: Some(
            hook.map(|p| p.display().to_string())
                .unwrap_or_else(|| dir.join("no-such-hook").display().to_string()),
        ),
        ..Policy::default()
    };
    super::super::tests::engine(policy, dir).0
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
    // A container of a wrapped pod without a fault is not adjusted: `ctl inject` reaches
    // its wrapper through the exec directory both know, not through a plan.
    let plain = engine
        .create_container(wrapped(&[]), container("c2", "sidecar"))
        .unwrap();
    assert_eq!(plain, None);
    // Nor is a container of a wrapped pod whose exec fault names another container.
    let other = engine
        .create_container(wrapped(&[(key, value)]), container("c3", "sidecar"))
        .unwrap();
    assert_eq!(other, None);
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

/// `ctl inject` of an exec fault writes the container's file in the exec directory (named by
/// its container id, the plan format), `ctl recover` removes it; a new engine (a restart of
/// nri-chaos) removes the files a previous run left, and nothing else of the directory.
#[tokio::test]
async fn ctl_inject_of_exec_writes_the_container_file_of_the_exec_dir() {
    let dir = tempfile::tempdir().unwrap();
    let exec_dir = dir.path().join("exec");
    std::fs::create_dir_all(&exec_dir).unwrap();
    std::fs::write(exec_dir.join("old.json"), "{}").unwrap();
    std::fs::write(exec_dir.join("old.json.tmp"), "{}").unwrap();
    std::fs::write(exec_dir.join("README"), "not ours").unwrap();
    let engine = engine(dir.path(), None, false);
    assert!(!exec_dir.join("old.json").exists());
    assert!(!exec_dir.join("old.json.tmp").exists());
    assert!(exec_dir.join("README").exists());

    let pod = PodInfo {
        runtime_handler: SHIM_HANDLER.into(),
        ..pod(&[])
    };
    let running = ContainerInfo {
        pid: 4242,
        running: true,
        ..container("c1", "app")
    };
    engine.synchronize(vec![pod], vec![running]);
    let value = "{fail: {exit_code: 5}, match: healthz}";
    let records = engine
        .inject("default/web/app", FaultKind::Exec, value)
        .unwrap();
    assert_eq!(records.len(), 1, "{records:?}");
    let file = exec_dir.join("c1.json");
    let faults = HookPlan::decode(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(
        faults
            .iter()
            .map(|(f, v)| (f.kind, v.as_str()))
            .collect::<Vec<_>>(),
        vec![(FaultKind::Exec, value)]
    );
    engine
        .recover(Some(records[0].id), std::time::Duration::from_secs(2))
        .await
        .unwrap();
    for _ in 0..100 {
        if !file.exists() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("{} is still there after ctl recover", file.display());
}
