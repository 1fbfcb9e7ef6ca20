//! netem on a real pod, host tier. Which claim a kernel can prove depends on sch_netem, probed
//! apart from nri-chaos (`nri_chaos_tests::kernel::sch_netem_missing`): without it (this
//! host), nri-chaos must reach the pod's network namespace, try, and report the fault as
//! unsupported with that reason while the pod keeps running; with it, the qdisc must be
//! installed and removed at the end of `duration`. The scenario the kernel cannot prove is
//! reported skipped by name (tests/run-all.sh counts it in its closing line), never passed.
//! (The VM tier, tests/vm_tier.rs, proves the qdisc itself on a kernel with sch_netem.)

mod common;

use std::time::Duration;

use anyhow::{ensure, Result};
use common::ChaosNode;
use nri_chaos_tests::kernel::sch_netem_missing;
use nri_chaos_tests::{ContainerSpec, ContainerState, ContainerdVersion, Cri, PodSpec};

const SLEEPER: &[&str] = &["sleep", "3600"];

/// `e2e_netem::<module>::<scenario>`, as libtest and the skip line name it.
fn test_name(version: ContainerdVersion, scenario: &str) -> String {
    format!("e2e_netem::{}::{scenario}", common::version_module(version))
}

/// A pod asking for `{delay: 100ms, loss: 1%, duration: 2s}`, its container running, and the
/// first log line where nri-chaos either installed netem or said why it could not.
async fn shaped_pod(node: &ChaosNode, cri: &Cri) -> Result<String> {
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
    Ok(id)
}

async fn still_running(cri: &Cri, id: &str) -> Result<()> {
    tokio::time::sleep(Duration::from_millis(500)).await;
    ensure!(
        cri.container_status(id).await?.state == ContainerState::Running,
        "the pod stopped running"
    );
    Ok(())
}

/// Without sch_netem: the fault is reported unsupported, naming sch_netem, and the pod runs.
async fn netem_is_reported_unsupported_without_sch_netem(version: ContainerdVersion) -> Result<()> {
    let name = test_name(version, "netem_is_reported_unsupported_without_sch_netem");
    let present = match sch_netem_missing() {
        Some(_) => None,
        None => Some("this kernel has sch_netem: the unsupported report cannot happen".into()),
    };
    if common::skip_because(&name, present) {
        return Ok(());
    }
    let node = ChaosNode::start(version, "").await?;
    let cri = node.node.cri().await?;
    let id = shaped_pod(&node, &cri).await?;
    ensure!(
        node.log_lines(&["netem installed"]).is_empty(),
        "netem reported installed on a kernel without sch_netem:\n{}",
        node.log()
    );
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
    still_running(&cri, &id).await?;
    node.shutdown().await
}

/// With sch_netem: the qdisc goes on eth0 and is removed at the end of `duration`.
async fn netem_is_installed_and_removed_with_sch_netem(version: ContainerdVersion) -> Result<()> {
    let name = test_name(version, "netem_is_installed_and_removed_with_sch_netem");
    if common::skip_because(&name, sch_netem_missing()) {
        return Ok(());
    }
    let node = ChaosNode::start(version, "").await?;
    let cri = node.node.cri().await?;
    let id = shaped_pod(&node, &cri).await?;
    let installed = node.log_lines(&["netem installed", "pod=default/shaped"]);
    ensure!(
        !installed.is_empty(),
        "netem not installed on a kernel with sch_netem:\n{}",
        node.log()
    );
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
    still_running(&cri, &id).await?;
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
    netem_is_reported_unsupported_without_sch_netem,
    netem_is_installed_and_removed_with_sch_netem,
    netem_at_start_goes_through_the_hook,
);
