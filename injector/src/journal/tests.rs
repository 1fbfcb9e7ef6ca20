use std::os::unix::process::ExitStatusExt;

use super::*;
use crate::faults::kill::Signal;
use crate::seams::procfs::{FakeProcesses, Procfs};
use crate::seams::signal::{PidfdSignaller, RecordingSignaller};

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
