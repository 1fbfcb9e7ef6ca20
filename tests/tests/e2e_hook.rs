//! The OCI hook end to end on a real node (containerd 1.7 and 2.x, runc): the plugin injects
//! `nri-chaos-hook` through the NRI CreateContainer adjustment into annotated containers only,
//! and the hook delays or fails the start where CRI sees it.

mod common;

use std::path::Path;
use std::time::Instant;

use anyhow::{bail, ensure, Context, Result};
use common::{hook_binary, oci_spec, ChaosNode};
use nri_chaos_tests::{ContainerSpec, ContainerState, ContainerdVersion, Cri, Pod, PodSpec};

const SLEEPER: &[&str] = &["sleep", "3600"];
const START_KEY: &str = "start.nri-chaos.io/container.app";

fn config() -> String {
    common::hook_config()
}

/// CreateContainer + StartContainer of `app` in `pod`; returns (id, seconds).
async fn timed_run(cri: &Cri, pod: &Pod) -> Result<(String, f64)> {
    let started = Instant::now();
    let id = cri
        .create_container(pod, &ContainerSpec::new("app", SLEEPER))
        .await?;
    cri.start_container(&id).await?;
    Ok((id, started.elapsed().as_secs_f64()))
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// `start: {delay: 3s}` makes CreateContainer+StartContainer 3 s (+/- 0.3 s) slower than an
/// unannotated twin; the annotated container's OCI spec carries the hook and the plan, the
/// twin's has no hook at all.
async fn start_delay_3s_and_no_hook_without_annotations(version: ContainerdVersion) -> Result<()> {
    let hook = hook_binary();
    let node = ChaosNode::start(version, &config()).await?;
    let cri = node.node.cri().await?;
    let (mut plain, mut delayed) = (Vec::new(), Vec::new());
    let (mut plain_ids, mut delayed_ids) = (Vec::new(), Vec::new());
    for round in 0..3 {
        let twin = cri.run_pod(&PodSpec::new(&format!("twin-{round}"))).await?;
        let (id, secs) = timed_run(&cri, &twin).await?;
        plain.push(secs);
        plain_ids.push(id);
        let slow = cri
            .run_pod(&PodSpec::new(&format!("slow-{round}")).annotation(START_KEY, "{delay: 3s}"))
            .await?;
        let (id, secs) = timed_run(&cri, &slow).await?;
        delayed.push(secs);
        delayed_ids.push(id);
    }
    let (p, d) = (median(&mut plain.clone()), median(&mut delayed.clone()));
    let added = d - p;
    println!(
        "{version}: create+start unannotated {plain:.3?} s (p50 {p:.3}), start delay 3s {delayed:.3?} s (p50 {d:.3}); added start latency p50 {added:.3} s"
    );
    ensure!(
        (2.7..=3.3).contains(&added),
        "start delay added {added:.3} s to create+start, want 3 s +/- 0.3 s"
    );
    for id in &delayed_ids {
        ensure!(
            cri.container_status(id).await?.state == ContainerState::Running,
            "delayed container {id} is not running"
        );
        let spec = oci_spec(&node, id)?;
        let entry = format!(
            "\"createRuntime\":[{{\"path\":\"{}\",\"args\":[\"{}\",\"createRuntime\"],\"timeout\":8}}]",
            hook.display(),
            hook.display()
        );
        ensure!(
            spec.contains(&entry),
            "delayed container {id}: no {entry} in its OCI spec:\n{spec}"
        );
        ensure!(
            spec.contains("\"nri-chaos.io/plan\":"),
            "delayed container {id}: no plan annotation in its OCI spec"
        );
    }
    for id in &plain_ids {
        let spec = oci_spec(&node, id)?;
        ensure!(
            !spec.contains("\"hooks\""),
            "unannotated container {id} has hooks in its OCI spec:\n{spec}"
        );
        ensure!(
            !spec.contains("nri-chaos.io/plan") && !spec.contains("nri-chaos-hook"),
            "unannotated container {id}: nri-chaos plan or hook in its OCI spec:\n{spec}"
        );
    }
    let injected = node.log_lines(&["OCI hook injected"]);
    ensure!(
        injected.len() == 3,
        "want 3 hook injections, log has {injected:#?}"
    );
    node.shutdown().await
}

/// `start: {fail: {exit_code: 3}}`: the CRI start fails with a message naming nri-chaos, the
/// annotation and its value; the kubelet's retry (attempt 1) starts, the count being spent.
async fn start_fail_names_the_annotation(version: ContainerdVersion) -> Result<()> {
    let node = ChaosNode::start(version, &config()).await?;
    let cri = node.node.cri().await?;
    let pod = cri
        .run_pod(&PodSpec::new("failing").annotation(START_KEY, "{fail: {exit_code: 3}}"))
        .await?;
    let id = cri
        .create_container(&pod, &ContainerSpec::new("app", SLEEPER))
        .await?;
    let err = match cri.start_container(&id).await {
        Ok(()) => bail!("the start of {id} succeeded despite start: {{fail: {{exit_code: 3}}}}"),
        Err(err) => format!("{err:#}"),
    };
    println!("{version}: StartContainer error: {err}");
    for needle in [
        "nri-chaos: start fault from annotation start.nri-chaos.io/container.app",
        "{fail: {exit_code: 3}}",
        "exit code 3",
    ] {
        ensure!(err.contains(needle), "CRI error lacks {needle:?}: {err}");
    }
    let status = cri.container_status(&id).await?;
    ensure!(
        status.state != ContainerState::Running,
        "failed container is {:?}",
        status.state
    );
    let retry = cri
        .run_container(&pod, &ContainerSpec::new("app", SLEEPER).attempt(1))
        .await
        .context("the retried start (count spent) must succeed")?;
    ensure!(cri.container_status(&retry).await?.state == ContainerState::Running);
    ensure!(
        !node.log_lines(&["count spent; no start fault"]).is_empty(),
        "no 'count spent' line:\n{}",
        node.log()
    );
    node.shutdown().await
}

/// Without the hook binary, a start fault is refused (container runs) and named in the log.
async fn missing_hook_binary_is_a_refusal(version: ContainerdVersion) -> Result<()> {
    let missing = Path::new("/nonexistent/nri-chaos-hook");
    let node =
        ChaosNode::start(version, &format!("hook_path = \"{}\"\n", missing.display())).await?;
    let cri = node.node.cri().await?;
    let pod = cri
        .run_pod(&PodSpec::new("nohook").annotation(START_KEY, "{fail: {exit_code: 3}}"))
        .await?;
    let id = cri
        .run_container(&pod, &ContainerSpec::new("app", SLEEPER))
        .await?;
    ensure!(cri.container_status(&id).await?.state == ContainerState::Running);
    ensure!(!oci_spec(&node, &id)?.contains("\"hooks\""));
    let lines = node.log_lines(&[
        "annotation rejected",
        START_KEY,
        "/nonexistent/nri-chaos-hook",
    ]);
    ensure!(
        !lines.is_empty(),
        "no rejection naming the hook path:\n{}",
        node.log()
    );
    node.shutdown().await
}

on_both_containerd_versions!(
    start_delay_3s_and_no_hook_without_annotations,
    start_fail_names_the_annotation,
    missing_hook_binary_is_a_refusal,
);

on_containerd_2_3!(start_delay_3s_and_no_hook_without_annotations);
