//! The `net` suite's figures: apply and remove time of a partition with 1 / 10 / 100 targets
//! by netlink (the injector's own apply and recovery) against the same tree and rules by one
//! `nsenter ... tc` process per rule (as tc-based tools do it), and the connect time to an
//! untargeted peer with and without 100 targets installed. `iptables` is not in the VM image
//! (nor on the host), so the iptables half of the comparison is reported SKIPPED by name.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use injector::faults::net::{Direction, Target};
use injector::faults::partition::PartitionFault;
use injector::faults::{Fault, HostKernel, NoUndoLog};

/// Runs `tc` in `pid`'s namespace, one process per call (the comparison's unit).
fn tc(pid: u32, args: &[String]) -> Result<()> {
    let status = Command::new("nsenter")
        .arg(format!("--net=/proc/{pid}/ns/net"))
        .arg("tc")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .status()
        .context("running nsenter tc")?;
    if !status.success() {
        bail!("tc {args:?} failed");
    }
    Ok(())
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

/// Prints the figures; `connect_median` times a connect from `pid` to `peer`.
pub(crate) fn figures(
    pid: u32,
    peer: SocketAddr,
    connect_median: impl Fn(u32, SocketAddr) -> Result<Option<Duration>>,
) -> Result<()> {
    // One discarded round of each, so the first figure is not a cold start.
    by_netlink(pid, 1)?;
    by_tc(pid, 1)?;
    for n in [1usize, 10, 100] {
        let (nl_apply, nl_remove) = by_netlink(pid, n)?;
        let (tc_apply, tc_remove) = by_tc(pid, n)?;
        let ratio = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64().max(1e-9);
        println!(
            "RESULT partition_apply targets={n} netlink_us={} tc_us={} ratio={:.1} remove_netlink_us={} remove_tc_us={} remove_ratio={:.1}",
            us(nl_apply),
            us(tc_apply),
            ratio(tc_apply, nl_apply),
            us(nl_remove),
            us(tc_remove),
            ratio(tc_remove, nl_remove),
        );
    }
    println!("[nri-chaos-tests] SKIPPED partition_by_iptables: iptables is not in the VM image (not on the host either); the comparison is with tc processes only");
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
