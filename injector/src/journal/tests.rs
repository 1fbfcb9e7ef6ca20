use std::cell::RefCell;
use std::os::unix::process::ExitStatusExt;

use super::*;
use crate::faults::kill::Signal;
use crate::seams::cgroup::freezer::FreezerOp;
use crate::seams::cgroup::{FreezerState, RecordingFreezer};
use crate::seams::procfs::{FakeProcesses, Procfs};
use crate::seams::signal::SignalError;
use crate::seams::signal::{PidfdSignaller, RecordingSignaller};

fn entry(id: &str, at: u64, recovery: Recovery) -> JournalEntry {
    JournalEntry {
        id: id.to_string(),
        pod: "default/web".to_string(),
        pod_uid: "0b1f-uid".to_string(),
        container_id: "c0ffee".to_string(),
        container_name: "app".to_string(),
        kind: FaultKind::Freeze,
        applied_at_unix_ms: at,
        deadline_unix_ms: Some(at + 20_000),
        recovery,
        source: String::new(),
        value: String::new(),
    }
}

fn thaw_v1() -> Recovery {
    Recovery::Thaw {
        freezer: FreezerLocation::V1 {
            state_file: "/sys/fs/cgroup/freezer/kubepods/pod1/c0ffee/freezer.state".into(),
        },
    }
}

#[test]
fn fault_ids_are_unique_and_valid() {
    let mut ids: Vec<String> = (0..1000).map(|_| new_fault_id()).collect();
    for id in &ids {
        assert!(id.bytes().all(|b| b.is_ascii_digit() || b == b'-'), "{id}");
    }
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 1000);
}

fn no_stop(_: u32, _: u64) -> Result<(), SignalError> {
    panic!("nothing to stop")
}

#[test]
fn recover_thaw_from_the_entry_alone() {
    let freezer = RecordingFreezer::new();
    let procs = FakeProcesses::new();
    let e = entry("t-1", 1, thaw_v1());
    let Recovery::Thaw { freezer: loc } = &e.recovery else {
        unreachable!()
    };
    recover_entry(&e, &freezer, &procs, &no_stop).unwrap();
    assert_eq!(freezer.calls(), vec![(FreezerOp::Thaw, loc.clone())]);
    assert_eq!(freezer.state_of(loc), FreezerState::Thawed);
    freezer.fail(FreezerOp::Thaw);
    let err = recover_entry(&e, &freezer, &procs, &no_stop)
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        "fault t-1: thaw: cgroup /sys/fs/cgroup/freezer/kubepods/pod1/c0ffee: injected failure of thaw"
    );
    freezer.vanish(loc.clone());
    recover_entry(&e, &freezer, &procs, &no_stop).unwrap();
}

#[test]
fn recover_kills_only_the_same_processes() {
    let procs = FakeProcesses::new();
    procs.add(10, 100, 0);
    procs.add(11, 999, 0); // PID 11 reused by another process
    let e = entry(
        "k-1",
        1,
        Recovery::KillStressors {
            processes: vec![
                ProcessId {
                    pid: 10,
                    start_time: 100,
                },
                ProcessId {
                    pid: 11,
                    start_time: 110,
                },
                ProcessId {
                    pid: 12,
                    start_time: 120,
                }, // exited
            ],
        },
    );
    let stopped = RefCell::new(Vec::new());
    let stop = |pid: u32, start: u64| -> Result<(), SignalError> {
        stopped.borrow_mut().push((pid, start));
        Ok(())
    };
    recover_entry(&e, &RecordingFreezer::new(), &procs, &stop).unwrap();
    assert_eq!(stopped.into_inner(), vec![(10, 100)]);

    let exited = |pid: u32, _: u64| Err(SignalError::Exited { pid });
    recover_entry(&e, &RecordingFreezer::new(), &procs, &exited).unwrap();
    let denied = |pid: u32, _: u64| Err(SignalError::PermissionDenied { pid });
    let err = recover_entry(&e, &RecordingFreezer::new(), &procs, &denied)
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        "fault k-1: stopping stressors: process 10: not permitted to signal process 10"
    );
}

#[test]
fn recover_restores_scores_and_tolerates_eacces() {
    let procs = FakeProcesses::new();
    procs.add(7, 70, 0);
    procs.add(8, 80, 0);
    let saved = crate::faults::oom::raise_scores(&procs, &[7, 8], 1000).unwrap();
    procs.add(8, 80, 1000); // minimum raised meanwhile: restoring 0 gets EACCES
    let e = entry("o-1", 1, Recovery::RestoreOomScores { saved });
    recover_entry(&e, &RecordingFreezer::new(), &procs, &no_stop).unwrap();
    assert_eq!(procs.score(7), Some(0));
    assert_eq!(procs.score(8), Some(1000));
}

#[test]
fn kill_if_same_checks_identity_after_pinning() {
    let signaller = RecordingSignaller::new();
    let procs = FakeProcesses::new();
    procs.add(10, 100, 0);
    assert!(kill_if_same(&signaller, &procs, 10, 100).unwrap());
    assert!(!kill_if_same(&signaller, &procs, 10, 101).unwrap());
    signaller.mark_exited(10);
    assert!(!kill_if_same(&signaller, &procs, 10, 100).unwrap());
    assert_eq!(signaller.sent(), vec![(10, Signal::KILL)]);
}

#[test]
fn kill_if_same_on_a_real_child() {
    let mut child = std::process::Command::new("sleep")
        .arg("30")
        .spawn()
        .unwrap();
    let procfs = Procfs::host();
    let pid = child.id();
    let start = procfs.start_time(pid).unwrap();
    assert!(!kill_if_same(&PidfdSignaller, &procfs, pid, start + 1).unwrap());
    assert!(
        procfs.is_alive(pid, start),
        "a mismatched start time must not be killed"
    );
    assert!(kill_if_same(&PidfdSignaller, &procfs, pid, start).unwrap());
    assert_eq!(child.wait().unwrap().signal(), Some(libc::SIGKILL));
    assert!(!kill_if_same(&PidfdSignaller, &procfs, pid, start).unwrap());
}
