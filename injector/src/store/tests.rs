use std::fs;
use std::path::Path;

use super::log::{read_log, LogProblem};
use super::*;
use crate::annotations::FaultKind;
use crate::faults::oom::SavedScore;
use crate::journal::{JournalEntry, ProcessId, Recovery};
use crate::schedule::FiringLedger;
use crate::seams::cgroup::FreezerLocation;

/// An entry as the previous version wrote it (its JSON field names are the format).
fn entry(id: &str, at: u64, recovery: Recovery) -> JournalEntry {
    serde_json::from_value(serde_json::json!({
        "id": id,
        "pod": "default/web",
        "pod_uid": "0b1f-uid",
        "container_id": "c0ffee",
        "container_name": "app",
        "kind": "freeze",
        "applied_at_unix_ms": at,
        "deadline_unix_ms": at + 20_000,
        "recovery": recovery,
        "source": "freeze.nri-chaos.io/container.app",
        "value": "{duration: 20s}",
    }))
    .unwrap()
}

fn thaw() -> Recovery {
    Recovery::Thaw {
        freezer: FreezerLocation::V1 {
            state_file: "/sys/fs/cgroup/freezer/kubepods/pod1/c0ffee/freezer.state".into(),
        },
    }
}

fn every_recovery() -> Vec<JournalEntry> {
    let mut stress = entry(
        "a-2",
        3000,
        Recovery::KillStressors {
            processes: vec![ProcessId {
                pid: 42,
                start_time: 777,
            }],
        },
    );
    stress.kind = FaultKind::Stress;
    stress.deadline_unix_ms = None;
    let mut oom = entry(
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
    oom.kind = FaultKind::Oom;
    let mut netem = entry(
        "d-4",
        4000,
        Recovery::RemoveNetem {
            netns: "/var/run/netns/cni-1".into(),
            interfaces: Vec::new(),
        },
    );
    netem.kind = FaultKind::Netem;
    vec![entry("b-1", 2000, thaw()), stress, oom, netem]
}

fn kill(uid: &str, container: &str) -> FaultKey {
    FaultKey::of(FaultKind::Kill, uid, container)
}

fn netem(uid: &str) -> FaultKey {
    FaultKey::of(FaultKind::Netem, uid, "")
}

/// Appends records the way the writer does: one write, one fsync.
fn append(file: &mut StoreFile, records: &[Record]) {
    file.append(&encode(records).unwrap(), records.len())
        .unwrap();
    file.sync().unwrap();
}

fn log_bytes(dir: &Path) -> Vec<u8> {
    fs::read(dir.join(LOG_NAME)).unwrap()
}

#[test]
fn round_trip_of_counts_and_every_recovery() {
    let t = tempfile::tempdir().unwrap();
    let opened = StoreFile::open(t.path()).unwrap();
    assert!(opened.state.is_empty() && opened.problems.is_empty());
    let mut file = opened.file;
    let entries = every_recovery();
    let mut records: Vec<Record> = entries
        .iter()
        .map(|e| Record::Journal { entry: e.clone() })
        .collect();
    records.push(Record::Fired {
        key: (&kill("uid-1", "app")).into(),
        count: 2,
    });
    records.push(Record::Fired {
        key: (&netem("uid-1")).into(),
        count: 1,
    });
    append(&mut file, &records);
    drop(file);

    let (state, problems) = read_state(t.path()).unwrap();
    assert!(problems.is_empty(), "{problems:?}");
    let mut by_time = entries.clone();
    by_time.sort_by_key(|e| e.applied_at_unix_ms);
    assert_eq!(state.journal_entries(), by_time);
    assert_eq!(state.firings.get(&kill("uid-1", "app")), Some(&2));
    assert_eq!(state.firings.get(&netem("uid-1")), Some(&1));

    // The lines are checksummed JSON, readable with standard tools.
    let text = String::from_utf8(log_bytes(t.path())).unwrap();
    let fired = text.lines().find(|l| l.contains("\"fired\"")).unwrap();
    let json: serde_json::Value = serde_json::from_str(&fired[9..]).unwrap();
    assert_eq!(
        json,
        serde_json::json!({"t": "fired", "key": {"pod_uid": "uid-1", "container": "app", "kind": "kill"}, "count": 2})
    );
    let pod: serde_json::Value = serde_json::from_str(
        &text
            .lines()
            .filter(|l| l.contains("\"fired\""))
            .nth(1)
            .unwrap()[9..],
    )
    .unwrap();
    assert_eq!(
        pod["key"],
        serde_json::json!({"pod_uid": "uid-1", "kind": "netem"})
    );

    // Reopening compacts to a snapshot holding the same state.
    let opened = StoreFile::open(t.path()).unwrap();
    assert_eq!(opened.state, state);
    assert_eq!(opened.file.records(), 1 + state.len());
    assert!(log_bytes(t.path()).starts_with(b""));
    let first = read_log(&log_bytes(t.path())).records.remove(0);
    assert_eq!(first, Record::Header { version: 1 });
}

#[test]
fn later_records_replace_and_clear_and_forget() {
    let t = tempfile::tempdir().unwrap();
    let mut file = StoreFile::open(t.path()).unwrap().file;
    let mut e = entry("f-1", 1, thaw());
    append(&mut file, &[Record::Journal { entry: e.clone() }]);
    e.deadline_unix_ms = Some(99);
    let other_pod = kill("uid-2", "app");
    append(
        &mut file,
        &[
            Record::Journal { entry: e.clone() },
            Record::Journal {
                entry: entry("g-2", 2, thaw()),
            },
            Record::Clear { id: "g-2".into() },
            Record::Fired {
                key: (&kill("uid-1", "app")).into(),
                count: 1,
            },
            Record::Fired {
                key: (&kill("uid-1#ctl", "app")).into(),
                count: 4,
            },
            Record::Fired {
                key: (&other_pod).into(),
                count: 3,
            },
            Record::ForgetPod {
                pod_uid: "uid-1".into(),
            },
        ],
    );
    let (state, _) = read_state(t.path()).unwrap();
    assert_eq!(state.journal_entries(), vec![e]);
    assert_eq!(
        state.firings.into_iter().collect::<Vec<_>>(),
        vec![(other_pod, 3)],
        "the pod's counts, injected ones included, are forgotten"
    );
}

#[test]
fn a_torn_last_record_is_dropped_and_reported() {
    let t = tempfile::tempdir().unwrap();
    let mut file = StoreFile::open(t.path()).unwrap().file;
    append(
        &mut file,
        &[Record::Fired {
            key: (&kill("uid-1", "app")).into(),
            count: 1,
        }],
    );
    let good_len = log_bytes(t.path()).len();
    // A crash in the middle of the next write: only part of the line reached the disk.
    let next = encode(&[Record::Fired {
        key: (&kill("uid-1", "app")).into(),
        count: 2,
    }])
    .unwrap();
    file.append(&next[..next.len() / 2], 1).unwrap();
    drop(file);

    let (state, problems) = read_state(t.path()).unwrap();
    assert_eq!(state.firings.get(&kill("uid-1", "app")), Some(&1));
    let lines = String::from_utf8_lossy(&log_bytes(t.path()))
        .lines()
        .count();
    assert_eq!(
        problems,
        vec![StoreProblem::Log(LogProblem::TornTail {
            line: lines,
            offset: good_len,
            len: next.len() / 2,
        })]
    );
    assert!(problems[0].to_string().contains("cut short by a crash"));

    // Opening keeps the damaged log aside and starts a clean one; new records are readable.
    let mut file = StoreFile::open(t.path()).unwrap().file;
    append(
        &mut file,
        &[Record::Fired {
            key: (&kill("uid-1", "app")).into(),
            count: 2,
        }],
    );
    let (state, problems) = read_state(t.path()).unwrap();
    assert!(problems.is_empty(), "{problems:?}");
    assert_eq!(state.firings.get(&kill("uid-1", "app")), Some(&2));
    let aside: Vec<String> = fs::read_dir(t.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with("store.log.damaged-"))
        .collect();
    assert_eq!(aside.len(), 1, "{aside:?}");
}

#[test]
fn a_corrupt_record_in_the_middle_is_skipped_with_its_position() {
    let records = [
        Record::Fired {
            key: (&kill("uid-1", "app")).into(),
            count: 1,
        },
        Record::Fired {
            key: (&kill("uid-2", "app")).into(),
            count: 5,
        },
        Record::Journal {
            entry: entry("h-1", 1, thaw()),
        },
    ];
    let mut bytes = encode(&records).unwrap();
    let first_len = bytes.iter().position(|&b| b == b'\n').unwrap() + 1;
    // One digit of the second record flips on disk: "count":5 becomes "count":7.
    let at = bytes.windows(9).position(|w| w == b"\"count\":5").unwrap() + 8;
    bytes[at] = b'7';
    // And a line of garbage before the last record.
    let garbage_at = bytes[..bytes.len() - 1]
        .iter()
        .rposition(|&b| b == b'\n')
        .unwrap()
        + 1;
    let mut damaged = bytes[..garbage_at].to_vec();
    damaged.extend_from_slice(b"\0\0\0 not a record\n");
    damaged.extend_from_slice(&bytes[garbage_at..]);

    let read = read_log(&damaged);
    // The records before and after the damage are kept.
    assert_eq!(read.records, vec![records[0].clone(), records[2].clone()]);
    assert_eq!(read.problems.len(), 2, "{:?}", read.problems);
    match &read.problems[0] {
        LogProblem::Corrupt {
            line,
            offset,
            reason,
        } => {
            assert_eq!((*line, *offset), (2, first_len));
            assert!(reason.contains("checksum mismatch"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        &read.problems[1],
        LogProblem::Corrupt { line: 3, offset, .. } if *offset == garbage_at
    ));
    assert!(read.problems[1]
        .to_string()
        .starts_with("store log: line 3 (byte "));
}

#[test]
fn the_previous_versions_ledger_and_journal_are_folded_in_once() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path();
    fs::write(
        dir.join(migrate::OLD_LEDGER),
        "# nri-chaos firing ledger v1: <pod-uid> <container> <fault> <count>\n\
         0b7e5c1e app kill 1\n\
         0b7e5c1e % netem 2\n\
         0b7e5c1e db netem 1\n\
         0b7e5c1e#ctl app freeze 3\n\
         odd%20uid%25 c%09x oom 1\n\
         pod app kil 1\n",
    )
    .unwrap();
    let journal = dir.join(migrate::OLD_JOURNAL);
    fs::create_dir(&journal).unwrap();
    let old = every_recovery();
    for e in &old {
        fs::write(
            journal.join(format!("{}.json", e.id)),
            serde_json::to_vec_pretty(e).unwrap(),
        )
        .unwrap();
    }
    fs::write(journal.join(".x-9.json.0.tmp"), "{\"id\": \"x-9\", \"po").unwrap();
    fs::write(journal.join("garbage.json"), "{not json").unwrap();

    let opened = StoreFile::open(dir).unwrap();
    let mut expected = old.clone();
    expected.sort_by_key(|e| e.applied_at_unix_ms);
    assert_eq!(opened.state.journal_entries(), expected);
    let firings: Vec<(FaultKey, u32)> = opened.state.firings.clone().into_iter().collect();
    let mut want = vec![
        (kill("0b7e5c1e", "app"), 1),
        (netem("0b7e5c1e"), 2),
        (FaultKey::of(FaultKind::Freeze, "0b7e5c1e#ctl", "app"), 3),
        (FaultKey::of(FaultKind::Oom, "odd uid%", "c\tx"), 1),
    ];
    want.sort();
    assert_eq!(
        firings, want,
        "netem keyed per container before is the pod's now"
    );
    let texts: Vec<String> = opened.problems.iter().map(ToString::to_string).collect();
    assert_eq!(texts.len(), 2, "{texts:?}");
    assert!(texts[0].ends_with("firings.ledger line 7: unknown fault kind \"kil\" (known: kill, freeze, netem, stress, oom, start, exec, partition, bandwidth)"), "{}", texts[0]);
    assert!(
        texts[1].contains("garbage.json line 0: key must be a string"),
        "{}",
        texts[1]
    );

    // Migrated files are gone (the bad one stays for inspection); the store holds it all.
    assert!(!dir.join(migrate::OLD_LEDGER).exists());
    let left: Vec<String> = fs::read_dir(&journal)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(left, ["garbage.json"]);
    drop(opened);
    let (state, _) = read_state(dir).unwrap();
    assert_eq!(state.journal.len(), old.len());
    assert_eq!(state.firings.len(), 4);

    // Without leftovers the journal directory itself goes.
    fs::remove_file(journal.join("garbage.json")).unwrap();
    fs::write(
        journal.join("z-1.json"),
        serde_json::to_vec(&entry("z-1", 9, thaw())).unwrap(),
    )
    .unwrap();
    let opened = StoreFile::open(dir).unwrap();
    assert!(opened.problems.is_empty());
    assert_eq!(opened.state.journal.len(), old.len() + 1);
    assert!(!journal.exists());
}

#[test]
fn ledger_changes_become_records_in_order() {
    let ledger = FiringLedger::new().track_changes(|| {});
    let app = kill("uid-1", "app");
    ledger.claim(&app, None);
    ledger.claim(kill("uid-1#ctl", "app"), None);
    ledger.claim(&app, None);
    ledger.forget_pod("uid-1");
    ledger.claim(&app, None);
    let records: Vec<Record> = ledger.take_changes().into_iter().map(Into::into).collect();
    let mut state = StoreState::default();
    records.iter().cloned().for_each(|r| state.apply(r));
    assert_eq!(
        state.firings.into_iter().collect::<Vec<_>>(),
        vec![(app.clone(), 1)]
    );
    assert_eq!(
        records
            .iter()
            .filter(
                |r| matches!(r, Record::Fired { key, .. } if FaultKey::from(key.clone()) == app)
            )
            .count(),
        1,
        "one record per key and batch: {records:?}"
    );
    assert!(ledger.take_changes().is_empty());
}

/// A crash can cut the log at any byte: whatever the cut, loading never fails, and gives
/// exactly the records written whole before it (at most the last one torn).
#[test]
fn a_cut_at_any_byte_loads_the_records_before_it() {
    let batches: Vec<Vec<Record>> = vec![
        vec![Record::Journal {
            entry: entry("k-1", 1, thaw()),
        }],
        vec![
            Record::Fired {
                key: (&kill("uid-1", "app")).into(),
                count: 1,
            },
            Record::Clear { id: "k-1".into() },
        ],
        vec![Record::ForgetPod {
            pod_uid: "uid-1".into(),
        }],
    ];
    let records: Vec<Record> = batches.concat();
    let bytes = encode(&records).unwrap();
    let ends: Vec<usize> = bytes
        .iter()
        .enumerate()
        .filter(|(_, &b)| b == b'\n')
        .map(|(i, _)| i + 1)
        .collect();
    let t = tempfile::tempdir().unwrap();
    for cut in 0..=bytes.len() {
        fs::write(t.path().join(LOG_NAME), &bytes[..cut]).unwrap();
        let (state, problems) = read_state(t.path()).unwrap();
        let whole = ends.iter().filter(|&&end| end <= cut).count();
        let mut expected = StoreState::default();
        records[..whole]
            .iter()
            .cloned()
            .for_each(|r| expected.apply(r));
        assert_eq!(state, expected, "cut at byte {cut}");
        let torn = ends.get(whole.wrapping_sub(1)).copied().unwrap_or(0) != cut;
        assert_eq!(
            problems.len(),
            usize::from(torn),
            "cut at byte {cut}: {problems:?}"
        );
    }
}
