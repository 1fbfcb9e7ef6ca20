//! freeze, stress and oom end to end on the container's own cgroup: real containerd (1.7 and
//! 2.x), runc and kernel (cgroup v1 hybrid here; the VM tier covers v2). Assertions read what
//! the kernel reports (freezer.state, cpuacct.usage, memory.usage_in_bytes, oom_score_adj) and
//! what CRI reports (OOMKilled, exit 137).

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use common::ChaosNode;
use nri_chaos_tests::{ContainerSpec, ContainerState, ContainerdVersion, Cri, Pod, PodSpec};

const SLEEPER: &[&str] = &["sleep", "3600"];
/// Appends two bytes per loop turn: the file's length is the workload's counter.
const COUNTER: &[&str] = &["sh", "-c", "while :; do echo x >> /counter; done"];
const MIB: f64 = 1024.0 * 1024.0;

fn read_trimmed(path: &Path) -> Result<String> {
    Ok(std::fs::read_to_string(path)
        .with_context(|| format!("reading {}", path.display()))?
        .trim()
        .to_string())
}

fn read_u64(path: &Path) -> Result<u64> {
    let text = read_trimmed(path)?;
    text.parse()
        .with_context(|| format!("{}: '{text}' is not a number", path.display()))
}

/// The workload's counter (the length of the file it appends to), read through
/// /proc/<pid>/root, which works while the workload is frozen.
fn counter(pid: u32) -> Result<u64> {
    let path = PathBuf::from(format!("/proc/{pid}/root/counter"));
    Ok(std::fs::metadata(&path)
        .with_context(|| format!("no counter at {}", path.display()))?
        .len())
}

async fn pid_of(cri: &Cri, id: &str) -> Result<u32> {
    cri.container_pid(id).await?.context("container has no pid")
}

fn freezer_state(pod: &Pod, id: &str) -> Result<String> {
    read_trimmed(
        &pod.container_cgroup_dir("freezer", id)
            .join("freezer.state"),
    )
}

fn cpu_usage(pod: &Pod, id: &str) -> Result<Duration> {
    Ok(Duration::from_nanos(read_u64(
        &pod.container_cgroup_dir("cpuacct", id)
            .join("cpuacct.usage"),
    )?))
}

fn memory_usage(pod: &Pod, id: &str) -> Result<u64> {
    read_u64(
        &pod.container_cgroup_dir("memory", id)
            .join("memory.usage_in_bytes"),
    )
}

fn cgroup_pids(pod: &Pod, id: &str) -> Result<Vec<u32>> {
    Ok(
        read_trimmed(&pod.container_cgroup_dir("memory", id).join("cgroup.procs"))?
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect(),
    )
}

async fn sleep_until(start: Instant, at: Duration) {
    tokio::time::sleep_until((start + at).into()).await;
}

/// `{after: 1s, duration: 3s}`: frozen in the window (kernel says FROZEN, the counter stands
/// still), thawed after it (THAWED, the counter advances).
async fn freeze_holds_the_window_then_thaws(version: ContainerdVersion) -> Result<()> {
    let node = ChaosNode::start(version, "").await?;
    let cri = node.node.cri().await?;
    let pod = cri
        .run_pod(&PodSpec::new("frozen").annotation(
            "freeze.nri-chaos.io/container.app",
            "{after: 1s, duration: 3s}",
        ))
        .await?;
    let id = cri
        .run_container(&pod, &ContainerSpec::new("app", COUNTER))
        .await?;
    let start = Instant::now();
    let pid = pid_of(&cri, &id).await?;
    sleep_until(start, Duration::from_millis(500)).await;
    ensure!(
        freezer_state(&pod, &id)? == "THAWED",
        "frozen before `after`"
    );
    let before = counter(pid)?;
    sleep_until(start, Duration::from_millis(1600)).await;
    ensure!(
        freezer_state(&pod, &id)? == "FROZEN",
        "not frozen at 1.6s: {}",
        freezer_state(&pod, &id)?
    );
    let frozen_a = counter(pid)?;
    ensure!(frozen_a > before, "counter did not run before the freeze");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let frozen_b = counter(pid)?;
    ensure!(
        frozen_a == frozen_b,
        "counter advanced while frozen: {frozen_a} -> {frozen_b}"
    );
    sleep_until(start, Duration::from_millis(4600)).await;
    ensure!(freezer_state(&pod, &id)? == "THAWED", "not thawed at 4.6s");
    let thawed_a = counter(pid)?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    ensure!(
        counter(pid)? > thawed_a,
        "counter does not advance after the thaw"
    );
    let frozen = node.log_lines(&["frozen", "latency_us"]);
    println!(
        "{version}: {}",
        frozen
            .first()
            .map(String::as_str)
            .unwrap_or("(no freeze line)")
    );
    node.shutdown().await
}

/// `{cpu: {workers: 1, load: 50}, duration: 10s}`: the container cgroup's CPU usage over the
/// window is 50% +/- 10% of one CPU; the stressor is gone after it.
async fn stress_cpu_holds_half_a_cpu_in_the_container_cgroup(
    version: ContainerdVersion,
) -> Result<()> {
    let node = ChaosNode::start(version, "").await?;
    let cri = node.node.cri().await?;
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
    sleep_until(start, Duration::from_secs(1)).await;
    let (u0, t0) = (cpu_usage(&pod, &id)?, Instant::now());
    sleep_until(start, Duration::from_secs(9)).await;
    let (u1, t1) = (cpu_usage(&pod, &id)?, Instant::now());
    let share = (u1 - u0).as_secs_f64() / (t1 - t0).as_secs_f64();
    println!(
        "{version}: stress cpu load 50 -> measured {:.1}% of one CPU in the container cgroup",
        share * 100.0
    );
    ensure!(
        (0.40..=0.60).contains(&share),
        "CPU share {share:.3}, want 0.5 +/- 0.1"
    );
    sleep_until(start, Duration::from_secs(11)).await;
    let pids = cgroup_pids(&pod, &id)?;
    ensure!(
        pids.len() == 1,
        "stressor left in the container cgroup after duration: {pids:?}"
    );
    node.shutdown().await
}

/// With a 0.2 CPU quota on the container, the same stressor never exceeds 0.2 CPU: it is
/// inside the container's cgroup.
async fn stress_cpu_obeys_the_container_quota(version: ContainerdVersion) -> Result<()> {
    let node = ChaosNode::start(version, "").await?;
    let cri = node.node.cri().await?;
    let pod = cri
        .run_pod(&PodSpec::new("quota").annotation(
            "stress.nri-chaos.io/container.app",
            "{cpu: {workers: 1, load: 50}, duration: 6s}",
        ))
        .await?;
    let id = cri
        .run_container(
            &pod,
            &ContainerSpec::new("app", SLEEPER).cpu_quota(20_000, 100_000),
        )
        .await?;
    let start = Instant::now();
    sleep_until(start, Duration::from_millis(500)).await;
    let mut peak: f64 = 0.0;
    let mut total = Duration::ZERO;
    let mut previous = (cpu_usage(&pod, &id)?, Instant::now());
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = (cpu_usage(&pod, &id)?, Instant::now());
        let share = (now.0 - previous.0).as_secs_f64() / (now.1 - previous.1).as_secs_f64();
        peak = peak.max(share);
        total += now.0 - previous.0;
        previous = now;
    }
    println!("{version}: stress cpu load 50 under a 0.2 CPU quota -> peak {:.1}% per second, {:.2}s CPU in 5s", peak * 100.0, total.as_secs_f64());
    ensure!(
        peak <= 0.23,
        "CPU share {peak:.3} exceeds the 0.2 quota: the stressor escaped the cgroup"
    );
    ensure!(
        peak >= 0.10,
        "CPU share {peak:.3}: the stressor did not run"
    );
    node.shutdown().await
}

/// `{memory: {size: 64Mi}, duration: 4s}` raises the container cgroup's memory usage by
/// 64 MiB +/- 10%, and it drops back after.
async fn stress_memory_charges_the_container_cgroup(version: ContainerdVersion) -> Result<()> {
    let node = ChaosNode::start(version, "").await?;
    let cri = node.node.cri().await?;
    let pod = cri
        .run_pod(&PodSpec::new("mem").annotation(
            "stress.nri-chaos.io/container.app",
            "{memory: {size: 64Mi}, after: 1s, duration: 4s}",
        ))
        .await?;
    let id = cri
        .run_container(
            &pod,
            &ContainerSpec::new("app", SLEEPER).memory_limit(256 << 20),
        )
        .await?;
    let start = Instant::now();
    sleep_until(start, Duration::from_millis(700)).await;
    let before = memory_usage(&pod, &id)?;
    sleep_until(start, Duration::from_millis(3500)).await;
    let during = memory_usage(&pod, &id)?;
    sleep_until(start, Duration::from_millis(6500)).await;
    let after = memory_usage(&pod, &id)?;
    let raised = (during as f64 - before as f64) / MIB;
    println!("{version}: stress memory 64Mi -> usage {:.1} MiB -> {:.1} MiB (+{raised:.1} MiB) -> {:.1} MiB", before as f64 / MIB, during as f64 / MIB, after as f64 / MIB);
    ensure!(
        (57.6..=70.4).contains(&raised),
        "memory rose by {raised:.1} MiB, want 64 +/- 10%"
    );
    ensure!(
        (after as f64) < before as f64 + 6.4 * MIB,
        "memory did not drop back: {:.1} MiB",
        after as f64 / MIB
    );
    node.shutdown().await
}

/// `{score: 900, duration: 2s}` raises the container's oom_score_adj, then restores it.
async fn oom_score_is_raised_then_restored(version: ContainerdVersion) -> Result<()> {
    let node = ChaosNode::start(version, "").await?;
    let cri = node.node.cri().await?;
    let pod = cri
        .run_pod(&PodSpec::new("score").annotation(
            "oom.nri-chaos.io/container.app",
            "{score: 900, after: 1s, duration: 2s}",
        ))
        .await?;
    let id = cri
        .run_container(&pod, &ContainerSpec::new("app", SLEEPER))
        .await?;
    let start = Instant::now();
    let pid = pid_of(&cri, &id).await?;
    let path = PathBuf::from(format!("/proc/{pid}/oom_score_adj"));
    let original = read_trimmed(&path)?;
    sleep_until(start, Duration::from_millis(2000)).await;
    ensure!(
        read_trimmed(&path)? == "900",
        "oom_score_adj during: {}",
        read_trimmed(&path)?
    );
    sleep_until(start, Duration::from_millis(3700)).await;
    ensure!(
        read_trimmed(&path)? == original,
        "oom_score_adj after: {} (was {original})",
        read_trimmed(&path)?
    );
    node.shutdown().await
}

/// `{kill: true, after: 1s}` with a 64 MiB limit: a genuine kernel OOM kill, CRI reports
/// OOMKilled and 137; the pod's other container is untouched. Without a limit it is refused.
async fn oom_kill_is_a_real_kernel_oom_kill(version: ContainerdVersion) -> Result<()> {
    let node = ChaosNode::start(version, "").await?;
    let cri = node.node.cri().await?;
    let pod = cri
        .run_pod(
            &PodSpec::new("oom")
                .annotation("oom.nri-chaos.io/container.app", "{kill: true, after: 1s}"),
        )
        .await?;
    let app = cri
        .run_container(
            &pod,
            &ContainerSpec::new("app", SLEEPER).memory_limit(64 << 20),
        )
        .await?;
    let other = cri
        .run_container(&pod, &ContainerSpec::new("other", SLEEPER))
        .await?;
    let status = cri.wait_exited(&app, Duration::from_secs(20)).await?;
    println!(
        "{version}: oom kill -> exit {} reason {}",
        status.exit_code, status.reason
    );
    ensure!(
        status.reason == "OOMKilled",
        "CRI reason '{}' (want OOMKilled)",
        status.reason
    );
    ensure!(status.exit_code == 137, "exit code {}", status.exit_code);
    ensure!(cri.container_status(&other).await?.state == ContainerState::Running);

    let unlimited = cri
        .run_pod(
            &PodSpec::new("oom-nolimit").annotation("oom.nri-chaos.io", "{kill: true, after: 1s}"),
        )
        .await?;
    let id = cri
        .run_container(&unlimited, &ContainerSpec::new("app", SLEEPER))
        .await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    ensure!(cri.container_status(&id).await?.state == ContainerState::Running);
    let refused = node.log_lines(&["annotation rejected", "oom-nolimit", "limit"]);
    ensure!(
        !refused.is_empty(),
        "no refusal logged for oom kill without a limit:\n{}",
        node.log()
    );
    node.shutdown().await
}

/// SIGKILL nri-chaos in the middle of a freeze (at several points of its life), start it
/// again: the container is thawed within 1 s after the deadline, or at once if it passed.
async fn crash_in_a_freeze_is_recovered_by_the_next_start(
    version: ContainerdVersion,
) -> Result<()> {
    let mut node = ChaosNode::start(version, "").await?;
    let cri = node.node.cri().await?;
    // (kill at, restart at) from container start; the freeze holds from 1 s to 4 s.
    for (round, (kill_at, restart_at)) in [(1500u64, 2500u64), (2000, 6000), (3800, 4200)]
        .into_iter()
        .enumerate()
    {
        let pod = cri
            .run_pod(
                &PodSpec::new(&format!("crash-{round}"))
                    .annotation("freeze.nri-chaos.io", "{after: 1s, duration: 3s}"),
            )
            .await?;
        let id = cri
            .run_container(&pod, &ContainerSpec::new("app", COUNTER))
            .await?;
        let start = Instant::now();
        sleep_until(start, Duration::from_millis(kill_at)).await;
        node.plugin.kill()?;
        ensure!(
            freezer_state(&pod, &id)? == "FROZEN",
            "round {round}: not frozen when the plugin died"
        );
        sleep_until(start, Duration::from_millis(restart_at)).await;
        node.restart_plugin("").await?;
        let deadline = Duration::from_millis(4000).max(Duration::from_millis(restart_at));
        let mut thawed_at = None;
        while start.elapsed() < deadline + Duration::from_millis(1500) {
            if freezer_state(&pod, &id)? == "THAWED" {
                thawed_at = Some(start.elapsed());
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let thawed_at = thawed_at
            .with_context(|| format!("round {round}: still frozen 1.5 s after the deadline"))?;
        println!("{version}: crash round {round} (SIGKILL at {kill_at} ms, restart at {restart_at} ms): thawed at {} ms", thawed_at.as_millis());
        ensure!(
            thawed_at <= deadline + Duration::from_secs(1),
            "round {round}: thawed at {thawed_at:?}"
        );
        ensure!(
            thawed_at + Duration::from_millis(100) >= Duration::from_millis(4000),
            "round {round}: thawed early at {thawed_at:?}"
        );
        cri.stop_pod(&pod).await?;
        cri.remove_pod(&pod).await?;
    }
    node.shutdown().await
}

/// SIGKILL nri-chaos in the middle of a stress, start it again: no stressor outlives the
/// deadline by more than 1 s.
async fn crash_in_a_stress_leaves_no_stressor(version: ContainerdVersion) -> Result<()> {
    let mut node = ChaosNode::start(version, "").await?;
    let cri = node.node.cri().await?;
    let pod = cri
        .run_pod(&PodSpec::new("crash-stress").annotation(
            "stress.nri-chaos.io",
            "{cpu: {workers: 2, load: 30}, after: 500ms, duration: 3s}",
        ))
        .await?;
    let id = cri
        .run_container(&pod, &ContainerSpec::new("app", SLEEPER))
        .await?;
    let start = Instant::now();
    sleep_until(start, Duration::from_millis(1500)).await;
    ensure!(
        cgroup_pids(&pod, &id)?.len() == 3,
        "want app + 2 stressors: {:?}",
        cgroup_pids(&pod, &id)?
    );
    node.plugin.kill()?;
    sleep_until(start, Duration::from_millis(2000)).await;
    node.restart_plugin("").await?;
    sleep_until(start, Duration::from_millis(4500)).await;
    let left = cgroup_pids(&pod, &id)?;
    ensure!(
        left.len() == 1,
        "stressors left 1 s after the deadline: {left:?}"
    );
    node.shutdown().await
}

/// SIGTERM to nri-chaos recovers everything before it exits: a 60 s freeze is thawed, a
/// stressor is gone, the journal is empty.
async fn sigterm_recovers_every_fault_before_exit(version: ContainerdVersion) -> Result<()> {
    let node = ChaosNode::start(version, "").await?;
    let cri = node.node.cri().await?;
    let pod = cri
        .run_pod(
            &PodSpec::new("term")
                .annotation("freeze.nri-chaos.io/container.frozen", "{duration: 60s}")
                .annotation(
                    "stress.nri-chaos.io/container.busy",
                    "{cpu: {workers: 1, load: 20}, duration: 60s}",
                ),
        )
        .await?;
    let frozen = cri
        .run_container(&pod, &ContainerSpec::new("frozen", COUNTER))
        .await?;
    let busy = cri
        .run_container(&pod, &ContainerSpec::new("busy", SLEEPER))
        .await?;
    let start = Instant::now();
    let mut ready = false;
    while start.elapsed() < Duration::from_secs(5) {
        if freezer_state(&pod, &frozen)? == "FROZEN" && cgroup_pids(&pod, &busy)?.len() == 2 {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    ensure!(ready, "freeze and stress were not both applied");
    let ChaosNode { node, plugin } = node;
    let stopping = Instant::now();
    let exit = plugin.stop().await?;
    println!(
        "{version}: SIGTERM -> exit {exit} after {} ms",
        stopping.elapsed().as_millis()
    );
    ensure!(exit.success(), "nri-chaos exited with {exit}");
    ensure!(
        freezer_state(&pod, &frozen)? == "THAWED",
        "still frozen after SIGTERM"
    );
    ensure!(
        cgroup_pids(&pod, &busy)?.len() == 1,
        "stressor left after SIGTERM"
    );
    let (stored, _) = injector::store::read_state(&node.dir().join("nri-chaos-state"))?;
    let left: Vec<&String> = stored.journal.keys().collect();
    ensure!(left.is_empty(), "journal not empty after SIGTERM: {left:?}");
    node.shutdown().await
}

on_both_containerd_versions!(
    sigterm_recovers_every_fault_before_exit,
    freeze_holds_the_window_then_thaws,
    stress_cpu_holds_half_a_cpu_in_the_container_cgroup,
    stress_cpu_obeys_the_container_quota,
    stress_memory_charges_the_container_cgroup,
    oom_score_is_raised_then_restored,
    oom_kill_is_a_real_kernel_oom_kill,
    crash_in_a_freeze_is_recovered_by_the_next_start,
    crash_in_a_stress_leaves_no_stressor,
);

on_containerd_2_3!(freeze_holds_the_window_then_thaws);
