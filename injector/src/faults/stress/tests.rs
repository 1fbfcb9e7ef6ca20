//! stress apply and undo over the recording spawner, partial failures included.

use std::collections::BTreeMap;
use std::time::Duration;

use super::*;
use crate::faults::FakeKernel as Fakes;
use crate::faults::{recover, Container, Fault, RecordingUndoLog, Undo};
use crate::journal::{ProcessId, Recovery};
use crate::seams::cgroup::{CgroupLayout, ContainerCgroup};
use crate::units::Size;

fn container() -> Container {
    Container {
        cgroup: ContainerCgroup {
            layout: CgroupLayout::V2,
            v1: BTreeMap::new(),
            unified: Some("/cg/pod/c".into()),
        },
        pid: 4242,
        memory_limit: Some(256 << 20),
        hold: Duration::from_secs(30),
    }
}

fn cpu_and_memory() -> StressFault {
    StressFault {
        cpu: Some(CpuStress {
            workers: 2,
            load: 50,
        }),
        memory: Some(MemoryStress {
            size: Size::Bytes(64 << 20),
            workers: 1,
        }),
    }
}

fn ids(pids: &[u32]) -> Vec<ProcessId> {
    pids.iter()
        .map(|&pid| ProcessId {
            pid,
            start_time: u64::from(pid) * 10,
        })
        .collect()
}

#[test]
fn apply_journals_the_stressors_and_recover_stops_them() {
    let fakes = Fakes::new();
    let mut log = RecordingUndoLog::new();
    let undo = cpu_and_memory()
        .apply(&fakes.kernel(), &container(), &mut log)
        .unwrap();
    assert_eq!(undo.processes, ids(&[5000, 5001, 5002]));
    assert_eq!(log.live(), vec![undo.recovery().unwrap()]);
    let spawned = fakes.stressors.spawned();
    assert_eq!(spawned.len(), 3);
    assert!(spawned.iter().all(|(_, spec)| spec.watch_pid == Some(4242)));
    StressFault::recover(&fakes.kernel(), undo).unwrap();
    assert_eq!(fakes.stressors.stopped(), vec![5000, 5001, 5002]);
    assert!(fakes.stressors.running().is_empty());
}

#[test]
fn a_spawn_failing_halfway_stops_what_runs_and_clears_the_journal() {
    let fakes = Fakes::new();
    fakes.stressors.fail_from(2);
    let mut log = RecordingUndoLog::new();
    let err = cpu_and_memory()
        .apply(&fakes.kernel(), &container(), &mut log)
        .unwrap_err();
    assert!(
        err.to_string()
            .starts_with("starting stressors: spawning fake-stressor"),
        "{err}"
    );
    assert_eq!(fakes.stressors.stopped(), vec![5000, 5001]);
    assert!(log.live().is_empty());
}

#[test]
fn a_failed_stop_after_a_failed_spawn_is_returned_and_stays_journaled() {
    let fakes = Fakes::new();
    fakes.stressors.fail_from(1);
    fakes.stressors.fail_stops();
    let mut log = RecordingUndoLog::new();
    let err = cpu_and_memory()
        .apply(&fakes.kernel(), &container(), &mut log)
        .unwrap_err();
    assert!(err.to_string().contains("kept in the journal"), "{err}");
    assert_eq!(log.live().len(), 1);
}

#[test]
fn an_unjournaled_pid_list_stops_the_stressors() {
    let fakes = Fakes::new();
    let log = RecordingUndoLog::new();
    log.fail_from(1);
    let err = cpu_and_memory()
        .apply(&fakes.kernel(), &container(), &mut log.clone())
        .unwrap_err();
    assert!(
        err.to_string().starts_with("not applied: journal update"),
        "{err}"
    );
    assert_eq!(fakes.stressors.stopped(), vec![5000, 5001, 5002]);
    assert!(log.live().is_empty());
}

#[test]
fn a_percentage_needs_a_limit() {
    let fakes = Fakes::new();
    let fault = StressFault {
        cpu: None,
        memory: Some(MemoryStress {
            size: Size::PercentOfLimit(50.0),
            workers: 1,
        }),
    };
    let target = Container {
        memory_limit: None,
        ..container()
    };
    let err = fault
        .apply(&fakes.kernel(), &target, &mut RecordingUndoLog::new())
        .unwrap_err();
    assert!(matches!(err, StressError::PercentWithoutLimit), "{err}");
    assert!(fakes.stressors.spawned().is_empty());
}

#[test]
fn journaled_stressors_are_killed_only_if_still_the_same() {
    let fakes = Fakes::new();
    fakes.procs.add(7000, 70_000, 0);
    fakes.procs.add(7001, 99, 0);
    let recovery = Recovery::KillStressors {
        processes: ids(&[7000, 7001, 7002]),
    };
    recover(&fakes.kernel(), &recovery).unwrap();
    // 7001 is another process now, 7002 exited: only 7000 gets SIGKILL.
    let sent: Vec<u32> = fakes.signaller.sent().into_iter().map(|(p, _)| p).collect();
    assert_eq!(sent, vec![7000]);
}
