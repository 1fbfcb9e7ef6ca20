//! What NRI handlers leave for after their reply (`after_reply`): a fault armed in a handler
//! is in the state and `ctl list` at once and starts only after the reply; a stop raised
//! before its start still runs the stop path; the shutdown loses nothing that was queued.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use injector::faults::kill::Signal;
use injector::seams::cgroup::freezer::FreezerOp;
use injector::{FaultKey, FaultKind, Policy};

use super::fault_tests::cgroup_tree;
use super::introspect::{FaultRecord, FaultState};
use super::tests::{container, engine, engine_on_fakes, pod, wait_for_signals};
use super::*;

/// The registry's record of the only fault of `kind`.
fn record(engine: &Engine, kind: FaultKind) -> FaultRecord {
    let (faults, _) = engine.registry().snapshot();
    let mut of_kind = faults.into_iter().filter(|f| f.kind == kind);
    let record = of_kind.next().expect("a fault of that kind");
    assert!(of_kind.next().is_none(), "one fault of that kind");
    record
}

/// Waits (up to 2 s) until the fault of `kind` is in `state`.
async fn wait_state(engine: &Engine, kind: FaultKind, state: FaultState) -> FaultRecord {
    for _ in 0..200 {
        let now = record(engine, kind);
        if now.state == state {
            return now;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    record(engine, kind)
}

/// An engine whose PostStart handler armed a kill of container `c1` (pid 101) at its start.
fn kill_armed_in_a_handler(
    dir: &std::path::Path,
) -> (
    Engine,
    std::sync::Arc<injector::seams::signal::RecordingSignaller>,
) {
    let (engine, signaller) = engine(Policy::default(), dir);
    let pod = pod(Some(("kill.nri-chaos.io/container.app", "{after: 0s}")));
    engine
        .create_container(pod.clone(), container("c1", "app", 0))
        .unwrap();
    crate::in_handler::run(|| engine.container_started(pod, container("c1", "app", 101)));
    (engine, signaller)
}

#[tokio::test]
async fn a_fault_armed_in_a_handler_starts_after_the_reply() {
    let dir = tempfile::tempdir().unwrap();
    let (engine, signaller) = kill_armed_in_a_handler(dir.path());
    // In the state and listed at once, but its task has not started: nothing planned, nothing
    // sent, however long the reply takes.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(engine.active_faults(), 1);
    let armed = record(&engine, FaultKind::Kill);
    assert_eq!(armed.state, FaultState::Armed);
    assert_eq!(armed.planned_unix_ms, None, "{armed:?}");
    assert!(signaller.sent().is_empty());
    assert_eq!(engine.inner.after_reply.queued(), 1);

    engine.after_reply();
    assert_eq!(
        wait_for_signals(&signaller, 1).await,
        vec![(101, Signal::KILL)]
    );
    assert_eq!(engine.inner.after_reply.queued(), 0);
    engine.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn a_stop_raised_before_the_start_runs_the_stop_path() {
    let dir = tempfile::tempdir().unwrap();
    let (engine, signaller) = kill_armed_in_a_handler(dir.path());
    // StopContainer right after, before the PostStart reply was written: the fault leaves the
    // state at once (a later event or `ctl list` does not see it armed).
    crate::in_handler::run(|| engine.container_gone("c1"));
    assert_eq!(engine.active_faults(), 0);
    assert_eq!(engine.inner.after_reply.queued(), 2);
    // Its init has exited by the time the task starts: it ends stopped, not failed.
    signaller.mark_exited(101);

    engine.after_reply();
    let ended = wait_state(&engine, FaultKind::Kill, FaultState::Stopped).await;
    assert_eq!(ended.state, FaultState::Stopped, "{ended:?}");
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(signaller.sent().is_empty(), "{:?}", signaller.sent());
    // No firing was taken from the ledger.
    let key = FaultKey::of(FaultKind::Kill, "uid-1", "app");
    assert_eq!(engine.inner.store.ledger().count(&key), 0);
}

#[tokio::test]
async fn the_shutdown_starts_and_stops_what_waits_for_a_reply() {
    let dir = tempfile::tempdir().unwrap();
    cgroup_tree(dir.path(), &[101]);
    let (engine, signaller, freezer) = engine_on_fakes(Policy::default(), dir.path());
    let pod = PodInfo {
        annotations: HashMap::from([
            (
                "freeze.nri-chaos.io/container.app".to_string(),
                "{duration: 1h}".to_string(),
            ),
            (
                "kill.nri-chaos.io/container.side".to_string(),
                "{after: 1h}".to_string(),
            ),
        ]),
        ..pod(None)
    };
    // The app is frozen (armed outside a handler: started at once).
    engine.container_started(pod.clone(), container("c1", "app", 101));
    let frozen = wait_state(&engine, FaultKind::Freeze, FaultState::Applied).await;
    assert_eq!(frozen.state, FaultState::Applied, "{frozen:?}");
    // Then, in handlers whose reply is never written (the connection died): the side
    // container's fault is armed, and the app is stopped.
    crate::in_handler::run(|| engine.container_started(pod, container("c2", "side", 102)));
    crate::in_handler::run(|| engine.container_gone("c1"));
    assert_eq!(engine.inner.after_reply.queued(), 2);
    assert_eq!(record(&engine, FaultKind::Kill).planned_unix_ms, None);

    let started = Instant::now();
    engine.shutdown(Duration::from_secs(5)).await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "waited out the grace"
    );
    // The queued stop ran and the shutdown waited for its recovery; the queued start ran its
    // stop path.
    let ops: Vec<FreezerOp> = freezer.calls().into_iter().map(|(op, _)| op).collect();
    assert_eq!(ops.last(), Some(&FreezerOp::Thaw), "{ops:?}");
    assert_eq!(
        record(&engine, FaultKind::Freeze).state,
        FaultState::Recovered
    );
    assert_eq!(record(&engine, FaultKind::Kill).state, FaultState::Stopped);
    assert!(signaller.sent().is_empty());
    assert_eq!(engine.inner.after_reply.queued(), 0);
}

/// A task a handler starts runs on the runtime the engine was made on (the fair workers), not
/// on the NRI thread's runtime that runs the handler and drains the queue after the reply.
#[test]
fn a_task_started_in_a_handler_runs_on_the_engine_runtime() {
    let workers = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("fair-worker")
        .enable_all()
        .build()
        .unwrap();
    let queue = workers.block_on(async { after_reply::AfterReply::default() });
    let (ran_on_tx, ran_on_rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("nri-thread".into())
        .spawn(move || {
            let nri = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            nri.block_on(async {
                let task = Box::pin(async move {
                    let name = std::thread::current().name().map(str::to_string);
                    ran_on_tx.send(name).unwrap();
                });
                crate::in_handler::run(|| queue.start(task));
                queue.run();
            });
        })
        .unwrap()
        .join()
        .unwrap();
    let ran_on = ran_on_rx
        .recv_timeout(Duration::from_secs(2))
        .expect("the task ran");
    assert_eq!(ran_on.as_deref(), Some("fair-worker"));
}
