//! netem on a real pod, host tier: this kernel has no sch_netem, so nri-chaos must reach the
//! pod's network namespace, try, and report the fault as unsupported with that reason while
//! the pod keeps running. (The VM tier, tests/vm_tier.rs, proves the qdisc itself on a kernel
//! with sch_netem.) On a kernel that has sch_netem, the same test checks the qdisc instead.

mod common;

use std::time::Duration;

use anyhow::{ensure, Result};
use common::ChaosNode;
use nri_chaos_tests::{ContainerSpec, ContainerState, ContainerdVersion, PodSpec};

const SLEEPER: &[&str] = &["sleep", "3600"];

async fn netem_is_applied_or_reported_unsupported_and_the_pod_runs(
    version: ContainerdVersion,
) -> Result<()> {
    let node = ChaosNode::start(version, "").await?;
    let cri = node.node.cri().await?;
    let pod = cri
        .run_pod(&PodSpec::new("shaped").annotation(
            "netem.nri-chaos.io/pod",
            "{delay: 100ms, loss: 1%, duration: 2s}",
        ))
        .await?;
    let id = cri
        .run_container(&pod, &ContainerSpec::new("app", SLEEPER))
        .await?;
    let outcome = common::eventually(Duration::from_secs(5), || {
        !node.log_lines(&["netem installed"]).is_empty()
            || !node
                .log_lines(&["fault could not be applied", "netem"])
                .is_empty()
    })
    .await;
    ensure!(
        outcome,
        "nri-chaos neither applied netem nor reported why:\n{}",
        node.log()
    );
    let installed = node.log_lines(&["netem installed", "pod=default/shaped"]);
    if installed.is_empty() {
        let reported = node.log_lines(&["fault could not be applied", "pod=default/shaped"]);
        println!(
            "{version}: {}",
            reported.first().map(String::as_str).unwrap_or_default()
        );
        ensure!(
            reported
                .iter()
                .any(|line| line.contains("sch_netem not built or not loadable")),
            "the reason does not name sch_netem: {reported:#?}"
        );
    } else {
        println!("{version}: {}", installed[0]);
        ensure!(installed[0].contains("interfaces=eth0"), "{}", installed[0]);
        let removed = common::eventually(Duration::from_secs(5), || {
            !node.log_lines(&["netem removed"]).is_empty()
        })
        .await;
        ensure!(
            removed,
            "netem not removed after its duration:\n{}",
            node.log()
        );
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    ensure!(
        cri.container_status(&id).await?.state == ContainerState::Running,
        "the pod stopped running"
    );
    node.shutdown().await
}

/// netem with `after: 0` also goes through the OCI hook at createRuntime (before the app's
/// first packet): the plugin injects the hook, the hook reaches the container's network
/// namespace, and on this kernel reports sch_netem missing without failing the start.
async fn netem_at_start_goes_through_the_hook(version: ContainerdVersion) -> Result<()> {
    let node = ChaosNode::start(version, &common::hook_config()).await?;
    let cri = node.node.cri().await?;
    let pod = cri
        .run_pod(
            &PodSpec::new("first-packet").annotation("netem.nri-chaos.io/pod", "{delay: 100ms}"),
        )
        .await?;
    let id = cri
        .run_container(&pod, &ContainerSpec::new("app", SLEEPER))
        .await?;
    let spec = common::oci_spec(&node, &id)?;
    ensure!(
        spec.contains("createRuntime") && spec.contains("nri-chaos-hook"),
        "no createRuntime hook in the OCI spec: {spec}"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    ensure!(
        cri.container_status(&id).await?.state == ContainerState::Running,
        "the hook failed the start"
    );
    node.shutdown().await
}

on_both_containerd_versions!(
    netem_is_applied_or_reported_unsupported_and_the_pod_runs,
    netem_at_start_goes_through_the_hook,
);
