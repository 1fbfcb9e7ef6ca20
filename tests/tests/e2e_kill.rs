//! The kill fault end to end: real containerd (1.7 and 2.x), runc, CNI and kernel; the
//! assertions are what CRI reports (exit codes, restarts) and what the plugin logged.

mod common;

use std::time::Duration;

use anyhow::{ensure, Result};
use common::{secs_between, ChaosNode};
use nri_chaos_tests::{ContainerSpec, ContainerState, ContainerdVersion, PodSpec};

const SLEEPER: &[&str] = &["sleep", "3600"];

/// `{after: 2s}` on container `app`: exit 137 about 2 s after start; the restarted container
/// (attempt 1) keeps running; the pod's other container is never signalled.
async fn kill_after_2s_once_and_only_the_named_container(version: ContainerdVersion) -> Result<()> {
    let node = ChaosNode::start(version, "").await?;
    let cri = node.node.cri().await?;
    let pod = cri
        .run_pod(&PodSpec::new("web").annotation("kill.nri-chaos.io/container.app", "{after: 2s}"))
        .await?;
    let app = cri
        .run_container(&pod, &ContainerSpec::new("app", SLEEPER))
        .await?;
    let sidecar = cri
        .run_container(&pod, &ContainerSpec::new("sidecar", SLEEPER))
        .await?;

    let exited = cri.wait_exited(&app, Duration::from_secs(10)).await?;
    let lived = secs_between(exited.started_at, exited.finished_at);
    println!(
        "{version}: app exited {} after {lived:.3}s",
        exited.exit_code
    );
    ensure!(
        exited.exit_code == 137,
        "app exit code {} (want 137 for SIGKILL)",
        exited.exit_code
    );
    ensure!(
        (1.8..=2.6).contains(&lived),
        "app lived {lived:.3}s, want about 2s"
    );

    // The kubelet restarts it with attempt 1: count (default 1) is spent, it keeps running.
    let restarted = cri
        .run_container(&pod, &ContainerSpec::new("app", SLEEPER).attempt(1))
        .await?;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let status = cri.container_status(&restarted).await?;
    ensure!(
        status.state == ContainerState::Running,
        "restarted app is {:?}",
        status.state
    );
    let sidecar_status = cri.container_status(&sidecar).await?;
    ensure!(
        sidecar_status.state == ContainerState::Running,
        "sidecar is {:?}",
        sidecar_status.state
    );

    let sent = node.log_lines(&["signal sent"]);
    ensure!(
        sent.len() == 1,
        "want exactly one signal, log has: {sent:#?}"
    );
    ensure!(sent[0].contains("container=app"), "{}", sent[0]);
    ensure!(node
        .log_lines(&["container=sidecar", "fault planned"])
        .is_empty());
    node.shutdown().await
}

/// `{after: 1s, every: 2s, count: 3}`: exactly three kills across restarts.
async fn kill_count_is_counted_across_restarts(version: ContainerdVersion) -> Result<()> {
    let node = ChaosNode::start(version, "").await?;
    let cri = node.node.cri().await?;
    let pod = cri
        .run_pod(&PodSpec::new("counted").annotation(
            "kill.nri-chaos.io/container.app",
            "{after: 1s, every: 2s, count: 3}",
        ))
        .await?;
    let mut kills = 0;
    for attempt in 0..5u32 {
        let id = cri
            .run_container(&pod, &ContainerSpec::new("app", SLEEPER).attempt(attempt))
            .await?;
        match cri.wait_exited(&id, Duration::from_secs(5)).await {
            Ok(status) => {
                ensure!(
                    status.exit_code == 137,
                    "attempt {attempt}: exit code {}",
                    status.exit_code
                );
                kills += 1;
                cri.remove_container(&id).await?;
            }
            Err(_) => {
                let status = cri.container_status(&id).await?;
                ensure!(
                    status.state == ContainerState::Running,
                    "attempt {attempt}: {:?}",
                    status.state
                );
                println!("{version}: attempt {attempt} survived; kills so far {kills}");
                break;
            }
        }
    }
    ensure!(
        kills == 3,
        "want exactly 3 kills across restarts, saw {kills}"
    );
    ensure!(node.log_lines(&["signal sent"]).len() == 3);
    node.shutdown().await
}

/// `signal: SIGTERM` ends a workload that does not trap it with exit code 143. The workload
/// shares the pod's PID namespace (pause is PID 1), as in a pod with shareProcessNamespace:
/// the kernel never delivers an unhandled SIGTERM to a namespace's PID 1.
async fn kill_with_sigterm_exits_143(version: ContainerdVersion) -> Result<()> {
    let node = ChaosNode::start(version, "").await?;
    let cri = node.node.cri().await?;
    let pod = cri
        .run_pod(
            &PodSpec::new("termed")
                .share_pid_namespace()
                .annotation("kill.nri-chaos.io/pod", "{after: 1s, signal: SIGTERM}"),
        )
        .await?;
    let id = cri
        .run_container(&pod, &ContainerSpec::new("app", SLEEPER))
        .await?;
    let status = cri.wait_exited(&id, Duration::from_secs(8)).await?;
    ensure!(
        status.exit_code == 143,
        "exit code {} (want 143 for SIGTERM)",
        status.exit_code
    );
    node.shutdown().await
}

/// A value that does not parse, or that policy refuses, leaves the container running and
/// the plugin logs key, value and reason.
async fn bad_or_refused_annotations_leave_the_container_running(
    version: ContainerdVersion,
) -> Result<()> {
    let node = ChaosNode::start(version, "").await?;
    let cri = node.node.cri().await?;
    let bad = cri
        .run_pod(&PodSpec::new("bad").annotation("kill.nri-chaos.io/container.app", "{after: 2x}"))
        .await?;
    let bad_app = cri
        .run_container(&bad, &ContainerSpec::new("app", SLEEPER))
        .await?;
    let denied = cri
        .run_pod(
            &PodSpec::new("denied")
                .namespace("kube-system")
                .annotation("kill.nri-chaos.io", "{after: 1s}"),
        )
        .await?;
    let denied_app = cri
        .run_container(&denied, &ContainerSpec::new("app", SLEEPER))
        .await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    for id in [&bad_app, &denied_app] {
        let status = cri.container_status(id).await?;
        ensure!(
            status.state == ContainerState::Running,
            "{id} is {:?}",
            status.state
        );
    }
    let parse = node.log_lines(&[
        "annotation rejected",
        "kill.nri-chaos.io/container.app",
        "2x",
    ]);
    ensure!(
        !parse.is_empty(),
        "no rejection logged for the bad value:\n{}",
        node.log()
    );
    let policy = node.log_lines(&["annotation rejected", "kube-system", "denied"]);
    ensure!(
        !policy.is_empty(),
        "no policy rejection logged:\n{}",
        node.log()
    );
    ensure!(node.log_lines(&["signal sent"]).is_empty());
    node.shutdown().await
}

/// `strict = true`: CreateContainer fails and the CRI error carries key, value and reason.
async fn strict_policy_fails_create_with_the_reason(version: ContainerdVersion) -> Result<()> {
    let node = ChaosNode::start(version, "strict = true\n").await?;
    let cri = node.node.cri().await?;
    let pod = cri
        .run_pod(
            &PodSpec::new("strict").annotation("kill.nri-chaos.io/container.app", "{after: 2x}"),
        )
        .await?;
    let err = cri
        .create_container(&pod, &ContainerSpec::new("app", SLEEPER))
        .await
        .expect_err("strict mode must refuse the container");
    let message = format!("{err:#}");
    println!("{version}: CreateContainer error: {message}");
    ensure!(
        message.contains("kill.nri-chaos.io/container.app"),
        "{message}"
    );
    ensure!(message.contains("2x"), "{message}");
    ensure!(message.contains("not a duration"), "{message}");
    // A container without a rejected annotation is created normally.
    let fine = cri.run_pod(&PodSpec::new("fine")).await?;
    cri.run_container(&fine, &ContainerSpec::new("app", SLEEPER))
        .await?;
    node.shutdown().await
}

/// containerd restarts under a running nri-chaos: it reconnects by itself and kills the next
/// annotated pod on time. With nri-chaos stopped, pods run normally.
async fn reconnects_after_containerd_restart_and_stopped_plugin_is_harmless(
    version: ContainerdVersion,
) -> Result<()> {
    let mut node = ChaosNode::start(version, "").await?;
    node.node.restart_containerd().await?;
    let registered = common::eventually(Duration::from_secs(15), || {
        node.log_lines(&["registered with the runtime"]).len() >= 2
    })
    .await;
    ensure!(registered, "nri-chaos did not re-register:\n{}", node.log());
    let cri = node.node.cri().await?;
    let pod = cri
        .run_pod(&PodSpec::new("after-restart").annotation("kill.nri-chaos.io", "{after: 1s}"))
        .await?;
    let id = cri
        .run_container(&pod, &ContainerSpec::new("app", SLEEPER))
        .await?;
    let status = cri.wait_exited(&id, Duration::from_secs(8)).await?;
    let lived = secs_between(status.started_at, status.finished_at);
    ensure!(status.exit_code == 137, "exit code {}", status.exit_code);
    ensure!(
        (0.8..=1.6).contains(&lived),
        "lived {lived:.3}s, want about 1s"
    );

    // Stop nri-chaos: annotated pods now run normally.
    let ChaosNode { node, plugin } = node;
    let exit = plugin.stop().await?;
    ensure!(exit.success(), "nri-chaos exited with {exit}");
    let cri = node.cri().await?;
    let pod = cri
        .run_pod(&PodSpec::new("no-plugin").annotation("kill.nri-chaos.io", "{after: 1s}"))
        .await?;
    let id = cri
        .run_container(&pod, &ContainerSpec::new("app", SLEEPER))
        .await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let status = cri.container_status(&id).await?;
    ensure!(
        status.state == ContainerState::Running,
        "without nri-chaos the container is {:?}",
        status.state
    );
    node.shutdown().await
}

/// `count` holds across a crash of nri-chaos and across an upgrade from the previous
/// version. Pod `crashed` (`{after: 1s, count: 2}`): its first instance is killed, nri-chaos
/// is SIGKILLed and started again, the second instance is killed, the third survives. Pod
/// `upgraded` (`{after: 1s}`), created while nri-chaos is down, has its one kill counted in
/// a `firings.ledger` of the previous version: it is never killed, and that file is folded
/// into the store.
async fn kill_count_holds_across_a_plugin_crash_and_an_upgrade(
    version: ContainerdVersion,
) -> Result<()> {
    let mut node = ChaosNode::start(version, "").await?;
    let cri = node.node.cri().await?;
    let key = "kill.nri-chaos.io/container.app";
    let pod = cri
        .run_pod(&PodSpec::new("crashed").annotation(key, "{after: 1s, count: 2}"))
        .await?;
    let first = cri
        .run_container(&pod, &ContainerSpec::new("app", SLEEPER))
        .await?;
    let status = cri.wait_exited(&first, Duration::from_secs(5)).await?;
    ensure!(
        status.exit_code == 137,
        "first: exit code {}",
        status.exit_code
    );
    cri.remove_container(&first).await?;
    node.plugin.kill()?;

    // A pod that was there before the upgrade, and its count in the old ledger.
    let upgraded = cri
        .run_pod(&PodSpec::new("upgraded").annotation(key, "{after: 1s}"))
        .await?;
    let state = node.node.dir().join("nri-chaos-state");
    let old_ledger = state.join("firings.ledger");
    std::fs::write(
        &old_ledger,
        format!(
            "# nri-chaos firing ledger v1: <pod-uid> <container> <fault> <count>\n{} app kill 1\n",
            upgraded.spec.uid
        ),
    )?;
    node.restart_plugin("").await?;
    node.plugin
        .wait_log_contains("synchronized with the runtime", Duration::from_secs(10))
        .await?;
    ensure!(!old_ledger.exists(), "the old ledger was not folded in");

    let second = cri
        .run_container(&pod, &ContainerSpec::new("app", SLEEPER).attempt(1))
        .await?;
    let status = cri.wait_exited(&second, Duration::from_secs(5)).await?;
    ensure!(
        status.exit_code == 137,
        "second: exit code {}",
        status.exit_code
    );
    cri.remove_container(&second).await?;
    let third = cri
        .run_container(&pod, &ContainerSpec::new("app", SLEEPER).attempt(2))
        .await?;
    let spared = cri
        .run_container(&upgraded, &ContainerSpec::new("app", SLEEPER))
        .await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    for (name, id) in [("third instance", &third), ("upgraded pod", &spared)] {
        let status = cri.container_status(id).await?;
        ensure!(
            status.state == ContainerState::Running,
            "{name}: {:?} (exit code {})",
            status.state,
            status.exit_code
        );
    }
    let (stored, problems) = injector::store::read_state(&state)?;
    ensure!(problems.is_empty(), "{problems:?}");
    ensure!(
        stored.firings.len() == 2,
        "counts of both pods in the store: {:?}",
        stored.firings
    );
    // The restarted nri-chaos (its own log) sent one signal: the second kill.
    ensure!(node.log_lines(&["signal sent"]).len() == 1);
    node.shutdown().await
}

on_both_containerd_versions!(
    kill_after_2s_once_and_only_the_named_container,
    kill_count_is_counted_across_restarts,
    kill_count_holds_across_a_plugin_crash_and_an_upgrade,
    kill_with_sigterm_exits_143,
    bad_or_refused_annotations_leave_the_container_running,
    strict_policy_fails_create_with_the_reason,
    reconnects_after_containerd_restart_and_stopped_plugin_is_harmless,
);

on_containerd_2_3!(kill_after_2s_once_and_only_the_named_container);
