//! Crash rounds on the host node (real containerd 1.7 and 2.x, alternating round by round):
//! at least 30 seeded rounds of random faults on several pods, each with one crash of
//! nri-chaos, containerd or the OCI hook, a pod removed mid-fault, or `ctl recover` mid-apply
//! (see `nri_chaos_tests::crash`). Fails on any leftover in the kernel or the journal, any
//! kill count that is not exact, and any holding fault that ended later than its deadline
//! plus the pause plus 100 ms. Replay with the printed `NRI_CHAOS_CRASH_SEED`.

use std::time::Duration;

use anyhow::{ensure, Result};
use nri_chaos_tests::crash::{hook_config, run_rounds, CrashNode, CrashRun, Kinds};
use nri_chaos_tests::{require_root, ContainerdVersion};

/// The host kernel has no sch_netem: netem runs in the VM node's rounds.
const HOST: Kinds = Kinds {
    netem: false,
    slack: Duration::ZERO,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_rounds_leave_nothing_behind() -> Result<()> {
    require_root()?;
    let run = CrashRun::from_env(30)?;
    let config = hook_config()?;
    let mut nodes = Vec::new();
    for version in [ContainerdVersion::V17, ContainerdVersion::V2] {
        nodes.push(CrashNode::start(version, &config).await?);
    }
    let summary = run_rounds(&run, &mut nodes, HOST).await;
    let mut down = Vec::new();
    for node in nodes {
        if let Err(e) = node.shutdown().await {
            down.push(format!("{e:#}"));
        }
    }
    let summary = summary?;
    let problems = summary.problems();
    ensure!(
        problems.is_empty(),
        "{}\n  {}\n(replay: NRI_CHAOS_CRASH_SEED={})",
        summary.result_line(),
        problems.join("\n  "),
        summary.seed
    );
    if run.rounds.len() > 1 {
        ensure!(summary.rounds >= 30, "only {} rounds ran", summary.rounds);
    }
    ensure!(down.is_empty(), "teardown: {}", down.join("; "));
    Ok(())
}
