//! oom apply and undo over the fake process table and spawner.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::*;
use crate::faults::FakeKernel as Fakes;
use crate::faults::{Container, Fault, RecordingUndoLog, Undo};
use crate::journal::Recovery;
use crate::seams::cgroup::{CgroupLayout, ContainerCgroup};
use crate::seams::procfs::{FakeProcesses, ProcessTable, ProcfsError};

fn table() -> FakeProcesses {
    let t = FakeProcesses::new();
    t.add(10, 1000, 0);
    t.add(11, 1100, -500);
    t.add(12, 1200, 200);
    t
}

fn saved(pid: u32, start_time: u64, previous: i32) -> SavedScore {
    SavedScore {
        pid,
        start_time,
        previous,
    }
}

/// A table whose reads of one process fail once (EIO), or whose writes to it always fail.
struct Flaky {
    inner: FakeProcesses,
    pid: u32,
    read_fails_once: AtomicBool,
    write_fails: bool,
}

fn io(op: &'static str) -> ProcfsError {
    ProcfsError::Io {
        op,
        path: "/proc/12/stat".into(),
        source: std::io::Error::from_raw_os_error(libc::EIO),
    }
}

impl ProcessTable for Flaky {
    fn oom_score_adj(&self, pid: u32) -> Result<i32, ProcfsError> {
        self.inner.oom_score_adj(pid)
    }
    fn set_oom_score_adj(&self, pid: u32, value: i32) -> Result<(), ProcfsError> {
        if pid == self.pid && self.write_fails {
            return Err(io("write"));
        }
        self.inner.set_oom_score_adj(pid, value)
    }
    fn start_time(&self, pid: u32) -> Result<u64, ProcfsError> {
        if pid == self.pid && self.read_fails_once.swap(false, Ordering::SeqCst) {
            return Err(io("read"));
        }
        self.inner.start_time(pid)
    }
    fn is_alive(&self, pid: u32, start_time: u64) -> bool {
        self.inner.is_alive(pid, start_time)
    }
}

#[test]
fn raise_journals_first_then_restore() {
    let t = table();
    let mut log = RecordingUndoLog::new();
    let raised = raise_scores(&t, &[10, 11, 12, 99], 900, &mut log).unwrap();
    let all = vec![
        saved(10, 1000, 0),
        saved(11, 1100, -500),
        saved(12, 1200, 200),
    ];
    assert_eq!(raised, all);
    assert_eq!(log.live(), vec![Recovery::RestoreOomScores { saved: all }]);
    assert_eq!(t.score(11), Some(900));
    // 12 exited, 11 was reused by another process: both skipped.
    t.exit(12);
    t.add(11, 5555, 900);
    let report = restore_scores(&t, &raised).unwrap();
    assert_eq!(report.restored, vec![10]);
    assert_eq!(report.skipped, vec![11, 12]);
    assert!(report.denied.is_empty());
    assert_eq!(t.score(10), Some(0));
    assert_eq!(t.score(11), Some(900));
}

/// The defect of the first engine: every PID was raised, but only the scores that could be
/// read were saved, so the others stayed raised forever. Now what cannot be read is not
/// raised, and nothing is written when a read fails for another reason than an exit.
#[test]
fn a_process_whose_score_cannot_be_read_is_never_raised() {
    let flaky = Flaky {
        inner: table(),
        pid: 12,
        read_fails_once: AtomicBool::new(true),
        write_fails: false,
    };
    let mut log = RecordingUndoLog::new();
    let err = raise_scores(&flaky, &[10, 11, 12], 900, &mut log).unwrap_err();
    assert!(err.to_string().contains("read /proc/12/stat"), "{err}");
    assert!(flaky.inner.writes().is_empty());
    assert!(log.live().is_empty());
    // An exited process is simply left out; every process raised is journaled.
    flaky.inner.exit(11);
    let raised = raise_scores(&flaky, &[10, 11, 12], 900, &mut log).unwrap();
    let pids: Vec<u32> = raised.iter().map(|s| s.pid).collect();
    assert_eq!(pids, vec![10, 12]);
    assert_eq!(flaky.inner.writes(), vec![(10, 900), (12, 900)]);
    assert_eq!(
        log.live(),
        vec![Recovery::RestoreOomScores { saved: raised }]
    );
}

#[test]
fn a_write_failing_halfway_restores_what_was_raised_and_clears_the_journal() {
    let flaky = Flaky {
        inner: table(),
        pid: 12,
        read_fails_once: AtomicBool::new(false),
        write_fails: true,
    };
    let mut log = RecordingUndoLog::new();
    let err = raise_scores(&flaky, &[10, 11, 12], 900, &mut log).unwrap_err();
    assert!(err.to_string().contains("write /proc/12/stat"), "{err}");
    assert_eq!(flaky.inner.score(10), Some(0));
    assert_eq!(flaky.inner.score(11), Some(-500));
    assert!(log.live().is_empty());
}

#[test]
fn lowering_is_refused_before_any_write() {
    let t = table();
    let mut log = RecordingUndoLog::new();
    let err = raise_scores(&t, &[10, 12], 100, &mut log).unwrap_err();
    assert!(
        matches!(
            err,
            OomError::WouldLower {
                pid: 12,
                current: 200,
                target: 100
            }
        ),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        "process 12: oom_score_adj is 200, refusing to set 100: lowering oom_score_adj \
         needs CAP_SYS_RESOURCE (the oom fault only raises scores)"
    );
    assert!(t.writes().is_empty());
    assert!(log.live().is_empty());
}

#[test]
fn an_unjournaled_raise_writes_nothing() {
    let t = table();
    let log = RecordingUndoLog::new();
    log.fail_from(0);
    let err = raise_scores(&t, &[10], 900, &mut log.clone()).unwrap_err();
    assert!(
        err.to_string().starts_with("not applied: journal record"),
        "{err}"
    );
    assert!(t.writes().is_empty());
}

#[test]
fn eacces_on_restore_is_reported_not_fatal() {
    let t = table();
    let saved = raise_scores(&t, &[10, 11], 800, &mut RecordingUndoLog::new()).unwrap();
    // A privileged writer raised 10's minimum meanwhile: restoring 0 is refused.
    t.add(10, 1000, 800);
    let report = restore_scores(&t, &saved).unwrap();
    assert_eq!(report.restored, vec![11]);
    assert_eq!(report.denied.len(), 1);
    assert!(report.denied[0]
        .to_string()
        .contains("needs CAP_SYS_RESOURCE"));
}

#[test]
fn real_processes_raise_and_restore() {
    use crate::seams::procfs::Procfs;
    let mut child = std::process::Command::new("sleep")
        .arg("30")
        .spawn()
        .unwrap();
    let procfs = Procfs::host();
    let before = procfs.oom_score_adj(child.id()).unwrap();
    let saved = raise_scores(&procfs, &[child.id()], 1000, &mut RecordingUndoLog::new()).unwrap();
    assert_eq!(procfs.oom_score_adj(child.id()).unwrap(), 1000);
    let report = restore_scores(&procfs, &saved).unwrap();
    assert_eq!(report.restored, vec![child.id()]);
    assert_eq!(procfs.oom_score_adj(child.id()).unwrap(), before);
    child.kill().unwrap();
    child.wait().unwrap();
    let report = restore_scores(&procfs, &saved).unwrap();
    assert_eq!(report.skipped, vec![child.id()]);
}

#[test]
fn kill_plan_needs_a_limit() {
    assert!(matches!(oom_kill_plan(None), Err(OomError::NoMemoryLimit)));
    assert!(matches!(
        oom_kill_plan(Some(0)),
        Err(OomError::ZeroMemoryLimit)
    ));
    assert_eq!(oom_kill_plan(Some(256 << 20)).unwrap(), 320 << 20);
    assert_eq!(oom_kill_plan(Some(8 << 20)).unwrap(), 24 << 20);
    assert_eq!(oom_kill_plan(Some(u64::MAX)).unwrap(), u64::MAX);
    assert!(oom_kill_plan(None)
        .unwrap_err()
        .to_string()
        .contains("no memory limit"));
}

/// A container whose cgroup lists `pids` (a v2 directory in a tempdir).
fn container(dir: &std::path::Path, pids: &[u32]) -> Container {
    let list: Vec<String> = pids.iter().map(u32::to_string).collect();
    std::fs::write(dir.join("cgroup.procs"), list.join("\n")).unwrap();
    Container {
        cgroup: ContainerCgroup {
            layout: CgroupLayout::V2,
            v1: BTreeMap::new(),
            unified: Some(dir.to_path_buf()),
        },
        pid: pids[0],
        memory_limit: Some(64 << 20),
        hold: Duration::from_secs(5),
    }
}

#[test]
fn score_apply_and_recover_through_the_trait() {
    let dir = tempfile::tempdir().unwrap();
    let fakes = Fakes::new();
    fakes.procs.add(10, 1000, 0);
    fakes.procs.add(11, 1100, 300);
    let fault = OomFault {
        score: Some(700),
        kill: false,
    };
    let mut log = RecordingUndoLog::new();
    let undo = fault
        .apply(&fakes.kernel(), &container(dir.path(), &[10, 11]), &mut log)
        .unwrap();
    assert_eq!(log.live(), vec![undo.recovery().unwrap()]);
    assert_eq!(fakes.procs.score(11), Some(700));
    crate::faults::recover(&fakes.kernel(), &undo.recovery().unwrap()).unwrap();
    assert_eq!(
        (fakes.procs.score(10), fakes.procs.score(11)),
        (Some(0), Some(300))
    );
}

#[test]
fn oom_kill_raises_fills_and_restores_everything() {
    let dir = tempfile::tempdir().unwrap();
    let fakes = Fakes::new();
    fakes.procs.add(10, 1000, 0);
    fakes.procs.add(11, 1100, 0);
    let fault = OomFault {
        score: None,
        kill: true,
    };
    let target = container(dir.path(), &[10, 11]);
    let mut log = RecordingUndoLog::new();
    let undo = std::thread::scope(|s| {
        s.spawn(|| {
            // The "kernel" kills the container's init once the filler runs.
            while fakes.stressors.spawned().is_empty() {
                std::thread::sleep(Duration::from_millis(5));
            }
            assert_eq!(fakes.procs.score(10), Some(1000));
            fakes.procs.exit(10);
        });
        fault.apply(&fakes.kernel(), &target, &mut log)
    })
    .unwrap();
    assert_eq!(undo.recovery(), None);
    assert_eq!(fakes.stressors.stopped(), vec![5000]);
    assert_eq!(fakes.procs.score(11), Some(0));
    assert!(log.live().is_empty());
}
