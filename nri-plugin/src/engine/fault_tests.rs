//! Faults through the engine against fakes: what a firing leaves behind once it ends.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use injector::seams::cgroup::{CgroupFs, RecordingFreezer};
use injector::seams::procfs::{FakeProcesses, ProcessTable, ProcfsError};
use injector::seams::signal::RecordingSignaller;
use injector::Policy;

use super::*;

/// A process table whose next read of one process fails (EIO) once.
struct ReadFailsOnce {
    inner: FakeProcesses,
    pid: u32,
    armed: AtomicBool,
}

impl ProcessTable for ReadFailsOnce {
    fn oom_score_adj(&self, pid: u32) -> Result<i32, ProcfsError> {
        self.inner.oom_score_adj(pid)
    }
    fn set_oom_score_adj(&self, pid: u32, value: i32) -> Result<(), ProcfsError> {
        self.inner.set_oom_score_adj(pid, value)
    }
    fn start_time(&self, pid: u32) -> Result<u64, ProcfsError> {
        if pid == self.pid && self.armed.swap(false, Ordering::SeqCst) {
            return Err(ProcfsError::Io {
                op: "read",
                path: format!("/proc/{pid}/stat").into(),
                source: std::io::Error::other("injected EIO"),
            });
        }
        self.inner.start_time(pid)
    }
    fn is_alive(&self, pid: u32, start_time: u64) -> bool {
        self.inner.is_alive(pid, start_time)
    }
}

/// A v2 cgroup tree in `dir` holding container `pids` (the first is its init).
fn cgroup_tree(dir: &std::path::Path, pids: &[u32]) {
    let cg = dir.join("cgroup");
    std::fs::create_dir_all(cg.join("pod/c")).unwrap();
    std::fs::write(cg.join("cgroup.controllers"), "cpu memory").unwrap();
    let list: Vec<String> = pids.iter().map(u32::to_string).collect();
    std::fs::write(cg.join("pod/c/cgroup.procs"), list.join("\n")).unwrap();
    let proc_dir = dir.join("proc").join(pids[0].to_string());
    std::fs::create_dir_all(&proc_dir).unwrap();
    std::fs::write(proc_dir.join("cgroup"), "0::/pod/c\n").unwrap();
}

/// The first engine raised every process of the container but journaled only the scores it
/// could read: a process whose read failed once was raised anyway and never restored. Now no
/// process is left raised once the fault ends.
#[tokio::test]
async fn an_oom_score_fault_leaves_no_process_raised() {
    let dir = tempfile::tempdir().unwrap();
    cgroup_tree(dir.path(), &[101, 102, 103]);
    let table = Arc::new(ReadFailsOnce {
        inner: FakeProcesses::new(),
        pid: 103,
        armed: AtomicBool::new(true),
    });
    for pid in [101, 102, 103] {
        table.inner.add(pid, u64::from(pid) * 10, 0);
    }
    let seams = Seams {
        signaller: Arc::new(RecordingSignaller::new()),
        freezer: Arc::new(RecordingFreezer::new()),
        procs: table.clone(),
        cgroups: CgroupFs::new(dir.path().join("cgroup")),
        proc_root: dir.path().join("proc"),
        netlink: Arc::new(injector::seams::netlink::RecordingNetlink::new()),
        stressors: Arc::new(injector::seams::stressors::RecordingSpawner::new()),
    };
    let engine = Engine::new(Policy::default(), seams, dir.path()).unwrap();
    let pod = super::tests::pod(Some((
        "oom.nri-chaos.io/container.app",
        "{score: 900, duration: 200ms}",
    )));
    let app = |pid| ContainerInfo {
        id: "c1".into(),
        pod_sandbox_id: "sandbox-1".into(),
        name: "app".into(),
        pid,
        memory_limit: None,
        running: true,
    };
    engine.create_container(pod.clone(), app(0)).unwrap();
    engine.container_started(pod, app(101));
    tokio::time::sleep(Duration::from_millis(800)).await;
    let scores: Vec<Option<i32>> = [101, 102, 103]
        .iter()
        .map(|&pid| table.inner.score(pid))
        .collect();
    assert_eq!(
        scores,
        vec![Some(0); 3],
        "writes: {:?}",
        table.inner.writes()
    );
    // It did run, and stopped before writing: the unreadable process is named.
    let (faults, _) = engine.registry().snapshot();
    assert_eq!(faults.len(), 1, "{faults:?}");
    assert!(faults[0].error.contains("/proc/103/stat"), "{faults:?}");
    assert!(table.inner.writes().is_empty());
    engine.shutdown(Duration::from_secs(1)).await;
}
