//! Shim wrapper figures on one private real containerd node, side by side in one run, for three
//! pods: `runc` (the plain handler), `wrapper` (the `nri-chaos` handler: the wrapper in front
//! of the runc shim, no fault annotation) and `wrapper+exec` (the same handler and an `exec`
//! fault that matches none of the bench's execs, so the plugin plans it into every container's
//! OCI annotations and the wrapper decodes and decides every Exec: its busiest path for an exec
//! that runs). nri-chaos runs on the node for all three. The ratios are `wrapper` over
//! `runc` (what the wrapper itself costs); `wrapper+exec` over `runc` is printed beside them,
//! and `wrapper+exec` over `wrapper` is the exec fault's own cost (plugin planning, plan read).
//! Figures: ExecSync latency p50/p99, create+start p50/p99 (and create and start apart), their
//! ratios, and the wrapper server's resident memory per pod. Prints; asserts nothing.
//!
//! Create+start: every pod holds its `app` container; each sample creates and starts one more
//! container (same image, command and spec on every side), then stops and removes it outside
//! the timed part, so every sample meets the same pod layout. The sides take turns in blocks
//! of [`BLOCK`], in an order that rotates and reverses from round to round (each side goes
//! first, middle and last equally often), so all see the same machine load; the first round
//! is a warm-up and is not counted.
//!
//! Usage: nri-chaos-bench-shim [1.7|2|2.3] [SAMPLES]   (default containerd 2.x, 150 samples per
//! side for create+start; root). `NRI_CHAOS_BENCH_KEEP_LOG=PATH` keeps containerd's log there
//! (with `NRI_CHAOS_SHIM_TIMING=1` it holds the wrapper's per-call timing lines).

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
/// Samples a side takes in a row before the next side's turn.
const BLOCK: usize = 5;
/// Containers alive in the wrapped pods when their wrappers' memory is read.
const CONTAINERS: usize = 20;
/// The sides, in the order of [`Sides`]' vectors.
const NAMES: [&str; 3] = ["runc", "wrapper", "wrapper+exec"];
const RUNC: usize = 0;
const WRAPPER: usize = 1;
const ANNOTATED: usize = 2;
/// When set, containerd's log is copied to this path at the end.
const KEEP_LOG_ENV: &str = "NRI_CHAOS_BENCH_KEEP_LOG";

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// p50, p99 of `samples` (ms) and a line for them.
fn line(name: &str, samples: &[f64]) -> (f64, f64) {
    let (p50, p99) = (percentile(samples, 0.5), percentile(samples, 0.99));
    let mean = samples.iter().sum::<f64>() / samples.len().max(1) as f64;
    println!(
        "  {name:<26} p50 {p50:7.2} ms  p99 {p99:7.2} ms  mean {mean:7.2} ms  (n={})",
        samples.len()
    );
    (p50, p99)
}

/// Ratio line of side `of` over side `to`, whose (p50, p99) are given.
fn ratio(of: usize, to: usize, a: (f64, f64), b: (f64, f64), goal: &str) {
    let name = format!("{}/{}", NAMES[of], NAMES[to]);
    println!(
        "  ratio {name:<20} p50 {:.3}  p99 {:.3}{goal}",
        a.0 / b.0,
        a.1 / b.1
    );
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

/// One sample in `pod`: CreateContainer and StartContainer (ms); the container is stopped and
/// removed afterwards, untimed.
async fn create_start_ms(cri: &Cri, pod: &Pod, name: &str) -> Result<(f64, f64)> {
    let t = Instant::now();
    let id = cri
        .create_container(pod, &ContainerSpec::new(name, SLEEPER))
        .await?;
    let created = ms(t.elapsed());
    cri.start_container(&id)
        .await
        .with_context(|| format!("starting {name} ({id})"))?;
    let took = ms(t.elapsed());
    cri.stop_container(&id, 0).await?;
    cri.remove_container(&id).await?;
    Ok((created, took - created))
}

/// Per side, per round, the block's samples (create ms, start ms).
type Sides = [Vec<Vec<(f64, f64)>>; 3];

/// Every sample of `blocks` through `f`.
fn all(blocks: &[Vec<(f64, f64)>], f: impl Fn(&(f64, f64)) -> f64) -> Vec<f64> {
    blocks.iter().flatten().map(f).collect()
}

fn total(s: &(f64, f64)) -> f64 {
    s.0 + s.1
}

/// Per round, side `of`'s block median over side `to`'s: each ratio compares samples taken
/// within a second or two of each other, so a load that changes over the run (the machine is
/// shared) cancels out of it.
fn paired(sides: &Sides, of: usize, to: usize) -> Vec<f64> {
    let median = |b: &Vec<(f64, f64)>| percentile(&b.iter().map(total).collect::<Vec<_>>(), 0.5);
    sides[of]
        .iter()
        .zip(&sides[to])
        .map(|(a, b)| median(a) / median(b))
        .collect()
}

/// The order of the sides in `round`: rotated by the round, reversed every other round.
fn order(round: usize) -> [usize; 3] {
    let r = (round / 2) % 3;
    let o = [r, (r + 1) % 3, (r + 2) % 3];
    if round % 2 == 1 {
        [o[2], o[1], o[0]]
    } else {
        o
    }
}

/// `samples` create+start samples per side (rounded up to whole blocks), after one warm-up
/// round.
async fn create_start_samples(cri: &Cri, pods: &[Pod; 3], samples: usize) -> Result<Sides> {
    let mut sides: Sides = Default::default();
    let mut seq = 0usize;
    for round in 0..=samples.div_ceil(BLOCK) {
        for side in order(round) {
            let mut block = Vec::with_capacity(BLOCK);
            for _ in 0..BLOCK {
                seq += 1;
                block.push(create_start_ms(cri, &pods[side], &format!("c{seq}")).await?);
            }
            if round > 0 {
                sides[side].push(block);
            }
        }
    }
    Ok(sides)
}

fn print_paired(sides: &Sides, of: usize, to: usize) {
    let p = paired(sides, of, to);
    println!(
        "  paired {:<19} median {:.3}  quartiles {:.3} - {:.3}  (block p50 over block p50; {} rounds)",
        format!("{}/{}", NAMES[of], NAMES[to]),
        percentile(&p, 0.5),
        percentile(&p, 0.25),
        percentile(&p, 0.75),
        p.len()
    );
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
    let figures = figures(&node, samples, &wrapper).await;
    // For a trace or a failure: containerd's log holds the wrapper's lines (with
    // NRI_CHAOS_SHIM_TIMING, its per-call timing), and the node's directory goes with the node.
    if let Some(to) = std::env::var_os(KEEP_LOG_ENV) {
        std::fs::copy(node.containerd_log(), &to)
            .with_context(|| format!("copying containerd's log to {to:?}"))?;
    }
    node.shutdown().await?;
    figures
}

/// Runs the three sides on `node` and prints the figures.
async fn figures(node: &Node, samples: usize, wrapper: &std::path::Path) -> Result<()> {
    let version = node.version();
    let plugin = node.start_plugin(&plugin_binary(), "")?;
    plugin
        .wait_log_contains("synchronized with the runtime", Duration::from_secs(15))
        .await
        .context("nri-chaos did not register")?;
    let cri = node.cri().await?;
    let pods = [
        cri.run_pod(&PodSpec::new("bench-runc")).await?,
        cri.run_pod(&PodSpec::new("bench-wrapped").runtime_handler(SHIM_HANDLER))
            .await?,
        cri.run_pod(
            &PodSpec::new("bench-wrapped-exec")
                .runtime_handler(SHIM_HANDLER)
                .annotation(
                    "exec.nri-chaos.io/pod",
                    "{fail: {exit_code: 9}, match: no-such-command}",
                ),
        )
        .await?,
    ];
    let mut apps = Vec::new();
    for pod in &pods {
        apps.push(
            cri.run_container(pod, &ContainerSpec::new("app", SLEEPER))
                .await?,
        );
    }

    // One by one in turn, so all handlers see the same machine load; the order rotates and
    // reverses as for create+start, so no side always follows another's exec.
    let mut execs: [Vec<f64>; 3] = Default::default();
    for turn in 0..EXECS {
        for side in order(turn) {
            let took = exec_ms(&cri, &apps[side])
                .await
                .with_context(|| format!("side {}, turn {turn}", NAMES[side]))?;
            execs[side].push(took);
        }
    }
    let sides = create_start_samples(&cri, &pods, samples).await?;
    let mut rss = Vec::new();
    for side in [WRAPPER, ANNOTATED] {
        for i in 0..CONTAINERS {
            let spec = ContainerSpec::new(&format!("r{i}"), SLEEPER);
            cri.run_container(&pods[side], &spec).await?;
        }
        let kib = wrapper_pid(&pods[side])
            .and_then(rss_kib)
            .with_context(|| format!("no wrapper server found for pod {}", NAMES[side]))?;
        rss.push(kib);
    }

    println!(
        "\nshim wrapper figures on {version} ({}; wrapper {})",
        cri.version().await?.1,
        wrapper.display()
    );
    println!("ExecSync `echo hi` (the three sides one by one in turn, order rotating):");
    let e: Vec<(f64, f64)> = (0..3).map(|s| line(NAMES[s], &execs[s])).collect();
    ratio(WRAPPER, RUNC, e[WRAPPER], e[RUNC], "  (goal <= 1.05)");
    ratio(ANNOTATED, RUNC, e[ANNOTATED], e[RUNC], "  (goal <= 1.05)");
    for side in [WRAPPER, ANNOTATED] {
        let p: Vec<f64> = execs[side]
            .iter()
            .zip(&execs[RUNC])
            .map(|(w, p)| w / p)
            .collect();
        println!(
            "  paired {:<19} median {:.3}  (each over the runc exec of its turn)",
            format!("{}/{}", NAMES[side], NAMES[RUNC]),
            percentile(&p, 0.5)
        );
    }
    println!(
        "CreateContainer+StartContainer (blocks of {BLOCK}, order rotating and reversing per \
         round, one warm-up round not counted; each container removed after its sample):"
    );
    let c: Vec<(f64, f64)> = (0..3)
        .map(|s| line(NAMES[s], &all(&sides[s], total)))
        .collect();
    ratio(WRAPPER, RUNC, c[WRAPPER], c[RUNC], "  (goal <= 1.02)");
    ratio(
        ANNOTATED,
        RUNC,
        c[ANNOTATED],
        c[RUNC],
        "  (with the exec fault)",
    );
    ratio(
        ANNOTATED,
        WRAPPER,
        c[ANNOTATED],
        c[WRAPPER],
        "  (the exec fault's own cost)",
    );
    print_paired(&sides, WRAPPER, RUNC);
    print_paired(&sides, ANNOTATED, RUNC);
    print_paired(&sides, ANNOTATED, WRAPPER);
    println!("  apart, p50 (ms)             create   start");
    for (s, name) in NAMES.iter().enumerate() {
        println!(
            "    {name:<24} {:7.2} {:7.2}",
            percentile(&all(&sides[s], |x| x.0), 0.5),
            percentile(&all(&sides[s], |x| x.1), 0.5)
        );
    }
    println!(
        "wrapper RSS per pod: {:.2} MiB (wrapper), {:.2} MiB (wrapper+exec) ({} containers in \
         the pod, after {} came and went; goal <= 5 MiB)",
        rss[0] as f64 / 1024.0,
        rss[1] as f64 / 1024.0,
        CONTAINERS + 1,
        sides[WRAPPER].len() * BLOCK + BLOCK
    );
    let _ = plugin.stop().await;
    Ok(())
}
