use std::cell::{Cell, RefCell};
use std::fs;
use std::path::PathBuf;

use super::*;
use crate::seams::cgroup::{CgroupLayout, ContainerCgroup, FreezerLocation};

fn scripted_freeze(
    timeout: Duration,
    retry: Duration,
    frozen_after: Duration,
) -> (Result<FreezeReport, CgroupError>, Vec<FreezerState>) {
    let start = Instant::now();
    let writes = RefCell::new(Vec::new());
    let result = freeze_loop(
        Path::new("/cg/x"),
        V1_STATE,
        timeout,
        retry,
        &mut |s| {
            writes.borrow_mut().push(s);
            Ok(())
        },
        &mut || {
            Ok(if start.elapsed() >= frozen_after {
                FreezerState::Frozen
            } else {
                FreezerState::Freezing
            })
        },
        &mut || {
            // Described while still frozen: before the thaw.
            assert_eq!(writes.borrow().last(), Some(&FreezerState::Frozen));
            "; tasks: 7 sh D folio_wait_bit_common".to_string()
        },
    );
    (result, writes.into_inner())
}

#[test]
fn freeze_loop_rethaws_and_refreezes_when_stuck_freezing() {
    let (result, writes) = scripted_freeze(
        Duration::from_secs(2),
        Duration::from_millis(5),
        Duration::from_millis(30),
    );
    let report = result.unwrap();
    assert!(report.attempts >= 2, "{report:?}");
    assert!(report.elapsed >= Duration::from_millis(30));
    assert_eq!(writes[0], FreezerState::Frozen);
    // Each retry is THAWED then FROZEN.
    for pair in writes[1..].chunks(2) {
        assert_eq!(pair, [FreezerState::Thawed, FreezerState::Frozen]);
    }
    assert_eq!(writes.len() as u32, 2 * report.attempts - 1);
}

#[test]
fn freeze_loop_times_out_thawed_with_a_precise_message() {
    let (result, writes) = scripted_freeze(
        Duration::from_millis(40),
        Duration::from_millis(10),
        Duration::from_secs(3600),
    );
    let err = result.unwrap_err();
    let text = err.to_string();
    assert!(
        text.starts_with("cgroup /cg/x: freezer.state stayed FREEZING after"),
        "{text}"
    );
    assert!(
        text.ends_with("attempts to reach FROZEN); tasks: 7 sh D folio_wait_bit_common"),
        "{text}"
    );
    assert_eq!(
        writes.last(),
        Some(&FreezerState::Thawed),
        "undone on timeout"
    );
}

#[test]
fn freeze_loop_first_read_frozen_is_one_attempt() {
    let reads = Cell::new(0);
    let report = freeze_loop(
        Path::new("/cg/x"),
        V1_STATE,
        Duration::from_secs(1),
        Duration::from_millis(100),
        &mut |_| Ok(()),
        &mut || {
            reads.set(reads.get() + 1);
            Ok(FreezerState::Frozen)
        },
        &mut || unreachable!("frozen at once: no timeout to describe"),
    )
    .unwrap();
    assert_eq!(report.attempts, 1);
    assert_eq!(reads.get(), 1);
}

fn v1_fake(dir: &Path) -> ContainerCgroup {
    fs::create_dir_all(dir).unwrap();
    fs::write(dir.join("freezer.state"), "THAWED\n").unwrap();
    ContainerCgroup::from_freezer(&FreezerLocation::V1 {
        state_file: dir.join("freezer.state"),
    })
}

fn v2_fake(dir: &Path, frozen: bool) -> ContainerCgroup {
    fs::create_dir_all(dir).unwrap();
    fs::write(dir.join("cgroup.freeze"), "0\n").unwrap();
    set_events(dir, frozen);
    ContainerCgroup::from_freezer(&FreezerLocation::V2 {
        dir: dir.to_path_buf(),
    })
}

fn set_events(dir: &Path, frozen: bool) {
    fs::write(
        dir.join("cgroup.events"),
        format!("populated 1\nfrozen {}\n", u8::from(frozen)),
    )
    .unwrap();
}

fn quick() -> KernelFreezer {
    KernelFreezer {
        timeout: Duration::from_millis(50),
        retry: Duration::from_millis(10),
    }
}

#[test]
fn kernel_freezer_v1_on_a_fake_tree() {
    let t = tempfile::tempdir().unwrap();
    let cg = v1_fake(&t.path().join("freezer/pod/c"));
    let f = KernelFreezer::default();
    assert_eq!(f.state(&cg).unwrap(), FreezerState::Thawed);
    let report = f.freeze(&cg).unwrap();
    assert_eq!(report.attempts, 1);
    let file = t.path().join("freezer/pod/c/freezer.state");
    assert_eq!(fs::read_to_string(&file).unwrap(), "FROZEN");
    assert_eq!(f.state(&cg).unwrap(), FreezerState::Frozen);
    f.thaw(&cg).unwrap();
    assert_eq!(fs::read_to_string(&file).unwrap(), "THAWED");
    fs::write(&file, "MELTING").unwrap();
    let err = f.state(&cg).unwrap_err().to_string();
    assert!(err.contains("freezer.state \"MELTING\""), "{err}");
}

#[test]
fn kernel_freezer_v2_on_a_fake_tree() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("pod/c");
    let cg = v2_fake(&dir, true);
    let f = quick();
    // cgroup.freeze 0 but frozen 1 (an ancestor froze it): frozen all the same.
    assert_eq!(f.state(&cg).unwrap(), FreezerState::Frozen);
    f.freeze(&cg).unwrap();
    assert_eq!(fs::read_to_string(dir.join("cgroup.freeze")).unwrap(), "1");
    assert_eq!(f.state(&cg).unwrap(), FreezerState::Frozen);
    // The kernel never reports frozen 0: the thaw is not verified.
    let err = f.thaw(&cg).unwrap_err().to_string();
    assert!(err.contains("cgroup.events stayed FREEZING"), "{err}");
    assert!(err.contains("to reach THAWED"), "{err}");
    set_events(&dir, false);
    f.thaw(&cg).unwrap();
    assert_eq!(f.state(&cg).unwrap(), FreezerState::Thawed);
    // Never frozen: the freeze times out and is undone, naming the cgroup's threads (this
    // test's own thread stands in for the container's, read from the real /proc).
    let me = std::process::id();
    fs::write(dir.join("cgroup.threads"), format!("{me}\n")).unwrap();
    let err = f.freeze(&cg).unwrap_err();
    assert!(err.is_timeout(), "{err}");
    let text = err.to_string();
    let comm = fs::read_to_string(format!("/proc/{me}/comm")).unwrap();
    assert!(
        text.contains(&format!("; tasks: {me} {} ", comm.trim())),
        "{text}"
    );
    assert_eq!(fs::read_to_string(dir.join("cgroup.freeze")).unwrap(), "0");
    fs::write(dir.join("cgroup.events"), "populated 1\n").unwrap();
    let err = f.state(&cg).unwrap_err().to_string();
    assert!(err.contains("no 'frozen 0' or 'frozen 1' line"), "{err}");
}

#[test]
fn kernel_freezer_reports_a_vanished_cgroup() {
    let t = tempfile::tempdir().unwrap();
    let v1 = v1_fake(&t.path().join("freezer/c"));
    let v2 = v2_fake(&t.path().join("unified/c"), false);
    fs::remove_dir_all(t.path().join("freezer/c")).unwrap();
    fs::remove_dir_all(t.path().join("unified/c")).unwrap();
    let f = quick();
    for cg in [&v1, &v2] {
        assert!(f.freeze(cg).unwrap_err().is_vanished());
        assert!(f.thaw(cg).unwrap_err().is_vanished());
        assert!(f.state(cg).unwrap_err().is_vanished());
    }
    let err = f.thaw(&v1).unwrap_err().to_string();
    assert!(
        err.ends_with("freezer/c/freezer.state: no longer exists"),
        "{err}"
    );
}

#[test]
fn recording_freezer_records_tracks_and_fails_on_demand() {
    let fake = RecordingFreezer::new();
    let loc = FreezerLocation::V2 {
        dir: PathBuf::from("/cg/a"),
    };
    let cg = ContainerCgroup::from_freezer(&loc);
    assert_eq!(cg.layout, CgroupLayout::V2);
    fake.freeze(&cg).unwrap();
    assert_eq!(fake.state(&cg).unwrap(), FreezerState::Frozen);
    fake.thaw(&cg).unwrap();
    assert_eq!(fake.state_of(&loc), FreezerState::Thawed);
    assert_eq!(
        fake.calls(),
        vec![
            (FreezerOp::Freeze, loc.clone()),
            (FreezerOp::State, loc.clone()),
            (FreezerOp::Thaw, loc.clone()),
        ]
    );
    fake.fail(FreezerOp::Freeze);
    let err = fake.freeze(&cg).unwrap_err().to_string();
    assert_eq!(err, "cgroup /cg/a: injected failure of freeze");
    fake.vanish(loc.clone());
    assert!(fake.thaw(&cg).unwrap_err().is_vanished());
}

mod real_kernel;
