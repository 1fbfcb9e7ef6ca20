//! The engine against the recording signaller: planning, strict refusal, arming at start,
//! counting across restarts, stopping with the container, the ledger on disk.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use injector::faults::kill::Signal;
use injector::seams::cgroup::{CgroupFs, RecordingFreezer};
use injector::seams::procfs::FakeProcesses;
use injector::seams::signal::RecordingSignaller;
use injector::Policy;

use super::*;

fn pod(annotation: Option<(&str, &str)>) -> PodInfo {
    let mut annotations = HashMap::new();
    if let Some((key, value)) = annotation {
        annotations.insert(key.to_string(), value.to_string());
    }
    PodInfo {
        id: "sandbox-1".into(),
        name: "web".into(),
        namespace: "default".into(),
        uid: "uid-1".into(),
        annotations,
        host_network: false,
        netns: None,
        pid: 0,
        ..PodInfo::default()
    }
}

fn container(id: &str, name: &str, pid: u32) -> ContainerInfo {
    ContainerInfo {
        id: id.into(),
        pod_sandbox_id: "sandbox-1".into(),
        name: name.into(),
        pid,
        memory_limit: None,
        running: true,
    }
}

fn engine(policy: Policy, dir: &std::path::Path) -> (Engine, Arc<RecordingSignaller>) {
    let signaller = Arc::new(RecordingSignaller::new());
    let seams = Seams {
        signaller: signaller.clone(),
        freezer: Arc::new(RecordingFreezer::new()),
        procs: Arc::new(FakeProcesses::default()),
        cgroups: CgroupFs::new(dir.join("cgroup")),
        proc_root: dir.join("proc"),
        worker_exe: "/bin/false".into(),
    };
    let engine = Engine::new(policy, seams, dir).unwrap();
    (engine, signaller)
}

async fn wait_for_signals(signaller: &RecordingSignaller, count: usize) -> Vec<(u32, Signal)> {
    for _ in 0..100 {
        if signaller.sent().len() >= count {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    signaller.sent()
}

#[tokio::test]
async fn kills_the_named_container_once_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let (engine, signaller) = engine(Policy::default(), dir.path());
    let pod = pod(Some(("kill.nri-chaos.io/container.app", "{after: 50ms}")));

    engine
        .create_container(pod.clone(), container("c1", "app", 0))
        .unwrap();
    engine
        .create_container(pod.clone(), container("c2", "sidecar", 0))
        .unwrap();
    engine.container_started(pod.clone(), container("c1", "app", 101));
    engine.container_started(pod.clone(), container("c2", "sidecar", 102));
    assert_eq!(
        wait_for_signals(&signaller, 1).await,
        vec![(101, Signal::KILL)]
    );

    // The restarted instance (count 1 spent) is not armed, the sidecar never was.
    engine.container_gone("c1");
    engine
        .create_container(pod.clone(), container("c3", "app", 0))
        .unwrap();
    engine.container_started(pod, container("c3", "app", 103));
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(signaller.sent(), vec![(101, Signal::KILL)]);

    // The count is on disk: a new engine on the same state dir does not kill again.
    engine.shutdown(Duration::from_secs(1)).await;
    let (again, signaller) = self::engine(Policy::default(), dir.path());
    let pod = self::pod(Some(("kill.nri-chaos.io/container.app", "{after: 10ms}")));
    again.container_started(pod, container("c4", "app", 104));
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(signaller.sent().is_empty());
}

#[tokio::test]
async fn a_stopped_container_is_never_signalled() {
    let dir = tempfile::tempdir().unwrap();
    let (engine, signaller) = engine(Policy::default(), dir.path());
    let pod = pod(Some(("kill.nri-chaos.io", "{after: 100ms}")));
    engine.container_started(pod, container("c1", "app", 101));
    engine.container_gone("c1");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(signaller.sent().is_empty());
}

#[tokio::test]
async fn a_gone_process_gives_its_firing_back() {
    let dir = tempfile::tempdir().unwrap();
    let (engine, signaller) = engine(Policy::default(), dir.path());
    let pod = pod(Some(("kill.nri-chaos.io", "{after: 10ms, count: 1}")));
    signaller.mark_exited(101);
    engine.container_started(pod.clone(), container("c1", "app", 101));
    tokio::time::sleep(Duration::from_millis(100)).await;
    // The next instance still gets the one kill it asked for.
    engine.container_started(pod, container("c2", "app", 102));
    assert_eq!(
        wait_for_signals(&signaller, 1).await,
        vec![(102, Signal::KILL)]
    );
}

#[test]
fn strict_mode_refuses_with_key_value_and_reason() {
    let dir = tempfile::tempdir().unwrap();
    let policy = Policy::from_toml_str("strict = true").unwrap();
    let (engine, _) = engine(policy, dir.path());
    let err = engine
        .create_container(
            pod(Some(("kill.nri-chaos.io/container.app", "{after: 2x}"))),
            container("c1", "app", 0),
        )
        .unwrap_err()
        .to_string();
    assert!(err.contains("kill.nri-chaos.io/container.app"), "{err}");
    assert!(err.contains("2x"), "{err}");
    assert!(err.contains("not a duration"), "{err}");
}

#[test]
fn lenient_mode_reports_and_lets_the_container_run() {
    let dir = tempfile::tempdir().unwrap();
    let (engine, _) = engine(Policy::default(), dir.path());
    engine
        .create_container(
            pod(Some(("kill.nri-chaos.io/container.app", "{after: 2x}"))),
            container("c1", "app", 0),
        )
        .unwrap();
}

/// A freeze a previous run left in the journal: `ctl list` sees it (applied, source
/// journal, with its key and value), `ctl recover ID` thaws it and clears the journal.
#[tokio::test]
async fn a_fault_resumed_from_the_journal_is_listed_and_recoverable() {
    use injector::seams::cgroup::freezer::FreezerOp;
    use injector::seams::cgroup::FreezerLocation;

    let dir = tempfile::tempdir().unwrap();
    let location = FreezerLocation::V1 {
        state_file: dir.path().join("freezer.state"),
    };
    let applied = injector::journal::now_unix_ms() - 1_000;
    let journal = injector::Journal::open(dir.path().join("journal")).unwrap();
    journal
        .record(&injector::JournalEntry {
            id: injector::journal::new_fault_id(),
            pod: "default/web".into(),
            pod_uid: "uid-1".into(),
            container_id: "c1".into(),
            container_name: "app".into(),
            kind: FaultKind::Freeze,
            applied_at_unix_ms: applied,
            deadline_unix_ms: Some(applied + 3_600_000),
            recovery: injector::Recovery::Thaw {
                freezer: location.clone(),
            },
            source: "freeze.nri-chaos.io/container.app".into(),
            value: "{duration: 1h}".into(),
        })
        .unwrap();
    let freezer = Arc::new(RecordingFreezer::new());
    let seams = Seams {
        signaller: Arc::new(RecordingSignaller::new()),
        freezer: freezer.clone(),
        procs: Arc::new(FakeProcesses::default()),
        cgroups: CgroupFs::new(dir.path().join("cgroup")),
        proc_root: dir.path().join("proc"),
        worker_exe: "/bin/false".into(),
    };
    let engine = Engine::new(Policy::default(), seams, dir.path()).unwrap();
    engine.replay_journal();
    let (faults, _) = engine.registry().snapshot();
    assert_eq!(faults.len(), 1, "{faults:?}");
    let fault = &faults[0];
    assert_eq!(fault.state, introspect::FaultState::Applied);
    assert_eq!(fault.kind, FaultKind::Freeze);
    assert_eq!(
        (fault.pod.as_str(), fault.container.as_str()),
        ("default/web", "app")
    );
    assert_eq!(fault.source, "freeze.nri-chaos.io/container.app (journal)");
    assert_eq!(fault.value, "{duration: 1h}");
    assert_eq!(fault.applied_unix_ms, Some(applied));
    assert!(freezer.calls().is_empty(), "nothing thawed before its time");

    let recovered = engine.recover(Some(fault.id), Duration::from_secs(5)).await;
    assert_eq!(recovered.len(), 1);
    assert_eq!(recovered[0].state, introspect::FaultState::Recovered);
    assert_eq!(freezer.calls(), vec![(FreezerOp::Thaw, location)]);
    assert!(journal.load().0.is_empty(), "the journal entry is cleared");
    assert_eq!(engine.active_faults(), 0);
    let events = engine.registry().events().since(0);
    assert!(
        events
            .events
            .iter()
            .any(|e| e.kind == events::EventKind::Recovered),
        "{events:?}"
    );
}
