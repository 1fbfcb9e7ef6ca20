//! nri-chaos benchmark on one private real containerd node. Prints figures; asserts nothing.
//!
//! - create+start latency of N containers, alternating blocks with nri-chaos registered and
//!   without it (same node, same pod shape), p50/p99 of both and their ratio;
//! - the plugin's own handler time per NRI event (p50/p99, from its debug log);
//! - kill firing lateness, actual minus planned (p50/p99), over annotated containers;
//! - resident memory of the idle plugin.
//!
//! Usage: nri-chaos-bench [N] [1.7|2]   (default 200 containers on containerd 2.x; root)

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use nri_chaos_tests::bench::{percentile, rss_kib};
use nri_chaos_tests::timeline::field;
use nri_chaos_tests::{
    plugin_binary, require_root, ContainerSpec, ContainerdVersion, Cri, Node, NodeEnv,
    PluginProcess, Pod, PodSpec,
};

const BLOCK: usize = 10;
const KILL_SAMPLES: usize = 40;

async fn start_plugin(node: &Node) -> Result<PluginProcess> {
    let plugin = node.start_plugin(&plugin_binary(), "")?;
    plugin
        .wait_log_contains("synchronized with the runtime", Duration::from_secs(15))
        .await
        .context("nri-chaos did not register")?;
    Ok(plugin)
}

/// Creates and starts `count` containers in `pod`, returns each create+start in ms, then
/// removes them (untimed).
async fn timed_block(cri: &Cri, pod: &Pod, first: usize, count: usize) -> Result<Vec<f64>> {
    let mut times = Vec::with_capacity(count);
    let mut ids = Vec::with_capacity(count);
    for i in first..first + count {
        let spec = ContainerSpec::new(&format!("c{i}"), &["sleep", "3600"]);
        let started = Instant::now();
        let id = cri.run_container(pod, &spec).await?;
        times.push(started.elapsed().as_secs_f64() * 1000.0);
        ids.push(id);
    }
    for id in ids {
        cri.stop_container(&id, 0).await?;
        cri.remove_container(&id).await?;
    }
    Ok(times)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    require_root()?;
    let mut args = std::env::args().skip(1);
    let total: usize = match args.next() {
        Some(n) => n
            .parse()
            .with_context(|| format!("N '{n}' is not a number"))?,
        None => 200,
    };
    let version = match args.next().as_deref() {
        None | Some("2") | Some("2.x") => ContainerdVersion::V2,
        Some("1.7") => ContainerdVersion::V17,
        Some(other) => bail!("unknown containerd version '{other}' (1.7 or 2)"),
    };
    // Handler times come from the plugin's debug lines.
    std::env::set_var("RUST_LOG", "nri_chaos=debug");
    NodeEnv::print()?;
    let node = Node::start(version).await?;
    let cri = node.cri().await?;
    let (_, runtime_version) = cri.version().await?;
    println!("\nnri-chaos bench: {total} containers on {version} ({runtime_version}), blocks of {BLOCK}, alternating");

    let pod = cri.run_pod(&PodSpec::new("bench")).await?;
    // Warm-up (image, snapshot and cgroup caches), not counted.
    timed_block(&cri, &pod, 100_000, BLOCK).await?;

    let mut with = Vec::new();
    let mut without = Vec::new();
    let mut handler_log = String::new();
    let mut idle_rss = None;
    let mut index = 0;
    let mut block = 0;
    while with.len() + without.len() < total {
        let count = BLOCK.min(total - with.len() - without.len());
        if block % 2 == 0 {
            let plugin = start_plugin(&node).await?;
            if idle_rss.is_none() {
                tokio::time::sleep(Duration::from_millis(300)).await;
                idle_rss = rss_kib(plugin.pid());
            }
            with.extend(timed_block(&cri, &pod, index, count).await?);
            plugin.stop().await?;
            handler_log.push_str(&plugin.log());
        } else {
            without.extend(timed_block(&cri, &pod, index, count).await?);
        }
        index += count;
        block += 1;
    }

    // Kill lateness: annotated containers killed 300 ms after start.
    let plugin = start_plugin(&node).await?;
    let chaos = cri
        .run_pod(&PodSpec::new("bench-kill").annotation("kill.nri-chaos.io/pod", "{after: 300ms}"))
        .await?;
    for i in 0..KILL_SAMPLES {
        let id = cri
            .run_container(
                &chaos,
                &ContainerSpec::new(&format!("k{i}"), &["sleep", "3600"]),
            )
            .await?;
        let status = cri.wait_exited(&id, Duration::from_secs(5)).await?;
        if status.exit_code != 137 {
            bail!("kill sample {i}: exit code {}", status.exit_code);
        }
        cri.remove_container(&id).await?;
    }
    let busy_rss = rss_kib(plugin.pid());
    plugin.stop().await?;
    let kill_log = plugin.log();
    handler_log.push_str(&kill_log);

    let lateness: Vec<f64> = kill_log
        .lines()
        .filter(|l| l.contains("signal sent"))
        .filter_map(|l| field(l, "lateness_us")?.parse::<f64>().ok())
        .collect();
    let mut handlers: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for line in handler_log.lines().filter(|l| l.contains(" handled")) {
        if let (Some(event), Some(ns)) = (field(line, "event"), field(line, "handler_ns")) {
            if let Ok(ns) = ns.parse::<f64>() {
                handlers
                    .entry(event.to_string())
                    .or_default()
                    .push(ns / 1000.0);
            }
        }
    }

    let (p50_with, p99_with) = (percentile(&with, 0.5), percentile(&with, 0.99));
    let (p50_without, p99_without) = (percentile(&without, 0.5), percentile(&without, 0.99));
    println!("\ncreate+start latency (CRI CreateContainer + StartContainer, ms):");
    println!(
        "  without nri-chaos  n={:<4} p50={p50_without:7.2}  p99={p99_without:7.2}",
        without.len()
    );
    println!(
        "  with nri-chaos     n={:<4} p50={p50_with:7.2}  p99={p99_with:7.2}",
        with.len()
    );
    println!(
        "  ratio with/without       p50={:7.3}  p99={:7.3}   (target p50 ratio <= 1.05)",
        p50_with / p50_without,
        p99_with / p99_without
    );
    println!("\nplugin handler time per NRI event (us):");
    for (event, samples) in &handlers {
        println!(
            "  {event:<32} n={:<5} p50={:8.1}  p99={:8.1}   (target p99 < 200)",
            samples.len(),
            percentile(samples, 0.5),
            percentile(samples, 0.99)
        );
    }
    println!("\nkill firing lateness, actual - planned (ms):");
    println!(
        "  n={:<4} p50={:6.3}  p99={:6.3}  max={:6.3}   (target p99 < 5)",
        lateness.len(),
        percentile(&lateness, 0.5) / 1000.0,
        percentile(&lateness, 0.99) / 1000.0,
        percentile(&lateness, 1.0) / 1000.0
    );
    println!("\nplugin resident memory (VmRSS):");
    if let Some(kib) = idle_rss {
        println!(
            "  idle after registration: {:.1} MiB   (target < 15)",
            kib as f64 / 1024.0
        );
    }
    if let Some(kib) = busy_rss {
        println!(
            "  after {KILL_SAMPLES} kill faults:      {:.1} MiB",
            kib as f64 / 1024.0
        );
    }
    node.shutdown().await?;
    Ok(())
}
