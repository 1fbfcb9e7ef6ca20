//! nri-chaos benchmark on one private real containerd node. Prints figures; asserts nothing.
//!
//! - create+start latency of N containers, alternating blocks with nri-chaos registered and
//!   without it (same node, same pod shape), p50/p99 of both and their ratio;
//! - the plugin's own handler time per NRI event (p50/p99 estimated from the buckets of its
//!   `nri_chaos_handler_seconds` histograms, scraped from /metrics before each stop), over
//!   every event of the run plus H more containers in a pod whose fault is armed at each
//!   start and stopped at each stop, so each figure has ~500 samples (p99: the ~6th slowest);
//! - kill firing lateness, actual minus planned (p50/p99/max), over annotated containers, with
//!   no other fault armed and with 100 kill faults armed;
//! - resident memory of the idle plugin;
//! - footprint: the size of the plugin and hook binaries and the idle plugin's memory after
//!   registration, side by side with a baseline build when `NRI_CHAOS_BASELINE_BIN` names one
//!   (an `nri-chaos` binary of an earlier commit; its `nri-chaos-hook` sibling is read too).
//!
//! Usage: nri-chaos-bench [N] [1.7|2] [H]   (default 200 containers on containerd 2.x and
//! H = 300 handler samples; root)

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use nri_chaos_tests::bench::{percentile, rss_kib};
use nri_chaos_tests::metrics::{add_buckets, quantile};
use nri_chaos_tests::timeline::field;
use nri_chaos_tests::{
    plugin_binary, require_root, ContainerSpec, ContainerdVersion, Cri, Node, NodeEnv,
    PluginProcess, Pod, PodSpec,
};

const BLOCK: usize = 10;
const KILL_SAMPLES: usize = 100;
/// Pods run, stopped and removed for the sandbox events' handler samples (about 30 s).
const SANDBOX_SAMPLES: usize = 100;
/// Kill faults armed (an hour ahead) during the second lateness run.
const ARMED: usize = 100;
/// Containers of the handler-sample pod by default (about 35 s).
const HANDLER_SAMPLES: usize = 300;

/// Handler time buckets by event, summed over every plugin run.
type HandlerBuckets = BTreeMap<String, Vec<(f64, f64)>>;

/// Adds the plugin's handler histograms (from its /metrics) to `handlers`, then stops it.
async fn scrape_and_stop(plugin: PluginProcess, handlers: &mut HandlerBuckets) -> Result<()> {
    let metrics = plugin.metrics().await?;
    for (event, buckets) in metrics.histograms("nri_chaos_handler_seconds", "event") {
        add_buckets(handlers.entry(event).or_default(), &buckets);
    }
    plugin.stop().await?;
    Ok(())
}

async fn start_plugin(node: &Node) -> Result<PluginProcess> {
    start_plugin_binary(node, &plugin_binary()).await
}

async fn start_plugin_binary(node: &Node, binary: &Path) -> Result<PluginProcess> {
    let plugin = node.start_plugin(binary, "")?;
    plugin
        .wait_log_contains("synchronized with the runtime", Duration::from_secs(15))
        .await
        .context("nri-chaos did not register")?;
    Ok(plugin)
}

/// Runs KILL_SAMPLES containers in a new pod `name` annotated to kill them 300 ms after start;
/// each must exit 137. Their lateness is read from the plugin's log afterwards.
async fn kill_samples(cri: &Cri, name: &str) -> Result<()> {
    let chaos = cri
        .run_pod(&PodSpec::new(name).annotation("kill.nri-chaos.io/pod", "{after: 300ms}"))
        .await?;
    for i in 0..KILL_SAMPLES {
        let spec = ContainerSpec::new(&format!("k{i}"), &["sleep", "3600"]);
        let id = cri.run_container(&chaos, &spec).await?;
        let status = cri.wait_exited(&id, Duration::from_secs(5)).await?;
        if status.exit_code != 137 {
            bail!("kill sample {name}/k{i}: exit code {}", status.exit_code);
        }
        cri.remove_container(&id).await?;
    }
    cri.stop_pod(&chaos).await?;
    cri.remove_pod(&chaos).await?;
    Ok(())
}

/// Runs `count` containers, BLOCK at a time, in a pod annotated with a kill an hour after
/// start: every CreateContainer plans it, every PostStart arms it (a fault task), every
/// StopContainer stops it. Adds handler samples; times nothing itself.
async fn handler_samples(cri: &Cri, count: usize) -> Result<()> {
    let pod = cri
        .run_pod(&PodSpec::new("bench-handlers").annotation("kill.nri-chaos.io/pod", "{after: 1h}"))
        .await?;
    let mut first = 0;
    while first < count {
        let n = BLOCK.min(count - first);
        timed_block(cri, &pod, first, n).await?;
        first += n;
    }
    cri.stop_pod(&pod).await?;
    cri.remove_pod(&pod).await?;
    Ok(())
}

/// Runs, stops and removes `count` annotated pods without containers: RunPodSandbox,
/// StopPodSandbox and RemovePodSandbox handler samples (a sample each per pod). Times nothing
/// itself.
async fn sandbox_samples(cri: &Cri, count: usize) -> Result<()> {
    for i in 0..count {
        let pod = cri
            .run_pod(
                &PodSpec::new(&format!("bench-sandbox-{i}"))
                    .annotation("kill.nri-chaos.io/pod", "{after: 1h}"),
            )
            .await?;
        cri.stop_pod(&pod).await?;
        cri.remove_pod(&pod).await?;
    }
    Ok(())
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
    let version = ContainerdVersion::from_arg(args.next().as_deref())?;
    let handler_count: usize = match args.next() {
        Some(n) => n
            .parse()
            .with_context(|| format!("H '{n}' is not a number"))?,
        None => HANDLER_SAMPLES,
    };
    let run_started = Instant::now();
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
    let mut handlers = HandlerBuckets::new();
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
            scrape_and_stop(plugin, &mut handlers).await?;
        } else {
            without.extend(timed_block(&cri, &pod, index, count).await?);
        }
        index += count;
        block += 1;
    }

    // Handler samples, then kill lateness: annotated containers killed 300 ms after start,
    // first with no other fault armed, then with ARMED kill faults armed for an hour on
    // another pod.
    let plugin = start_plugin(&node).await?;
    handler_samples(&cri, handler_count).await?;
    sandbox_samples(&cri, SANDBOX_SAMPLES).await?;
    kill_samples(&cri, "bench-kill").await?;
    let armed = cri
        .run_pod(&PodSpec::new("bench-armed").annotation("kill.nri-chaos.io/pod", "{after: 1h}"))
        .await?;
    for i in 0..ARMED {
        cri.run_container(
            &armed,
            &ContainerSpec::new(&format!("a{i}"), &["sleep", "3600"]),
        )
        .await?;
    }
    kill_samples(&cri, "bench-kill-armed").await?;
    let busy_rss = rss_kib(plugin.pid());
    let kill_log = plugin.log();
    scrape_and_stop(plugin, &mut handlers).await?;
    cri.stop_pod(&armed).await?;
    cri.remove_pod(&armed).await?;
    let lateness = |pod: &str| -> Vec<f64> {
        let pod = format!("pod=default/{pod} ");
        kill_log
            .lines()
            .filter(|l| l.contains("signal sent") && l.contains(&pod))
            .filter_map(|l| field(l, "lateness_us")?.parse::<f64>().ok())
            .collect()
    };

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
    println!("\nplugin handler time per NRI event (us, from the histogram buckets):");
    // What the figure times: one home for its definition, the README says the same.
    println!("  (the handler's engine call, from the decoded request to the answer built; ttrpc's decode");
    println!(
        "  and encode and the multiplexer's hops to and from containerd's socket are outside it)"
    );
    match std::env::var("NRI_CHAOS_HANDLER_RT_PRIORITY") {
        Ok(priority) => {
            println!("  NRI thread: NRI_CHAOS_HANDLER_RT_PRIORITY={priority} (0 = the fair class)")
        }
        Err(_) => println!(
            "  NRI thread (transport and handlers): the default, SCHED_FIFO 1 where permitted"
        ),
    }
    for (event, buckets) in &handlers {
        let count = buckets.last().map_or(0.0, |b| b.1);
        // The sample p99 stands for (nearest rank): the k-th slowest of n.
        let slowest = (count - (0.99 * count).ceil() + 1.0).max(1.0) as u64;
        println!(
            "  {event:<22} p50={:7.1}  p99={:7.1} (n={count}, the {} slowest)   (target p99 <= 100)",
            quantile(0.5, buckets) * 1e6,
            quantile(0.99, buckets) * 1e6,
            ordinal(slowest)
        );
    }
    println!("\nkill firing lateness, actual - planned (ms):");
    for (label, pod) in [
        ("nothing else armed", "bench-kill"),
        ("100 faults armed", "bench-kill-armed"),
    ] {
        let samples = lateness(pod);
        println!(
            "  {label:<20} n={:<4} p50={:6.3}  p99={:6.3}  max={:6.3}   (target p99 <= 2)",
            samples.len(),
            percentile(&samples, 0.5) / 1000.0,
            percentile(&samples, 0.99) / 1000.0,
            percentile(&samples, 1.0) / 1000.0
        );
    }
    println!("\nplugin resident memory (VmRSS):");
    if let Some(kib) = idle_rss {
        println!(
            "  idle after registration: {:.1} MiB   (target < 15)",
            kib as f64 / 1024.0
        );
    }
    if let Some(kib) = busy_rss {
        println!(
            "  after {} kill faults, {ARMED} armed: {:.1} MiB",
            2 * KILL_SAMPLES,
            kib as f64 / 1024.0
        );
    }
    footprint(&node).await?;
    node.shutdown().await?;
    println!("\nrun time: {:.0} s", run_started.elapsed().as_secs_f64());
    Ok(())
}

/// `1st`, `2nd`, `3rd`, `4th` ... `11th` ... `21st`.
fn ordinal(n: u64) -> String {
    let suffix = match (n % 10, n % 100) {
        (_, 11..=13) => "th",
        (1, _) => "st",
        (2, _) => "nd",
        (3, _) => "rd",
        _ => "th",
    };
    format!("{n}{suffix}")
}

/// One build's footprint: binary sizes and idle memory after registration.
struct Footprint {
    plugin_bytes: u64,
    hook_bytes: Option<u64>,
    idle_rss_kib: Option<u64>,
}

async fn measure_footprint(node: &Node, binary: &Path) -> Result<Footprint> {
    let plugin_bytes = std::fs::metadata(binary)
        .with_context(|| format!("{}", binary.display()))?
        .len();
    let hook_bytes = binary
        .parent()
        .and_then(|dir| std::fs::metadata(dir.join("nri-chaos-hook")).ok())
        .map(|m| m.len());
    let plugin = start_plugin_binary(node, binary).await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let idle_rss_kib = rss_kib(plugin.pid());
    plugin.stop().await?;
    Ok(Footprint {
        plugin_bytes,
        hook_bytes,
        idle_rss_kib,
    })
}

/// Prints this build's footprint, and a baseline's beside it (`NRI_CHAOS_BASELINE_BIN`).
async fn footprint(node: &Node) -> Result<()> {
    let current = measure_footprint(node, &plugin_binary()).await?;
    let baseline = match std::env::var_os("NRI_CHAOS_BASELINE_BIN").filter(|p| !p.is_empty()) {
        Some(path) => Some(measure_footprint(node, &PathBuf::from(path)).await?),
        None => None,
    };
    println!("\nfootprint (this build vs NRI_CHAOS_BASELINE_BIN; target: growth <= 20%):");
    let row = |name: &str, now: Option<u64>, before: Option<u64>| match (now, before) {
        (Some(now), Some(before)) => println!(
            "  {name:<28} {before:>10} -> {now:>10}   ratio {:.3}",
            now as f64 / before as f64
        ),
        (Some(now), None) => println!("  {name:<28} {now:>10}   (no baseline)"),
        _ => println!("  {name:<28} not measured"),
    };
    let base = baseline.as_ref();
    row(
        "nri-chaos binary (bytes)",
        Some(current.plugin_bytes),
        base.map(|b| b.plugin_bytes),
    );
    row(
        "nri-chaos-hook binary (bytes)",
        current.hook_bytes,
        base.and_then(|b| b.hook_bytes),
    );
    row(
        "idle RSS after sync (KiB)",
        current.idle_rss_kib,
        base.and_then(|b| b.idle_rss_kib),
    );
    Ok(())
}
