//! Crash rounds: randomized, seeded runs that arm a mix of faults on several pods, crash
//! something at a random moment, and then ask the kernel what is left.
//!
//! Each round ([`plan::RoundPlan::draw`]) runs 3 or 4 pods in parallel, each with one fault
//! (kill with `count`, freeze, stress cpu+memory, oom score, and netem where the kernel has
//! sch_netem) at random timing (`after` 0.2-1 s, `duration` 2-5 s), and at a random moment
//! one disruption: SIGKILL nri-chaos and start it again after a random pause; restart
//! containerd; SIGKILL the OCI hook in the middle of a `start` delay; remove a pod while its
//! fault is armed or holding; `nri-chaos ctl recover --all` while faults are being applied.
//! After the round: no frozen cgroup, no stressor process, no raised oom_score_adj, no qdisc
//! with our handle (netem nodes), no journal entry in `<state-dir>/store.log`, every kill
//! `count` exact (exit 137 through CRI), and every holding fault ended within its deadline
//! (the moment the kernel showed it applied, plus its `duration`) plus the pause and 100 ms.
//!
//! Replay: the seed is printed; `NRI_CHAOS_CRASH_SEED=<s>` runs the same rounds again, and
//! with `NRI_CHAOS_CRASH_ROUND=<r>` only round `r` (on the node it ran on).
//! `NRI_CHAOS_CRASH_ROUNDS=<n>` changes the number of rounds.

mod launch;
pub mod plan;
mod pod;
pub mod probe;
mod round;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::{plugin_binary, ContainerdVersion, Node, PluginProcess};
pub use plan::{Disruption, Fault, Kinds, RoundPlan};

/// A node with nri-chaos registered, restartable by the rounds.
#[derive(Debug)]
pub struct CrashNode {
    pub node: Node,
    pub plugin: PluginProcess,
    config: String,
    /// Pod removals of the last round, still running.
    pending: Vec<tokio::task::JoinHandle<()>>,
}

impl CrashNode {
    /// A private node of `version` with nri-chaos registered under `config`.
    pub async fn start(version: ContainerdVersion, config: &str) -> Result<CrashNode> {
        let node = Node::start(version).await?;
        let plugin = node.start_plugin(&plugin_binary(), config)?;
        let mut n = CrashNode {
            node,
            plugin,
            config: config.to_string(),
            pending: Vec::new(),
        };
        n.wait_synced().await?;
        Ok(n)
    }

    async fn wait_synced(&mut self) -> Result<()> {
        self.plugin
            .wait_log_contains("synchronized with the runtime", Duration::from_secs(30))
            .await
            .context("nri-chaos did not register and synchronize")?;
        Ok(())
    }

    /// Starts nri-chaos again (after its SIGKILL) and waits for its Synchronize.
    pub async fn restart_plugin(&mut self) -> Result<()> {
        let _ = self.plugin.kill();
        self.plugin = self.node.start_plugin(&plugin_binary(), &self.config)?;
        self.wait_synced().await
    }

    pub fn state_dir(&self) -> PathBuf {
        self.node.dir().join("nri-chaos-state")
    }

    /// `nri-chaos ctl --socket <state-dir>/control.sock <args>`; its stdout.
    pub async fn ctl(&self, args: &[&str]) -> Result<String> {
        let out = tokio::process::Command::new(plugin_binary())
            .arg("ctl")
            .arg("--socket")
            .arg(self.state_dir().join("control.sock"))
            .args(args)
            .output()
            .await
            .context("running nri-chaos ctl")?;
        if !out.status.success() {
            bail!(
                "ctl {args:?}: {} {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Stops nri-chaos (SIGTERM) and tears the node down.
    /// Waits for the pod removals of the last round.
    async fn removed_pods(&mut self) {
        for removal in self.pending.drain(..) {
            let _ = removal.await;
        }
    }

    pub async fn shutdown(mut self) -> Result<()> {
        self.removed_pods().await;
        let status = self.plugin.stop().await?;
        let down = self.node.shutdown().await;
        if !status.success() {
            bail!("nri-chaos exited with {status} at SIGTERM");
        }
        down
    }
}

/// The seed, the rounds to run, from the environment.
#[derive(Debug, Clone)]
pub struct CrashRun {
    pub seed: u64,
    pub rounds: Vec<u32>,
}

fn env_u64(name: &str) -> Result<Option<u64>> {
    match std::env::var(name) {
        Ok(v) if !v.is_empty() => {
            Ok(Some(v.trim().parse().with_context(|| {
                format!("{name}={v:?} is not a number")
            })?))
        }
        _ => Ok(None),
    }
}

impl CrashRun {
    /// `NRI_CHAOS_CRASH_SEED` (else a fresh one), `NRI_CHAOS_CRASH_ROUND` (one round) or
    /// `NRI_CHAOS_CRASH_ROUNDS` (else `default_rounds`).
    pub fn from_env(default_rounds: u32) -> Result<CrashRun> {
        let seed = match env_u64("NRI_CHAOS_CRASH_SEED")? {
            Some(s) => s,
            None => u64::from_le_bytes(crate::util::random_bytes::<8>()) >> 12,
        };
        let rounds = match env_u64("NRI_CHAOS_CRASH_ROUND")? {
            Some(r) => vec![r as u32],
            None => (0..env_u64("NRI_CHAOS_CRASH_ROUNDS")?.map_or(default_rounds, |n| n as u32))
                .collect(),
        };
        Ok(CrashRun { seed, rounds })
    }

    /// Which of `nodes` round `round` runs on (they alternate).
    pub fn node_of(round: u32, nodes: usize) -> usize {
        round as usize % nodes.max(1)
    }
}

/// Totals of a run.
#[derive(Debug, Default)]
pub struct Summary {
    pub seed: u64,
    pub rounds: usize,
    pub leftovers: Vec<String>,
    pub count_errors: Vec<String>,
    pub late: Vec<String>,
    pub worst_overshoot_ms: f64,
    pub measured: usize,
    pub wall: Duration,
}

impl Summary {
    /// `RESULT crash_rounds seed=<s> rounds=<n> leftovers=<n> count_errors=<n> worst_overshoot_ms=<x>`
    pub fn result_line(&self) -> String {
        format!(
            "RESULT crash_rounds seed={} rounds={} leftovers={} count_errors={} worst_overshoot_ms={:.0}",
            self.seed,
            self.rounds,
            self.leftovers.len(),
            self.count_errors.len(),
            self.worst_overshoot_ms
        )
    }

    /// Every problem, one per line (empty when the run is clean).
    pub fn problems(&self) -> Vec<String> {
        let mut p: Vec<String> = self
            .leftovers
            .iter()
            .map(|l| format!("leftover: {l}"))
            .collect();
        p.extend(
            self.count_errors
                .iter()
                .map(|c| format!("count error: {c}")),
        );
        p.extend(self.late.iter().map(|l| format!("late: {l}")));
        p
    }
}

/// Runs `run`'s rounds on `nodes` (round `r` on node `r % nodes.len()`), one after another,
/// and prints one `ROUND` line per round and the `RESULT` line.
pub async fn run_rounds(run: &CrashRun, nodes: &mut [CrashNode], kinds: Kinds) -> Result<Summary> {
    let t = Instant::now();
    println!(
        "INFO crash rounds seed={} (replay: NRI_CHAOS_CRASH_SEED={}; one round: NRI_CHAOS_CRASH_ROUND=<r>); \
         timing slack of this node {} ms",
        run.seed,
        run.seed,
        kinds.slack.as_millis()
    );
    let mut s = Summary {
        seed: run.seed,
        worst_overshoot_ms: f64::NEG_INFINITY,
        ..Summary::default()
    };
    for &r in &run.rounds {
        let plan = RoundPlan::draw(run.seed, r, kinds);
        let node = &mut nodes[CrashRun::node_of(r, nodes.len())];
        let version = node.node.version();
        let rt = Instant::now();
        let report = round::run(node, &plan, kinds).await.with_context(|| {
            format!(
                "{plan} on {version} (replay: NRI_CHAOS_CRASH_SEED={} NRI_CHAOS_CRASH_ROUND={r})",
                run.seed
            )
        })?;
        println!(
            "ROUND {r} {version} {:.1}s leftovers={} count_errors={} late={} worst_overshoot_ms={} | {plan}",
            rt.elapsed().as_secs_f64(),
            report.leftovers.len(),
            report.count_errors.len(),
            report.late.len(),
            report.worst_overshoot_ms.map_or("-".into(), |w| format!("{w:.0}")),
        );
        let tag = |x: &String| format!("round {r} ({version}): {x}");
        for p in report
            .leftovers
            .iter()
            .chain(&report.count_errors)
            .chain(&report.late)
        {
            println!("INFO round {r} problem: {p}");
        }
        s.leftovers.extend(report.leftovers.iter().map(tag));
        s.count_errors.extend(report.count_errors.iter().map(tag));
        s.late.extend(report.late.iter().map(tag));
        if let Some(w) = report.worst_overshoot_ms {
            s.worst_overshoot_ms = s.worst_overshoot_ms.max(w);
        }
        s.measured += report.measured;
        s.rounds += 1;
    }
    if s.measured == 0 {
        s.worst_overshoot_ms = 0.0;
    }
    s.wall = t.elapsed();
    println!("{}", s.result_line());
    println!(
        "INFO crash rounds: {} holding faults measured, {:.1} s wall",
        s.measured,
        s.wall.as_secs_f64()
    );
    Ok(s)
}

/// The config line pointing nri-chaos at the OCI hook next to the plugin binary.
pub fn hook_config() -> Result<String> {
    let hook = plugin_binary().with_file_name("nri-chaos-hook");
    anyhow::ensure!(
        hook.is_file(),
        "nri-chaos-hook not found at {} (cargo build -p nri-chaos-oci-hooks)",
        hook.display()
    );
    Ok(format!("hook_path = \"{}\"\n", hook.display()))
}
