//! The VM suite: runs inside the qemu VM of the VM test tier (as the child of `/init`, with
//! `sch_netem` and `veth` loaded and cgroup v2 mounted alone at /sys/fs/cgroup), drives the
//! injector's kernel seams against the real kernel, and prints machine-readable lines the host
//! test (`tests/tests/vm_tier.rs`) parses:
//!
//! - `RESULT <name> key=value ...`: figures;
//! - `ASSERT <name> ok|fail <detail>`: checks;
//! - `INFO ...`: context (tc output, ping summaries).
//!
//! Scenarios: `netem` (the fault's qdisc on a veth pair between two netns: tc's view, RTT and
//! loss, removal), `figures` (apply/remove by in-process netlink versus `nsenter ... tc`),
//! `cgroup` (freeze, CPU and memory stress on cgroup v2). Arguments name the scenarios to run
//! (default all). `stress-worker ...` runs a stressor worker (the suite re-executes itself).
//! Exit code 0 when every ASSERT is ok.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use injector::faults::netem::NetemFault;
use injector::faults::netem::NetemUndo;
use injector::faults::stress::{CpuStress, MemoryStress};
use injector::faults::{Fault, HostKernel, NoUndoLog};
use injector::seams::cgroup::{
    resolve_from_proc, CgroupFs, CgroupLayout, ContainerCgroup, Freezer, FreezerState,
    KernelFreezer,
};
use injector::stressor::{
    cpu_specs, memory_specs, spawn_placed, worker_main, StressorSet, WORKER_SUBCOMMAND,
};
use injector::Size;
use nri_chaos_tests::vm::AssertSuite;

const NS_A: &str = "nrichaos-a";
const NS_B: &str = "nrichaos-b";
const IF_A: &str = "nc-veth-a";
const IF_B: &str = "nc-veth-b";
const ADDR_A: &str = "10.250.0.1";
const ADDR_B: &str = "10.250.0.2";
const MIB: u64 = 1 << 20;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some(WORKER_SUBCOMMAND) {
        std::process::exit(worker_main(&args[2..]));
    }
    let wanted: Vec<&str> = args[1..].iter().map(String::as_str).collect();
    let runs = |name: &str| wanted.is_empty() || wanted.contains(&name);
    let started = Instant::now();
    let mut suite = AssertSuite::default();
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let controllers =
        std::fs::read_to_string("/sys/fs/cgroup/cgroup.controllers").unwrap_or_default();
    println!(
        "RESULT vm kernel={} cgroup2_controllers={}",
        release.trim(),
        controllers.trim().replace(' ', ",")
    );
    type Scenario = fn(&mut AssertSuite) -> Result<()>;
    let scenarios: [(&str, Scenario); 3] = [
        ("netem", netem_scenario),
        ("figures", figures_scenario),
        ("cgroup", cgroup_scenario),
    ];
    for (name, scenario) in scenarios {
        if !runs(name) {
            continue;
        }
        let t = Instant::now();
        if let Err(e) = scenario(&mut suite) {
            suite.check(&format!("{name}_scenario"), false, format!("{e:#}"));
        }
        println!(
            "RESULT scenario_{name} wall_s={:.1}",
            t.elapsed().as_secs_f64()
        );
    }
    println!(
        "RESULT suite wall_s={:.1} passed={} failed={}",
        started.elapsed().as_secs_f64(),
        suite.passed,
        suite.failed
    );
    std::process::exit(i32::from(suite.failed > 0));
}

// ---------------------------------------------------------------------------------------------
// helpers

/// Runs `argv`, returning stdout; fails with stderr on a non-zero exit.
fn run(argv: &[&str]) -> Result<String> {
    let out = Command::new(argv[0])
        .args(&argv[1..])
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {}", argv.join(" ")))?;
    if !out.status.success() {
        bail!(
            "{} exited {}: {}",
            argv.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn netns_path(ns: &str) -> PathBuf {
    PathBuf::from("/run/netns").join(ns)
}

/// `ping` summary.
#[derive(Debug, Clone, Copy)]
struct Ping {
    sent: u32,
    received: u32,
    avg_ms: f64,
}

impl Ping {
    fn loss(&self) -> f64 {
        if self.sent == 0 {
            return 1.0;
        }
        1.0 - f64::from(self.received) / f64::from(self.sent)
    }
}

/// busybox ping from netns A to B: `count` echoes, `interval_ms` apart.
fn ping(count: u32, interval_ms: u32) -> Result<Ping> {
    let count_s = count.to_string();
    let interval = format!("{:.3}", f64::from(interval_ms) / 1000.0);
    // Sending takes count * interval; busybox then waits up to 10 s (-W) for the last replies.
    let deadline = (count * interval_ms / 1000 + 30).to_string();
    let out = Command::new("ip")
        .args(["netns", "exec", NS_A, "ping", "-q", "-c", &count_s])
        .args(["-i", &interval, "-w", &deadline, ADDR_B])
        .stdin(Stdio::null())
        .output()
        .context("running ping")?;
    // ping exits 1 when some packets were lost: read the summary regardless.
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut p = Ping {
        sent: 0,
        received: 0,
        avg_ms: f64::NAN,
    };
    for line in text.lines() {
        // "200 packets transmitted, 161 packets received, 19% packet loss"
        if line.contains("packets transmitted") {
            let nums: Vec<u32> = line
                .split(|c: char| !c.is_ascii_digit())
                .filter_map(|w| w.parse().ok())
                .collect();
            if nums.len() >= 2 {
                p.sent = nums[0];
                p.received = nums[1];
            }
        }
        // "round-trip min/avg/max = 0.067/0.143/0.286 ms"
        if let Some((_, v)) = line.split_once("min/avg/max = ") {
            p.avg_ms = v
                .split('/')
                .nth(1)
                .and_then(|a| a.trim().parse().ok())
                .unwrap_or(f64::NAN);
        }
    }
    println!(
        "INFO ping -c {count}: sent={} received={} avg_ms={:.2}",
        p.sent, p.received, p.avg_ms
    );
    if p.sent == 0 {
        bail!(
            "ping printed no summary: {} {}",
            text.trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(p)
}

/// Echoes sent while netem's 20% loss holds.
const LOSS_ECHOES: u32 = 1000;

/// The band, in percent, within `z` standard deviations of a binomial(n, p) share.
fn binomial_band_pct(n: u32, p: f64, z: f64) -> (f64, f64) {
    let sigma = (p * (1.0 - p) / f64::from(n)).sqrt();
    ((p - z * sigma) * 100.0, (p + z * sigma) * 100.0)
}

fn tc_show() -> Result<String> {
    let out = run(&[
        "ip", "netns", "exec", NS_A, "tc", "-s", "qdisc", "show", "dev", IF_A,
    ])?;
    for line in out.lines() {
        println!("INFO tc: {line}");
    }
    Ok(out)
}

fn setup_veth_pair() -> Result<()> {
    for ns in [NS_A, NS_B] {
        let _ = run(&["ip", "netns", "del", ns]);
        run(&["ip", "netns", "add", ns])?;
        run(&["ip", "-n", ns, "link", "set", "lo", "up"])?;
    }
    run(&[
        "ip", "link", "add", IF_A, "netns", NS_A, "type", "veth", "peer", "name", IF_B, "netns",
        NS_B,
    ])?;
    run(&[
        "ip",
        "-n",
        NS_A,
        "addr",
        "add",
        &format!("{ADDR_A}/30"),
        "dev",
        IF_A,
    ])?;
    run(&[
        "ip",
        "-n",
        NS_B,
        "addr",
        "add",
        &format!("{ADDR_B}/30"),
        "dev",
        IF_B,
    ])?;
    run(&["ip", "-n", NS_A, "link", "set", IF_A, "up"])?;
    run(&["ip", "-n", NS_B, "link", "set", IF_B, "up"])?;
    Ok(())
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return f64::NAN;
    }
    v[v.len() / 2]
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len().max(1) as f64
}

// ---------------------------------------------------------------------------------------------
// (a) netem on a veth pair

/// The netem fault's own apply (what the plugin runs per firing), without a journal.
fn apply_netem(fault: &NetemFault, ns: &Path) -> Result<NetemUndo> {
    Ok(fault.apply(
        &HostKernel::default().kernel(),
        &ns.to_path_buf(),
        &mut NoUndoLog,
    )?)
}

/// The netem fault's own recovery.
fn remove_netem(undo: NetemUndo) -> Result<()> {
    Ok(NetemFault::recover(&HostKernel::default().kernel(), undo)?)
}

fn netem_scenario(s: &mut AssertSuite) -> Result<()> {
    setup_veth_pair()?;
    let ns = netns_path(NS_A);
    // Warm up (ARP), then the baseline.
    let _ = ping(3, 50);
    let baseline = ping(20, 50)?;
    s.check(
        "netem_baseline_ping",
        baseline.received == baseline.sent && baseline.avg_ms.is_finite(),
        format!(
            "{}/{} replies, avg {:.2} ms",
            baseline.received, baseline.sent, baseline.avg_ms
        ),
    );

    let fault = NetemFault {
        delay: Some(Duration::from_millis(100)),
        jitter: Some(Duration::from_millis(10)),
        loss: Some(0.20),
        rate_bytes_per_sec: Some(125_000), // 1mbit
        ..NetemFault::default()
    };
    let t = Instant::now();
    let shaped = apply_netem(&fault, &ns)?;
    let names: Vec<&str> = shaped.interfaces.iter().map(|l| l.name.as_str()).collect();
    s.check(
        "netem_target_links_non_loopback",
        names == [IF_A],
        format!("targets {names:?} in {NS_A}"),
    );
    println!(
        "RESULT netem_install_once netlink_us={}",
        t.elapsed().as_micros()
    );

    let shown = tc_show()?;
    let line = shown
        .lines()
        .find(|l| l.starts_with("qdisc"))
        .unwrap_or("")
        .to_string();
    s.check(
        "netem_tc_kind_and_handle",
        line.contains("qdisc netem 4e43: root"),
        &line,
    );
    s.check(
        "netem_tc_delay_jitter",
        line.contains("delay 100ms  10ms"),
        &line,
    );
    s.check("netem_tc_loss", line.contains("loss 20%"), &line);
    s.check("netem_tc_rate", line.contains("rate 1Mbit"), &line);
    s.check("netem_tc_limit", line.contains("limit 1000"), &line);
    let extras = ["duplicate", "corrupt", "reorder", "gap"];
    s.check(
        "netem_tc_nothing_else",
        !extras.iter().any(|e| line.contains(e)),
        &line,
    );

    // 1,000 echoes: with netem's independent 20% loss the lost count is binomial, so the band
    // below is 4.5 standard deviations wide (+/- 5.7 points): a correct qdisc falls outside it
    // about once in 150,000 runs (200 echoes and +/- 8 points failed about once in 200).
    let during = ping(LOSS_ECHOES, 10)?;
    let rise = during.avg_ms - baseline.avg_ms;
    let loss = during.loss() * 100.0;
    println!(
        "RESULT netem_ping baseline_ms={:.2} during_ms={:.2} rise_ms={rise:.2} loss_pct={loss:.1} sent={} received={}",
        baseline.avg_ms, during.avg_ms, during.sent, during.received
    );
    s.check(
        "netem_rtt_rise_100ms",
        (85.0..=115.0).contains(&rise),
        format!("RTT rose by {rise:.2} ms (expected 100 +/- 15)"),
    );
    let (low, high) = binomial_band_pct(LOSS_ECHOES, 0.20, 4.5);
    s.check(
        "netem_loss_20pct",
        during.sent == LOSS_ECHOES && (low..=high).contains(&loss),
        format!(
            "{loss:.1}% lost over {} packets (expected 20%, accepted {low:.1}-{high:.1}%: 4.5 sigma of {LOSS_ECHOES} draws)",
            during.sent
        ),
    );

    let t = Instant::now();
    remove_netem(shaped)?;
    println!(
        "RESULT netem_remove_once netlink_us={}",
        t.elapsed().as_micros()
    );
    let shown = tc_show()?;
    s.check(
        "netem_removed_qdisc_gone",
        !shown.contains("netem") && shown.contains("noqueue"),
        shown.lines().next().unwrap_or(""),
    );
    let after = ping(20, 50)?;
    let back = after.avg_ms - baseline.avg_ms;
    println!(
        "RESULT netem_after baseline_ms={:.2} after_ms={:.2} diff_ms={back:.2}",
        baseline.avg_ms, after.avg_ms
    );
    s.check(
        "netem_removed_rtt_back_to_baseline",
        after.received == after.sent && back.abs() <= 10.0,
        format!(
            "after removal {:.2} ms vs baseline {:.2} ms, {}/{} replies",
            after.avg_ms, baseline.avg_ms, after.received, after.sent
        ),
    );
    foreign_root_qdisc_put_back(s, &ns, &fault)
}

/// The first `qdisc` line of `tc qdisc show` on IF_A (no statistics: they move).
fn tc_root_line() -> Result<String> {
    let out = run(&[
        "ip", "netns", "exec", NS_A, "tc", "qdisc", "show", "dev", IF_A,
    ])?;
    let line = out.lines().find(|l| l.starts_with("qdisc")).unwrap_or("");
    println!("INFO tc: {line}");
    Ok(line.to_string())
}

/// Someone else's root qdisc (fq_codel, whose options netlink-packet-route parses into typed
/// attributes) is saved under netem and put back with the same parameters.
fn foreign_root_qdisc_put_back(s: &mut AssertSuite, ns: &Path, fault: &NetemFault) -> Result<()> {
    run(&[
        "ip", "netns", "exec", NS_A, "tc", "qdisc", "replace", "dev", IF_A, "root", "handle", "5:",
        "fq_codel", "limit", "777", "target", "3ms", "interval", "50ms", "quantum", "1000", "ecn",
    ])?;
    let before = tc_root_line()?;
    let on_a = NetemFault {
        interface: Some(IF_A.into()),
        ..fault.clone()
    };
    let shaped = apply_netem(&on_a, ns)?;
    let during = tc_root_line()?;
    remove_netem(shaped)?;
    let after = tc_root_line()?;
    run(&[
        "ip", "netns", "exec", NS_A, "tc", "qdisc", "del", "dev", IF_A, "root",
    ])?;
    s.check(
        "netem_over_foreign_fq_codel",
        before.contains("qdisc fq_codel 5: root") && during.contains("qdisc netem 4e43: root"),
        format!("before: {before} | during: {during}"),
    );
    s.check(
        "netem_foreign_fq_codel_put_back_unchanged",
        after == before && before.contains("limit 777p") && before.contains("quantum 1000"),
        format!("before: {before} | after: {after}"),
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// (b) figures: in-process netlink vs nsenter + tc

fn figures_scenario(s: &mut AssertSuite) -> Result<()> {
    if !netns_path(NS_A).exists() {
        setup_veth_pair()?;
    }
    const N: usize = 50;
    let ns = netns_path(NS_A);
    let fault = NetemFault {
        delay: Some(Duration::from_millis(100)),
        ..NetemFault::default()
    };
    let on_a = NetemFault {
        interface: Some(IF_A.into()),
        ..fault.clone()
    };
    let (mut nl_add, mut nl_del, mut tc_add, mut tc_del) = (vec![], vec![], vec![], vec![]);
    let nsenter_net = format!("--net={}", ns.display());
    for _ in 0..N {
        // What the plugin does per firing: open the socket in the netns, pick links, install.
        let t = Instant::now();
        let shaped = apply_netem(&on_a, &ns)?;
        nl_add.push(t.elapsed().as_secs_f64() * 1e6);
        let t = Instant::now();
        remove_netem(shaped)?;
        nl_del.push(t.elapsed().as_secs_f64() * 1e6);

        let t = Instant::now();
        run(&[
            "nsenter",
            &nsenter_net,
            "tc",
            "qdisc",
            "add",
            "dev",
            IF_A,
            "root",
            "netem",
            "delay",
            "100ms",
        ])?;
        tc_add.push(t.elapsed().as_secs_f64() * 1e6);
        let t = Instant::now();
        run(&[
            "nsenter",
            &nsenter_net,
            "tc",
            "qdisc",
            "del",
            "dev",
            IF_A,
            "root",
        ])?;
        tc_del.push(t.elapsed().as_secs_f64() * 1e6);
    }
    let shown = tc_show()?;
    s.check(
        "figures_left_no_netem",
        !shown.contains("netem"),
        shown.lines().next().unwrap_or(""),
    );
    for (what, nl, tc) in [
        ("apply", &mut nl_add, &mut tc_add),
        ("remove", &mut nl_del, &mut tc_del),
    ] {
        let (nl_mean, tc_mean) = (mean(nl), mean(tc));
        let (nl_med, tc_med) = (median(nl), median(tc));
        println!(
            "RESULT netem_{what} n={N} netlink_median_us={nl_med:.0} netlink_mean_us={nl_mean:.0} \
             nsenter_tc_median_us={tc_med:.0} nsenter_tc_mean_us={tc_mean:.0} ratio_median={:.1}",
            tc_med / nl_med
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// (c) cgroup v2: freeze and stress

/// A cgroup directory under /sys/fs/cgroup, removed (after killing what is left) on drop.
struct TestCgroup {
    dir: PathBuf,
}

impl TestCgroup {
    fn new(name: &str) -> Result<TestCgroup> {
        let dir = Path::new("/sys/fs/cgroup").join(name);
        if dir.exists() {
            let _ = std::fs::remove_dir(&dir);
        }
        std::fs::create_dir(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(TestCgroup { dir })
    }

    fn procs(&self) -> Vec<PathBuf> {
        vec![self.dir.join("cgroup.procs")]
    }

    fn read(&self, file: &str) -> String {
        std::fs::read_to_string(self.dir.join(file)).unwrap_or_default()
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        let _ = std::fs::write(self.dir.join("cgroup.kill"), "1");
        for _ in 0..100 {
            if std::fs::remove_dir(&self.dir).is_ok() {
                return;
            }
            sleep(Duration::from_millis(50));
        }
    }
}

/// A child killed and reaped on drop.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn cpu_delta(cg: &ContainerCgroup, window: Duration) -> Result<(Duration, Duration)> {
    let (u0, t0) = (cg.cpu_usage()?, Instant::now());
    sleep(window);
    let (u1, t1) = (cg.cpu_usage()?, Instant::now());
    Ok((u1.saturating_sub(u0), t1 - t0))
}

fn unix_ms_in(d: Duration) -> u64 {
    (SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        + d)
        .as_millis() as u64
}

fn cgroup_scenario(s: &mut AssertSuite) -> Result<()> {
    let root = Path::new("/sys/fs/cgroup");
    std::fs::write(root.join("cgroup.subtree_control"), "+cpu +memory")
        .context("enabling +cpu +memory in /sys/fs/cgroup/cgroup.subtree_control")?;
    let fs = CgroupFs::host();
    s.check(
        "cgroup_layout_v2",
        fs.layout()? == CgroupLayout::V2,
        format!("{:?}", fs.layout()?),
    );
    freeze_case(s, &fs)?;
    cpu_stress_case(s, &fs)?;
    memory_stress_case(s, &fs)?;
    Ok(())
}

fn freeze_case(s: &mut AssertSuite, fs: &CgroupFs) -> Result<()> {
    let cgroup = TestCgroup::new("nri-chaos-freeze")?;
    let mut cmd = Command::new("sh");
    cmd.args(["-c", "while :; do :; done"]).stdin(Stdio::null());
    let child = Reaped(spawn_placed(&mut cmd, &cgroup.procs())?);
    let pid = child.0.id();
    let cg = resolve_from_proc(fs, Path::new("/proc"), pid)?;
    s.check(
        "freeze_resolve_from_proc",
        cg.layout == CgroupLayout::V2
            && cg.unified.as_deref() == Some(cgroup.dir.as_path())
            && cg.procs_files() == cgroup.procs(),
        format!("{:?} -> {}", cg.layout, cg.describe()),
    );
    sleep(Duration::from_millis(300));
    let (busy, window) = cpu_delta(&cg, Duration::from_secs(1))?;
    println!(
        "RESULT freeze_before cpu_ms={} window_ms={}",
        busy.as_millis(),
        window.as_millis()
    );
    // TCG is slow: a wider freeze timeout (the asserted states are unchanged).
    let freezer = KernelFreezer {
        timeout: Duration::from_secs(10),
        ..KernelFreezer::default()
    };
    let report = freezer.freeze(&cg)?;
    println!(
        "RESULT freeze elapsed_ms={:.1} attempts={}",
        report.elapsed.as_secs_f64() * 1e3,
        report.attempts
    );
    let events = cgroup.read("cgroup.events");
    s.check(
        "freeze_events_frozen_1",
        events.lines().any(|l| l.trim() == "frozen 1"),
        events.trim(),
    );
    s.check(
        "freeze_state_frozen",
        freezer.state(&cg)? == FreezerState::Frozen,
        format!("{}", freezer.state(&cg)?),
    );
    let (frozen_cpu, window) = cpu_delta(&cg, Duration::from_secs(1))?;
    s.check(
        "freeze_cpu_stands_still",
        frozen_cpu < Duration::from_millis(5),
        format!(
            "{} us of CPU in {} ms while frozen",
            frozen_cpu.as_micros(),
            window.as_millis()
        ),
    );
    freezer.thaw(&cg)?;
    let events = cgroup.read("cgroup.events");
    s.check(
        "thaw_events_frozen_0",
        events.lines().any(|l| l.trim() == "frozen 0"),
        events.trim(),
    );
    let (thawed_cpu, window) = cpu_delta(&cg, Duration::from_secs(1))?;
    s.check(
        "thaw_cpu_advances",
        thawed_cpu > Duration::from_millis(200),
        format!(
            "{} ms of CPU in {} ms after thaw",
            thawed_cpu.as_millis(),
            window.as_millis()
        ),
    );
    drop(child);
    Ok(())
}

fn cpu_stress_case(s: &mut AssertSuite, fs: &CgroupFs) -> Result<()> {
    let cgroup = TestCgroup::new("nri-chaos-cpu")?;
    let exe = std::env::current_exe().context("the suite's own path")?;
    let specs = cpu_specs(
        &CpuStress {
            workers: 1,
            load: 50,
        },
        unix_ms_in(Duration::from_secs(60)),
        Some(std::process::id()),
    );
    let set = StressorSet::spawn(&exe, &specs, &cgroup.procs())?;
    let (pid, _) = set
        .pids_with_start_times()
        .first()
        .copied()
        .context("no worker spawned")?;
    let cg = resolve_from_proc(fs, Path::new("/proc"), pid)?;
    s.check(
        "stress_cpu_worker_in_cgroup",
        cg.unified.as_deref() == Some(cgroup.dir.as_path()),
        cg.describe(),
    );
    sleep(Duration::from_millis(500));
    let (used, window) = cpu_delta(&cg, Duration::from_secs(3))?;
    let load = used.as_secs_f64() / window.as_secs_f64() * 100.0;
    println!(
        "RESULT stress_cpu requested_pct=50 measured_pct={load:.1} window_ms={}",
        window.as_millis()
    );
    s.check(
        "stress_cpu_load_50pct",
        (40.0..=60.0).contains(&load),
        format!("cpu.stat usage_usec: {load:.1}% of one CPU over 3 s (expected 50 +/- 10)"),
    );
    set.stop()?;
    Ok(())
}

fn memory_stress_case(s: &mut AssertSuite, fs: &CgroupFs) -> Result<()> {
    let cgroup = TestCgroup::new("nri-chaos-mem")?;
    let exe = std::env::current_exe().context("the suite's own path")?;
    let before: u64 = cgroup.read("memory.current").trim().parse().unwrap_or(0);
    let want = 64 * MIB;
    let specs = memory_specs(
        &MemoryStress {
            size: Size::Bytes(want),
            workers: 1,
        },
        want,
        unix_ms_in(Duration::from_secs(60)),
        Some(std::process::id()),
    );
    let set = StressorSet::spawn(&exe, &specs, &cgroup.procs())?;
    let (pid, _) = set
        .pids_with_start_times()
        .first()
        .copied()
        .context("no worker spawned")?;
    let cg = resolve_from_proc(fs, Path::new("/proc"), pid)?;
    // Wait (TCG: up to 30 s) until the charge settles near the target, then read it.
    let t = Instant::now();
    let mut current = cg.memory_usage_bytes()?;
    while current.saturating_sub(before) < want * 9 / 10 && t.elapsed() < Duration::from_secs(30) {
        sleep(Duration::from_millis(100));
        current = cg.memory_usage_bytes()?;
    }
    sleep(Duration::from_millis(500));
    current = cg.memory_usage_bytes()?;
    let rise = current.saturating_sub(before);
    println!(
        "RESULT stress_memory requested_mib=64 rise_mib={:.1} before_kib={} settle_ms={}",
        rise as f64 / MIB as f64,
        before / 1024,
        t.elapsed().as_millis()
    );
    s.check(
        "stress_memory_64mib",
        (want * 9 / 10..=want * 11 / 10).contains(&rise),
        format!(
            "memory.current rose by {:.1} MiB (expected 64 +/- 10%)",
            rise as f64 / MIB as f64
        ),
    );
    set.stop()?;
    let t = Instant::now();
    let mut after = cg.memory_usage_bytes()?;
    while after > before + 4 * MIB && t.elapsed() < Duration::from_secs(10) {
        sleep(Duration::from_millis(100));
        after = cg.memory_usage_bytes()?;
    }
    s.check(
        "stress_memory_released",
        after <= before + 4 * MIB,
        format!(
            "memory.current {} KiB after the worker stopped",
            after / 1024
        ),
    );
    Ok(())
}
