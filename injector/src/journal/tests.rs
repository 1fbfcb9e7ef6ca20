use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;

use super::*;
use crate::faults::kill::Signal;
use crate::seams::procfs::{FakeProcesses, Procfs};
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

fn files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

#[test]
fn round_trip_of_every_recovery() {
    let t = tempfile::tempdir().unwrap();
    let j = Journal::open(t.path().join("state/journal")).unwrap();
    let mode = fs::metadata(j.dir()).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700);
    let a = entry("b-1", 2000, thaw_v1());
    let mut b = entry(
        "a-2",
        3000,
        Recovery::KillStressors {
            processes: vec![ProcessId {
                pid: 42,
                start_time: 777,
            }],
        },
    );
    b.kind = FaultKind::Stress;
    b.deadline_unix_ms = None;
    let mut c = entry(
        "c-3",
        1000,
        Recovery::RestoreOomScores {
            saved: vec![SavedScore {
                pid: 7,
                start_time: 70,
                previous: -998,
            }],
        },
    );
    c.kind = FaultKind::Oom;
    for e in [&a, &b, &c] {
        j.record(e).unwrap();
    }
    let (loaded, errors) = j.load();
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(loaded, vec![c.clone(), a.clone(), b.clone()]);
    assert_eq!(files(j.dir()), ["a-2.json", "b-1.json", "c-3.json"]);

    let json: serde_json::Value =
        serde_json::from_slice(&fs::read(j.path_of("b-1")).unwrap()).unwrap();
    assert_eq!(json["kind"], "freeze");
    assert_eq!(json["recovery"]["action"], "thaw");
    assert_eq!(json["recovery"]["freezer"]["version"], "v1");
    let json: serde_json::Value =
        serde_json::from_slice(&fs::read(j.path_of("c-3")).unwrap()).unwrap();
    assert_eq!(json["recovery"]["action"], "restore_oom_scores");
    assert_eq!(json["recovery"]["saved"][0]["previous"], -998);

    // Reopening an existing directory with loose permissions tightens them.
    fs::set_permissions(j.dir(), fs::Permissions::from_mode(0o755)).unwrap();
    let j = Journal::open(j.dir()).unwrap();
    assert_eq!(
        fs::metadata(j.dir()).unwrap().permissions().mode() & 0o777,
        0o700
    );
}

#[test]
fn update_replaces_and_clear_removes() {
    let t = tempfile::tempdir().unwrap();
    let j = Journal::open(t.path()).unwrap();
    let mut e = entry("f-1", 1, thaw_v1());
    j.record(&e).unwrap();
    e.deadline_unix_ms = Some(99);
    j.update(&e).unwrap();
    assert_eq!(files(t.path()), ["f-1.json"], "no temp file left behind");
    assert_eq!(j.load().0, vec![e]);
    assert_eq!(j.count(), 1);
    j.clear("f-1").unwrap();
    j.clear("f-1").unwrap();
    assert!(files(t.path()).is_empty());
    assert_eq!(j.count(), 0);
    for bad in ["", "../etc/passwd", ".hidden", "a b"] {
        let err = j.clear(bad).unwrap_err();
        assert!(
            matches!(err, JournalError::InvalidId { .. }),
            "{bad}: {err}"
        );
        assert!(j.record(&entry(bad, 1, thaw_v1())).is_err());
    }
}

#[test]
fn temp_files_are_ignored_at_load_and_removed_at_open() {
    let t = tempfile::tempdir().unwrap();
    let j = Journal::open(t.path()).unwrap();
    j.record(&entry("ok-1", 1, thaw_v1())).unwrap();
    // A crash between write and rename leaves a temp file (maybe half written).
    fs::write(t.path().join(".ok-2.json.0.tmp"), "{\"id\": \"ok-2\", \"po").unwrap();
    fs::write(t.path().join("README"), "not an entry").unwrap();
    let (loaded, errors) = j.load();
    assert_eq!(loaded.len(), 1);
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(j.count(), 1, "temp files and other names are not entries");
    Journal::open(t.path()).unwrap();
    assert_eq!(files(t.path()), ["README", "ok-1.json"]);
}

#[test]
fn corrupt_files_are_reported_and_moved_aside() {
    let t = tempfile::tempdir().unwrap();
    let j = Journal::open(t.path()).unwrap();
    j.record(&entry("good", 1, thaw_v1())).unwrap();
    fs::write(t.path().join("garbage.json"), "{not json").unwrap();
    let mut wrong_kind = serde_json::to_value(entry("kind", 1, thaw_v1())).unwrap();
    wrong_kind["kind"] = "explode".into();
    fs::write(t.path().join("kind.json"), wrong_kind.to_string()).unwrap();
    let other = serde_json::to_string(&entry("other", 1, thaw_v1())).unwrap();
    fs::write(t.path().join("renamed.json"), other).unwrap();

    let (loaded, errors) = j.load();
    assert_eq!(loaded.len(), 1);
    assert_eq!(loaded[0].id, "good");
    let texts: Vec<String> = errors.iter().map(ToString::to_string).collect();
    assert_eq!(texts.len(), 3, "{texts:?}");
    assert!(
        texts[0].contains("garbage.json: key must be a string"),
        "{}",
        texts[0]
    );
    assert!(texts[0].ends_with("garbage.json.corrupt)"), "{}", texts[0]);
    assert!(
        texts[1].contains("kind.json: unknown fault kind \"explode\""),
        "{}",
        texts[1]
    );
    assert!(
        texts[2].contains("renamed.json: holds fault id \"other\", not \"renamed\""),
        "{}",
        texts[2]
    );
    assert_eq!(
        files(t.path()),
        [
            "garbage.json.corrupt",
            "good.json",
            "kind.json.corrupt",
            "renamed.json.corrupt"
        ]
    );
    let (loaded, errors) = j.load();
    assert_eq!(loaded.len(), 1);
    assert!(errors.is_empty());
}

#[test]
fn fault_ids_are_unique_and_valid() {
    let mut ids: Vec<String> = (0..1000).map(|_| new_fault_id()).collect();
    for id in &ids {
        check_id(id).unwrap();
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
