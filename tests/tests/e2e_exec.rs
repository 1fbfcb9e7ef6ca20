//! The `exec` fault end to end: CRI ExecSync (what the kubelet's exec probes call) on pods of
//! the `nri-chaos` runtime handler, real containerd 1.7, 2.x and 2.3.4 with the shim wrapper in
//! front of the real runc shim: execs that fail with an exit code, hang until containerd's
//! timeout, or start late; the timing fields; and the refusals.

mod common;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use common::ChaosNode;
use injector::hookplan::PLAN_ANNOTATION;
use nri_chaos_tests::{
    plugin_binary, try_shim_wrapper_binary, ContainerSpec, ContainerState, ContainerdVersion, Node,
    PodSpec, SHIM_HANDLER,
};

const SLEEPER: &[&str] = &["sleep", "3600"];

/// The pids in a container's cgroup (v1 `pids` hierarchy, as the harness places it).
fn cgroup_procs(dir: &std::path::Path) -> Result<Vec<u32>> {
    let text = std::fs::read_to_string(dir.join("cgroup.procs"))
        .with_context(|| format!("reading {}/cgroup.procs", dir.display()))?;
    Ok(text.lines().filter_map(|l| l.trim().parse().ok()).collect())
}

/// `fail` (with `match`), `hang` and `delay`, one container each, on one wrapped pod.
async fn fail_hang_and_delay(version: ContainerdVersion) -> Result<()> {
    try_shim_wrapper_binary()?;
    let node = ChaosNode::start(version, "").await?;
    let cri = node.node.cri().await?;
    let pod = cri
        .run_pod(
            &PodSpec::new("probes")
                .runtime_handler(SHIM_HANDLER)
                .annotation(
                    "exec.nri-chaos.io/container.failing",
                    "{fail: {exit_code: 7}, match: healthz}",
                )
                .annotation("exec.nri-chaos.io/container.hung", "{hang: true}")
                .annotation("exec.nri-chaos.io/container.slow", "{delay: 2s}"),
        )
        .await?;
    let failing = cri
        .run_container(&pod, &ContainerSpec::new("failing", SLEEPER))
        .await?;
    let hung = cri
        .run_container(&pod, &ContainerSpec::new("hung", SLEEPER))
        .await?;
    let slow = cri
        .run_container(&pod, &ContainerSpec::new("slow", SLEEPER))
        .await?;

    // A container with an exec fault gets its plan in its OCI annotations.
    ensure!(
        common::oci_spec(&node, &failing)?.contains(PLAN_ANNOTATION),
        "the container with an exec fault has no plan annotation"
    );
    // `ctl list` shows the three exec faults planned from the annotations, in force.
    let listed = exec_faults_listed(&node)?;
    ensure!(
        listed
            == [
                ("failing".to_string(), "applied".to_string()),
                ("hung".to_string(), "applied".to_string()),
                ("slow".to_string(), "applied".to_string()),
            ],
        "ctl list --json: exec faults from the annotations {listed:?} (want failing, hung, slow applied)"
    );

    // fail + match: the matching command is not run and exits 7; others run.
    for round in 0..2 {
        let hz = cri
            .exec_sync(&failing, &["sh", "-c", "echo healthz"], 5)
            .await?;
        ensure!(
            hz.exit_code == 7 && hz.stdout.is_empty() && hz.stderr.is_empty(),
            "round {round}: sh -c \"echo healthz\" through the fail fault: {hz:?} (want exit 7, no output)"
        );
        let hi = cri.exec_sync(&failing, &["echo", "hi"], 5).await?;
        ensure!(
            hi.exit_code == 0 && hi.stdout == "hi\n",
            "round {round}: echo hi (not matched): {hi:?}"
        );
    }

    // hang: containerd's timeout fires, and nothing is left in the container's cgroup.
    let cgroup = pod.container_cgroup_dir("pids", &hung);
    let before = cgroup_procs(&cgroup)?;
    let t = Instant::now();
    let hang = cri.exec_sync(&hung, &["echo", "never"], 1).await;
    let took = t.elapsed();
    let err = match hang {
        Ok(out) => anyhow::bail!("the hung exec returned {out:?} (want containerd's timeout)"),
        Err(e) => format!("{e:#}"),
    };
    ensure!(
        err.contains("timeout") && took < Duration::from_secs(3),
        "hung exec: {err:?} after {took:?} (want a timeout error within 3 s)"
    );
    let after = cgroup_procs(&cgroup)?;
    ensure!(
        after == before && after.len() == 1,
        "container cgroup {} after the hung exec: {after:?} (before: {before:?}; want only the init process)",
        cgroup.display()
    );
    ensure!(
        cri.container_status(&hung).await?.state == ContainerState::Running,
        "the hung container stopped"
    );

    // delay: the exec starts 2 s late, then runs normally.
    let t = Instant::now();
    let late = cri.exec_sync(&slow, &["echo", "late"], 10).await?;
    let took = t.elapsed();
    ensure!(
        late.exit_code == 0 && late.stdout == "late\n",
        "delayed exec: {late:?}"
    );
    ensure!(
        took >= Duration::from_millis(2000) && took <= Duration::from_millis(2500),
        "delayed exec took {took:?} (want 2.0-2.5 s)"
    );
    println!(
        "{version}: fail 7 with empty output, echo hi 0, hang -> timeout, delay {:.2} s",
        took.as_secs_f64()
    );

    cri.stop_pod(&pod).await?;
    // Their containers ended: listed as recovered.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let listed = exec_faults_listed(&node)?;
        if listed.iter().all(|(_, state)| state == "recovered") && listed.len() == 3 {
            break;
        }
        ensure!(
            Instant::now() < deadline,
            "ctl list after the pod stopped: {listed:?} (want 3 recovered)"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    cri.remove_pod(&pod).await?;
    node.shutdown().await
}

/// The exec faults `ctl list --json` shows whose source is an annotation: (container, state),
/// sorted by container.
fn exec_faults_listed(node: &ChaosNode) -> Result<Vec<(String, String)>> {
    let list: serde_json::Value = serde_json::from_str(&ctl_list_json(node)?)?;
    let mut listed: Vec<(String, String)> = list["faults"]
        .as_array()
        .context("ctl list --json has no faults array")?
        .iter()
        .filter(|f| {
            f["kind"] == "exec"
                && f["source"]
                    .as_str()
                    .is_some_and(|s| s.starts_with("exec.nri-chaos.io/container."))
        })
        .map(|f| {
            (
                f["container"].as_str().unwrap_or_default().to_string(),
                f["state"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    listed.sort();
    Ok(listed)
}

/// `after` and `duration` bound the window (from container start); `count` bounds the execs.
async fn window_and_count(version: ContainerdVersion) -> Result<()> {
    try_shim_wrapper_binary()?;
    let node = ChaosNode::start(version, "").await?;
    let cri = node.node.cri().await?;
    let pod = cri
        .run_pod(
            &PodSpec::new("windowed")
                .runtime_handler(SHIM_HANDLER)
                .annotation(
                    "exec.nri-chaos.io/container.win",
                    "{fail: {exit_code: 3}, after: 2s, duration: 3s}",
                )
                .annotation(
                    "exec.nri-chaos.io/container.counted",
                    "{fail: {}, count: 2}",
                ),
        )
        .await?;
    let counted = cri
        .run_container(&pod, &ContainerSpec::new("counted", SLEEPER))
        .await?;
    let mut counts = Vec::new();
    for _ in 0..4 {
        counts.push(cri.exec_sync(&counted, &["true"], 5).await?.exit_code);
    }
    ensure!(
        counts == [1, 1, 0, 0],
        "count 2: exit codes {counts:?} (want [1, 1, 0, 0])"
    );

    let win = cri
        .run_container(&pod, &ContainerSpec::new("win", SLEEPER))
        .await?;
    let started = Instant::now();
    let at = |secs: f64| started + Duration::from_secs_f64(secs);
    let mut seen = Vec::new();
    for t in [0.3, 2.6, 4.4, 5.8] {
        tokio::time::sleep_until(at(t).into()).await;
        let code = cri.exec_sync(&win, &["true"], 5).await?.exit_code;
        seen.push((t, code));
    }
    let codes: Vec<i32> = seen.iter().map(|(_, c)| *c).collect();
    ensure!(
        codes == [0, 3, 3, 0],
        "after 2s, duration 3s: (seconds after start, exit code) {seen:?} (want 0, 3, 3, 0)"
    );
    println!("{version}: count 2 -> {counts:?}, window -> {seen:?}");
    cri.stop_pod(&pod).await?;
    cri.remove_pod(&pod).await?;
    node.shutdown().await
}

/// `nri-chaos ctl <args>` on the node's control socket; its stdout, failing unless it succeeds.
fn ctl(node: &ChaosNode, args: &[&str]) -> Result<String> {
    let socket: PathBuf = node.node.dir().join("nri-chaos-state").join("control.sock");
    let out = Command::new(plugin_binary())
        .args(["ctl", "--socket"])
        .arg(&socket)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running nri-chaos ctl {args:?}"))?;
    ensure!(out.status.success(), "ctl {args:?}: {out:?}");
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn ctl_list_json(node: &ChaosNode) -> Result<String> {
    ctl(node, &["list", "--json"])
}

/// Polls ExecSync of `cmd` until its exit code is `want` (within `timeout`); the time it took.
async fn until_exit_code(
    cri: &nri_chaos_tests::Cri,
    id: &str,
    cmd: &[&str],
    want: i32,
    timeout: Duration,
) -> Result<Duration> {
    let t = Instant::now();
    loop {
        let out = cri.exec_sync(id, cmd, 5).await?;
        if out.exit_code == want {
            return Ok(t.elapsed());
        }
        ensure!(
            t.elapsed() < timeout,
            "{cmd:?} still gives {out:?} after {timeout:?} (want exit code {want})"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `ctl inject` of an exec fault on a running wrapped pod reaches its wrapper; `ctl recover`
/// ends it; a plan the wrapper cannot read is logged with the reason and changes nothing.
async fn injected_with_ctl(version: ContainerdVersion) -> Result<()> {
    try_shim_wrapper_binary()?;
    let node = ChaosNode::start(version, "").await?;
    let cri = node.node.cri().await?;
    let (pod, app) = common::wrapped_app(&cri, "injected").await?;
    // No fault, no adjustment: the plugin leaves the container's spec alone (ctl inject
    // reaches the wrapper through the node's exec directory, not through a plan).
    let spec = common::oci_spec(&node, &app)?;
    ensure!(
        !spec.contains(PLAN_ANNOTATION),
        "a container of a wrapped pod without a fault got the plan annotation: {spec}"
    );
    let healthz: &[&str] = &["sh", "-c", "echo healthz"];
    let before = cri.exec_sync(&app, healthz, 5).await?;
    ensure!(
        before.exit_code == 0 && before.stdout == "healthz\n",
        "before the injection: {before:?}"
    );
    let out = ctl(
        &node,
        &[
            "inject",
            "default/injected/app",
            "exec",
            "{fail: {exit_code: 5}, match: healthz}",
        ],
    )?;
    ensure!(out.contains("exec"), "ctl inject printed {out:?}");
    let took = until_exit_code(&cri, &app, healthz, 5, Duration::from_secs(3)).await?;
    let hi = cri.exec_sync(&app, &["echo", "hi"], 5).await?;
    ensure!(
        hi.exit_code == 0 && hi.stdout == "hi\n",
        "echo hi while injected: {hi:?}"
    );
    let listed = ctl_list_json(&node)?;
    ensure!(
        listed.contains("\"exec\"") && listed.contains("fail: {exit_code: 5}"),
        "ctl list --json does not show the injected exec fault: {listed}"
    );
    ctl(&node, &["recover", "--all"])?;
    let gone = until_exit_code(&cri, &app, healthz, 0, Duration::from_secs(3)).await?;

    // A plan the wrapper cannot read: named in containerd's log (where the wrapper's lines
    // go), and the container runs unfaulted.
    let inject = node.node.exec_dir().join(format!("{app}.json"));
    std::fs::create_dir_all(inject.parent().context("inject dir")?)?;
    std::fs::write(&inject, "v9;exec")?;
    let needle = format!(
        "nri-chaos: container {app}: inject file {}: annotation nri-chaos.io/plan: \"v9;exec\": not a nri-chaos plan",
        inject.display()
    );
    let log = node.node.containerd_log();
    let logged = common::eventually(Duration::from_secs(3), || {
        std::fs::read_to_string(&log).is_ok_and(|text| text.contains(&needle))
    })
    .await;
    ensure!(
        logged,
        "containerd's log {} does not have {needle:?}",
        log.display()
    );
    let still = cri.exec_sync(&app, healthz, 5).await?;
    ensure!(
        still.exit_code == 0 && still.stdout == "healthz\n",
        "after a bad plan: {still:?}"
    );
    println!(
        "{version}: ctl inject reached the wrapper in {:.2} s; ctl recover ended it in {:.2} s",
        took.as_secs_f64(),
        gone.as_secs_f64()
    );
    cri.stop_pod(&pod).await?;
    cri.remove_pod(&pod).await?;
    node.shutdown().await
}

/// A wrapped pod that runs before nri-chaos does (its wrapper finds no exec directory yet) is
/// reached by `ctl inject` once nri-chaos runs: the wrapper keeps looking.
async fn injected_into_a_pod_older_than_nri_chaos(version: ContainerdVersion) -> Result<()> {
    try_shim_wrapper_binary()?;
    common::require_root();
    let node = Node::start(version).await?;
    let cri = node.cri().await?;
    let (pod, app) = common::wrapped_app(&cri, "early").await?;
    // The wrapper looks a few times at a directory that is not there.
    tokio::time::sleep(Duration::from_millis(800)).await;
    ensure!(
        !node.exec_dir().exists(),
        "{} exists before nri-chaos runs",
        node.exec_dir().display()
    );
    let node = ChaosNode::with_plugin(node, "").await?;
    ctl(
        &node,
        &[
            "inject",
            "default/early/app",
            "exec",
            "{fail: {exit_code: 6}}",
        ],
    )?;
    let took = until_exit_code(&cri, &app, &["true"], 6, Duration::from_secs(3)).await?;
    println!(
        "{version}: ctl inject reached the wrapper of a pod older than nri-chaos in {:.2} s",
        took.as_secs_f64()
    );
    cri.stop_pod(&pod).await?;
    cri.remove_pod(&pod).await?;
    node.shutdown().await
}

/// An `exec` annotation on a pod of the `runc` handler is rejected with that reason (log,
/// metrics, `ctl list`) and the container runs unfaulted; a bad annotation on a wrapped pod
/// is rejected with its reason, and that container runs unfaulted too.
async fn refused_off_handler_and_bad_values(version: ContainerdVersion) -> Result<()> {
    try_shim_wrapper_binary()?;
    let node = ChaosNode::start(version, "").await?;
    let cri = node.node.cri().await?;
    let plain = cri
        .run_pod(
            &PodSpec::new("plain")
                .runtime_handler("runc")
                .annotation("exec.nri-chaos.io/container.app", "{fail: {exit_code: 7}}"),
        )
        .await?;
    let app = cri
        .run_container(&plain, &ContainerSpec::new("app", SLEEPER))
        .await?;
    let hi = cri.exec_sync(&app, &["echo", "hi"], 5).await?;
    ensure!(hi.exit_code == 0 && hi.stdout == "hi\n", "on runc: {hi:?}");
    let reason = "fault 'exec' is executed by the shim wrapper, and this pod runs on runtime handler \"runc\", not on \"nri-chaos\"";
    let logged = node.log_lines(&["annotation rejected", "exec.nri-chaos.io/container.app"]);
    ensure!(
        logged.iter().any(|l| l.contains(reason)),
        "plugin log lines for the rejected annotation: {logged:#?}"
    );
    let listed = ctl_list_json(&node)?;
    ensure!(
        listed.contains(&reason.replace('"', "\\\"")),
        "ctl list --json does not show the rejection: {listed}"
    );
    let metrics = node.plugin.metrics().await?;
    let unsupported = metrics.value(
        "nri_chaos_annotation_rejections_total",
        &[("reason", "unsupported")],
    )?;
    ensure!(
        unsupported >= 1.0,
        "rejections{{reason=unsupported}} = {unsupported}"
    );

    let wrapped = cri
        .run_pod(
            &PodSpec::new("badvalue")
                .runtime_handler(SHIM_HANDLER)
                .annotation("exec.nri-chaos.io/container.app", "{fail: {exit_code: 0}}"),
        )
        .await?;
    let app = cri
        .run_container(&wrapped, &ContainerSpec::new("app", SLEEPER))
        .await?;
    let hi = cri.exec_sync(&app, &["echo", "hi"], 5).await?;
    ensure!(
        hi.exit_code == 0 && hi.stdout == "hi\n",
        "bad value: {hi:?}"
    );
    let bad = node.log_lines(&[
        "annotation rejected",
        "fail.exit_code: \\\"0\\\" is out of range",
    ]);
    let bad_plain = node.log_lines(&["annotation rejected", "exit_code"]);
    ensure!(
        !bad.is_empty() || bad_plain.iter().any(|l| l.contains("out of range")),
        "no rejection logged for the bad value: {bad_plain:#?}"
    );
    println!("{version}: exec on runc refused ({reason}); bad value refused; both ran unfaulted");
    for pod in [&plain, &wrapped] {
        cri.stop_pod(pod).await?;
        cri.remove_pod(pod).await?;
    }
    node.shutdown().await
}

on_both_containerd_versions!(
    fail_hang_and_delay,
    window_and_count,
    refused_off_handler_and_bad_values,
    injected_with_ctl,
    injected_into_a_pod_older_than_nri_chaos
);
on_containerd_2_3!(
    fail_hang_and_delay,
    window_and_count,
    refused_off_handler_and_bad_values,
    injected_with_ctl,
    injected_into_a_pod_older_than_nri_chaos
);
