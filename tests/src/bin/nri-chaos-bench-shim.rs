//! Shim wrapper figures on one private real containerd node, side by side in one run: ExecSync
//! latency p50/p99 through the `nri-chaos` handler (wrapper in front of the runc shim) vs the
//! plain `runc` handler and their ratio, create+start p50/p99 and ratio, and the wrapper
//! server's resident memory per pod. nri-chaos runs on the node and the wrapped pod carries an
//! `exec` fault that matches none of the bench's execs, so every Exec is decoded and decided
//! by the wrapper (its busiest path for an exec that runs). Prints; asserts nothing.
//!
//! Create+start: both pods hold their `app` container; each sample creates and starts one more
//! container (same image, command and spec on both sides), then stops and removes it outside
//! the timed part, so every sample meets the same pod layout. The sides take turns in blocks
//! of [`BLOCK`], the side going first alternating per round (ABBA), so both see the same
//! machine load; the first block of each side is a warm-up and is not counted.
//!
//! Usage: nri-chaos-bench-shim [1.7|2|2.3] [SAMPLES]   (default containerd 2.x, 150 samples per
//! side for create+start; root)

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use nri_chaos_tests::bench::{percentile, rss_kib};
use nri_chaos_tests::{
    plugin_binary, require_root, try_shim_wrapper_binary, ContainerSpec, ContainerdVersion, Cri,
    Node, NodeEnv, Pod, PodSpec, SHIM_HANDLER, SHIM_WRAPPER_BIN,
};

const SLEEPER: &[&str] = &["sleep", "3600"];
/// ExecSync samples per side.
const EXECS: usize = 200;
/// Create+start samples per side unless the command line says otherwise.
const SAMPLES: usize = 150;
/// Samples a side takes in a row before the other side's turn.
const BLOCK: usize = 5;
/// Containers alive in the wrapped pod when its wrapper's memory is read.
const CONTAINERS: usize = 20;

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// p50, p99 of `samples` (ms) and a line for them.
fn line(name: &str, samples: &[f64]) -> (f64, f64) {
    let (p50, p99) = (percentile(samples, 0.5), percentile(samples, 0.99));
    let mean = samples.iter().sum::<f64>() / samples.len().max(1) as f64;
    println!(
        "  {name:<22} p50 {p50:7.2} ms  p99 {p99:7.2} ms  mean {mean:7.2} ms  (n={})",
        samples.len()
    );
    (p50, p99)
}

/// The pid of the wrapper server of `pod`.
fn wrapper_pid(pod: &Pod) -> Option<u32> {
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        let cmd = std::fs::read(e.path().join("cmdline")).ok()?;
        let cmd = String::from_utf8_lossy(&cmd);
        (cmd.contains(SHIM_WRAPPER_BIN)
            && cmd.contains("--nri-chaos-serve")
            && cmd.contains(&pod.id))
        .then_some(pid)
    })
}

async fn exec_ms(cri: &Cri, id: &str) -> Result<f64> {
    let t = Instant::now();
    let out = cri.exec_sync(id, &["echo", "hi"], 5).await?;
    if out.exit_code != 0 || out.stdout != "hi\n" {
        bail!("ExecSync echo hi in {id}: {out:?}");
    }
    Ok(ms(t.elapsed()))
}

/// One create+start sample in `pod` (ms); the container is stopped and removed afterwards,
/// untimed.
async fn create_start_ms(cri: &Cri, pod: &Pod, name: &str) -> Result<f64> {
    let t = Instant::now();
    let id = cri
        .run_container(pod, &ContainerSpec::new(name, SLEEPER))
        .await?;
    let took = ms(t.elapsed());
    cri.stop_container(&id, 0).await?;
    cri.remove_container(&id).await?;
    Ok(took)
}

/// Create+start latencies, one block per side and round.
#[derive(Default)]
struct Rounds {
    plain: Vec<Vec<f64>>,
    wrapped: Vec<Vec<f64>>,
}

impl Rounds {
    fn all(blocks: &[Vec<f64>]) -> Vec<f64> {
        blocks.iter().flatten().copied().collect()
    }

    /// Per round, the wrapped block's median over the plain block's: each ratio compares
    /// samples taken within a second of each other, so a load that changes over the run
    /// (the machine is shared) cancels out of it.
    fn paired_ratios(&self) -> Vec<f64> {
        self.plain
            .iter()
            .zip(&self.wrapped)
            .map(|(p, w)| percentile(w, 0.5) / percentile(p, 0.5))
            .collect()
    }
}

/// `samples` create+start latencies per side (rounded up to whole blocks), after one warm-up
/// block each.
async fn create_start_samples(
    cri: &Cri,
    plain: &Pod,
    wrapped: &Pod,
    samples: usize,
) -> Result<Rounds> {
    let mut rounds = Rounds::default();
    let mut seq = 0usize;
    for round in 0..=samples.div_ceil(BLOCK) {
        let mut sides = [(plain, Vec::new()), (wrapped, Vec::new())];
        if round % 2 == 1 {
            sides.reverse();
        }
        for (pod, out) in &mut sides {
            for _ in 0..BLOCK {
                seq += 1;
                out.push(create_start_ms(cri, pod, &format!("c{seq}")).await?);
            }
        }
        if round % 2 == 1 {
            sides.reverse();
        }
        let [(_, p), (_, w)] = sides;
        if round > 0 {
            rounds.plain.push(p);
            rounds.wrapped.push(w);
        }
    }
    Ok(rounds)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    require_root()?;
    let version = ContainerdVersion::from_arg(std::env::args().nth(1).as_deref())?;
    let samples = match std::env::args().nth(2) {
        Some(n) => n
            .parse::<usize>()
            .ok()
            .filter(|n| *n > 0)
            .with_context(|| format!("SAMPLES {n:?}: not a positive number"))?,
        None => SAMPLES,
    };
    let wrapper = try_shim_wrapper_binary()?;
    NodeEnv::print()?;
    let node = Node::start(version).await?;
    let plugin = node.start_plugin(&plugin_binary(), "")?;
    plugin
        .wait_log_contains("synchronized with the runtime", Duration::from_secs(15))
        .await
        .context("nri-chaos did not register")?;
    let cri = node.cri().await?;
    let plain = cri.run_pod(&PodSpec::new("bench-runc")).await?;
    let wrapped = cri
        .run_pod(
            &PodSpec::new("bench-wrapped")
                .runtime_handler(SHIM_HANDLER)
                .annotation(
                    "exec.nri-chaos.io/pod",
                    "{fail: {exit_code: 9}, match: no-such-command}",
                ),
        )
        .await?;
    let plain_app = cri
        .run_container(&plain, &ContainerSpec::new("app", SLEEPER))
        .await?;
    let wrapped_app = cri
        .run_container(&wrapped, &ContainerSpec::new("app", SLEEPER))
        .await?;

    // Alternating, so both handlers see the same machine load.
    let (mut exec_plain, mut exec_wrapped) = (Vec::new(), Vec::new());
    for _ in 0..EXECS {
        exec_plain.push(exec_ms(&cri, &plain_app).await?);
        exec_wrapped.push(exec_ms(&cri, &wrapped_app).await?);
    }
    let rounds = create_start_samples(&cri, &plain, &wrapped, samples).await?;
    let (start_plain, start_wrapped) = (Rounds::all(&rounds.plain), Rounds::all(&rounds.wrapped));
    for i in 0..CONTAINERS {
        cri.run_container(&wrapped, &ContainerSpec::new(&format!("r{i}"), SLEEPER))
            .await?;
    }
    let rss = wrapper_pid(&wrapped)
        .and_then(rss_kib)
        .context("no wrapper server found for the wrapped pod")?;

    println!(
        "\nshim wrapper figures on {version} ({}; wrapper {})",
        cri.version().await?.1,
        wrapper.display()
    );
    println!("ExecSync `echo hi` (alternating one by one):");
    let (e50, e99) = line("runc", &exec_plain);
    let (w50, w99) = line("nri-chaos (wrapper)", &exec_wrapped);
    println!(
        "  ratio wrapper/runc     p50 {:.3}  p99 {:.3}  (goal <= 1.05)",
        w50 / e50,
        w99 / e99
    );
    let paired: Vec<f64> = exec_wrapped
        .iter()
        .zip(&exec_plain)
        .map(|(w, p)| w / p)
        .collect();
    println!(
        "  paired per pair        median {:.3}  (wrapped / the plain one just before it)",
        percentile(&paired, 0.5)
    );
    println!(
        "CreateContainer+StartContainer (blocks of {BLOCK}, ABBA, one warm-up block per side \
         not counted; each container removed after its sample):"
    );
    let (s50, s99) = line("runc", &start_plain);
    let (t50, t99) = line("nri-chaos (wrapper)", &start_wrapped);
    println!(
        "  ratio wrapper/runc     p50 {:.3}  p99 {:.3}  (goal <= 1.02)",
        t50 / s50,
        t99 / s99
    );
    let paired = rounds.paired_ratios();
    println!(
        "  paired per round       median {:.3}  quartiles {:.3} - {:.3}  (wrapped block p50 / \
         plain block p50; {} rounds)",
        percentile(&paired, 0.5),
        percentile(&paired, 0.25),
        percentile(&paired, 0.75),
        paired.len()
    );
    println!(
        "wrapper RSS per pod: {:.2} MiB ({} containers in the pod, after {} came and went; \
         goal <= 5 MiB)",
        rss as f64 / 1024.0,
        CONTAINERS + 1,
        start_wrapped.len() + BLOCK
    );
    let _ = plugin.stop().await;
    node.shutdown().await
}
