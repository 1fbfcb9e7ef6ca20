//! Request-to-effect of a container kill, side by side in one run on one private node, through
//! the three mechanisms chaos tools use on a node. Prints; asserts nothing.
//!
//! - `nri-chaos ctl inject NS/POD/CONTAINER kill`: the CLI over the control socket, then the
//!   plugin's pidfd signal;
//! - CRI ExecSync of `kill -9 <pid>` in the container (the exec chain of ChaosBlade and
//!   Litmus, here without their apiserver and kubelet hops, so a lower bound). `kill -9 1`
//!   literally would do nothing: the kernel drops SIGKILL sent to a PID namespace's init from
//!   inside that namespace. The pod shares its PID namespace, so the app is not PID 1 and is
//!   killed by its PID in that namespace (NSpid);
//! - a containerd task kill through the containerd API (the daemon path of Chaos Mesh and
//!   Pumba), with containerd's own client `ctr -n k8s.io task kill -s SIGKILL`.
//!
//! Each sample starts a fresh `sleep` container, takes a pidfd on its init, sends the request,
//! and times from just before the request to the pidfd turning readable (the process is
//! dead). The mechanisms take turns, round by round. The CLIs (`nri-chaos ctl`, `ctr`) include
//! their own process start; ExecSync is a call from this process.
//!
//! Usage: nri-chaos-bench-effect [ROUNDS] [1.7|2]   (default 30 rounds on containerd 2.x; root)

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use nri_chaos_tests::bench::{percentile, ExitWatch};
use nri_chaos_tests::runtime::run_checked;
use nri_chaos_tests::{
    plugin_binary, require_root, ContainerSpec, ContainerdVersion, Cri, Node, NodeEnv, Pod, PodSpec,
};

const LIMIT: Duration = Duration::from_secs(10);

#[derive(Clone, Copy)]
enum Mechanism {
    Ctl,
    ExecSync,
    TaskKill,
}

impl Mechanism {
    const ALL: [Mechanism; 3] = [Mechanism::Ctl, Mechanism::ExecSync, Mechanism::TaskKill];

    fn label(self) -> &'static str {
        match self {
            Mechanism::Ctl => "nri-chaos ctl inject ... kill",
            Mechanism::ExecSync => "CRI ExecSync kill -9 <pid>",
            Mechanism::TaskKill => "ctr task kill (containerd API)",
        }
    }
}

/// The innermost-namespace PID of host process `pid` (last field of `NSpid:`).
fn ns_pid(pid: u32) -> Result<String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("NSpid:"))
        .and_then(|l| l.split_whitespace().last())
        .map(str::to_string)
        .with_context(|| format!("no NSpid in /proc/{pid}/status"))
}

struct Bench<'a> {
    node: &'a Node,
    cri: Cri,
    pod: Pod,
    control: &'a Path,
}

impl Bench<'_> {
    /// One sample: ms from the request to the container's init being dead.
    async fn sample(&self, mechanism: Mechanism, index: usize) -> Result<f64> {
        let name = format!("e{index}");
        let id = self
            .cri
            .run_container(&self.pod, &ContainerSpec::new(&name, &["sleep", "3600"]))
            .await?;
        let pid = self
            .cri
            .container_pid(&id)
            .await?
            .with_context(|| format!("container {name}: no init pid"))?;
        let inner = ns_pid(pid)?;
        let watch = ExitWatch::start(pid, LIMIT)?;
        let sent = Instant::now();
        match mechanism {
            Mechanism::Ctl => run_checked(
                Command::new(plugin_binary())
                    .arg("ctl")
                    .arg("--socket")
                    .arg(self.control)
                    .args(["inject", &format!("default/effect/{name}"), "kill"]),
            )?,
            Mechanism::ExecSync => {
                // The exec may end with an error: its container is going away under it.
                let _ = self.cri.exec_sync(&id, &["kill", "-9", &inner], 10).await;
            }
            Mechanism::TaskKill => {
                let runtime = self.node.runtime();
                run_checked(
                    Command::new(runtime.ctr(self.node.version()))
                        .arg("-a")
                        .arg(self.node.cri_socket())
                        .args(["-n", "k8s.io", "task", "kill", "-s", "SIGKILL", &id]),
                )?
            }
        }
        let dead = tokio::task::spawn_blocking(move || watch.wait())
            .await?
            .with_context(|| {
                format!("{}: {name} still alive after {LIMIT:?}", mechanism.label())
            })?;
        self.cri.wait_exited(&id, LIMIT).await?;
        self.cri.remove_container(&id).await?;
        Ok((dead - sent).as_secs_f64() * 1000.0)
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    require_root()?;
    let mut args = std::env::args().skip(1);
    let rounds: usize = match args.next() {
        Some(n) => n
            .parse()
            .with_context(|| format!("ROUNDS '{n}' is not a number"))?,
        None => 30,
    };
    let version = ContainerdVersion::from_arg(args.next().as_deref())?;
    NodeEnv::print()?;
    let node = Node::start(version).await?;
    let plugin = node.start_plugin(&plugin_binary(), "")?;
    plugin
        .wait_log_contains("synchronized with the runtime", Duration::from_secs(15))
        .await
        .context("nri-chaos did not register")?;
    let control = node.dir().join("nri-chaos-state").join("control.sock");
    let cri = node.cri().await?;
    let (_, runtime_version) = cri.version().await?;
    let pod = cri
        .run_pod(&PodSpec::new("effect").share_pid_namespace())
        .await?;
    let bench = Bench {
        node: &node,
        cri,
        pod,
        control: &control,
    };
    println!("\nrequest-to-effect of a container kill on {version} ({runtime_version}), {rounds} rounds, mechanisms in turn");
    // Warm-up: one of each, not counted.
    for (i, m) in Mechanism::ALL.into_iter().enumerate() {
        bench.sample(m, 10_000 + i).await?;
    }
    let mut samples = [Vec::new(), Vec::new(), Vec::new()];
    for round in 0..rounds {
        for (i, m) in Mechanism::ALL.into_iter().enumerate() {
            samples[i].push(bench.sample(m, round * 3 + i).await?);
        }
    }
    println!("\nrequest to init dead (pidfd readable), ms:");
    let ctl_p50 = percentile(&samples[0], 0.5);
    let ctl_p99 = percentile(&samples[0], 0.99);
    for (m, s) in Mechanism::ALL.into_iter().zip(&samples) {
        let (p50, p99) = (percentile(s, 0.5), percentile(s, 0.99));
        println!(
            "  {:<32} n={:<4} p50={p50:8.2}  p99={p99:8.2}   ratio to ctl: p50 {:6.2}x  p99 {:6.2}x",
            m.label(),
            s.len(),
            p50 / ctl_p50,
            p99 / ctl_p99
        );
    }
    plugin.stop().await?;
    node.shutdown().await?;
    Ok(())
}
