//! One round on one node: the pods in parallel, the disruption at its moment, then the
//! kernel's word on what is left (not nri-chaos's): frozen cgroups, stressor processes,
//! raised oom_score_adj, our qdisc, journal entries; and the counts and the deadlines.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use tokio::sync::Barrier;

use super::plan::{Disruption, Fault, Kinds, RoundPlan};
use super::pod::{PodOutcome, PodRun};
use super::{probe, CrashNode};
use crate::ContainerState;

/// What a round found.
#[derive(Debug, Default)]
pub struct RoundReport {
    pub leftovers: Vec<String>,
    pub count_errors: Vec<String>,
    /// Holding faults seen ending after their deadline plus the allowance.
    pub late: Vec<String>,
    /// Worst (ended - deadline) of the round's holding faults, in ms.
    pub worst_overshoot_ms: Option<f64>,
    /// Holding faults whose end was measured.
    pub measured: usize,
}

/// Time nri-chaos may need past the plan because of the disruption: its absence, or its
/// reconnect backoff (up to 2 s) after a containerd restart.
fn extra(d: &Disruption) -> Duration {
    match d {
        Disruption::PluginKill { pause_ms, .. } => Duration::from_millis(*pause_ms + 500),
        Disruption::ContainerdRestart { .. } => Duration::from_secs(3),
        _ => Duration::ZERO,
    }
}

pub(super) async fn run(
    node: &mut CrashNode,
    plan: &RoundPlan,
    kinds: Kinds,
) -> Result<RoundReport> {
    let cri = node.node.cri().await?;
    let ready = Arc::new(Barrier::new(plan.pods.len() + 1));
    let poll = if kinds.netem {
        Duration::from_millis(50)
    } else {
        Duration::from_millis(10)
    };
    let tasks: Vec<_> = plan
        .pods
        .iter()
        .enumerate()
        .map(|(index, fault)| {
            let run = PodRun {
                cri: cri.clone(),
                name: format!("r{}-{}-{}", plan.round, index, fault.kind()),
                index,
                fault: *fault,
                disruption: plan.disruption,
                ready: ready.clone(),
                poll,
                extra: extra(&plan.disruption) + kinds.slack,
                bundles: node
                    .node
                    .dir()
                    .join("state/io.containerd.runtime.v2.task/k8s.io"),
            };
            tokio::spawn(run.run())
        })
        .collect();
    // The round's clock starts when every pod sandbox runs (slow under TCG).
    ready.wait().await;
    node.removed_pods().await;
    let start = Instant::now();
    disrupt(node, plan.disruption, start).await?;
    let disrupted = start.elapsed();
    let mut outcomes = Vec::new();
    for task in tasks {
        outcomes.push(task.await.context("pod task")??);
    }
    let pods_done = start.elapsed();
    let report = judge(node, plan, kinds, &outcomes).await;
    let judged = start.elapsed();
    println!(
        "INFO round {} timing: disruption done {} ms, pods done {} ms, checks done {} ms",
        plan.round,
        disrupted.as_millis(),
        pods_done.as_millis(),
        judged.as_millis(),
    );
    // Removed while the next round's sandboxes are created (seconds each under TCG).
    node.pending.extend(
        outcomes
            .iter()
            .filter(|out| !out.removed)
            .filter_map(|out| out.pod.clone())
            .map(|pod| {
                let cri = cri.clone();
                tokio::spawn(async move {
                    let _ = cri.stop_pod(&pod).await;
                    let _ = cri.remove_pod(&pod).await;
                })
            }),
    );
    Ok(report)
}

async fn disrupt(node: &mut CrashNode, d: Disruption, start: Instant) -> Result<()> {
    let at = |ms: u64| tokio::time::sleep_until((start + Duration::from_millis(ms)).into());
    match d {
        Disruption::PluginKill { at_ms, pause_ms } => {
            at(at_ms).await;
            node.plugin.kill()?;
            tokio::time::sleep(Duration::from_millis(pause_ms)).await;
            node.restart_plugin().await
        }
        Disruption::ContainerdRestart { at_ms } => {
            at(at_ms).await;
            node.node.restart_containerd().await
        }
        Disruption::CtlRecover { at_ms } => {
            at(at_ms).await;
            let out = node.ctl(&["recover", "--all"]).await?;
            println!(
                "INFO ctl recover --all: {}",
                out.trim().replace('\n', " | ")
            );
            Ok(())
        }
        // Done by the pod's own driver.
        Disruption::HookKill { .. } | Disruption::RemovePod { .. } => Ok(()),
    }
}

async fn judge(
    node: &CrashNode,
    plan: &RoundPlan,
    kinds: Kinds,
    outcomes: &[PodOutcome],
) -> RoundReport {
    let mut r = RoundReport::default();
    let allowance = plan.disruption.pause() + Duration::from_millis(100) + kinds.slack;
    for out in outcomes {
        r.count_errors.extend(out.count_errors.iter().cloned());
        if out.removed {
            continue;
        }
        if let Fault::Kill { count, .. } = out.fault {
            // A kill that came after the pod's driver stopped watching (a firing waits for
            // its count's fsync, slow when the disk is busy) still counts, now.
            let late_kill = match (&out.live, node.node.cri().await) {
                (Some(live), Ok(cri)) => cri
                    .container_status(&live.id)
                    .await
                    .is_ok_and(|st| st.state == ContainerState::Exited && st.exit_code == 137),
                _ => false,
            };
            if late_kill {
                println!("INFO {}: killed after its watch window", out.name);
            }
            let kills = out.kills + u32::from(late_kill);
            // `ctl recover --all` ends an armed kill for good: fewer kills, never more.
            let recovered = matches!(plan.disruption, Disruption::CtlRecover { .. });
            if kills > count || (kills < count && !recovered) {
                r.count_errors.push(format!(
                    "{}: {} kills (exit 137), count {count}",
                    out.name, kills
                ));
            }
        }
        let Some(hold) = out.fault.holds() else {
            continue;
        };
        match (out.held.first, out.held.last, out.held.ended) {
            (Some(first), Some(last), Some(ended)) => {
                let deadline = first + hold;
                let over = ended.saturating_duration_since(deadline).as_secs_f64() * 1000.0
                    - deadline.saturating_duration_since(ended).as_secs_f64() * 1000.0;
                // The poll that saw it ended may come up to one poll period after the end.
                let resolution = ended - last;
                r.measured += 1;
                r.worst_overshoot_ms =
                    Some(r.worst_overshoot_ms.map_or(over, |w: f64| w.max(over)));
                if over > (allowance + resolution).as_secs_f64() * 1000.0 {
                    r.late.push(format!(
                        "{}: ended {over:.0} ms after its deadline (allowed {} ms + {} ms poll resolution)",
                        out.name,
                        allowance.as_millis(),
                        resolution.as_millis()
                    ));
                }
            }
            (Some(first), _, None) => r.leftovers.push(format!(
                "{}: {} still held {:.1} s after it was applied",
                out.name,
                out.fault.kind(),
                first.elapsed().as_secs_f64()
            )),
            _ if !matches!(plan.disruption, Disruption::CtlRecover { .. }) => r.count_errors.push(
                format!("{}: {} never seen applied", out.name, out.fault.kind()),
            ),
            _ => {}
        }
    }
    r.leftovers
        .extend(kernel_leftovers(node, kinds, outcomes).await);
    r
}

/// What the kernel (and the journal on disk) still holds after the round.
async fn kernel_leftovers(node: &CrashNode, kinds: Kinds, outcomes: &[PodOutcome]) -> Vec<String> {
    let root = node.node.cgroup_root().to_string();
    let mut left: Vec<String> = probe::frozen_cgroups(&root)
        .into_iter()
        .map(|d| format!("frozen cgroup {}", d.display()))
        .collect();
    left.extend(
        probe::stressors(&root)
            .into_iter()
            .map(|(pid, cmd)| format!("stressor pid {pid}: {cmd}")),
    );
    for live in outcomes.iter().filter_map(|o| o.live.as_ref()) {
        for pid in probe::procs(&live.dir) {
            if let Some(adj) = probe::oom_score_adj(pid).filter(|adj| *adj > live.baseline_adj) {
                left.push(format!(
                    "pid {pid} of {}: oom_score_adj {adj} > {}",
                    live.id, live.baseline_adj
                ));
            }
        }
        if probe::hook_of(&live.id).is_some() {
            left.push(format!("a hook process of {} is still running", live.id));
        }
    }
    if kinds.netem {
        let pods = outcomes
            .iter()
            .filter(|o| !o.removed)
            .filter_map(|o| o.pod.as_ref());
        for pod in pods {
            let tc = probe::sandbox_pid(pod)
                .ok_or_else(|| "no pod sandbox process".to_string())
                .and_then(probe::qdiscs);
            match tc {
                Ok(tc) => left.extend(
                    probe::our_qdiscs(&tc)
                        .into_iter()
                        .map(|q| format!("qdisc in the netns of pod {}: {q}", pod.spec.name)),
                ),
                Err(e) => left.push(format!(
                    "cannot read the qdiscs of pod {}: {e}",
                    pod.spec.name
                )),
            }
        }
    }
    // The journal entry is cleared by the store's writer right after the recovery.
    let state_dir = node.state_dir();
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        match injector::store::read_state(&state_dir) {
            Ok((stored, _)) if stored.journal.is_empty() => break,
            Ok((stored, _)) if Instant::now() >= deadline => {
                left.extend(stored.journal.keys().map(|k| format!("journal entry {k}")));
                break;
            }
            Err(e) if Instant::now() >= deadline => {
                left.push(format!("cannot read the store: {e}"));
                break;
            }
            _ => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    left
}
