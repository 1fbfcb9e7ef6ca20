//! Kernel tests: real workers in real private cgroups (cgroup v1 controllers plus the unified
//! hierarchy). They need root and FAIL without it (CI runs as root).
//!
//! The worker process is this test binary re-executed: `<test binary> --nri-chaos-test-worker
//! stress-worker <spec args>`. A constructor ([`worker_entry`]) sees those arguments before
//! libtest's main runs, hands the spec arguments to [`worker_main`] and exits with its code, so
//! the re-executed binary never runs or lists a test, and no placeholder test is counted.
//!
//! Each test creates `nri-chaos-stress-<pid>-<n>` cgroups, puts only its own children in them,
//! kills those children and removes the cgroups at the end. The tests are serialised (one
//! lock) so their CPU and memory figures do not disturb each other. Run with `--nocapture` to
//! see the measured figures.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::thread::sleep;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::*;

/// First argument of a re-executed worker; libtest never sees it.
const WORKER_FLAG: &str = "--nri-chaos-test-worker";
const MIB: u64 = 1 << 20;

/// The entry of re-executed workers, run before main: libtest offers no hook for a process
/// that is not a test run, and a `#[test]` entry would be counted as a passing test.
#[ctor::ctor(unsafe)]
fn worker_entry() {
    // std::env::args() is still empty before main: the kernel's copy of argv is read instead.
    let cmdline = std::fs::read("/proc/self/cmdline").unwrap_or_default();
    let args: Vec<String> = cmdline
        .split(|&b| b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    if args.get(1).map(String::as_str) == Some(WORKER_FLAG)
        && args.get(2).map(String::as_str) == Some(WORKER_SUBCOMMAND)
    {
        std::process::exit(worker_main(&args[3..]));
    }
}

fn leading_args() -> Vec<OsString> {
    vec![OsString::from(WORKER_FLAG)]
}

fn exe() -> PathBuf {
    std::env::current_exe().expect("path of the test binary")
}

fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(PoisonError::into_inner)
}

fn require_root() {
    assert!(
        rustix::process::geteuid().is_root(),
        "the stressor kernel tests need root: they create cgroups under /sys/fs/cgroup and \
         place workers in them (euid is {}); run them as root, as CI does",
        rustix::process::geteuid().as_raw()
    );
}

fn unix_ms_in(d: Duration) -> u64 {
    (SystemTime::now().duration_since(UNIX_EPOCH).unwrap() + d).as_millis() as u64
}

/// Mount points of the cgroup hierarchies: v1 controller name -> mount, and "unified".
fn cgroup_mounts() -> BTreeMap<String, PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let mut mounts = BTreeMap::new();
    for line in info.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let mount_point = PathBuf::from(left.split(' ').nth(4).unwrap());
        let mut right = right.split(' ');
        let (fstype, _source, opts) = (right.next(), right.next(), right.next().unwrap_or(""));
        match fstype {
            Some("cgroup") => {
                for opt in opts.split(',') {
                    mounts.insert(opt.to_string(), mount_point.clone());
                }
            }
            Some("cgroup2") => {
                mounts.insert("unified".to_string(), mount_point);
            }
            _ => {}
        }
    }
    mounts
}

/// Private cgroups, one per hierarchy of the given controllers (a combined `cpu,cpuacct`
/// hierarchy gets one directory). Drop kills what is left inside and removes them.
struct TestCgroup {
    by_controller: BTreeMap<String, PathBuf>,
    dirs: Vec<PathBuf>,
}

impl TestCgroup {
    fn new(controllers: &[&str]) -> TestCgroup {
        static N: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "nri-chaos-stress-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        let mounts = cgroup_mounts();
        let mut cg = TestCgroup {
            by_controller: BTreeMap::new(),
            dirs: Vec::new(),
        };
        for &c in controllers {
            let mount = mounts.get(c).unwrap_or_else(|| {
                panic!("cgroup hierarchy '{c}' is not mounted here (mounts: {mounts:?})")
            });
            let dir = mount.join(&name);
            if !cg.dirs.contains(&dir) {
                std::fs::create_dir(&dir)
                    .unwrap_or_else(|e| panic!("creating cgroup {}: {e}", dir.display()));
                cg.dirs.push(dir.clone());
            }
            cg.by_controller.insert(c.to_string(), dir);
        }
        cg
    }

    fn procs_files(&self) -> Vec<PathBuf> {
        self.dirs.iter().map(|d| d.join("cgroup.procs")).collect()
    }

    fn path(&self, controller: &str, file: &str) -> PathBuf {
        self.by_controller[controller].join(file)
    }

    fn read(&self, controller: &str, file: &str) -> String {
        let p = self.path(controller, file);
        std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("reading {}: {e}", p.display()))
    }

    fn read_u64(&self, controller: &str, file: &str) -> u64 {
        self.read(controller, file).trim().parse().unwrap()
    }

    /// A `key value` line of a flat-keyed file (memory.oom_control, cpu.stat).
    fn read_key(&self, controller: &str, file: &str, key: &str) -> u64 {
        let text = self.read(controller, file);
        text.lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix(' ')?.trim().parse().ok())
            .unwrap_or_else(|| panic!("no '{key}' in {controller}/{file}: {text}"))
    }

    fn write(&self, controller: &str, file: &str, value: &str) {
        let p = self.path(controller, file);
        std::fs::write(&p, value)
            .unwrap_or_else(|e| panic!("writing '{value}' to {}: {e}", p.display()));
    }

    /// Asserts that `pid` sits in every one of these cgroups (per /proc/<pid>/cgroup).
    fn assert_holds(&self, pid: u32) {
        let own = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
        let name = self.dirs[0].file_name().unwrap().to_str().unwrap();
        for controller in self.by_controller.keys() {
            let hierarchy = if controller == "unified" {
                ""
            } else {
                controller.as_str()
            };
            let line = own
                .lines()
                .find(|l| {
                    let mut f = l.splitn(3, ':');
                    let _id = f.next();
                    f.next()
                        .is_some_and(|cs| cs.split(',').any(|c| c == hierarchy) || cs == hierarchy)
                })
                .unwrap_or_else(|| panic!("no {controller} line in /proc/{pid}/cgroup: {own}"));
            assert!(
                line.ends_with(&format!("/{name}")),
                "process {pid} is not in the private {controller} cgroup {name}: {line}"
            );
        }
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        for dir in &self.dirs {
            // Only this test's own children can be inside.
            if let Ok(pids) = std::fs::read_to_string(dir.join("cgroup.procs")) {
                for pid in pids.lines().filter_map(|p| p.trim().parse::<i32>().ok()) {
                    if let Some(pid) = rustix::process::Pid::from_raw(pid) {
                        let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
                    }
                }
            }
            let mut tries = 0;
            while let Err(e) = std::fs::remove_dir(dir) {
                tries += 1;
                if tries > 100 {
                    eprintln!("could not remove cgroup {}: {e}", dir.display());
                    break;
                }
                sleep(Duration::from_millis(20));
            }
        }
    }
}

/// A child that is SIGKILLed and reaped when dropped.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Polls `child` until it exits, at most `limit`; returns its status and when it was seen.
fn wait_exit(child: &mut Child, limit: Duration) -> Option<(ExitStatus, Instant)> {
    let until = Instant::now() + limit;
    while Instant::now() < until {
        if let Some(status) = child.try_wait().unwrap() {
            return Some((status, Instant::now()));
        }
        sleep(Duration::from_millis(2));
    }
    None
}

fn spawn_one(spec: &WorkerSpec, cg: Option<&TestCgroup>) -> Reaped {
    let files = cg.map(TestCgroup::procs_files).unwrap_or_default();
    let child = spawn_worker_with(&exe(), &leading_args(), spec, &files, WorkerOutput::Inherit)
        .unwrap_or_else(|e| panic!("{e}"));
    Reaped(child)
}

/// CPU used by the cgroup over `window`, in CPUs (1.0 = one CPU busy).
fn cpu_load(cg: &TestCgroup, window: Duration) -> f64 {
    let (u0, t0) = (cg.read_u64("cpuacct", "cpuacct.usage"), Instant::now());
    sleep(window);
    let (u1, t1) = (cg.read_u64("cpuacct", "cpuacct.usage"), Instant::now());
    (u1 - u0) as f64 / (t1 - t0).as_nanos() as f64
}

#[test]
fn stressor_kernel_cpu_load_is_accurate_and_confined() {
    require_root();
    let _serial = serial();
    let cg = TestCgroup::new(&["cpu", "cpuacct", "memory", "unified"]);
    let spec = WorkerSpec {
        kind: WorkerKind::Cpu { load_percent: 50 },
        deadline_unix_ms: unix_ms_in(Duration::from_secs(60)),
        watch_pid: Some(std::process::id()),
    };
    let set = StressorSet::spawn_with(
        &exe(),
        &leading_args(),
        &[spec],
        &cg.procs_files(),
        WorkerOutput::Inherit,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let (pid, _) = set.pids_with_start_times()[0];
    cg.assert_holds(pid);
    sleep(Duration::from_millis(300));
    // PR_SET_NAME names the calling thread: the worker's main one, as in nri-chaos.
    let names = task_names(pid);
    println!("cpu worker {pid}: thread names {names:?}");
    assert!(names.iter().any(|n| n == "nri-chaos-cpu"), "{names:?}");
    assert!(names.iter().any(|n| n == "nri-chaos-watch"), "{names:?}");
    let load = cpu_load(&cg, Duration::from_secs(3));
    println!(
        "CPU: requested 50% of one CPU, measured {:.1}% (cpuacct.usage over 3 s)",
        load * 100.0
    );
    assert!(
        (0.40..=0.60).contains(&load),
        "cpu worker at load 50 used {:.1}% of one CPU, expected 40% to 60%",
        load * 100.0
    );

    // Confinement: the cgroup's own quota (20 ms per 100 ms) caps the worker.
    cg.write("cpu", "cpu.cfs_period_us", "100000");
    cg.write("cpu", "cpu.cfs_quota_us", "20000");
    sleep(Duration::from_millis(300));
    let throttled_before = cg.read_key("cpu", "cpu.stat", "nr_throttled");
    for second in 1..=3 {
        let capped = cpu_load(&cg, Duration::from_secs(1));
        println!(
            "CPU with cfs_quota 20000/100000: second {second}: measured {:.1}% (cap 20%)",
            capped * 100.0
        );
        assert!(
            capped <= 0.23,
            "worker used {:.1}% of one CPU under a 20% quota: it is not inside the cgroup",
            capped * 100.0
        );
        assert!(
            capped >= 0.10,
            "worker nearly idle under quota: {:.1}%",
            capped * 100.0
        );
    }
    let throttled = cg.read_key("cpu", "cpu.stat", "nr_throttled") - throttled_before;
    println!("CPU: nr_throttled +{throttled} over 3 s");
    assert!(throttled > 0, "the cgroup quota never throttled the worker");

    let statuses = set.stop().unwrap();
    assert_eq!(statuses[0].1.signal(), Some(libc::SIGKILL));
}

fn task_names(pid: u32) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .filter_map(|e| std::fs::read_to_string(e.ok()?.path().join("comm")).ok())
        .map(|s| s.trim().to_string())
        .collect();
    names.sort();
    names
}

#[test]
fn stressor_kernel_memory_is_charged_and_released() {
    require_root();
    let _serial = serial();
    let cg = TestCgroup::new(&["memory", "unified"]);
    let size = 32 * MIB;
    let before = cg.read_u64("memory", "memory.usage_in_bytes");
    let spec = WorkerSpec {
        kind: WorkerKind::Memory { bytes: size },
        deadline_unix_ms: unix_ms_in(Duration::from_secs(60)),
        watch_pid: Some(std::process::id()),
    };
    let set = StressorSet::spawn_with(
        &exe(),
        &leading_args(),
        &[spec],
        &cg.procs_files(),
        WorkerOutput::Inherit,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let (pid, _) = set.pids_with_start_times()[0];
    cg.assert_holds(pid);

    // Wait until the charge settles (all pages touched).
    let until = Instant::now() + Duration::from_secs(10);
    let mut last = 0;
    let held = loop {
        sleep(Duration::from_millis(200));
        let now = cg.read_u64("memory", "memory.usage_in_bytes");
        if (now >= before + size * 9 / 10 && now == last) || Instant::now() > until {
            break now - before;
        }
        last = now;
    };
    let rss = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .map(|l| l.trim().to_string())
        .unwrap_or_default();
    println!(
        "memory: requested {} MiB, memory.usage_in_bytes rose by {:.1} MiB (worker {rss}); comm {:?}",
        size / MIB,
        held as f64 / MIB as f64,
        task_names(pid)
    );
    // The worker's own pages and page tables count in the cgroup too: the size is what the
    // usage rises by in all, within 2%.
    assert!(
        held.abs_diff(size) <= size / 50,
        "memory worker of 32 MiB raised the cgroup usage by {held} bytes ({:+.2}%), expected 32 MiB +/- 2%",
        (held as f64 - size as f64) / size as f64 * 100.0
    );

    set.stop().unwrap();
    let until = Instant::now() + Duration::from_secs(5);
    let after = loop {
        let now = cg.read_u64("memory", "memory.usage_in_bytes");
        if now <= before + size / 10 || Instant::now() > until {
            break now;
        }
        sleep(Duration::from_millis(50));
    };
    println!(
        "memory: after stop() usage is {:.1} MiB (before spawn {:.1} MiB)",
        after as f64 / MIB as f64,
        before as f64 / MIB as f64
    );
    assert!(
        after <= before + size / 10,
        "usage stayed at {after} bytes after stop() (before spawn: {before})"
    );
}

#[test]
fn stressor_kernel_worker_exits_with_watched_process_and_at_deadline() {
    require_root();
    let _serial = serial();
    let cg = TestCgroup::new(&["memory", "unified"]);

    // (a) The watched process dies: the worker follows at once.
    let mut sleeper = Reaped(Command::new("sleep").arg("100").spawn().unwrap());
    let spec = WorkerSpec {
        kind: WorkerKind::Cpu { load_percent: 1 },
        deadline_unix_ms: unix_ms_in(Duration::from_secs(60)),
        watch_pid: Some(sleeper.0.id()),
    };
    let mut worker = spawn_one(&spec, Some(&cg));
    sleep(Duration::from_millis(500));
    assert!(worker.0.try_wait().unwrap().is_none(), "worker ended early");
    sleeper.0.kill().unwrap();
    let killed = Instant::now();
    sleeper.0.wait().unwrap();
    let (status, seen) = wait_exit(&mut worker.0, Duration::from_secs(3))
        .expect("worker still running 3 s after its watched process died");
    let lag = seen - killed;
    println!(
        "watch: worker exited {:.1} ms after its watched process was killed ({status:?})",
        lag.as_secs_f64() * 1e3
    );
    assert_eq!(status.code(), Some(EXIT_STOPPED));
    assert!(
        lag < Duration::from_millis(200),
        "worker took {lag:?} to follow its watched process"
    );

    // (b) Deadline 1 s ahead: the worker ends by itself at about 1 s.
    let start = Instant::now();
    let spec = WorkerSpec {
        kind: WorkerKind::Cpu { load_percent: 1 },
        deadline_unix_ms: unix_ms_in(Duration::from_secs(1)),
        watch_pid: Some(std::process::id()),
    };
    let mut worker = spawn_one(&spec, Some(&cg));
    let (status, seen) = wait_exit(&mut worker.0, Duration::from_secs(5))
        .expect("worker still running 5 s after a 1 s deadline");
    let took = seen - start;
    println!(
        "deadline: worker with a deadline 1 s ahead exited after {:.0} ms ({status:?})",
        took.as_secs_f64() * 1e3
    );
    assert_eq!(status.code(), Some(EXIT_STOPPED));
    assert!(
        (Duration::from_millis(950)..Duration::from_millis(1300)).contains(&took),
        "worker with a 1 s deadline ended after {took:?}"
    );

    // (c) The watched process is already gone: exit at once (pidfd_open: ESRCH).
    let mut gone = Command::new("true").spawn().unwrap();
    gone.wait().unwrap();
    let spec = WorkerSpec {
        kind: WorkerKind::Memory { bytes: 64 * MIB },
        deadline_unix_ms: unix_ms_in(Duration::from_secs(60)),
        watch_pid: Some(gone.id()),
    };
    let start = Instant::now();
    let mut worker = spawn_one(&spec, Some(&cg));
    let (status, seen) = wait_exit(&mut worker.0, Duration::from_secs(3))
        .expect("worker watching a dead process still running after 3 s");
    println!(
        "watch: worker watching an exited pid ended after {:.1} ms",
        (seen - start).as_secs_f64() * 1e3
    );
    assert_eq!(status.code(), Some(EXIT_STOPPED));
}

#[test]
fn stressor_kernel_oom_fill_gets_the_victim_oom_killed() {
    require_root();
    let _serial = serial();
    let cg = TestCgroup::new(&["memory"]);
    let limit = 32 * MIB;
    cg.write("memory", "memory.limit_in_bytes", &limit.to_string());

    let mut victim = Reaped(
        spawn_placed(Command::new("sleep").arg("100"), &cg.procs_files())
            .unwrap_or_else(|e| panic!("{e}")),
    );
    let victim_pid = victim.0.id();
    std::fs::write(format!("/proc/{victim_pid}/oom_score_adj"), "1000").unwrap();

    let spec = oom_fill_spec(limit, unix_ms_in(Duration::from_secs(30)), Some(victim_pid));
    let start = Instant::now();
    let mut worker = spawn_one(&spec, Some(&cg));
    cg.assert_holds(worker.0.id());
    let (victim_status, victim_seen) = wait_exit(&mut victim.0, Duration::from_secs(20))
        .expect("the OOM filler did not get the victim killed within 20 s");
    let (worker_status, worker_seen) = wait_exit(&mut worker.0, Duration::from_secs(5))
        .expect("the OOM filler kept running after its watched victim died");
    let oom_kills = cg.read_key("memory", "memory.oom_control", "oom_kill");
    let failcnt = cg.read_u64("memory", "memory.failcnt");
    let max_usage = cg.read_u64("memory", "memory.max_usage_in_bytes");
    println!(
        "oom: limit 32 MiB; victim {victim_pid} {victim_status:?} after {:.0} ms; filler {worker_status:?} {:.1} ms later; \
         memory.oom_control oom_kill {oom_kills}, memory.failcnt {failcnt}, max_usage {:.1} MiB",
        (victim_seen - start).as_secs_f64() * 1e3,
        (worker_seen - victim_seen).as_secs_f64() * 1e3,
        max_usage as f64 / MIB as f64
    );
    assert_eq!(
        victim_status.signal(),
        Some(libc::SIGKILL),
        "victim: {victim_status:?}"
    );
    assert!(oom_kills >= 1, "memory.oom_control counted no OOM kill");
    assert!(failcnt > 0, "memory.failcnt is 0: the limit was never hit");
    assert!(
        max_usage <= limit,
        "usage {max_usage} went above the 32 MiB limit"
    );
    assert_eq!(
        worker_status.code(),
        Some(EXIT_STOPPED),
        "the filler should end because its watched victim died, not be OOM-killed itself \
         (oom_kill count {oom_kills})"
    );
    assert_eq!(oom_kills, 1, "only the victim should have been OOM-killed");
}
