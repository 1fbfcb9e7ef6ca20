//! The worst of the malformed annotation catalogue (injector/tests/malformed_catalogue.rs) on a
//! real containerd 2.x node: a pod carrying them gets its container running, each rejection
//! is logged with its key and reason, and the plugin's resident memory does not grow over 200
//! pods' worth of such CreateContainer calls.

mod common;

use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use common::ChaosNode;
use nri_chaos_tests::malformed::billion_laughs;
use nri_chaos_tests::{ContainerSpec, ContainerState, ContainerdVersion, PodSpec};

const SLEEPER: &[&str] = &["sleep", "3600"];
/// Pods planned before the first memory reading (allocator and caches warm).
const WARM_UP: usize = 20;
/// Pods in all.
const PODS: usize = 200;
/// Growth of VmRSS allowed from the warm-up to the end.
const MAX_GROWTH_KIB: u64 = 8 * 1024;

/// The catalogue's worst values, on the keys of container `app`. Kubernetes caps a pod's
/// annotations at 256 KiB in all; the biggest value here is just under that.
fn worst() -> Vec<(&'static str, String)> {
    vec![
        ("kill.nri-chaos.io/container.app", "a".repeat(250 * 1024)),
        (
            "freeze.nri-chaos.io/container.app",
            "{duration: 1ns, every: 2ns}".to_string(),
        ),
        (
            "stress.nri-chaos.io/container.app",
            "{memory: {size: 1Ei}, duration: 1m}".to_string(),
        ),
        ("netem.nri-chaos.io/pod", "[".repeat(4096)),
        ("oom.nri-chaos.io/container.app", billion_laughs()),
        ("kil.nri-chaos.io", "{}".to_string()),
    ]
}

fn pod_spec(name: &str) -> PodSpec {
    worst()
        .into_iter()
        .fold(PodSpec::new(name), |spec, (k, v)| spec.annotation(k, &v))
}

fn vm_rss_kib(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .with_context(|| format!("no VmRSS in /proc/{pid}/status"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worst_annotations_are_rejected_the_container_runs_and_memory_stays_flat() -> Result<()> {
    let node = ChaosNode::start(ContainerdVersion::V2, "").await?;
    let cri = node.node.cri().await?;

    let pod = cri.run_pod(&pod_spec("worst")).await?;
    let app = cri
        .run_container(&pod, &ContainerSpec::new("app", SLEEPER))
        .await?;
    let status = cri.wait_running(&app, Duration::from_secs(10)).await?;
    ensure!(
        status.state == ContainerState::Running,
        "app is {:?}",
        status.state
    );
    let expected = [
        (
            "kill.nri-chaos.io/container.app",
            "value is 256000 bytes long",
        ),
        ("freeze.nri-chaos.io/container.app", "is shorter than 100ms"),
        ("stress.nri-chaos.io/container.app", "is larger than 128Ti"),
        ("netem.nri-chaos.io/pod", "value is not valid YAML"),
        ("oom.nri-chaos.io/container.app", "YAML anchors and aliases"),
        ("kil.nri-chaos.io", "unknown fault kind"),
    ];
    for (key, reason) in expected {
        let lines = node.log_lines(&["annotation rejected", key, reason]);
        ensure!(
            !lines.is_empty(),
            "no rejection of {key} ({reason}) in the log:\n{}",
            node.log()
        );
        let longest = lines.iter().map(String::len).max().unwrap_or(0);
        ensure!(longest < 4096, "a log line of {longest} bytes for {key}");
    }
    cri.stop_pod(&pod).await?;
    cri.remove_pod(&pod).await?;

    let pid = node.plugin.pid();
    let started = Instant::now();
    let mut rss_warm = 0;
    for i in 0..PODS {
        if i == WARM_UP {
            rss_warm = vm_rss_kib(pid)?;
        }
        let pod = cri.run_pod(&pod_spec(&format!("worst-{i}"))).await?;
        cri.create_container(&pod, &ContainerSpec::new("app", SLEEPER))
            .await
            .with_context(|| format!("pod {i}: CreateContainer failed"))?;
        cri.stop_pod(&pod).await?;
        cri.remove_pod(&pod).await?;
    }
    let rss_end = vm_rss_kib(pid)?;
    println!(
        "plugin VmRSS after {WARM_UP} pods {rss_warm} KiB, after {PODS} pods {rss_end} KiB ({} pods of {} bad annotations in {:?})",
        PODS,
        worst().len(),
        started.elapsed()
    );
    ensure!(
        rss_end <= rss_warm + MAX_GROWTH_KIB,
        "the plugin grew from {rss_warm} KiB to {rss_end} KiB over {} pods",
        PODS - WARM_UP
    );
    node.shutdown().await
}
