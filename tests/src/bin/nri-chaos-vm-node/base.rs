//! The `base` VM node suite. It proves on real pods:
//!
//! - `netem_pod_*`: `netem.nri-chaos.io/pod: "{delay: 100ms, duration: 20s}"` puts a netem
//!   qdisc with delay 100ms into the pod netns (`tc -s qdisc show` through
//!   `/proc/<container pid>/ns/net`), pod-to-pod RTT rises by it, and it is gone after
//!   `duration`;
//! - `first_packet_*`: the container's first action is to ping its peer pod on the bridge; the
//!   RTT of packet 1, read back from the CRI container log;
//! - `freeze_*` and `stress_*`: freeze (cgroup.freeze / cgroup.events) and CPU stress at load 50
//!   (cpu.stat usage_usec) on the container's cgroup v2.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use nri_chaos_tests::vm::AssertSuite;
use nri_chaos_tests::{ContainerSpec, Cri, Node, PluginProcess, Pod, PodSpec};

use crate::{finish, ms, start_node};

const SLEEPER: &[&str] = &["sleep", "3600"];
const NETEM: &str = "{delay: 100ms, duration: 20s}";
const NETEM_DURATION: Duration = Duration::from_secs(20);

pub(crate) async fn run(s: &mut AssertSuite) -> Result<()> {
    let (node, plugin, cri) = start_node(s).await?;
    let outcome = scenarios(s, &node, &cri, &plugin).await;
    finish(s, node, plugin, outcome).await
}

async fn scenarios(
    s: &mut AssertSuite,
    node: &Node,
    cri: &Cri,
    plugin: &PluginProcess,
) -> Result<()> {
    let t0 = Instant::now();
    // The peer pod: no faults, just an address on the bridge.
    let peer_pod = cri.run_pod(&PodSpec::new("peer")).await?;
    let peer = cri
        .run_container(&peer_pod, &ContainerSpec::new("peer", SLEEPER))
        .await?;
    let peer_ip = pod_ip(cri, &peer).await?;
    println!(
        "RESULT peer_pod ms={} ip={peer_ip} subnet={}",
        ms(t0.elapsed()),
        node.subnet()
    );

    // The shaped pod: its first (and only) container pings the peer before anything else.
    let t = Instant::now();
    let shaped_pod = cri
        .run_pod(&PodSpec::new("shaped").annotation("netem.nri-chaos.io/pod", NETEM))
        .await?;
    let script = format!("ping -c 5 -W 5 {peer_ip} 2>&1; sleep 3600");
    let app = cri
        .run_container(
            &shaped_pod,
            &ContainerSpec::new("app", &["sh", "-c", &script]),
        )
        .await?;
    let netem_from = Instant::now();
    println!("RESULT shaped_pod ms={}", ms(t.elapsed()));
    netem_pod_case(s, cri, &app).await?;
    first_packet_case(s, &shaped_pod).await?;
    let log = plugin.log();
    let installed = log
        .lines()
        .find(|l| l.contains("netem installed") && l.contains("pod=default/shaped"))
        .unwrap_or("(no `netem installed` line in the plugin log)");
    println!("INFO {installed}");
    for line in log.lines().filter(|l| l.to_lowercase().contains("hook")) {
        println!("INFO plugin hook| {line}");
    }
    // When the app's first packet left (its log line's time minus its RTT) against when the
    // plugin logged the qdisc installed: both clocks are the VM's.
    let app_log = std::fs::read_to_string(shaped_pod.container_log("app", 0)).unwrap_or_default();
    let sent = app_log
        .lines()
        .find(|l| l.contains("seq=0 "))
        .and_then(|l| Some(day_secs(l)? - first_rtt(l)? / 1000.0));
    if let (Some(sent), Some(at)) = (sent, day_secs(installed)) {
        println!(
            "RESULT first_packet_vs_install netem_installed_before_first_packet_ms={:.0}",
            (sent - at) * 1000.0
        );
    }
    // With the delay in place, pod-to-pod RTT is ~100 ms (one direction shaped).
    let out = cri
        .exec_sync(&app, &["ping", "-c", "3", "-q", &peer_ip], 30)
        .await?;
    let avg = ping_avg(&out.stdout);
    println!("RESULT netem_pod_rtt avg_ms={avg:.1}");
    s.check(
        "netem_pod_rtt_100ms",
        (95.0..=130.0).contains(&avg),
        format!("avg {avg:.1} ms over 3 pings"),
    );

    netem_params_case(s, cri).await?;
    freeze_case(s, cri).await?;
    stress_case(s, cri).await?;

    // After `duration` (20 s from the container start) the qdisc is gone.
    let until = NETEM_DURATION + Duration::from_secs(3);
    if netem_from.elapsed() < until {
        tokio::time::sleep(until - netem_from.elapsed()).await;
    }
    let pid = cri.container_pid(&app).await?.context("app has no pid")?;
    let qdisc = tc_show(pid)?;
    s.check(
        "netem_pod_removed_after_duration",
        !qdisc.contains("netem"),
        format!(
            "{:.1} s after start: {qdisc}",
            netem_from.elapsed().as_secs_f64()
        ),
    );
    Ok(())
}

/// `ip -4 -o addr show eth0` in the container: its pod IP.
async fn pod_ip(cri: &Cri, id: &str) -> Result<String> {
    let out = cri
        .exec_sync(id, &["ip", "-4", "-o", "addr", "show", "eth0"], 20)
        .await?;
    out.stdout
        .split_whitespace()
        .skip_while(|w| *w != "inet")
        .nth(1)
        .and_then(|a| a.split('/').next())
        .map(str::to_string)
        .with_context(|| format!("no IPv4 address on eth0: {}", out.stdout))
}

/// `tc -s qdisc show` inside the netns of `pid`.
fn tc_show(pid: u32) -> Result<String> {
    let netns = format!("--net=/proc/{pid}/ns/net");
    let out = Command::new("nsenter")
        .args([netns.as_str(), "tc", "-s", "qdisc", "show"])
        .stdin(Stdio::null())
        .output()
        .context("running nsenter tc")?;
    if !out.status.success() {
        bail!(
            "nsenter tc failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

async fn netem_pod_case(s: &mut AssertSuite, cri: &Cri, app: &str) -> Result<()> {
    let pid = cri.container_pid(app).await?.context("app has no pid")?;
    // The plugin installs the qdisc asynchronously after CreateContainer: poll for it.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut qdisc = tc_show(pid)?;
    while !qdisc.contains("netem") && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        qdisc = tc_show(pid)?;
    }
    for line in qdisc.lines() {
        println!("INFO tc| {line}");
    }
    let netem_line = qdisc
        .lines()
        .find(|l| l.contains("netem"))
        .unwrap_or("")
        .trim()
        .to_string();
    s.check(
        "netem_pod_tc_delay_100ms",
        netem_line.contains("delay 100ms") && netem_line.contains("dev eth0"),
        &netem_line,
    );
    Ok(())
}

/// Seconds since midnight of the RFC 3339 timestamp a log line starts with (plugin log:
/// `2026-11-22T21:10:16.364555Z  INFO ...`; CRI log: `2026-11-22T21:10:18.159625Z stdout F ...`).
fn day_secs(line: &str) -> Option<f64> {
    let time = line.split_whitespace().next()?.split_once('T')?.1;
    let time = time.trim_end_matches('Z');
    let mut parts = time.split(':');
    let h: f64 = parts.next()?.parse().ok()?;
    let m: f64 = parts.next()?.parse().ok()?;
    let s: f64 = parts.next()?.parse().ok()?;
    Some(h * 3600.0 + m * 60.0 + s)
}

/// `{delay: 100ms, jitter: 10ms, loss: 20%, rate: 1mbit}` on a real pod: `tc` in the pod netns
/// shows exactly those parameters.
async fn netem_params_case(s: &mut AssertSuite, cri: &Cri) -> Result<()> {
    let pod = cri
        .run_pod(&PodSpec::new("params").annotation(
            "netem.nri-chaos.io/pod",
            "{delay: 100ms, jitter: 10ms, loss: 20%, rate: 1mbit, duration: 60s}",
        ))
        .await?;
    let id = cri
        .run_container(&pod, &ContainerSpec::new("app", SLEEPER))
        .await?;
    let pid = cri.container_pid(&id).await?.context("no pid")?;
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut qdisc = tc_show(pid)?;
    while !qdisc.contains("netem") && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        qdisc = tc_show(pid)?;
    }
    let line = qdisc
        .lines()
        .find(|l| l.contains("netem"))
        .unwrap_or("")
        .trim()
        .to_string();
    println!("INFO tc params| {line}");
    let extras = ["duplicate", "corrupt", "reorder", "gap"];
    s.check(
        "netem_pod_tc_all_params",
        line.contains("dev eth0")
            && line.contains("delay 100ms  10ms")
            && line.contains("loss 20%")
            && line.contains("rate 1Mbit")
            && !extras.iter().any(|e| line.contains(e)),
        &line,
    );
    Ok(())
}

/// The RTT of `seq=0` in busybox ping output (`64 bytes from ...: seq=0 ttl=64 time=100.6 ms`).
fn first_rtt(log: &str) -> Option<f64> {
    log.lines()
        .find(|l| l.contains("seq=0 "))?
        .split("time=")
        .nth(1)?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The avg of busybox ping's `round-trip min/avg/max = a/b/c ms`.
fn ping_avg(out: &str) -> f64 {
    out.lines()
        .find_map(|l| l.split_once("min/avg/max = "))
        .and_then(|(_, v)| v.split('/').nth(1)?.trim().parse().ok())
        .unwrap_or(f64::NAN)
}

async fn first_packet_case(s: &mut AssertSuite, pod: &Pod) -> Result<()> {
    let log_path = pod.container_log("app", 0);
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut log = String::new();
    while Instant::now() < deadline {
        log = std::fs::read_to_string(&log_path).unwrap_or_default();
        if log.contains("round-trip") || log.contains("packet loss") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for line in log.lines() {
        println!("INFO app log| {line}");
    }
    let rtts: Vec<String> = log
        .lines()
        .filter_map(|l| l.split("time=").nth(1))
        .filter_map(|r| r.split_whitespace().next())
        .map(str::to_string)
        .collect();
    let first = first_rtt(&log);
    println!(
        "RESULT first_packet rtt1_ms={} rtts_ms={}",
        first.map_or("none".to_string(), |r| format!("{r:.1}")),
        rtts.join(",")
    );
    s.check(
        "first_packet_rtt_ge_100ms",
        first.is_some_and(|r| r >= 100.0),
        format!(
            "packet 1 RTT {} (container log {})",
            first.map_or("missing".to_string(), |r| format!("{r:.1} ms")),
            log_path.display()
        ),
    );
    Ok(())
}

/// The cgroup v2 directory of a process (`0::/path` in `/proc/<pid>/cgroup`).
fn cgroup_of(pid: u32) -> Result<PathBuf> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup"))?;
    let rel = text
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .with_context(|| format!("no cgroup v2 entry for {pid}: {text}"))?;
    Ok(Path::new("/sys/fs/cgroup").join(rel.trim_start_matches('/')))
}

fn usage_usec(cg: &Path) -> Result<u64> {
    let text = std::fs::read_to_string(cg.join("cpu.stat"))
        .with_context(|| format!("reading {}/cpu.stat", cg.display()))?;
    text.lines()
        .find_map(|l| l.strip_prefix("usage_usec "))
        .and_then(|v| v.trim().parse().ok())
        .context("cpu.stat has no usage_usec")
}

fn read(cg: &Path, file: &str) -> String {
    std::fs::read_to_string(cg.join(file))
        .map(|s| s.trim().replace('\n', " "))
        .unwrap_or_else(|e| format!("({file}: {e})"))
}

async fn sleep_until(start: Instant, at: Duration) {
    if let Some(left) = at.checked_sub(start.elapsed()) {
        tokio::time::sleep(left).await;
    }
}

/// `{after: 2s, duration: 5s}` on a counter: cgroup.events says frozen 1 and the counter
/// stands still in the window; thawed (frozen 0) and counting after it.
async fn freeze_case(s: &mut AssertSuite, cri: &Cri) -> Result<()> {
    let pod = cri
        .run_pod(&PodSpec::new("frozen").annotation(
            "freeze.nri-chaos.io/container.app",
            "{after: 2s, duration: 5s}",
        ))
        .await?;
    let counter = &[
        "sh",
        "-c",
        "while :; do echo x >> /counter; usleep 20000; done",
    ];
    let id = cri
        .run_container(&pod, &ContainerSpec::new("app", counter))
        .await?;
    let start = Instant::now();
    let pid = cri.container_pid(&id).await?.context("no pid")?;
    let cg = cgroup_of(pid)?;
    let count = |pid: u32| {
        std::fs::metadata(format!("/proc/{pid}/root/counter"))
            .map(|m| m.len())
            .unwrap_or(0)
    };
    println!("INFO freeze container cgroup {}", cg.display());
    sleep_until(start, Duration::from_millis(1000)).await;
    let before_events = read(&cg, "cgroup.events");
    sleep_until(start, Duration::from_millis(3500)).await;
    let events = read(&cg, "cgroup.events");
    let freeze_file = read(&cg, "cgroup.freeze");
    let a = count(pid);
    let u_a = usage_usec(&cg)?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let b = count(pid);
    let u_b = usage_usec(&cg)?;
    sleep_until(start, Duration::from_millis(8500)).await;
    let after_events = read(&cg, "cgroup.events");
    let c = count(pid);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let d = count(pid);
    println!(
        "RESULT freeze_pod before=\"{before_events}\" during=\"{events}\" cgroup.freeze={freeze_file} \
         counter_during={a}->{b} usage_during_us={} after=\"{after_events}\" counter_after={c}->{d}",
        u_b - u_a
    );
    s.check(
        "freeze_pod_thawed_before_after",
        before_events.contains("frozen 0"),
        &before_events,
    );
    s.check(
        "freeze_pod_events_frozen_1",
        events.contains("frozen 1") && freeze_file == "1",
        format!("cgroup.events: {events}; cgroup.freeze: {freeze_file}"),
    );
    s.check(
        "freeze_pod_counter_still",
        a > 0 && a == b && u_a == u_b,
        format!("counter {a} -> {b}, usage_usec {u_a} -> {u_b} over 1 s"),
    );
    s.check(
        "freeze_pod_thawed_after_duration",
        after_events.contains("frozen 0") && d > c,
        format!("cgroup.events: {after_events}; counter {c} -> {d}"),
    );
    Ok(())
}

/// `{cpu: {workers: 1, load: 50}, duration: 10s}`: the container cgroup's usage_usec grows by
/// 50% +/- 10% of one CPU over the window, and the stressor is gone after it.
async fn stress_case(s: &mut AssertSuite, cri: &Cri) -> Result<()> {
    let pod = cri
        .run_pod(&PodSpec::new("cpu").annotation(
            "stress.nri-chaos.io/container.app",
            "{cpu: {workers: 1, load: 50}, duration: 10s}",
        ))
        .await?;
    let id = cri
        .run_container(&pod, &ContainerSpec::new("app", SLEEPER))
        .await?;
    let start = Instant::now();
    let pid = cri.container_pid(&id).await?.context("no pid")?;
    let cg = cgroup_of(pid)?;
    sleep_until(start, Duration::from_millis(1500)).await;
    let procs_during = read(&cg, "cgroup.procs");
    let (u0, t0) = (usage_usec(&cg)?, Instant::now());
    sleep_until(start, Duration::from_millis(8500)).await;
    let (u1, t1) = (usage_usec(&cg)?, Instant::now());
    let share = (u1 - u0) as f64 / 1e6 / (t1 - t0).as_secs_f64();
    sleep_until(start, Duration::from_millis(12_000)).await;
    let procs_after = read(&cg, "cgroup.procs");
    println!(
        "RESULT stress_pod requested_pct=50 measured_pct={:.1} window_ms={} procs_during=\"{procs_during}\" procs_after=\"{procs_after}\"",
        share * 100.0,
        ms(t1 - t0)
    );
    s.check(
        "stress_pod_worker_in_container_cgroup",
        procs_during.split_whitespace().count() >= 2,
        format!("cgroup.procs during: {procs_during}"),
    );
    s.check(
        "stress_pod_cpu_load_50pct",
        (0.40..=0.60).contains(&share),
        format!("{:.1}% of one CPU from cpu.stat usage_usec", share * 100.0),
    );
    s.check(
        "stress_pod_gone_after_duration",
        procs_after.split_whitespace().count() == 1,
        format!("cgroup.procs after: {procs_after}"),
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busybox_ping_output_parses() {
        let out = "PING 10.213.5.3 (10.213.5.3): 56 data bytes\n\
                   64 bytes from 10.213.5.3: seq=0 ttl=64 time=201.337 ms\n\
                   64 bytes from 10.213.5.3: seq=1 ttl=64 time=100.512 ms\n\
                   round-trip min/avg/max = 100.512/150.924/201.337 ms\n";
        assert_eq!(first_rtt(out), Some(201.337));
        let cri = "2026-11-22T21:10:18.15962523Z stdout F 64 bytes from 10.213.22.2: seq=0";
        let at = day_secs(cri).unwrap_or_default();
        assert!((at - (21.0 * 3600.0 + 10.0 * 60.0 + 18.15962523)).abs() < 1e-6);
        assert_eq!(day_secs("garbage"), None);
        assert!((ping_avg(out) - 150.924).abs() < 1e-9);
        assert_eq!(first_rtt("nothing"), None);
        assert!(ping_avg("").is_nan());
    }
}
