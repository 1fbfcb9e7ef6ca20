//! The `crash` VM node suite (cgroup v2, sch_netem). It proves:
//!
//! - `netem_60s_*`: `netem.nri-chaos.io/pod: "{delay: 100ms, duration: 60s}"` survives a
//!   SIGKILL of nri-chaos with a restart (its first Synchronize) and a containerd restart
//!   (the resync), both inside the 60 s: the qdisc is still there 30 s after it was applied,
//!   and it is gone just after 60 s (issue 10's proof; the times are printed);
//! - `crash_rounds_*`: at least 10 crash rounds (`nri_chaos_tests::crash`) with netem among
//!   the faults and freeze, stress, oom score and kill on cgroup v2, 0 leftovers, 0 count
//!   errors, no holding fault late past its deadline plus the pause plus 100 ms.
//!
//! `NRI_CHAOS_CRASH_SEED` / `NRI_CHAOS_CRASH_ROUND` replay rounds (the VM test passes them in).

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use nri_chaos_tests::crash::{probe, run_rounds, CrashNode, CrashRun, Kinds};
use nri_chaos_tests::vm::AssertSuite;
use nri_chaos_tests::{ContainerSpec, ContainerdVersion, PodSpec};

use crate::ms;

const ROUNDS: u32 = 10;
/// TCG on a shared 2-core host: a CRI call or an `nsenter tc` probe takes up to seconds, so
/// every timing allowance of the rounds gets this much more (printed with the result). 1 s
/// was seen exceeded once (a freeze ended 1.17 s late, no crash involved, load 10).
const NETEM: Kinds = Kinds {
    netem: true,
    slack: Duration::from_millis(2000),
};
const HOLD: Duration = Duration::from_secs(60);
/// Plugin SIGKILL at 8 s after the qdisc was seen, restart 1 s later; containerd restart at
/// 18 s; the check at 30 s.
const PLUGIN_KILL_AT: Duration = Duration::from_secs(8);
const PLUGIN_PAUSE: Duration = Duration::from_secs(1);
const CONTAINERD_RESTART_AT: Duration = Duration::from_secs(18);
const CHECK_AT: Duration = Duration::from_secs(30);
/// TCG: one `nsenter tc` probe takes tens of ms, and the guest clock runs on a loaded host.
const GONE_SLACK: Duration = Duration::from_millis(1500);

pub(crate) async fn run(s: &mut AssertSuite) -> Result<()> {
    let t = Instant::now();
    let mut node = CrashNode::start(ContainerdVersion::V17, "").await?;
    s.check("crash_node_ready", true, format!("{} ms", ms(t.elapsed())));
    let outcome = scenarios(s, &mut node).await;
    if outcome.is_err() || s.failed > 0 {
        let log = node.plugin.log();
        let lines: Vec<&str> = log.lines().collect();
        for line in &lines[lines.len().saturating_sub(30)..] {
            println!("INFO plugin| {line}");
        }
    }
    match tokio::time::timeout(Duration::from_secs(60), node.shutdown()).await {
        Ok(Ok(())) => println!("INFO node teardown clean"),
        Ok(Err(e)) => println!(
            "INFO node teardown: {}",
            format!("{e:#}").replace('\n', " | ")
        ),
        Err(_) => println!("INFO node teardown did not finish within 60 s"),
    }
    outcome
}

async fn scenarios(s: &mut AssertSuite, node: &mut CrashNode) -> Result<()> {
    netem_survives_plugin_and_containerd_restarts(s, node).await?;
    let run = CrashRun::from_env(ROUNDS)?;
    let summary = run_rounds(&run, std::slice::from_mut(node), NETEM).await?;
    let problems = summary.problems();
    s.check(
        "crash_rounds_clean",
        problems.is_empty(),
        format!("{} {}", summary.result_line(), problems.join("; ")),
    );
    s.check(
        "crash_rounds_ge_10",
        summary.rounds >= ROUNDS as usize || run.rounds.len() == 1,
        format!(
            "{} rounds in {:.1} s",
            summary.rounds,
            summary.wall.as_secs_f64()
        ),
    );
    Ok(())
}

fn held(pid: u32) -> bool {
    probe::qdiscs(pid).is_ok_and(|tc| !probe::our_qdiscs(&tc).is_empty())
}

async fn sleep_until(from: Instant, at: Duration) {
    tokio::time::sleep_until((from + at).into()).await;
}

/// Issue 10: netem `{delay: 100ms, duration: 60s}` holds through a plugin SIGKILL + restart
/// and a containerd restart, and ends at 60 s.
async fn netem_survives_plugin_and_containerd_restarts(
    s: &mut AssertSuite,
    node: &mut CrashNode,
) -> Result<()> {
    let cri = node.node.cri().await?;
    let pod = cri
        .run_pod(
            &PodSpec::new("netem-60s")
                .annotation("netem.nri-chaos.io/pod", "{delay: 100ms, duration: 60s}"),
        )
        .await?;
    // Probed in the sandbox's netns from before CreateContainer, where the plugin arms it.
    let pid = probe::sandbox_pid(&pod).context("no process in the pod sandbox cgroup")?;
    let creating = {
        let (cri, pod) = (cri.clone(), pod.clone());
        tokio::spawn(async move {
            cri.run_container(&pod, &ContainerSpec::new("app", &["sleep", "3600"]))
                .await
        })
    };
    // The install happened between the start of the last probe that did not see the qdisc
    // and the end of the first that did (one `nsenter tc` takes ~200 ms under TCG).
    let wait = Instant::now();
    let mut probe_start = wait;
    let (mut applied_lo, mut applied) = (wait, wait);
    let mut ok = false;
    while wait.elapsed() < Duration::from_secs(15) {
        let t = Instant::now();
        if held(pid) {
            (applied_lo, applied, ok) = (probe_start, Instant::now(), true);
            break;
        }
        probe_start = t;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    creating.await.context("create task")??;
    s.check(
        "netem_60s_applied",
        ok,
        format!(
            "qdisc installed {}-{} ms after CreateContainer was sent",
            ms(applied_lo - wait),
            ms(applied - wait)
        ),
    );
    if !ok {
        return Ok(());
    }
    sleep_until(applied, PLUGIN_KILL_AT).await;
    node.plugin.kill()?;
    let killed = applied.elapsed();
    tokio::time::sleep(PLUGIN_PAUSE).await;
    node.restart_plugin().await?;
    let synced = applied.elapsed();
    let after_plugin = held(pid);
    sleep_until(applied, CONTAINERD_RESTART_AT).await;
    let restart = applied.elapsed();
    node.node.restart_containerd().await?;
    let back = applied.elapsed();
    sleep_until(applied, CHECK_AT).await;
    let at_30 = applied.elapsed();
    let held_30 = held(pid);
    println!(
        "RESULT netem_60s plugin_sigkill_s={:.1} plugin_synced_s={:.1} held_after_plugin_restart={after_plugin} \
         containerd_restart_s={:.1} containerd_back_s={:.1} check_s={:.1} held={held_30}",
        killed.as_secs_f64(),
        synced.as_secs_f64(),
        restart.as_secs_f64(),
        back.as_secs_f64(),
        at_30.as_secs_f64()
    );
    s.check(
        "netem_60s_held_at_30s",
        held_30 && after_plugin,
        format!(
            "qdisc {} at {:.1} s (after the plugin restart at {:.1} s and the containerd restart at {:.1} s)",
            if held_30 { "present" } else { "GONE" },
            at_30.as_secs_f64(),
            synced.as_secs_f64(),
            back.as_secs_f64()
        ),
    );
    // Removed between the start of the last probe that saw it and the end of the first
    // that did not: the hold lies between `removed_lo - applied` and `removed - applied_lo`.
    let mut probe_start = Instant::now();
    let mut removed_lo = probe_start;
    let mut removed = None;
    while applied.elapsed() < HOLD + Duration::from_secs(10) {
        let t = Instant::now();
        if !held(pid) {
            removed = Some(Instant::now());
            removed_lo = probe_start;
            break;
        }
        probe_start = t;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let Some(removed) = removed else {
        s.check(
            "netem_60s_gone_after_60s",
            false,
            "qdisc still there 70 s after it was installed",
        );
        return Ok(());
    };
    let longest = removed - applied_lo;
    let shortest = removed_lo.saturating_duration_since(applied);
    println!(
        "RESULT netem_60s_end hold_min_s={:.2} hold_max_s={:.2}",
        shortest.as_secs_f64(),
        longest.as_secs_f64()
    );
    s.check(
        "netem_60s_gone_after_60s",
        longest + Duration::from_millis(100) >= HOLD && shortest <= HOLD + GONE_SLACK,
        format!(
            "qdisc held {:.2}-{:.2} s (probe bounds): not before 60 s, gone by {:.1} s",
            shortest.as_secs_f64(),
            longest.as_secs_f64(),
            (HOLD + GONE_SLACK).as_secs_f64()
        ),
    );
    cri.stop_pod(&pod).await?;
    cri.remove_pod(&pod).await?;
    Ok(())
}
