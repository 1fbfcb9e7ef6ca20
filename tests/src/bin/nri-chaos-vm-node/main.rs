//! The VM node suites: run INSIDE the VM of `tests/tests/vm_node.rs` (Debian's cloud kernel,
//! cgroup v2 only, sch_netem loaded) and drive a whole node there with the harness used by the
//! host e2e tests: a private containerd 1.7 with NRI, runc and the CNI bridge
//! ([`Node::start`]), nri-chaos registered ([`Node::start_plugin`]) and the CRI driver
//! ([`nri_chaos_tests::Cri`]).
//!
//! One VM boot runs one suite, named by `NRI_CHAOS_VM_SUITE` (set by the initramfs's `/init`;
//! default `base`), so each suite boots its own VM (one at a time) and a failure names its suite:
//! - `base` ([`base`]): netem on a pod, its first packet, freeze and CPU stress on cgroup v2.
//! - `net` ([`net`]): partition, netem `to`, bandwidth and crash recovery on pods A, B, C.
//! - `crash` ([`crash`]): netem through a plugin and a containerd restart, and crash rounds.
//!
//! Output: `ASSERT <name> ok|fail <detail>`, `RESULT <name> k=v ...`, `INFO ...` lines on
//! stdout (the serial console). Exit code 0 when every assertion passed.
//!
//! Binaries: the plugin is `$NRI_CHAOS_BIN` (the harness's lookup); the hook sits at the
//! plugin's default hook path `/opt/nri-chaos/bin/nri-chaos-hook`.

mod base;
mod crash;
mod net;
mod net_bench;

use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use nri_chaos_tests::vm::AssertSuite;
use nri_chaos_tests::{plugin_binary, ContainerdVersion, Cri, Node, PluginProcess};

fn main() {
    let started = Instant::now();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            println!("ASSERT vm_node_runtime fail {e}");
            std::process::exit(1);
        }
    };
    let suite_name = std::env::var("NRI_CHAOS_VM_SUITE").unwrap_or_else(|_| "base".into());
    println!("INFO vm node suite `{suite_name}`");
    let mut suite = AssertSuite::default();
    if let Err(e) = rt.block_on(run_suite(&suite_name, &mut suite)) {
        suite.check("vm_node_suite", false, format!("{e:#}"));
    }
    println!(
        "RESULT suite wall_s={:.1} passed={} failed={}",
        started.elapsed().as_secs_f64(),
        suite.passed,
        suite.failed
    );
    std::process::exit(if suite.failed == 0 { 0 } else { 1 });
}

/// The one table of suites.
async fn run_suite(name: &str, s: &mut AssertSuite) -> Result<()> {
    match name {
        "base" => base::run(s).await,
        "net" => net::run(s).await,
        "crash" => crash::run(s).await,
        other => bail!("unknown VM node suite `{other}` (NRI_CHAOS_VM_SUITE)"),
    }
}

pub(crate) fn ms(d: Duration) -> u128 {
    d.as_millis()
}

/// A private containerd 1.7 node with nri-chaos registered, and its CRI client.
pub(crate) async fn start_node(s: &mut AssertSuite) -> Result<(Node, PluginProcess, Cri)> {
    let t = Instant::now();
    let node = Node::start(ContainerdVersion::V17).await?;
    let (runtime, _) = node.cri().await?.version().await?;
    println!(
        "RESULT node_start ms={} runtime={} cgroup_root={}",
        ms(t.elapsed()),
        runtime.replace(' ', "_"),
        node.cgroup_root()
    );
    let t = Instant::now();
    let plugin = node.start_plugin(&plugin_binary(), "")?;
    let registered = plugin
        .wait_log_contains("synchronized with the runtime", Duration::from_secs(30))
        .await;
    s.check(
        "plugin_registered",
        registered.is_ok(),
        format!("{} ms", ms(t.elapsed())),
    );
    if let Err(e) = registered {
        println!("INFO plugin log: {}", plugin.log().replace('\n', " | "));
        return Err(e);
    }
    let cri = node.cri().await?;
    Ok((node, plugin, cri))
}

/// Prints the plugin's last log lines when the suite failed, stops the plugin and tears the
/// node down; passes the suite's outcome on.
pub(crate) async fn finish(
    s: &AssertSuite,
    node: Node,
    plugin: PluginProcess,
    outcome: Result<()>,
) -> Result<()> {
    if outcome.is_err() || s.failed > 0 {
        let log = plugin.log();
        let lines: Vec<&str> = log.lines().collect();
        for line in &lines[lines.len().saturating_sub(30)..] {
            println!("INFO plugin| {line}");
        }
    }
    let t = Instant::now();
    let _ = plugin.stop().await;
    match tokio::time::timeout(Duration::from_secs(40), node.shutdown()).await {
        Ok(Ok(())) => println!("INFO node teardown clean in {} ms", ms(t.elapsed())),
        Ok(Err(e)) => println!(
            "INFO node teardown: {}",
            format!("{e:#}").replace('\n', " | ")
        ),
        Err(_) => println!("INFO node teardown did not finish within 40 s"),
    }
    outcome
}
