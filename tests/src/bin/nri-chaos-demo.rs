//! The nri-chaos demo: a private real containerd node, nri-chaos registered over NRI, and a
//! pod that asks to have its `app` container killed 2 s after start. Prints what happened,
//! from what CRI and the plugin reported.
//!
//! Usage: nri-chaos-demo [1.7|2|both]   (default: both; needs root)

use std::time::Duration;

use anyhow::{bail, Context, Result};
use nri_chaos_tests::timeline::{field, line_time_ns};
use nri_chaos_tests::{
    plugin_binary, require_root, ContainerSpec, ContainerState, ContainerdVersion, Node, NodeEnv,
    PodSpec,
};

const ANNOTATION_KEY: &str = "kill.nri-chaos.io/container.app";
const ANNOTATION_VALUE: &str = "{after: 2s}";

struct Clock {
    origin_ns: i64,
}

impl Clock {
    fn now_ns() -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as i64)
            .unwrap_or(0)
    }

    fn at(&self, ns: i64, what: &str) {
        println!("  t+{:>7.3}s  {what}", (ns - self.origin_ns) as f64 / 1e9);
    }
}

async fn demo(version: ContainerdVersion) -> Result<()> {
    let node = Node::start(version).await?;
    let cri = node.cri().await?;
    let (runtime, runtime_version) = cri.version().await?;
    println!(
        "\n== {version}: {runtime} {runtime_version}, private node at {}",
        node.dir().display()
    );
    let plugin = node.start_plugin(&plugin_binary(), "")?;
    plugin
        .wait_log_contains("synchronized with the runtime", Duration::from_secs(15))
        .await
        .context("nri-chaos did not register with containerd")?;
    println!(
        "  nri-chaos (pid {}) registered over NRI ({})",
        plugin.pid(),
        node.nri_socket().display()
    );

    let clock = Clock {
        origin_ns: Clock::now_ns(),
    };
    let pod = cri
        .run_pod(&PodSpec::new("web").annotation(ANNOTATION_KEY, ANNOTATION_VALUE))
        .await?;
    clock.at(
        Clock::now_ns(),
        &format!("pod default/web running, annotation {ANNOTATION_KEY}: \"{ANNOTATION_VALUE}\""),
    );
    let sleeper = ["sleep", "3600"];
    let app = cri
        .run_container(&pod, &ContainerSpec::new("app", &sleeper))
        .await?;
    let sidecar = cri
        .run_container(&pod, &ContainerSpec::new("sidecar", &sleeper))
        .await?;
    let exited = cri.wait_exited(&app, Duration::from_secs(10)).await?;
    clock.at(
        exited.started_at,
        "container app started (attempt 0); container sidecar started (no matching key)",
    );

    let log = plugin.log();
    let sent = log
        .lines()
        .find(|line| line.contains("signal sent") && line.contains("container=app"))
        .context("nri-chaos logged no signal")?;
    let planned_ms: i64 = field(sent, "planned_after_ms")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let lateness_us: i64 = field(sent, "lateness_us")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let sent_ns = line_time_ns(sent).unwrap_or(exited.finished_at);
    clock.at(
        exited.started_at + planned_ms * 1_000_000,
        &format!("kill planned: start + {planned_ms} ms"),
    );
    clock.at(
        sent_ns,
        &format!(
            "nri-chaos sent {} to the container's init (pid {}), {:.3} ms after the planned time",
            field(sent, "signal").unwrap_or("?"),
            field(sent, "pid").unwrap_or("?"),
            lateness_us as f64 / 1000.0
        ),
    );
    clock.at(
        exited.finished_at,
        &format!("container app exited, CRI exit code {}", exited.exit_code),
    );
    if exited.exit_code != 137 {
        bail!("expected exit code 137, CRI reports {}", exited.exit_code);
    }

    let restarted = cri
        .run_container(&pod, &ContainerSpec::new("app", &sleeper).attempt(1))
        .await?;
    clock.at(
        Clock::now_ns(),
        "kubelet-style restart: container app attempt 1 started",
    );
    tokio::time::sleep(Duration::from_secs(4)).await;
    let status = cri.container_status(&restarted).await?;
    let sidecar_status = cri.container_status(&sidecar).await?;
    clock.at(
        Clock::now_ns(),
        &format!(
            "app attempt 1 is {:?} (count 1 spent: not killed again); sidecar is {:?} (never signalled)",
            status.state, sidecar_status.state
        ),
    );
    if status.state != ContainerState::Running || sidecar_status.state != ContainerState::Running {
        bail!("restarted app or sidecar is not running");
    }
    println!("  nri-chaos decisions:");
    for line in plugin.log().lines().filter(|l| {
        l.contains("fault planned") || l.contains("signal sent") || l.contains("count spent")
    }) {
        println!(
            "    {}",
            line.split_once("  ")
                .map(|(_, rest)| rest)
                .unwrap_or(line)
                .trim()
        );
    }
    let exit = plugin.stop().await?;
    println!("  nri-chaos stopped on SIGTERM ({exit})");
    node.shutdown().await?;
    println!("  node torn down: no process, mount, netns, cgroup or bridge left");
    Ok(())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    require_root()?;
    let versions = match std::env::args().nth(1).as_deref() {
        None | Some("both") => ContainerdVersion::ALL.to_vec(),
        Some("1.7") => vec![ContainerdVersion::V17],
        Some("2") | Some("2.x") => vec![ContainerdVersion::V2],
        Some(other) => bail!("unknown containerd version '{other}' (use 1.7, 2 or both)"),
    };
    NodeEnv::print()?;
    for version in versions {
        demo(version).await?;
    }
    Ok(())
}
