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

use injector::FaultKind;

use super::*;

pub(super) fn pod(annotation: Option<(&str, &str)>) -> PodInfo {
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

pub(super) fn container(id: &str, name: &str, pid: u32) -> ContainerInfo {
    ContainerInfo {
        id: id.into(),
        pod_sandbox_id: "sandbox-1".into(),
        name: name.into(),
        pid,
        memory_limit: None,
        running: true,
    }
}

pub(super) fn engine(policy: Policy, dir: &std::path::Path) -> (Engine, Arc<RecordingSignaller>) {
    let (engine, signaller, _) = engine_on_fakes(policy, dir);
    (engine, signaller)
}

/// An engine on the fakes, with its signaller and freezer (cgroups and /proc under `dir`).
pub(super) fn engine_on_fakes(
    policy: Policy,
    dir: &std::path::Path,
) -> (Engine, Arc<RecordingSignaller>, Arc<RecordingFreezer>) {
    let signaller = Arc::new(RecordingSignaller::new());
    let freezer = Arc::new(RecordingFreezer::new());
    let seams = Seams {
        signaller: signaller.clone(),
        freezer: freezer.clone(),
        procs: Arc::new(FakeProcesses::default()),
        cgroups: CgroupFs::new(dir.join("cgroup")),
        proc_root: dir.join("proc"),
        netlink: Arc::new(injector::seams::netlink::RecordingNetlink::new()),
        stressors: Arc::new(injector::seams::stressors::RecordingSpawner::new()),
    };
    let engine = Engine::new(policy, seams, dir, &dir.join("exec")).unwrap();
    (engine, signaller, freezer)
}

/// A journal entry a previous run left for pod `default/web` (`uid-1`): fault `kind` on
/// `(instance id, container name)`, applied a second ago, to hold `hold_ms` in all, from
/// annotation `(key, value)`.
pub(super) fn journaled(
    (instance, container_name): (&str, &str),
    kind: FaultKind,
    hold_ms: u64,
    recovery: injector::Recovery,
    (source, value): (&str, &str),
) -> injector::JournalEntry {
    let applied = injector::journal::now_unix_ms() - 1_000;
    injector::JournalEntry {
        id: injector::journal::new_fault_id(),
        pod: "default/web".into(),
        pod_uid: "uid-1".into(),
        container_id: instance.into(),
        container_name: container_name.into(),
        kind,
        applied_at_unix_ms: applied,
        deadline_unix_ms: Some(applied + hold_ms),
        recovery,
        source: source.into(),
        value: value.into(),
    }
}

/// Leaves `entry` in the store's log under `state_dir`, as a previous run would have.
pub(super) fn left_in_store(state_dir: &std::path::Path, entry: injector::JournalEntry) {
    let mut log = injector::store::StoreFile::open(state_dir).unwrap().file;
    let left = injector::store::Record::Journal { entry };
    log.append(&injector::store::encode(&[left]).unwrap(), 1)
        .unwrap();
    log.sync().unwrap();
}

/// The journal entries durable in the store under `state_dir`.
pub(super) fn journal_on_disk(state_dir: &std::path::Path) -> usize {
    injector::store::read_state(state_dir)
        .unwrap()
        .0
        .journal
        .len()
}

pub(super) async fn wait_for_signals(
    signaller: &RecordingSignaller,
    count: usize,
) -> Vec<(u32, Signal)> {
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
    let entry = journaled(
        ("c1", "app"),
        FaultKind::Freeze,
        3_600_000,
        injector::Recovery::Thaw {
            freezer: location.clone(),
        },
        ("freeze.nri-chaos.io/container.app", "{duration: 1h}"),
    );
    let applied = entry.applied_at_unix_ms;
    // Left by a previous run: the entry is in the store's log.
    left_in_store(dir.path(), entry);
    let freezer = Arc::new(RecordingFreezer::new());
    let seams = Seams {
        signaller: Arc::new(RecordingSignaller::new()),
        freezer: freezer.clone(),
        procs: Arc::new(FakeProcesses::default()),
        cgroups: CgroupFs::new(dir.path().join("cgroup")),
        proc_root: dir.path().join("proc"),
        netlink: Arc::new(injector::seams::netlink::RecordingNetlink::new()),
        stressors: Arc::new(injector::seams::stressors::RecordingSpawner::new()),
    };
    let engine = Engine::new(
        Policy::default(),
        seams,
        dir.path(),
        &dir.path().join("exec"),
    )
    .unwrap();
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

    let recovered = engine
        .recover(Some(fault.id), Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(recovered.len(), 1);
    assert_eq!(recovered[0].state, introspect::FaultState::Recovered);
    assert_eq!(freezer.calls(), vec![(FreezerOp::Thaw, location)]);
    let (stored, _) = injector::store::read_state(dir.path()).unwrap();
    assert!(stored.journal.is_empty(), "the journal entry is cleared");
    assert_eq!(engine.inner.store.journal_len(), 0);
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

/// A rejection carries the class it was made in: a value that merely contains the word
/// "policy" is a parse error, a missing OCI hook makes a fault unsupported on this node.
#[test]
fn a_rejection_carries_the_class_it_was_made_in() {
    use introspect::RejectionClass;
    let dir = tempfile::tempdir().unwrap();
    let policy = Policy {
        hook_path: Some(dir.path().join("no-such-hook").display().to_string()),
        ..Policy::default()
    };
    let (engine, _) = engine(policy, dir.path());
    let mut p = pod(Some(("kill.nri-chaos.io/container.app", "{after: policy}")));
    p.annotations.insert(
        "start.nri-chaos.io/container.app".into(),
        "{delay: 1s}".into(),
    );
    engine
        .create_container(p, container("c1", "app", 0))
        .unwrap();
    let (_, rejections) = engine.registry().snapshot();
    let class = |key: &str| {
        rejections
            .iter()
            .find(|r| r.key == key)
            .map(|r| r.class)
            .unwrap_or_else(|| panic!("{key} not rejected: {rejections:?}"))
    };
    assert_eq!(
        class("kill.nri-chaos.io/container.app"),
        RejectionClass::Parse
    );
    assert_eq!(
        class("start.nri-chaos.io/container.app"),
        RejectionClass::Unsupported
    );
}

/// Regression: concurrent claims shared one temp file without fsync, so an older snapshot
/// could win the rename (or a half-written one be read back as 0): counts went back. Every
/// claim a fault task was told is durable must be on disk at once, whatever happens next.
#[test]
fn concurrent_claims_are_all_durable() {
    const THREADS: usize = 8;
    const CLAIMS: usize = 50;
    let dir = tempfile::tempdir().unwrap();
    let (engine, _) = engine(Policy::default(), dir.path());
    let key = injector::LedgerKey::new("uid-1", "app", FaultKind::Kill);
    // Other pods' counts make every snapshot of the old ledger longer to write.
    for i in 0..300 {
        let other = injector::LedgerKey::new(format!("uid-other-{i}"), "app", FaultKind::Kill);
        drop(engine.inner.claim_firing(&other, None).expect("unlimited"));
    }
    let on_disk = {
        let dir = dir.path().to_path_buf();
        move |key: &injector::LedgerKey| {
            let (stored, _) = injector::store::read_state(&dir).unwrap();
            stored
                .firings
                .get(&injector::FaultKey::from(key))
                .copied()
                .unwrap_or(0)
        }
    };
    let threads: Vec<_> = (0..THREADS)
        .map(|_| {
            let (inner, key, on_disk) = (engine.inner.clone(), key.clone(), on_disk.clone());
            std::thread::spawn(move || {
                let mut behind = Vec::new();
                for _ in 0..CLAIMS {
                    let claim = inner.claim_firing(&key, None).expect("unlimited");
                    claim.ack.wait().expect("durable");
                    let durable = on_disk(&key);
                    if durable < claim.ordinal {
                        behind.push((claim.ordinal, durable));
                    }
                }
                behind
            })
        })
        .collect();
    let behind: Vec<(u32, u32)> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    assert!(
        behind.is_empty(),
        "claims acknowledged but not on disk (ordinal, on disk): {behind:?}"
    );
    assert_eq!(on_disk(&key), (THREADS * CLAIMS) as u32);
}

/// Regression: the ledger never forgot a removed pod. RemovePodSandbox forgets its counts
/// (in memory and on disk), unless another sandbox of the same pod lives on.
#[tokio::test]
async fn a_removed_pod_is_forgotten() {
    let dir = tempfile::tempdir().unwrap();
    let (engine, signaller) = engine(Policy::default(), dir.path());
    let pod = pod(Some(("kill.nri-chaos.io/container.app", "{after: 10ms}")));
    engine.pod_started(pod.clone());
    engine.container_started(pod.clone(), container("c1", "app", 101));
    assert_eq!(wait_for_signals(&signaller, 1).await.len(), 1);
    let key = injector::LedgerKey::new("uid-1", "app", FaultKind::Kill);
    assert_eq!(engine.inner.store.ledger().count(&key), 1);

    // A newer sandbox of the same pod: removing the old one keeps the counts.
    let newer = PodInfo {
        id: "sandbox-2".into(),
        ..pod.clone()
    };
    engine.pod_started(newer);
    engine.pod_removed("sandbox-1");
    assert_eq!(engine.inner.store.ledger().count(&key), 1);
    engine.pod_removed("sandbox-2");
    assert!(engine.inner.store.ledger().is_empty());
    engine.shutdown(Duration::from_secs(1)).await;
    let (stored, _) = injector::store::read_state(dir.path()).unwrap();
    assert!(stored.firings.is_empty(), "{:?}", stored.firings);
}

/// A node upgraded while a freeze held: the previous version's `journal/<id>.json` is folded
/// into the store at start and the freeze is resumed (listed, recoverable).
#[tokio::test]
async fn a_journal_entry_of_the_previous_version_is_resumed() {
    let dir = tempfile::tempdir().unwrap();
    let applied = injector::journal::now_unix_ms() - 1_000;
    let old = serde_json::json!({
        "id": "1700000000000-42-0",
        "pod": "default/web",
        "pod_uid": "uid-1",
        "container_id": "c1",
        "container_name": "app",
        "kind": "freeze",
        "applied_at_unix_ms": applied,
        "deadline_unix_ms": applied + 3_600_000,
        "recovery": {"action": "thaw", "freezer": {"version": "v1", "state_file": dir.path().join("freezer.state")}},
    });
    std::fs::create_dir(dir.path().join("journal")).unwrap();
    std::fs::write(
        dir.path().join("journal/1700000000000-42-0.json"),
        serde_json::to_vec_pretty(&old).unwrap(),
    )
    .unwrap();
    let (engine, _) = engine(Policy::default(), dir.path());
    engine.replay_journal();
    let (faults, _) = engine.registry().snapshot();
    assert_eq!(faults.len(), 1, "{faults:?}");
    assert_eq!(faults[0].kind, FaultKind::Freeze);
    assert_eq!(faults[0].source, "journal");
    assert!(
        !dir.path().join("journal").exists(),
        "folded into the store"
    );
    let (stored, _) = injector::store::read_state(dir.path()).unwrap();
    assert_eq!(
        stored.journal.keys().collect::<Vec<_>>(),
        ["1700000000000-42-0"]
    );
    engine.shutdown(Duration::from_secs(5)).await;
}
