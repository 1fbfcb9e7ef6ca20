//! The `net` VM node suite: targeted network faults on real pods A (faulted), B and C (peers)
//! on the CNI bridge. Probes run in the pods' network namespaces from this process (a thread
//! joins `/proc/<pid>/ns/net`): TCP listeners on B and C (8080, 9090) that count what they
//! receive, a TCP connect timer, a UDP datagram.
//!
//! - `partition_*`: `{to: [B/32], direction: egress, duration}`: A -> B connect times out,
//!   A -> C connects, B -> A (a datagram) arrives; after `duration`, A -> B connects again.
//! - `ingress_*`: `netem {loss: 100%, direction: ingress, to: [C/32]}`: an ifb device appears,
//!   datagrams from C are dropped, from B they arrive; at `duration` the device is gone.
//! - `netem_to_*`: `{delay: 100ms, to: [B:8080/tcp]}`: connect time to B:8080 rises by ~100 ms,
//!   to B:9090 and C:8080 it does not; containerd restarts during it; at `duration` nothing of
//!   ours is left.
//! - `bandwidth_*`: `{rate: 4mbit, to: [B/32]}`: 5 s of TCP to B within 10% of the rate, to C
//!   well above it.
//! - `crash_*`: a foreign root tbf on A's eth0, then `partition` (both ways) fires; the plugin
//!   is SIGKILLed mid-fault and restarted: the new process resumes the journaled fault and at
//!   its deadline nothing of ours is left and `tc -d qdisc show` / `tc filter show` are as
//!   before, byte for byte.

use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use nri_chaos_tests::vm::AssertSuite;
use nri_chaos_tests::{plugin_binary, ContainerSpec, Cri, Node, PluginProcess, PodSpec};

use crate::{finish, ms, start_node};

const SLEEPER: &[&str] = &["sleep", "3600"];
/// The bandwidth limit: 4 mbit = 500 000 bytes/s.
const RATE_BYTES: f64 = 500_000.0;

pub(crate) async fn run(s: &mut AssertSuite) -> Result<()> {
    let (mut node, plugin, cri) = start_node(s).await?;
    let mut plugin = Some(plugin);
    let outcome = scenarios(s, &mut node, &cri, &mut plugin).await;
    let plugin = match plugin {
        Some(p) => p,
        None => node.start_plugin(&plugin_binary(), "")?,
    };
    finish(s, node, plugin, outcome).await
}

/// Runs `f` on a thread inside the network namespace of `pid`.
fn in_netns<T: Send + 'static>(
    pid: u32,
    f: impl FnOnce() -> T + Send + 'static,
) -> std::thread::JoinHandle<Result<T>> {
    std::thread::spawn(move || {
        let ns = std::fs::File::open(format!("/proc/{pid}/ns/net"))?;
        // SAFETY: setns(2) on a valid open namespace fd; it moves only this thread.
        let rc = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
        if rc != 0 {
            bail!("setns: {}", std::io::Error::last_os_error());
        }
        Ok(f())
    })
}

fn joined<T>(h: std::thread::JoinHandle<Result<T>>) -> Result<T> {
    h.join()
        .map_err(|_| anyhow::anyhow!("probe thread panicked"))?
}

/// A listener on `port` in `pid`'s namespace that counts the bytes it receives.
fn listen(pid: u32, port: u16) -> Result<Arc<AtomicU64>> {
    let count = Arc::new(AtomicU64::new(0));
    let counter = count.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    in_netns(pid, move || {
        let listener = match TcpListener::bind(("0.0.0.0", port)) {
            Ok(l) => l,
            Err(e) => {
                let _ = tx.send(Err(e.to_string()));
                return;
            }
        };
        let _ = tx.send(Ok(()));
        for stream in listener.incoming().flatten() {
            let counter = counter.clone();
            std::thread::spawn(move || {
                let mut stream = stream;
                let mut buf = vec![0u8; 64 * 1024];
                while let Ok(n) = std::io::Read::read(&mut stream, &mut buf) {
                    if n == 0 {
                        break;
                    }
                    counter.fetch_add(n as u64, Ordering::Relaxed);
                }
            });
        }
    });
    match rx.recv_timeout(Duration::from_secs(5)) {
        Ok(Ok(())) => Ok(count),
        Ok(Err(e)) => bail!("listen on {port} in pid {pid}'s netns: {e}"),
        Err(_) => bail!("listener on {port} did not start"),
    }
}

/// Connect time from `pid`'s namespace to `to` (None: it timed out or failed).
fn connect(pid: u32, to: SocketAddr, timeout: Duration) -> Result<Option<Duration>> {
    joined(in_netns(pid, move || {
        let t = Instant::now();
        TcpStream::connect_timeout(&to, timeout)
            .ok()
            .map(|_| t.elapsed())
    }))
}

/// The median of five connect times (None when any failed).
fn connect_median(pid: u32, to: SocketAddr) -> Result<Option<Duration>> {
    let mut times = Vec::new();
    for _ in 0..5 {
        match connect(pid, to, Duration::from_secs(3))? {
            Some(t) => times.push(t),
            None => return Ok(None),
        }
    }
    times.sort();
    Ok(Some(times[2]))
}

/// Whether a datagram from `from`'s namespace reaches `to_pid`'s namespace at `to`.
fn datagram_arrives(from: u32, to_pid: u32, to: SocketAddr) -> Result<bool> {
    let port = to.port();
    let rx = joined(in_netns(to_pid, move || {
        let socket = UdpSocket::bind(("0.0.0.0", port))?;
        socket.set_read_timeout(Some(Duration::from_secs(2)))?;
        Ok::<_, std::io::Error>(socket)
    }))??;
    joined(in_netns(from, move || {
        let socket = UdpSocket::bind("0.0.0.0:0")?;
        for _ in 0..3 {
            socket.send_to(b"hello", to)?;
        }
        Ok::<_, std::io::Error>(())
    }))??;
    let mut buf = [0u8; 16];
    Ok(rx.recv_from(&mut buf).is_ok())
}

/// Bytes per second `pid` gets through to `to` (counted by its listener) over `window`.
fn throughput(pid: u32, to: SocketAddr, counter: &Arc<AtomicU64>, window: Duration) -> Result<f64> {
    let sender = in_netns(pid, move || {
        let Ok(mut stream) = TcpStream::connect_timeout(&to, Duration::from_secs(3)) else {
            return;
        };
        let chunk = vec![7u8; 64 * 1024];
        let end = Instant::now() + window + Duration::from_secs(3);
        while Instant::now() < end {
            if std::io::Write::write_all(&mut stream, &chunk).is_err() {
                break;
            }
        }
    });
    // One second to fill the pipe, then the window.
    std::thread::sleep(Duration::from_secs(1));
    let (start, t) = (counter.load(Ordering::Relaxed), Instant::now());
    std::thread::sleep(window);
    let got = counter.load(Ordering::Relaxed) - start;
    let rate = got as f64 / t.elapsed().as_secs_f64();
    let _ = sender.join();
    Ok(rate)
}

/// `tc <args>` inside `pid`'s namespace.
fn tc(pid: u32, args: &[&str]) -> Result<String> {
    let netns = format!("--net=/proc/{pid}/ns/net");
    let out = Command::new("nsenter")
        .arg(&netns)
        .arg("tc")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .context("running nsenter tc")?;
    if !out.status.success() {
        bail!(
            "tc {args:?}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `ip -o link show` inside `pid`'s namespace.
fn ip_links(pid: u32) -> Result<String> {
    let out = Command::new("nsenter")
        .arg(format!("--net=/proc/{pid}/ns/net"))
        .args(["ip", "-o", "link", "show"])
        .stdin(Stdio::null())
        .output()
        .context("running nsenter ip")?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Everything of ours on eth0 (qdiscs with handle 4e43:/4e5x:, ingress, u32 filters).
fn ours(pid: u32) -> Result<String> {
    let qdiscs = tc(pid, &["qdisc", "show", "dev", "eth0"])?;
    let filters = tc(pid, &["filter", "show", "dev", "eth0"])?;
    let ingress = tc(pid, &["filter", "show", "dev", "eth0", "ingress"])?;
    let mut found: Vec<String> = qdiscs
        .lines()
        .filter(|l| l.contains(" 4e4") || l.contains(" 4e5") || l.contains("ingress"))
        .map(str::to_string)
        .collect();
    found.extend(filters.lines().chain(ingress.lines()).map(str::to_string));
    Ok(found.join(" | "))
}

async fn pod_with(
    cri: &Cri,
    name: &str,
    annotation: Option<(&str, &str)>,
) -> Result<(String, u32, String)> {
    let mut spec = PodSpec::new(name);
    if let Some((k, v)) = annotation {
        spec = spec.annotation(k, v);
    }
    let pod = cri.run_pod(&spec).await?;
    let id = cri
        .run_container(&pod, &ContainerSpec::new(name, SLEEPER))
        .await?;
    let pid = cri.container_pid(&id).await?.context("no pid")?;
    let out = cri
        .exec_sync(&id, &["ip", "-4", "-o", "addr", "show", "eth0"], 20)
        .await?;
    let ip = out
        .stdout
        .split_whitespace()
        .skip_while(|w| *w != "inet")
        .nth(1)
        .and_then(|a| a.split('/').next())
        .map(str::to_string)
        .with_context(|| format!("no IPv4 address on eth0: {}", out.stdout))?;
    Ok((id, pid, ip))
}

async fn wait_for(pid: u32, needle: &str, timeout: Duration) -> Result<String> {
    let deadline = Instant::now() + timeout;
    loop {
        let shown = tc(pid, &["qdisc", "show", "dev", "eth0"])?;
        if shown.contains(needle) || Instant::now() >= deadline {
            return Ok(shown);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn wait_gone(pid: u32, timeout: Duration) -> Result<String> {
    let deadline = Instant::now() + timeout;
    loop {
        let left = ours(pid)?;
        if left.is_empty() || Instant::now() >= deadline {
            return Ok(left);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn addr(ip: &str, port: u16) -> Result<SocketAddr> {
    Ok(format!("{ip}:{port}").parse()?)
}

async fn scenarios(
    s: &mut AssertSuite,
    node: &mut Node,
    cri: &Cri,
    plugin: &mut Option<PluginProcess>,
) -> Result<()> {
    let (_, b_pid, b_ip) = pod_with(cri, "peer-b", None).await?;
    let (_, c_pid, c_ip) = pod_with(cri, "peer-c", None).await?;
    let b8080 = listen(b_pid, 8080)?;
    let _b9090 = listen(b_pid, 9090)?;
    let c8080 = listen(c_pid, 8080)?;
    println!("RESULT peers b={b_ip} c={c_ip}");

    // Partition, egress only.
    let value = format!("{{to: [{b_ip}/32], direction: egress, duration: 20s}}");
    let (_, a_pid, a_ip) =
        pod_with(cri, "cut", Some(("partition.nri-chaos.io/pod", &value))).await?;
    // The fault's duration counts from the container's start, which is before the pod is
    // reported running: timed from here, a slow sandbox (8-20 s under TCG on a loaded host)
    // does not eat the grace.
    let t = Instant::now();
    let tree = wait_for(a_pid, "prio 4e43:", Duration::from_secs(10)).await?;
    s.check(
        "partition_tree_installed",
        tree.contains("qdisc prio 4e43: root"),
        tree.replace('\n', " | "),
    );
    let to_b = connect(a_pid, addr(&b_ip, 8080)?, Duration::from_secs(2))?;
    s.check(
        "partition_a_to_b_times_out",
        to_b.is_none(),
        format!("{to_b:?}"),
    );
    let to_c = connect(a_pid, addr(&c_ip, 8080)?, Duration::from_secs(2))?;
    s.check(
        "partition_a_to_c_works",
        to_c.is_some(),
        format!("{to_c:?}"),
    );
    let b_to_a = datagram_arrives(b_pid, a_pid, addr(&a_ip, 7000)?)?;
    s.check(
        "partition_egress_b_to_a_arrives",
        b_to_a,
        "a UDP datagram B -> A",
    );

    // Ingress loss from C through the ifb device, while the partition holds elsewhere.
    let value = format!("{{loss: 100%, direction: ingress, to: [{c_ip}/32], duration: 15s}}");
    let (_, deaf_pid, deaf_ip) =
        pod_with(cri, "deaf", Some(("netem.nri-chaos.io/pod", &value))).await?;
    let t_deaf = Instant::now();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut links = ip_links(deaf_pid)?;
    while !links.contains("ifb4e43-") && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        links = ip_links(deaf_pid)?;
    }
    s.check(
        "ingress_ifb_created",
        links.contains("ifb4e43-"),
        links.replace('\n', " | "),
    );
    let from_c = datagram_arrives(c_pid, deaf_pid, addr(&deaf_ip, 7001)?)?;
    s.check("ingress_from_c_dropped", !from_c, "a UDP datagram C -> A");
    let from_b = datagram_arrives(b_pid, deaf_pid, addr(&deaf_ip, 7002)?)?;
    s.check("ingress_from_b_arrives", from_b, "a UDP datagram B -> A");
    let until = Duration::from_secs(22);
    if t.elapsed() < until {
        tokio::time::sleep(until - t.elapsed()).await;
    }
    let left = wait_gone(a_pid, Duration::from_secs(5)).await?;
    let again = connect(a_pid, addr(&b_ip, 8080)?, Duration::from_secs(2))?;
    s.check(
        "partition_removed_at_duration",
        left.is_empty() && again.is_some(),
        format!("left: [{left}] connect: {again:?}"),
    );
    let until = Duration::from_secs(17);
    if t_deaf.elapsed() < until {
        tokio::time::sleep(until - t_deaf.elapsed()).await;
    }
    let left = wait_gone(deaf_pid, Duration::from_secs(5)).await?;
    let links = ip_links(deaf_pid)?;
    let from_c = datagram_arrives(c_pid, deaf_pid, addr(&deaf_ip, 7003)?)?;
    s.check(
        "ingress_ifb_gone_at_duration",
        left.is_empty() && !links.contains("ifb4e43-") && from_c,
        format!(
            "left: [{left}] links: {} from C: {from_c}",
            links.replace('\n', " | ")
        ),
    );

    // netem towards B:8080/tcp only; containerd restarts while it holds.
    let value = format!("{{delay: 100ms, to: ['{b_ip}:8080/tcp'], duration: 40s}}");
    let t = Instant::now();
    let (_, a_pid, _) = pod_with(cri, "slow", Some(("netem.nri-chaos.io/pod", &value))).await?;
    let tree = wait_for(a_pid, "netem", Duration::from_secs(10)).await?;
    for line in tree.lines() {
        println!("INFO tc| {line}");
    }
    let slow = connect_median(a_pid, addr(&b_ip, 8080)?)?;
    let other_port = connect_median(a_pid, addr(&b_ip, 9090)?)?;
    let other_peer = connect_median(a_pid, addr(&c_ip, 8080)?)?;
    println!("RESULT netem_to connect_ms b8080={slow:?} b9090={other_port:?} c8080={other_peer:?}");
    let ms_of = |d: Option<Duration>| d.map_or(f64::MAX, |d| d.as_secs_f64() * 1000.0);
    s.check(
        "netem_to_b8080_plus_100ms",
        ms_of(slow) >= 95.0 && ms_of(slow) - ms_of(other_port) >= 80.0,
        format!(
            "B:8080 {:.1} ms, B:9090 {:.1} ms",
            ms_of(slow),
            ms_of(other_port)
        ),
    );
    s.check(
        "netem_to_others_unaffected",
        ms_of(other_port) < 50.0 && ms_of(other_peer) < 50.0,
        format!(
            "B:9090 {:.1} ms, C:8080 {:.1} ms",
            ms_of(other_port),
            ms_of(other_peer)
        ),
    );
    node.restart_containerd().await?;
    let during = ours(a_pid)?;
    s.check(
        "netem_to_survives_containerd_restart",
        during.contains("netem"),
        &during,
    );
    let until = Duration::from_secs(43);
    if t.elapsed() < until {
        tokio::time::sleep(until - t.elapsed()).await;
    }
    let left = wait_gone(a_pid, Duration::from_secs(10)).await?;
    s.check(
        "netem_to_nothing_left_after_containerd_restart",
        left.is_empty(),
        &left,
    );

    // Bandwidth towards B only.
    let value = format!("{{rate: 4mbit, to: [{b_ip}/32], duration: 60s}}");
    let (_, a_pid, _) =
        pod_with(cri, "narrow", Some(("bandwidth.nri-chaos.io/pod", &value))).await?;
    let tree = wait_for(a_pid, "tbf", Duration::from_secs(10)).await?;
    s.check(
        "bandwidth_tbf_installed",
        tree.contains("qdisc tbf 4e52:"),
        tree.replace('\n', " | "),
    );
    let to_b = throughput(a_pid, addr(&b_ip, 8080)?, &b8080, Duration::from_secs(5))?;
    let to_c = throughput(a_pid, addr(&c_ip, 8080)?, &c8080, Duration::from_secs(5))?;
    println!("RESULT bandwidth bytes_per_s to_b={to_b:.0} to_c={to_c:.0} limit={RATE_BYTES:.0}");
    s.check(
        "bandwidth_to_b_within_10pct",
        (to_b - RATE_BYTES).abs() <= RATE_BYTES * 0.10,
        format!("{to_b:.0} B/s against {RATE_BYTES:.0}"),
    );
    s.check(
        "bandwidth_to_c_unlimited",
        to_c > RATE_BYTES * 2.0,
        format!("{to_c:.0} B/s"),
    );

    // Crash: a foreign root qdisc, partition both ways, SIGKILL, restart.
    let value = format!("{{to: [{b_ip}/32], after: 8s, duration: 25s}}");
    let (_, a_pid, _) =
        pod_with(cri, "crash", Some(("partition.nri-chaos.io/pod", &value))).await?;
    tc(
        a_pid,
        &[
            "qdisc", "add", "dev", "eth0", "root", "handle", "1:", "tbf", "rate", "100mbit",
            "burst", "64k", "latency", "50ms",
        ],
    )?;
    let before = tc(a_pid, &["-d", "qdisc", "show", "dev", "eth0"])?;
    let before_filters = tc(a_pid, &["filter", "show", "dev", "eth0"])?;
    let tree = wait_for(a_pid, "prio 4e43:", Duration::from_secs(20)).await?;
    let fired = Instant::now();
    s.check(
        "crash_tree_with_foreign_below",
        tree.contains("qdisc prio 4e43: root")
            && tree.contains("qdisc tbf 1: parent 4e43:1")
            && tree.contains("qdisc ingress ffff:"),
        tree.replace('\n', " | "),
    );
    if let Some(p) = plugin.take() {
        p.kill()?;
    }
    let held = ours(a_pid)?;
    s.check("crash_tree_outlives_sigkill", held.contains("4e43"), &held);
    let t = Instant::now();
    let restarted = node.start_plugin(&plugin_binary(), "")?;
    restarted
        .wait_log_contains("synchronized with the runtime", Duration::from_secs(30))
        .await?;
    *plugin = Some(restarted);
    // The new process resumes the journaled fault and recovers it at its deadline from the
    // journal entry alone (it never applied it).
    let deadline = Duration::from_secs(25 + 5);
    let left = wait_gone(a_pid, deadline.saturating_sub(fired.elapsed())).await?;
    let after = tc(a_pid, &["-d", "qdisc", "show", "dev", "eth0"])?;
    let after_filters = tc(a_pid, &["filter", "show", "dev", "eth0"])?;
    println!("RESULT crash_recovery ms={}", ms(t.elapsed()));
    s.check("crash_nothing_left", left.is_empty(), &left);
    s.check(
        "crash_foreign_root_byte_for_byte",
        after == before && after_filters == before_filters,
        format!("before: {} | after: {}", before.trim(), after.trim()),
    );

    // Figures, on a pod of their own.
    let (_, d_pid, _) = pod_with(cri, "bench", None).await?;
    crate::net_bench::figures(d_pid, addr(&c_ip, 8080)?, connect_median)?;
    Ok(())
}
