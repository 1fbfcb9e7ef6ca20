//! The `net` suite's figures: apply and remove time of a partition with 1 / 10 / 100 targets
//! by netlink (the injector's own apply and recovery) against the same drop rules set up the
//! ways other tools do it, one `nsenter --net=... <tool>` process per command:
//! - tc: our tree's prio root, one u32 + gact drop filter per target, `qdisc del` to remove;
//! - iptables + ipset, as Chaos Mesh's daemon does it: `ipset create <set>old hash:net`, one
//!   `ipset add` per target, `ipset rename`, `iptables -A OUTPUT -m set --match-set <set> dst
//!   -j DROP -w 5`; removed by `iptables -D` of that rule and `ipset destroy` (bookworm's
//!   legacy iptables and ipset, carried into the VM from `tests/scripts/fetch-iptables.sh`);
//!
//! the steps netlink's apply and removal are made of (`netlink_steps`), and the connect time to
//! an untargeted peer with and without 100 targets installed.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use injector::faults::net::{Direction, Target};
use injector::faults::partition::PartitionFault;
use injector::faults::{Fault, HostKernel, NoUndoLog};
use injector::seams::netlink::{KernelNetlink, Netlink};

/// Runs `tool args` in `pid`'s namespace, one process per call (the comparison's unit).
fn nsenter(pid: u32, tool: &[&str], args: &[String]) -> Result<()> {
    let status = Command::new("nsenter")
        .arg(format!("--net=/proc/{pid}/ns/net"))
        .args(tool)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .status()
        .with_context(|| format!("running nsenter {tool:?}"))?;
    if !status.success() {
        bail!("{tool:?} {args:?} failed ({status})");
    }
    Ok(())
}

fn tc(pid: u32, args: &[String]) -> Result<()> {
    nsenter(pid, &["tc"], args)
}

/// Legacy iptables (the multi binary takes the applet's name first).
fn iptables(pid: u32, args: &[String]) -> Result<()> {
    nsenter(pid, &["/usr/sbin/xtables-legacy-multi", "iptables"], args)
}

fn ipset(pid: u32, args: &[String]) -> Result<()> {
    nsenter(pid, &["/usr/sbin/ipset"], args)
}

fn targets(n: usize) -> Vec<Target> {
    (0..n)
        .map(|i| Target::parse(&format!("10.99.{}.{}", i / 250, i % 250 + 1)).expect("target"))
        .collect()
}

fn words(text: &str) -> Vec<String> {
    text.split_whitespace().map(str::to_string).collect()
}

/// (apply, remove) by `tc` processes: the prio root, one u32+gact filter per target, delete.
fn by_tc(pid: u32, n: usize) -> Result<(Duration, Duration)> {
    let t = Instant::now();
    tc(pid, &words("qdisc add dev eth0 root handle 4e43: prio bands 16 priomap 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0"))?;
    for target in targets(n) {
        let rule = format!(
            "filter add dev eth0 parent 4e43: protocol ip prio 4 u32 match ip dst {target} action drop"
        );
        tc(pid, &words(&rule))?;
    }
    let apply = t.elapsed();
    let t = Instant::now();
    tc(pid, &words("qdisc del dev eth0 root"))?;
    Ok((apply, t.elapsed()))
}

/// (apply, remove) by iptables + ipset processes, as Chaos Mesh partitions a pod.
fn by_iptables(pid: u32, n: usize) -> Result<(Duration, Duration)> {
    let rule = |op: &str| {
        words(&format!(
            "{op} OUTPUT -m set --match-set nc_part dst -j DROP -w 5"
        ))
    };
    let t = Instant::now();
    ipset(pid, &words("create nc_partold hash:net"))?;
    for target in targets(n) {
        ipset(pid, &words(&format!("add nc_partold {target}")))?;
    }
    ipset(pid, &words("rename nc_partold nc_part"))?;
    iptables(pid, &rule("-A"))?;
    let apply = t.elapsed();
    let t = Instant::now();
    iptables(pid, &rule("-D"))?;
    ipset(pid, &words("destroy nc_part"))?;
    Ok((apply, t.elapsed()))
}

/// (apply, remove) by netlink: the partition fault's own apply and recovery.
fn by_netlink(pid: u32, n: usize) -> Result<(Duration, Duration)> {
    let host = HostKernel::default();
    let fault = PartitionFault {
        to: targets(n),
        direction: Direction::Egress,
        interface: Some("eth0".into()),
    };
    let netns = PathBuf::from(format!("/proc/{pid}/ns/net"));
    let t = Instant::now();
    let undo = fault.apply(&host.kernel(), &netns, &mut NoUndoLog)?;
    let apply = t.elapsed();
    let t = Instant::now();
    PartitionFault::recover(&host.kernel(), undo)?;
    Ok((apply, t.elapsed()))
}

fn us(d: Duration) -> u128 {
    d.as_micros()
}

/// The median apply and the median removal of `rounds` runs of `f`.
fn medians(
    rounds: usize,
    mut f: impl FnMut() -> Result<(Duration, Duration)>,
) -> Result<(Duration, Duration)> {
    let mut applies = Vec::with_capacity(rounds);
    let mut removes = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let (apply, remove) = f()?;
        applies.push(apply);
        removes.push(remove);
    }
    applies.sort();
    removes.sort();
    Ok((applies[rounds / 2], removes[rounds / 2]))
}

/// The median time of `f` over `n` runs.
fn median(n: usize, mut f: impl FnMut() -> Result<()>) -> Result<u128> {
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        f()?;
        times.push(t.elapsed().as_micros());
    }
    times.sort_unstable();
    Ok(times[n / 2])
}

/// What one apply or removal is made of, each step's median of 21: opening the socket in the pod's
/// namespace, a thread spawned and joined (what an open cost before the opener thread), the
/// link and qdisc dumps, one request's round trip.
fn steps(pid: u32) -> Result<()> {
    let netns = PathBuf::from(format!("/proc/{pid}/ns/net"));
    let netlink = KernelNetlink;
    let open = median(21, || netlink.open(&netns).map(drop).map_err(Into::into))?;
    let spawn = median(21, || {
        std::thread::spawn(|| ())
            .join()
            .map_err(|_| anyhow::anyhow!("thread panicked"))
    })?;
    let mut ops = netlink.open(&netns)?;
    let eth0 = ops
        .links()?
        .into_iter()
        .find(|l| l.name == "eth0")
        .context("no eth0")?
        .index;
    let links = median(21, || ops.links().map(drop).map_err(Into::into))?;
    let qdiscs = median(21, || ops.qdiscs(eth0).map(drop).map_err(Into::into))?;
    // Deleting filters that are not there: one request, one acknowledgement.
    let round_trip = median(21, || {
        ops.delete_filters(eth0, 0x4e43_0000, 4, 0x0800)
            .map_err(Into::into)
    })?;
    println!(
        "RESULT netlink_steps open_us={open} thread_spawn_join_us={spawn} links_dump_us={links} qdiscs_dump_us={qdiscs} round_trip_us={round_trip}"
    );
    Ok(())
}

/// Prints the figures; `connect_median` times a connect from `pid` to `peer`.
pub(crate) fn figures(
    pid: u32,
    peer: SocketAddr,
    connect_median: impl Fn(u32, SocketAddr) -> Result<Option<Duration>>,
) -> Result<()> {
    steps(pid)?;
    // One discarded round of each, so the first figure is not a cold start.
    by_netlink(pid, 1)?;
    by_tc(pid, 1)?;
    by_iptables(pid, 1)?;
    let ratio = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64().max(1e-9);
    for n in [1usize, 10, 100] {
        // Medians: a TCG guest on a shared host stalls now and then for milliseconds, which
        // one sample of a 2 ms operation cannot tell from its cost. The process-per-rule
        // baselines take seconds at 100 targets, so one round there.
        let baseline_rounds = if n < 100 { 3 } else { 1 };
        let (nl_apply, nl_remove) = medians(9, || by_netlink(pid, n))?;
        let (tc_apply, tc_remove) = medians(baseline_rounds, || by_tc(pid, n))?;
        let (ipt_apply, ipt_remove) = medians(baseline_rounds, || by_iptables(pid, n))?;
        println!(
            "RESULT partition_apply targets={n} rounds_netlink=9 rounds_baselines={baseline_rounds} netlink_us={} tc_us={} ratio={:.1} iptables_us={} iptables_ratio={:.1}",
            us(nl_apply),
            us(tc_apply),
            ratio(tc_apply, nl_apply),
            us(ipt_apply),
            ratio(ipt_apply, nl_apply),
        );
        println!(
            "RESULT partition_remove targets={n} netlink_us={} tc_us={} ratio={:.1} iptables_us={} iptables_ratio={:.1}",
            us(nl_remove),
            us(tc_remove),
            ratio(tc_remove, nl_remove),
            us(ipt_remove),
            ratio(ipt_remove, nl_remove),
        );
    }
    // The per-packet cost: connect time to an untargeted peer, without and with 100 targets.
    let without = connect_median(pid, peer)?;
    let host = HostKernel::default();
    let fault = PartitionFault {
        to: targets(100),
        direction: Direction::Egress,
        interface: Some("eth0".into()),
    };
    let netns = PathBuf::from(format!("/proc/{pid}/ns/net"));
    let undo = fault.apply(&host.kernel(), &netns, &mut NoUndoLog)?;
    let with = connect_median(pid, peer);
    PartitionFault::recover(&host.kernel(), undo)?;
    let with = with?;
    println!(
        "RESULT untargeted_connect_ms without={:.2} with_100_targets={:.2}",
        without.map_or(f64::NAN, |d| d.as_secs_f64() * 1000.0),
        with.map_or(f64::NAN, |d| d.as_secs_f64() * 1000.0)
    );
    Ok(())
}
