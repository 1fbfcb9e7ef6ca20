//! Regression tests of issue 10: a fault is keyed by its scope (pod or container), so a
//! Synchronize never ends a pod-scoped fault early, netem is armed once per pod, a `start`
//! fault leaves no armed record, and `ctl inject` keeps its counts and its fault.

use std::time::Duration;

use injector::faults::kill::Signal;
use injector::Policy;

use super::introspect::{FaultRecord, FaultState};
use super::tests::{
    container, engine, journal_on_disk, journaled, left_in_store, pod, wait_for_signals,
};
use injector::FaultKind;

use super::*;

fn with_netns(mut pod: PodInfo) -> PodInfo {
    pod.netns = Some("/nonexistent/nri-chaos-test-netns".into());
    pod
}

fn records(engine: &Engine, kind: FaultKind) -> Vec<FaultRecord> {
    let (faults, _) = engine.registry().snapshot();
    faults.into_iter().filter(|f| f.kind == kind).collect()
}

/// Lets stop signals reach their tasks and the tasks record their end.
async fn settle() {
    tokio::time::sleep(Duration::from_millis(100)).await;
}

/// The pod's netem (armed at CreateContainer, keyed by the pod) survives a Synchronize that
/// reports the pod and its container alive (containerd restart, plugin reconnect).
#[tokio::test]
async fn synchronize_keeps_an_armed_netem_while_its_pod_lives() {
    let dir = tempfile::tempdir().unwrap();
    let (engine, _) = engine(Policy::default(), dir.path());
    let mut p = with_netns(pod(Some((
        "netem.nri-chaos.io/pod",
        "{delay: 100ms, after: 1h, duration: 60s}",
    ))));
    // A container fault too, so a plan is stored and PostStart does not re-plan netem.
    p.annotations.insert(
        "kill.nri-chaos.io/container.app".into(),
        "{after: 1h}".into(),
    );
    engine.pod_started(p.clone());
    engine
        .create_container(p.clone(), container("c1", "app", 0))
        .unwrap();
    engine.container_started(p.clone(), container("c1", "app", 101));
    engine.synchronize(vec![p.clone()], vec![container("c1", "app", 101)]);
    settle().await;
    let netem = records(&engine, FaultKind::Netem);
    assert_eq!(netem.len(), 1, "{netem:?}");
    assert_eq!(netem[0].state, FaultState::Armed, "{netem:?}");
    assert_eq!(engine.active_faults(), 2);
    // The pod's removal ends it.
    engine.pod_removed(&p.id);
    settle().await;
    assert_eq!(
        records(&engine, FaultKind::Netem)[0].state,
        FaultState::Stopped
    );
}

/// A netem a previous run left in the journal (plugin SIGKILLed and restarted) is held to its
/// deadline across the first Synchronize, which reports its pod alive.
#[tokio::test]
async fn a_netem_resumed_from_the_journal_survives_the_first_synchronize() {
    let dir = tempfile::tempdir().unwrap();
    let entry = journaled(
        ("sandbox-1", ""),
        FaultKind::Netem,
        60_000,
        injector::Recovery::RemoveNetem {
            netns: "/nonexistent/nri-chaos-test-netns".into(),
            interfaces: Vec::new(),
        },
        ("netem.nri-chaos.io/pod", "{delay: 100ms, duration: 60s}"),
    );
    left_in_store(dir.path(), entry);
    let (engine, _) = engine(Policy::default(), dir.path());
    engine.replay_journal();
    let p = with_netns(pod(Some((
        "netem.nri-chaos.io/pod",
        "{delay: 100ms, duration: 60s}",
    ))));
    engine.synchronize(vec![p.clone()], vec![container("c1", "app", 101)]);
    settle().await;
    let netem = records(&engine, FaultKind::Netem);
    assert_eq!(
        netem.len(),
        1,
        "one netem per pod, the resumed one: {netem:?}"
    );
    assert_eq!(netem[0].state, FaultState::Applied, "{netem:?}");
    assert_eq!(
        journal_on_disk(dir.path()),
        1,
        "not recovered before its deadline"
    );
    // A second Synchronize (containerd restarted) keeps it too.
    engine.synchronize(vec![p], vec![container("c1", "app", 101)]);
    settle().await;
    assert_eq!(
        records(&engine, FaultKind::Netem)[0].state,
        FaultState::Applied
    );
    // The pod gone from the runtime's view: recovered now.
    engine.synchronize(Vec::new(), Vec::new());
    settle().await;
    assert!(
        journal_on_disk(dir.path()) == 0,
        "recovered when the pod is gone"
    );
}

/// A pod whose only fault is netem: CreateContainer arms it for the pod, PostStart of each
/// container must not arm it again.
#[tokio::test]
async fn netem_is_armed_once_per_pod() {
    let dir = tempfile::tempdir().unwrap();
    let (engine, _) = engine(Policy::default(), dir.path());
    let p = with_netns(pod(Some((
        "netem.nri-chaos.io/pod",
        "{delay: 100ms, after: 1h, duration: 60s}",
    ))));
    engine.pod_started(p.clone());
    for (id, name, pid) in [("c1", "app", 101), ("c2", "sidecar", 102)] {
        engine
            .create_container(p.clone(), container(id, name, 0))
            .unwrap();
        engine.container_started(p.clone(), container(id, name, pid));
    }
    // The plugin restarted later sees the containers at Synchronize only.
    engine.synchronize(
        vec![p.clone()],
        vec![container("c1", "app", 101), container("c2", "sidecar", 102)],
    );
    settle().await;
    let netem = records(&engine, FaultKind::Netem);
    assert_eq!(netem.len(), 1, "{netem:?}");
    assert_eq!(netem[0].container, "", "pod scoped: {netem:?}");
    assert_eq!(engine.active_faults(), 1);
}

/// A `start` fault is executed by the OCI hook; with `count: 2` it must not leave an armed
/// record behind at PostStart.
#[tokio::test]
async fn a_start_fault_leaves_no_armed_record() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let hook = dir.path().join("nri-chaos-hook");
    std::fs::write(&hook, "#!/bin/sh\n").unwrap();
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
    let policy = Policy {
        hook_path: Some(hook.display().to_string()),
        ..Policy::default()
    };
    let (engine, _) = engine(policy, dir.path());
    let p = pod(Some(("start.nri-chaos.io", "{delay: 10ms, count: 2}")));
    let adjustment = engine
        .create_container(p.clone(), container("c1", "app", 0))
        .unwrap();
    assert!(adjustment.is_some(), "handed to the hook");
    engine.container_started(p, container("c1", "app", 101));
    settle().await;
    let armed: Vec<FaultRecord> = engine
        .registry()
        .snapshot()
        .0
        .into_iter()
        .filter(|f| f.state == FaultState::Armed)
        .collect();
    assert!(armed.is_empty(), "{armed:?}");
    assert_eq!(engine.active_faults(), 0);
}

/// Each `ctl inject` is its own fault with its own `count`, held by its task: a Synchronize
/// (which trims the firing ledger to the live pods) changes nothing, before or after.
#[tokio::test]
async fn each_injected_fault_keeps_its_own_count_across_synchronize() {
    let dir = tempfile::tempdir().unwrap();
    let (engine, signaller) = engine(Policy::default(), dir.path());
    let p = pod(None);
    let c1 = || container("c1", "app", 101);
    engine.synchronize(vec![p.clone()], vec![c1()]);
    let inject = |value: &str| {
        let records = engine
            .inject("default/web/app", FaultKind::Kill, value)
            .unwrap();
        assert_eq!(records.len(), 1, "{records:?}");
    };
    inject("{count: 1}");
    assert_eq!(wait_for_signals(&signaller, 1).await.len(), 1);
    engine.synchronize(vec![p.clone()], vec![c1()]);
    inject("{count: 1}");
    assert_eq!(wait_for_signals(&signaller, 2).await.len(), 2);
    inject("{count: 1}");
    assert_eq!(
        wait_for_signals(&signaller, 3).await.len(),
        3,
        "the third inject fires like the second, with no Synchronize before it"
    );
    // A repeating one fires `count` times, a Synchronize in between.
    inject("{every: 200ms, count: 2}");
    assert_eq!(wait_for_signals(&signaller, 4).await.len(), 4);
    engine.synchronize(vec![p], vec![c1()]);
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(signaller.sent(), vec![(101, Signal::KILL); 5]);
}

/// A `ctl inject` that lands while PostStart arms the same container keeps its fault.
/// (A race: each round injects as soon as the container is visible, while PostStart is still
/// arming its annotation's fault.)
#[test]
fn an_inject_racing_poststart_is_not_stopped() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let _guard = runtime.enter();
    let dir = tempfile::tempdir().unwrap();
    let (engine, _) = engine(Policy::default(), dir.path());
    let p = pod(Some(("freeze.nri-chaos.io", "{after: 1h, duration: 1s}")));
    engine.pod_started(p.clone());
    let rounds: u32 = 200;
    let mut injected = Vec::new();
    for round in 0..rounds {
        let id = format!("c{round}");
        let name = format!("app{round}");
        engine
            .create_container(p.clone(), container(&id, &name, 0))
            .unwrap();
        let target = format!("default/web/{name}");
        let injector = {
            let engine = engine.clone();
            let handle = runtime.handle().clone();
            std::thread::spawn(move || {
                let _guard = handle.enter();
                loop {
                    match engine.inject(&target, FaultKind::Kill, "{after: 1h}") {
                        Ok(records) => break records[0].id,
                        Err(InjectError::NotFound(_)) => std::hint::spin_loop(),
                        Err(err) => panic!("{err}"),
                    }
                }
            })
        };
        engine.container_started(p.clone(), container(&id, &name, 1000 + round));
        injected.push(injector.join().unwrap());
    }
    runtime.block_on(tokio::time::sleep(Duration::from_millis(200)));
    let stopped: Vec<u64> = injected
        .iter()
        .copied()
        .filter(|id| engine.registry().get(*id).map(|r| r.state) != Some(FaultState::Armed))
        .collect();
    assert!(
        stopped.is_empty(),
        "{} of {rounds} injected faults were stopped by PostStart: {stopped:?}",
        stopped.len()
    );
    assert_eq!(engine.active_faults(), 2 * rounds as usize);
}

/// A container restarted while the plugin was away (new instance, same name): Synchronize
/// stops the fault of the old instance and arms the new one, measured from now.
#[tokio::test]
async fn synchronize_moves_a_container_fault_to_the_restarted_instance() {
    let dir = tempfile::tempdir().unwrap();
    let (engine, signaller) = engine(Policy::default(), dir.path());
    let p = pod(Some((
        "kill.nri-chaos.io/container.app",
        "{after: 300ms, count: 2}",
    )));
    engine.synchronize(vec![p.clone()], vec![container("c1", "app", 101)]);
    let first = records(&engine, FaultKind::Kill);
    assert_eq!(first.len(), 1, "{first:?}");
    assert_eq!(first[0].container_id, "c1");
    engine.synchronize(vec![p.clone()], vec![container("c2", "app", 102)]);
    assert_eq!(
        wait_for_signals(&signaller, 1).await,
        vec![(102, Signal::KILL)],
        "the new instance, never the old one"
    );
    settle().await;
    let kills = records(&engine, FaultKind::Kill);
    let states: Vec<(&str, FaultState)> = kills
        .iter()
        .map(|f| (f.container_id.as_str(), f.state))
        .collect();
    assert_eq!(
        states,
        vec![("c1", FaultState::Stopped), ("c2", FaultState::Applied)]
    );
}
