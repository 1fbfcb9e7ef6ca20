//! Real-kernel freezer tests: they create private cgroups under `/sys/fs/cgroup` and need root
//! (CI runs as root; without root they fail, saying so).

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use crate::seams::cgroup::{
    resolve_from_proc, CgroupFs, ContainerCgroup, Freezer, FreezerLocation, FreezerState,
    KernelFreezer,
};
use crate::seams::procfs::Procfs;

static COUNTER: AtomicU32 = AtomicU32::new(0);

fn require_root() {
    assert!(
        rustix::process::geteuid().is_root(),
        "this test needs root: it creates cgroups under /sys/fs/cgroup and moves a child into \
         them (run the test suite as root, as CI does)"
    );
}

/// A busy child in private cgroups; dropping it thaws, kills, reaps and removes the cgroups.
struct Sandbox {
    child: Child,
    dirs: Vec<PathBuf>,
}

impl Sandbox {
    /// Creates `<root>/<hierarchy>/nri-chaos-unit-<pid>-<n>` for every hierarchy and moves a
    /// `while :; do :; done` shell into all of them.
    fn new(hierarchies: &[&str]) -> Sandbox {
        require_root();
        let name = format!(
            "nri-chaos-unit-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        );
        let child = Command::new("sh")
            .args(["-c", "while :; do :; done"])
            .spawn()
            .unwrap();
        let mut sandbox = Sandbox {
            child,
            dirs: Vec::new(),
        };
        for h in hierarchies {
            let dir = Path::new("/sys/fs/cgroup").join(h).join(&name);
            std::fs::create_dir(&dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
            sandbox.dirs.push(dir.clone());
            std::fs::write(dir.join("cgroup.procs"), sandbox.child.id().to_string())
                .unwrap_or_else(|e| panic!("move child into {}: {e}", dir.display()));
        }
        sandbox
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        for dir in &self.dirs {
            let _ = std::fs::write(dir.join("freezer.state"), "THAWED");
            let _ = std::fs::write(dir.join("cgroup.freeze"), "0");
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        for dir in &self.dirs {
            for _ in 0..100 {
                if std::fs::remove_dir(dir).is_ok() || !dir.exists() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

/// User + system CPU ticks of `pid`.
fn ticks(pid: u32) -> u64 {
    let s = Procfs::host().stat(pid).unwrap();
    s.utime + s.stime
}

/// Asserts the child makes no progress while frozen, then progresses after the thaw.
fn assert_frozen_then_thawed(f: &KernelFreezer, cg: &ContainerCgroup, pid: u32) {
    std::thread::sleep(Duration::from_millis(100));
    let (t1, c1) = (ticks(pid), cg.cpu_usage().unwrap());
    std::thread::sleep(Duration::from_millis(500));
    let (t2, c2) = (ticks(pid), cg.cpu_usage().unwrap());
    assert_eq!(t1, t2, "frozen child {pid} kept running");
    assert_eq!(c1, c2, "frozen cgroup kept using CPU");
    f.thaw(cg).unwrap();
    assert_eq!(f.state(cg).unwrap(), FreezerState::Thawed);
    let t3 = ticks(pid);
    std::thread::sleep(Duration::from_millis(500));
    assert!(ticks(pid) > t3, "thawed child {pid} does not run");
    assert!(cg.cpu_usage().unwrap() > c2, "thawed cgroup uses no CPU");
}

#[test]
fn real_v1_freezer_freezes_and_thaws_a_busy_child() {
    let sandbox = Sandbox::new(&["freezer", "cpuacct", "memory"]);
    let pid = sandbox.pid();
    let cg = resolve_from_proc(&CgroupFs::host(), Path::new("/proc"), pid).unwrap();
    assert_eq!(cg.v1["freezer"], sandbox.dirs[0]);
    assert_eq!(cg.v1["cpuacct"], sandbox.dirs[1]);
    assert_eq!(cg.memory_dir().unwrap(), sandbox.dirs[2]);
    assert_eq!(cg.pids().unwrap(), vec![pid]);
    assert_eq!(cg.memory_limit_bytes().unwrap(), None);
    // v1 does not move charges with the task (memory.move_charge_at_immigrate is 0): any value.
    cg.memory_usage_bytes().unwrap();
    assert!(cg
        .procs_files()
        .contains(&sandbox.dirs[0].join("cgroup.procs")));
    assert!(matches!(cg.freezer().unwrap(), FreezerLocation::V1 { .. }));

    let f = KernelFreezer::default();
    assert_eq!(f.state(&cg).unwrap(), FreezerState::Thawed);
    let report = f.freeze(&cg).unwrap();
    assert!(
        report.attempts >= 1 && report.elapsed < f.timeout,
        "{report:?}"
    );
    let state = std::fs::read_to_string(sandbox.dirs[0].join("freezer.state")).unwrap();
    assert_eq!(state.trim(), "FROZEN");
    assert_eq!(f.state(&cg).unwrap(), FreezerState::Frozen);
    assert_frozen_then_thawed(&f, &cg, pid);
}

#[test]
fn real_v2_freezer_freezes_and_thaws_a_busy_child() {
    let fs = CgroupFs::host();
    let Some(unified) = fs.unified_root(fs.layout().unwrap()) else {
        panic!("this test needs a cgroup2 hierarchy (pure v2 or hybrid `unified`)");
    };
    let rel = unified
        .strip_prefix("/sys/fs/cgroup")
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let sandbox = Sandbox::new(&[rel.as_str()]);
    let pid = sandbox.pid();
    let resolved = resolve_from_proc(&fs, Path::new("/proc"), pid).unwrap();
    assert_eq!(resolved.unified.as_ref(), Some(&sandbox.dirs[0]));
    // Only the v2 freezer (on hybrid hosts the v1 one would be preferred).
    let dir = sandbox.dirs[0].clone();
    let cg = ContainerCgroup::from_freezer(&FreezerLocation::V2 { dir: dir.clone() });
    let f = KernelFreezer::default();
    assert_eq!(f.state(&cg).unwrap(), FreezerState::Thawed);
    f.freeze(&cg).unwrap();
    let events = std::fs::read_to_string(dir.join("cgroup.events")).unwrap();
    assert!(events.contains("frozen 1"), "{events}");
    assert_eq!(f.state(&cg).unwrap(), FreezerState::Frozen);
    assert_frozen_then_thawed(&f, &cg, pid);
    drop(sandbox);
    // Gone: the container no longer exists.
    assert!(f.thaw(&cg).unwrap_err().is_vanished());
}
