//! nri-chaos cgroup-fault figures on one private real containerd node. Prints; asserts
//! nothing.
//!
//! - freeze latency (request to kernel-confirmed frozen) for a container with 1 and with
//!   100 processes;
//! - stress accuracy: requested vs measured CPU share and memory charge of the container
//!   cgroup (memory: the usage 3 s into the stress against the usage just before the worker
//!   appeared in the container);
//! - plugin resident memory idle and with 100 active faults.
//!
//! Usage: nri-chaos-bench-faults [1.7|2]   (default containerd 2.x; root)

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use nri_chaos_tests::timeline::field;
use nri_chaos_tests::{
    plugin_binary, require_root, ContainerSpec, ContainerdVersion, Cri, Node, NodeEnv, Pod, PodSpec,
};

const SLEEPER: &[&str] = &["sleep", "3600"];
const MIB: f64 = 1024.0 * 1024.0;

fn percentile(samples: &[f64], q: f64) -> f64 {
    if samples.is_empty() {
        return f64::NAN;
    }
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted[(((sorted.len() - 1) as f64) * q).round() as usize]
}

fn read_u64(path: &Path) -> Result<u64> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    text.trim()
        .parse()
        .with_context(|| format!("{}: '{}'", path.display(), text.trim()))
}

fn rss_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map(|kib| kib / 1024.0)
        .unwrap_or(f64::NAN)
}

/// The memory stress worker's process name (`comm`).
const MEMORY_WORKER: &str = "nri-chaos-mem";

/// The usage of the memory cgroup `dir` (a container's) at the last look, every 10 ms, before
/// a memory stress worker is among its processes: the baseline of its stress. Read at the
/// start instead, it can still hold runc's init (its Go runtime, about 2 MiB, uncharged when
/// it execs the container's command a moment later), and the stress would read that short.
async fn usage_before_worker(dir: PathBuf) -> Result<f64> {
    let started = Instant::now();
    let mut last = read_u64(&dir.join("memory.usage_in_bytes"))?;
    loop {
        // Usage before the process list: a reading taken while no worker was listed holds
        // none of its pages.
        let usage = read_u64(&dir.join("memory.usage_in_bytes"))?;
        let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
        let worker = procs.split_whitespace().any(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|comm| comm.trim_end() == MEMORY_WORKER)
        });
        if worker {
            return Ok(last as f64);
        }
        last = usage;
        if started.elapsed() > Duration::from_secs(10) {
            bail!("no memory stress worker in {} within 10 s", dir.display());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn procs_in(pod: &Pod, id: &str) -> usize {
    std::fs::read_to_string(pod.container_cgroup_dir("memory", id).join("cgroup.procs"))
        .map(|s| s.lines().count())
        .unwrap_or(0)
}

async fn freeze_latencies(
    cri: &Cri,
    name: &str,
    command: &[&str],
    processes: usize,
    log: impl Fn() -> String,
) -> Result<Vec<f64>> {
    let pod = cri
        .run_pod(&PodSpec::new(name).annotation(
            "freeze.nri-chaos.io",
            "{after: 2s, duration: 200ms, every: 500ms, count: 12}",
        ))
        .await?;
    let id = cri
        .run_container(&pod, &ContainerSpec::new("app", command))
        .await?;
    let start = Instant::now();
    while procs_in(&pod, &id) < processes && start.elapsed() < Duration::from_secs(2) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let seen = procs_in(&pod, &id);
    tokio::time::sleep(Duration::from_millis(2000 + 12 * 500 + 500)).await;
    let samples: Vec<f64> = log()
        .lines()
        .filter(|l| l.contains(" frozen ") && l.contains(&format!("pod=default/{name} ")))
        .filter_map(|l| field(l, "latency_us")?.parse::<f64>().ok())
        .collect();
    println!(
        "  {processes:>3} process(es) (cgroup had {seen} at the first freeze): n={:<3} p50={:7.1} us  p99={:7.1} us  max={:7.1} us",
        samples.len(),
        percentile(&samples, 0.5),
        percentile(&samples, 0.99),
        percentile(&samples, 1.0)
    );
    cri.stop_pod(&pod).await?;
    cri.remove_pod(&pod).await?;
    Ok(samples)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    require_root()?;
    let version = ContainerdVersion::from_arg(std::env::args().nth(1).as_deref())?;
    NodeEnv::print()?;
    let node = Node::start(version).await?;
    let cri = node.cri().await?;
    let plugin = node.start_plugin(&plugin_binary(), "[stress]\nmax_cpu_workers = 4\n")?;
    plugin
        .wait_log_contains("synchronized with the runtime", Duration::from_secs(15))
        .await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let idle_rss = rss_mib(plugin.pid());
    println!("\nnri-chaos cgroup-fault figures on {version} (cgroup v1 hybrid host)");

    println!("\nfreeze latency, request to kernel-confirmed FROZEN:");
    freeze_latencies(&cri, "freeze-1", SLEEPER, 1, || plugin.log()).await?;
    let hundred = ["sh", "-c", "for i in $(seq 99); do sleep 3600 & done; wait"];
    freeze_latencies(&cri, "freeze-100", &hundred, 100, || plugin.log()).await?;

    println!("\nstress accuracy (container cgroup; CPU from 1 s to 4 s of a 5 s stress, memory 3 s into it against the usage just before it):");
    let pod = cri
        .run_pod(
            &PodSpec::new("stress")
                .annotation(
                    "stress.nri-chaos.io/container.cpu25",
                    "{cpu: {workers: 1, load: 25}, duration: 5s}",
                )
                .annotation(
                    "stress.nri-chaos.io/container.cpu50",
                    "{cpu: {workers: 1, load: 50}, duration: 5s}",
                )
                .annotation(
                    "stress.nri-chaos.io/container.cpu75",
                    "{cpu: {workers: 1, load: 75}, duration: 5s}",
                )
                .annotation(
                    "stress.nri-chaos.io/container.mem32",
                    "{memory: {size: 32Mi}, after: 1s, duration: 5s}",
                )
                .annotation(
                    "stress.nri-chaos.io/container.mem128",
                    "{memory: {size: 128Mi, workers: 2}, after: 1s, duration: 5s}",
                ),
        )
        .await?;
    let mut cpu = Vec::new();
    for (name, load) in [("cpu25", 25.0), ("cpu50", 50.0), ("cpu75", 75.0)] {
        cpu.push((
            cri.run_container(&pod, &ContainerSpec::new(name, SLEEPER))
                .await?,
            load,
        ));
    }
    // The memory stressors start 1 s after their container; each baseline is watched for
    // from its container's start (see usage_before_worker).
    let mut mem = Vec::new();
    for (name, mib) in [("mem32", 32.0), ("mem128", 128.0)] {
        let id = cri
            .run_container(
                &pod,
                &ContainerSpec::new(name, SLEEPER).memory_limit(512 << 20),
            )
            .await?;
        let dir = pod.container_cgroup_dir("memory", &id);
        mem.push((tokio::spawn(usage_before_worker(dir.clone())), dir, mib));
    }
    let mut bases = Vec::new();
    for (watch, dir, mib) in mem {
        bases.push((watch.await??, dir, mib));
    }
    let usage = |id: &str| {
        read_u64(
            &pod.container_cgroup_dir("cpuacct", id)
                .join("cpuacct.usage"),
        )
    };
    let t0 = Instant::now();
    let u0: Vec<u64> = cpu.iter().map(|(id, _)| usage(id)).collect::<Result<_>>()?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let elapsed = t0.elapsed().as_secs_f64();
    for ((id, load), before) in cpu.iter().zip(u0) {
        let share = (usage(id)? - before) as f64 / 1e9 / elapsed * 100.0;
        println!("  cpu    requested {load:5.1}% of one CPU   measured {share:5.1}%   (error {:+.1} points)", share - load);
    }
    for (base, dir, mib) in &bases {
        let raised = (read_u64(&dir.join("memory.usage_in_bytes"))? as f64 - base) / MIB;
        println!("  memory requested {mib:5.1} MiB          measured +{raised:5.1} MiB   (error {:+.1}%)", (raised - mib) / mib * 100.0);
    }
    cri.stop_pod(&pod).await?;
    cri.remove_pod(&pod).await?;

    println!("\nplugin resident memory (VmRSS):");
    let pod = cri
        .run_pod(&PodSpec::new("hundred").annotation("freeze.nri-chaos.io", "{duration: 10m}"))
        .await?;
    for i in 0..100 {
        cri.run_container(&pod, &ContainerSpec::new(&format!("c{i}"), SLEEPER))
            .await?;
    }
    let start = Instant::now();
    let active = loop {
        let frozen = plugin
            .log()
            .lines()
            .filter(|l| l.contains(" frozen ") && l.contains("pod=default/hundred "))
            .count();
        if frozen >= 100 || start.elapsed() > Duration::from_secs(20) {
            break frozen;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let journaled = injector::store::read_state(&node.dir().join("nri-chaos-state"))
        .map(|(stored, _)| stored.journal.len())
        .unwrap_or(0);
    println!("  idle after registration:          {idle_rss:5.1} MiB   (target < 15)");
    println!(
        "  with {active} active freezes ({journaled} journaled): {:5.1} MiB",
        rss_mib(plugin.pid())
    );
    let stopping = Instant::now();
    plugin.stop().await?;
    println!(
        "  SIGTERM recovered all of them and exited in {} ms",
        stopping.elapsed().as_millis()
    );
    node.shutdown().await?;
    Ok(())
}
