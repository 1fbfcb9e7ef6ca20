//! The operator surface end to end, on real containerd 1.7 and 2.x nodes: `nri-chaos ctl`
//! over the control socket (inject into a running container, list, recover), the socket's
//! mode and its refusal of non-root clients, the Prometheus endpoint against what the test did,
//! the deploy/ manifests and the containerd 1.7 NRI drop-in.

mod common;

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use common::ChaosNode;
use injector::FaultKind;
use nri_chaos_tests::metrics::Metrics;
use nri_chaos_tests::{
    plugin_binary, workspace_root, ContainerSpec, ContainerState, ContainerdVersion, PodSpec,
    Runtime,
};

const SLEEPER: &[&str] = &["sleep", "3600"];
/// Default policy; the harness gives each plugin its own metrics port.
const CONFIG: &str = "";

fn socket(node: &ChaosNode) -> PathBuf {
    node.node.dir().join("nri-chaos-state").join("control.sock")
}

/// Runs `nri-chaos ctl --socket <node socket> <args>`; `as_uid` drops to that uid first.
fn ctl(node: &ChaosNode, args: &[&str], as_uid: Option<u32>) -> Result<Output> {
    let mut cmd = Command::new(plugin_binary());
    cmd.arg("ctl")
        .arg("--socket")
        .arg(socket(node))
        .args(args)
        .stdin(Stdio::null());
    if let Some(uid) = as_uid {
        // SAFETY: runs in the forked child before exec; setgroups/setgid/setuid are
        // async-signal-safe and touch no memory of the parent.
        unsafe {
            cmd.pre_exec(move || {
                if libc::setgroups(0, std::ptr::null()) != 0
                    || libc::setgid(uid) != 0
                    || libc::setuid(uid) != 0
                {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    cmd.output()
        .with_context(|| format!("running nri-chaos ctl {args:?}"))
}

/// `ctl` that must succeed; its stdout.
fn ctl_ok(node: &ChaosNode, args: &[&str]) -> Result<String> {
    let out = ctl(node, args, None)?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    ensure!(
        out.status.success(),
        "nri-chaos ctl {args:?} failed ({}): {}{stdout}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(stdout)
}

fn ctl_json(node: &ChaosNode, args: &[&str]) -> Result<serde_json::Value> {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let text = ctl_ok(node, &all)?;
    serde_json::from_str(&text).with_context(|| format!("ctl {args:?} printed no JSON: {text}"))
}

/// Every fault kind is listed in each per-kind family, from the one table of kinds.
fn ensure_every_kind(metrics: &Metrics) -> Result<()> {
    let kinds: BTreeSet<String> = FaultKind::ALL
        .iter()
        .map(|k| k.as_str().to_string())
        .collect();
    for family in [
        "nri_chaos_faults_applied_total",
        "nri_chaos_faults_recovered_total",
        "nri_chaos_faults_failed_total",
        "nri_chaos_faults_active",
        "nri_chaos_firing_lateness_seconds",
    ] {
        ensure!(
            metrics.label_values(family, "kind") == kinds,
            "{family} lists {:?}, FaultKind::ALL is {kinds:?}",
            metrics.label_values(family, "kind")
        );
    }
    Ok(())
}

/// The families operators look for besides the counters: build, active faults, journal,
/// resident memory (a running plugin has at least 1 MiB resident).
fn ensure_admin_families(metrics: &Metrics) -> Result<()> {
    let version = env!("CARGO_PKG_VERSION");
    ensure!(metrics.value("nri_chaos_build_info", &[("version", version)])? == 1.0);
    let rss = metrics.value("process_resident_memory_bytes", &[])?;
    ensure!(rss > 1024.0 * 1024.0, "resident memory {rss} bytes");
    for family in ["nri_chaos_faults_active", "nri_chaos_journal_entries"] {
        ensure!(metrics.families().contains(family), "no {family}");
    }
    Ok(())
}

/// `ctl inject default/web/app '{kill: {}}'` kills a running container that had no
/// annotation (exit 137); `ctl list` shows it with planned and actual times; metrics count
/// the kill and a rejected annotation; the socket is 0600 and refuses a non-root client.
async fn ctl_inject_kill_list_metrics_and_root_only_socket(
    version: ContainerdVersion,
) -> Result<()> {
    let node = ChaosNode::start(version, CONFIG).await?;
    let cri = node.node.cri().await?;
    let pod = cri.run_pod(&PodSpec::new("web")).await?;
    let app = cri
        .run_container(&pod, &ContainerSpec::new("app", SLEEPER))
        .await?;
    // A rejected annotation for the metrics (parse class).
    let bad = cri
        .run_pod(&PodSpec::new("bad").annotation("kill.nri-chaos.io/container.app", "{after: 2x}"))
        .await?;
    cri.run_container(&bad, &ContainerSpec::new("app", SLEEPER))
        .await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let status = cri.container_status(&app).await?;
    ensure!(
        status.state == ContainerState::Running,
        "app is {:?}",
        status.state
    );

    let injected = Instant::now();
    let armed = ctl_ok(&node, &["inject", "default/web/app", "{kill: {}}"])?;
    println!("{version}: {armed}");
    let exited = cri.wait_exited(&app, Duration::from_secs(5)).await?;
    ensure!(
        exited.exit_code == 137,
        "exit code {} (want 137)",
        exited.exit_code
    );
    println!("{version}: killed {:?} after inject", injected.elapsed());

    let list = ctl_json(&node, &["list"])?;
    let faults = list["faults"].as_array().context("faults")?;
    let kill = faults
        .iter()
        .find(|f| f["kind"] == "kill" && f["pod"] == "default/web" && f["container"] == "app")
        .with_context(|| format!("no kill in ctl list: {list:#}"))?;
    ensure!(kill["state"] == "applied", "{kill:#}");
    ensure!(kill["source"] == "ctl", "{kill:#}");
    let planned = kill["planned_unix_ms"].as_i64().unwrap_or(0);
    let applied = kill["applied_unix_ms"].as_i64().unwrap_or(0);
    ensure!(
        planned > 0 && applied >= planned,
        "planned {planned}, applied {applied}"
    );
    ensure!(
        applied - planned < 1000,
        "applied {} ms late",
        applied - planned
    );
    let rejections = list["rejections"].as_array().context("rejections")?;
    ensure!(
        rejections
            .iter()
            .any(|r| r["key"] == "kill.nri-chaos.io/container.app"
                && r["value"] == "{after: 2x}"
                && r["class"] == "parse"),
        "rejection missing from ctl list: {list:#}"
    );
    // kubectl habits: the output flag after the command, or as -o / --output.
    for args in [
        &["list", "--json"][..],
        &["list", "-o", "json"],
        &["-o", "json", "list"],
        &["list", "--output", "json"],
    ] {
        let text = ctl_ok(&node, args)?;
        let again: serde_json::Value = serde_json::from_str(&text)
            .with_context(|| format!("ctl {args:?} printed no JSON: {text}"))?;
        ensure!(
            again["faults"].as_array().is_some_and(|f| f
                .iter()
                .any(|f| f["id"] == kill["id"] && f["state"] == "applied")),
            "ctl {args:?}: {again:#}"
        );
    }
    let table = ctl_ok(&node, &["list"])?;
    println!("{version}: ctl list\n{table}");
    ensure!(table
        .lines()
        .next()
        .is_some_and(|l| l.contains("PLANNED") && l.contains("APPLIED")));
    ensure!(table.contains("rejected annotations"), "{table}");

    let status = ctl_ok(&node, &["status"])?;
    println!("{version}: ctl status\n{status}");
    ensure!(status.contains("connected"), "{status}");
    ensure!(status.contains("containerd"), "{status}");
    let status = ctl_json(&node, &["status"])?;
    ensure!(status["nri_connected"] == true, "{status:#}");
    let protocol = status["nri_protocol"].as_str().unwrap_or_default();
    match version {
        ContainerdVersion::V2 | ContainerdVersion::V23 => {
            ensure!(protocol.starts_with("v0.7+"), "{protocol}")
        }
        ContainerdVersion::V17 => ensure!(!protocol.is_empty(), "{protocol}"),
    }

    // Metrics match what happened: one kill applied, one parse rejection, nothing failed.
    let metrics = node.plugin.metrics().await?;
    let kill = [("kind", "kill")];
    ensure!(metrics.value("nri_chaos_faults_applied_total", &kill)? == 1.0);
    ensure!(metrics.value("nri_chaos_faults_failed_total", &kill)? == 0.0);
    for other in FaultKind::ALL.iter().filter(|k| **k != FaultKind::Kill) {
        let label = [("kind", other.as_str())];
        ensure!(metrics.value("nri_chaos_faults_applied_total", &label)? == 0.0);
    }
    let rejections = "nri_chaos_annotation_rejections_total";
    ensure!(metrics.value(rejections, &[("reason", "parse")])? == 1.0);
    ensure!(metrics.value(rejections, &[("reason", "policy")])? == 0.0);
    ensure!(metrics.value("nri_chaos_nri_reconnects_total", &[])? == 0.0);
    ensure!(metrics.value("nri_chaos_nri_connected", &[])? == 1.0);
    ensure!(metrics.value("nri_chaos_firing_lateness_seconds_count", &kill)? == 1.0);
    let create = [("event", "create_container")];
    ensure!(metrics.value("nri_chaos_handler_seconds_count", &create)? >= 2.0);
    // The kill is done: nothing active, nothing journaled (a kill has nothing to undo).
    ensure!(metrics.value("nri_chaos_faults_active", &kill)? == 0.0);
    ensure!(metrics.value("nri_chaos_journal_entries", &[])? == 0.0);
    ensure_every_kind(&metrics)?;
    ensure_admin_families(&metrics)?;

    // The socket: 0600, root only.
    let mode = std::fs::metadata(socket(&node))?.permissions().mode() & 0o777;
    ensure!(mode == 0o600, "control socket mode {mode:o}");
    let out = ctl(&node, &["status"], Some(65534))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(!out.status.success(), "a non-root ctl succeeded");
    ensure!(
        stderr.contains("the control socket is root only"),
        "{stderr}"
    );
    // Even with the file opened to everyone, the server refuses the peer by its credentials.
    let opened = [
        node.node.dir().to_path_buf(),
        node.node.dir().join("nri-chaos-state"),
    ];
    for dir in &opened {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))?;
    }
    std::fs::set_permissions(socket(&node), std::fs::Permissions::from_mode(0o666))?;
    let out = ctl(&node, &["status"], Some(65534))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(
        !out.status.success(),
        "a non-root ctl succeeded on a 0666 socket"
    );
    ensure!(
        stderr.contains("the control socket is root only"),
        "{stderr}"
    );
    // The plugin's log writer thread writes the line a moment after the connection closed.
    let refusal = node
        .plugin
        .wait_log_contains("refused a client that is not root", Duration::from_secs(5))
        .await
        .context("the refusal was not logged")?;
    ensure!(refusal.contains("uid=65534"), "{refusal}");
    node.shutdown().await
}

fn freezer_state(pod: &nri_chaos_tests::Pod, id: &str) -> Result<String> {
    let path = pod
        .container_cgroup_dir("freezer", id)
        .join("freezer.state");
    Ok(std::fs::read_to_string(&path)
        .with_context(|| format!("reading {}", path.display()))?
        .trim()
        .to_string())
}

/// Pod `name` with container `app` annotated `freeze: value`, once the kernel reports it
/// FROZEN; the pod and the container id.
async fn run_frozen(
    node: &ChaosNode,
    cri: &nri_chaos_tests::Cri,
    name: &str,
    value: &str,
) -> Result<(nri_chaos_tests::Pod, String)> {
    let pod = cri
        .run_pod(&PodSpec::new(name).annotation("freeze.nri-chaos.io/container.app", value))
        .await?;
    let app = cri
        .run_container(&pod, &ContainerSpec::new("app", SLEEPER))
        .await?;
    let frozen = common::eventually(Duration::from_secs(5), || {
        freezer_state(&pod, &app).is_ok_and(|s| s == "FROZEN")
    })
    .await;
    ensure!(
        frozen,
        "never frozen: {:?}\n{}",
        freezer_state(&pod, &app),
        node.log()
    );
    Ok((pod, app))
}

/// `ctl recover --all` ends a running freeze at once: the cgroup is THAWED when it returns.
async fn ctl_recover_all_thaws_a_running_freeze(version: ContainerdVersion) -> Result<()> {
    let node = ChaosNode::start(version, CONFIG).await?;
    let cri = node.node.cri().await?;
    let (pod, app) = run_frozen(&node, &cri, "frozen", "{after: 500ms, duration: 1h}").await?;
    let list = ctl_json(&node, &["list"])?;
    ensure!(
        list["faults"].as_array().is_some_and(|f| f
            .iter()
            .any(|f| f["kind"] == "freeze" && f["state"] == "applied")),
        "{list:#}"
    );
    // While it holds: one freeze active and journaled.
    let freeze = [("kind", "freeze")];
    let metrics = node.plugin.metrics().await?;
    ensure!(metrics.value("nri_chaos_faults_active", &freeze)? == 1.0);
    ensure!(metrics.value("nri_chaos_journal_entries", &[])? == 1.0);
    ensure_every_kind(&metrics)?;
    let started = Instant::now();
    let out = ctl_ok(&node, &["recover", "--all"])?;
    let took = started.elapsed();
    let state = freezer_state(&pod, &app)?;
    println!("{version}: recover --all took {took:?}: {out}freezer.state {state}");
    ensure!(
        state == "THAWED",
        "freezer.state {state} right after ctl recover --all"
    );
    ensure!(out.contains("recovered 1 fault"), "{out}");
    ensure!(took < Duration::from_secs(3), "recover took {took:?}");
    let list = ctl_json(&node, &["list"])?;
    ensure!(
        list["faults"].as_array().is_some_and(|f| f
            .iter()
            .any(|f| f["kind"] == "freeze" && f["state"] == "recovered")),
        "{list:#}"
    );
    let metrics = node.plugin.metrics().await?;
    ensure!(metrics.value("nri_chaos_faults_applied_total", &freeze)? == 1.0);
    ensure!(metrics.value("nri_chaos_faults_recovered_total", &freeze)? == 1.0);
    ensure!(metrics.value("nri_chaos_faults_active", &freeze)? == 0.0);
    ensure!(metrics.value("nri_chaos_journal_entries", &[])? == 0.0);
    ensure_admin_families(&metrics)?;
    // Nothing left to recover.
    let out = ctl_ok(&node, &["recover", "--all"])?;
    ensure!(out.contains("no active fault"), "{out}");
    let status = cri.container_status(&app).await?;
    ensure!(
        status.state == ContainerState::Running,
        "app is {:?}",
        status.state
    );
    node.shutdown().await
}

/// `nri-chaos ctl --socket <node socket> <args>` (events) as a child whose stdout lines arrive
/// on a channel.
struct Follower {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
    stderr: std::sync::mpsc::Receiver<String>,
}

impl Follower {
    fn start(node: &ChaosNode, args: &[&str]) -> Result<Follower> {
        let mut child = Command::new(plugin_binary())
            .arg("ctl")
            .arg("--socket")
            .arg(socket(node))
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("starting ctl events")?;
        let pipe = |reader: Box<dyn std::io::Read + Send>| {
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                use std::io::BufRead;
                for line in std::io::BufReader::new(reader).lines() {
                    let Ok(line) = line else { break };
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
            rx
        };
        let stdout = child.stdout.take().context("stdout")?;
        let stderr = child.stderr.take().context("stderr")?;
        Ok(Follower {
            child,
            lines: pipe(Box::new(stdout)),
            stderr: pipe(Box::new(stderr)),
        })
    }

    /// The first JSON line matching `want` within `timeout`; every line seen on the way.
    fn wait_for(
        &self,
        timeout: Duration,
        want: impl Fn(&serde_json::Value) -> bool,
    ) -> Result<serde_json::Value> {
        let deadline = Instant::now() + timeout;
        let mut seen = Vec::new();
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            let Ok(line) = self.lines.recv_timeout(left) else {
                break;
            };
            let value: serde_json::Value = serde_json::from_str(&line)
                .with_context(|| format!("ctl events printed a line that is not JSON: {line}"))?;
            if want(&value) {
                return Ok(value);
            }
            seen.push(line);
        }
        bail!("no matching event within {timeout:?}; saw {seen:#?}")
    }

    /// Waits (bounded) for the exit; its status and stderr.
    fn wait_exit(&mut self, timeout: Duration) -> Result<(std::process::ExitStatus, String)> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait()? {
                // The reader thread may not have passed on the last lines yet: read until it
                // sees the pipe's end (the child has exited), bounded.
                let mut stderr = Vec::new();
                let drained = Instant::now() + Duration::from_secs(2);
                while let Some(left) = drained.checked_duration_since(Instant::now()) {
                    match self.stderr.recv_timeout(left) {
                        Ok(line) => stderr.push(line),
                        Err(_) => break,
                    }
                }
                return Ok((status, stderr.join("\n")));
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                bail!("ctl events did not exit within {timeout:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// `ctl events -o json` follows firings live: it prints the kill of an annotated pod as it is
/// applied, and exits 0 at Ctrl-C (SIGINT).
async fn ctl_events_follows_an_applied_kill(version: ContainerdVersion) -> Result<()> {
    let node = ChaosNode::start(version, CONFIG).await?;
    let cri = node.node.cri().await?;
    // `--all`: what the daemon holds first, so a slow start of the follower misses nothing.
    let mut follower = Follower::start(&node, &["events", "--all", "-o", "json"])?;
    // Following before anything happens: the kill below comes through the live feed.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let pod = cri
        .run_pod(
            &PodSpec::new("watched").annotation("kill.nri-chaos.io/container.app", "{after: 1s}"),
        )
        .await?;
    let app = cri
        .run_container(&pod, &ContainerSpec::new("app", SLEEPER))
        .await?;
    let armed = follower.wait_for(Duration::from_secs(10), |e| {
        e["event"] == "armed" && e["fault"]["pod"] == "default/watched"
    })?;
    let applied = follower.wait_for(Duration::from_secs(10), |e| {
        e["event"] == "applied"
            && e["fault"]["kind"] == "kill"
            && e["fault"]["pod"] == "default/watched"
            && e["fault"]["container"] == "app"
    })?;
    println!("{version}: ctl events saw\n{armed}\n{applied}");
    ensure!(
        applied["fault"]["id"] == armed["fault"]["id"],
        "{armed} / {applied}"
    );
    ensure!(
        applied["seq"].as_u64() > armed["seq"].as_u64(),
        "{armed} / {applied}"
    );
    let exited = cri.wait_exited(&app, Duration::from_secs(5)).await?;
    ensure!(exited.exit_code == 137, "exit code {}", exited.exit_code);
    // Ctrl-C ends it cleanly.
    // SAFETY: kill has no memory preconditions; the pid is our own child, not yet reaped.
    unsafe { libc::kill(follower.child.id() as i32, libc::SIGINT) };
    let (status, stderr) = follower.wait_exit(Duration::from_secs(5))?;
    ensure!(status.success(), "ctl events at SIGINT: {status}: {stderr}");
    node.shutdown().await
}

/// A freeze of 60 s, nri-chaos SIGKILLed and started again: `ctl list` shows the resumed
/// freeze (state applied, kind freeze, source journal) and `ctl recover ID` thaws it in the
/// kernel and empties the journal. A follower of the first daemon says it went away.
async fn ctl_lists_and_recovers_a_freeze_resumed_from_the_journal(
    version: ContainerdVersion,
) -> Result<()> {
    let mut node = ChaosNode::start(version, CONFIG).await?;
    let cri = node.node.cri().await?;
    let (pod, app) = run_frozen(&node, &cri, "resumed", "{duration: 60s}").await?;
    let mut follower = Follower::start(&node, &["events"])?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    node.plugin.kill()?;
    let (status, stderr) = follower.wait_exit(Duration::from_secs(10))?;
    println!("{version}: follower when the daemon died: {status}: {stderr}");
    ensure!(
        !status.success(),
        "ctl events exited 0 after its daemon died"
    );
    ensure!(stderr.contains("nri-chaos went away"), "{stderr}");
    ensure!(
        freezer_state(&pod, &app)? == "FROZEN",
        "thawed by the SIGKILL?"
    );

    node.restart_plugin(CONFIG).await?;
    node.plugin
        .wait_log_contains("control socket listening", Duration::from_secs(10))
        .await?;
    let list = ctl_json(&node, &["list"])?;
    let faults = list["faults"].as_array().context("faults")?;
    let resumed = faults
        .iter()
        .find(|f| f["kind"] == "freeze" && f["pod"] == "default/resumed")
        .with_context(|| format!("the resumed freeze is not in ctl list: {list:#}"))?;
    println!("{version}: resumed: {resumed}");
    ensure!(resumed["state"] == "applied", "{resumed:#}");
    ensure!(resumed["container"] == "app", "{resumed:#}");
    ensure!(
        resumed["source"].as_str().is_some_and(
            |s| s.contains("journal") && s.contains("freeze.nri-chaos.io/container.app")
        ),
        "{resumed:#}"
    );
    ensure!(resumed["value"] == "{duration: 60s}", "{resumed:#}");
    ensure!(
        resumed["applied_unix_ms"].as_i64().unwrap_or(0) > 0,
        "{resumed:#}"
    );
    let table = ctl_ok(&node, &["list"])?;
    println!("{version}: ctl list after the restart\n{table}");
    ensure!(
        freezer_state(&pod, &app)? == "FROZEN",
        "thawed before ctl recover"
    );

    let id_number = resumed["id"].as_u64().context("id")?;
    let id = id_number.to_string();
    let out = ctl_ok(&node, &["recover", &id])?;
    let state = freezer_state(&pod, &app)?;
    println!("{version}: ctl recover {id}: {out}freezer.state {state}");
    ensure!(
        state == "THAWED",
        "freezer.state {state} right after ctl recover {id}"
    );
    ensure!(out.contains("recovered 1 fault"), "{out}");
    let (stored, _) = injector::store::read_state(&node.node.dir().join("nri-chaos-state"))?;
    let left: Vec<&String> = stored.journal.keys().collect();
    ensure!(
        left.is_empty(),
        "journal not empty after ctl recover: {left:?}"
    );
    let list = ctl_json(&node, &["list"])?;
    ensure!(
        list["faults"].as_array().is_some_and(|f| f
            .iter()
            .any(|f| f["id"] == id_number && f["state"] == "recovered")),
        "{list:#}"
    );
    node.shutdown().await
}

/// The pod's netem faults `ctl list` shows, as (container, state).
fn netem_faults(node: &ChaosNode) -> Result<Vec<(String, String)>> {
    let list = ctl_json(node, &["list"])?;
    let faults = list["faults"].as_array().context("faults")?;
    Ok(faults
        .iter()
        .filter(|f| f["kind"] == "netem" && f["pod"] == "default/shaped")
        .map(|f| {
            let text = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_string();
            (text(&f["container"]), text(&f["state"]))
        })
        .collect())
}

/// A resync never ends a pod-scoped fault early: the pod's netem (armed once for the pod,
/// its first firing an hour away) is still armed after containerd restarts and nri-chaos
/// reconnects and synchronizes, and armed once for the pod by a restarted nri-chaos. (That the pod's removal ends it is the engine's unit test:
/// in this harness no RemovePodSandbox reached the plugin after the restart.)
async fn a_restart_keeps_the_pods_netem_armed_once(version: ContainerdVersion) -> Result<()> {
    let mut node = ChaosNode::start(version, CONFIG).await?;
    let cri = node.node.cri().await?;
    let pod = cri
        .run_pod(&PodSpec::new("shaped").annotation(
            "netem.nri-chaos.io/pod",
            "{delay: 100ms, after: 1h, duration: 60s}",
        ))
        .await?;
    cri.run_container(&pod, &ContainerSpec::new("app", SLEEPER))
        .await?;
    let armed = vec![(String::new(), "armed".to_string())];
    let seen = common::eventually(Duration::from_secs(5), || {
        netem_faults(&node).is_ok_and(|f| f == armed)
    })
    .await;
    ensure!(
        seen,
        "netem once for the pod, armed: {:?}",
        netem_faults(&node)?
    );
    node.node.restart_containerd().await?;
    let synced = common::eventually(Duration::from_secs(15), || {
        node.log_lines(&["synchronized with the runtime"]).len() >= 2
    })
    .await;
    ensure!(synced, "nri-chaos did not resync:\n{}", node.log());
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = netem_faults(&node)?;
    ensure!(after == armed, "after the resync: {after:?}");
    // nri-chaos SIGKILLed and started again: armed once more, for the pod, at its first
    // Synchronize.
    node.plugin.kill()?;
    node.restart_plugin(CONFIG).await?;
    let synced = common::eventually(Duration::from_secs(15), || {
        !node
            .log_lines(&["synchronized with the runtime"])
            .is_empty()
    })
    .await;
    ensure!(synced, "the new nri-chaos did not sync:\n{}", node.log());
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = netem_faults(&node)?;
    ensure!(after == armed, "after the plugin restart: {after:?}");
    node.shutdown().await
}

on_both_containerd_versions!(
    ctl_inject_kill_list_metrics_and_root_only_socket,
    ctl_recover_all_thaws_a_running_freeze,
    ctl_events_follows_an_applied_kill,
    ctl_lists_and_recovers_a_freeze_resumed_from_the_journal,
    a_restart_keeps_the_pods_netem_armed_once,
);

/// The endpoint is an aid: with its port taken nri-chaos logs why, registers and answers
/// `ctl` without it (`ctl status` says it is not listening); `off` turns it off.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_port_in_use_or_off_leaves_the_plugin_running() -> Result<()> {
    let taken = std::net::TcpListener::bind("127.0.0.1:0")?;
    let address = taken.local_addr()?;
    let config = format!("metrics_address = \"{address}\"\n");
    let mut node = ChaosNode::start(ContainerdVersion::V2, &config).await?;
    node.plugin
        .wait_log_contains("metrics endpoint not started", Duration::from_secs(5))
        .await?;
    let status = ctl_json(&node, &["status"])?;
    ensure!(status["nri_connected"] == true, "{status:#}");
    ensure!(
        status["metrics_address"] == format!("{address} (not listening)"),
        "{status:#}"
    );
    node.restart_plugin("metrics_address = \"off\"\n").await?;
    node.plugin
        .wait_log_contains("metrics endpoint off", Duration::from_secs(5))
        .await?;
    node.plugin
        .wait_log_contains("registered with the runtime", Duration::from_secs(15))
        .await?;
    ensure!(
        node.log_lines(&["metrics listening"]).is_empty(),
        "{}",
        node.log()
    );
    drop(taken);
    node.shutdown().await
}

/// `nri-chaos validate` lints manifests offline: each bad annotation with file, object, key,
/// value and the plugin's reason, exit 1; a clean manifest (also from stdin) exits 0; a
/// policy file alone is checked.
#[test]
fn validate_reports_bad_annotations_and_exits_non_zero() -> Result<()> {
    let dir = tempfile_dir("validate")?;
    let bad = dir.join("bad.yaml");
    std::fs::write(
        &bad,
        r#"kind: Pod
apiVersion: v1
metadata:
  annotations:
    stress.nri-chaos.io/pod: "{cpu: {workers: 2}}"
    freeze.nri-chaos.io/container.app: "{duration: 10s}"
    kill.nri-chaos.io/container.app: "{after: 2x}"
  name: web
spec:
  containers:
  - image: busybox
    name: app
---
kind: Deployment
apiVersion: apps/v1
metadata: {namespace: shop, name: api}
spec:
  template:
    metadata:
      annotations:
        oom.nri-chaos.io/container.api: "{score: 2000}"
        netem.nri-chaos.io/pod: "{delay: 100ms}"
    spec:
      containers:
      - name: api
        image: busybox
"#,
    )?;
    let clean = dir.join("clean.yaml");
    std::fs::write(
        &clean,
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: ok\n  annotations:\n    kill.nri-chaos.io/container.app: \"{after: 2s}\"\nspec:\n  containers:\n  - name: app\n    image: busybox\n",
    )?;
    let validate = |args: &[&str], stdin: Option<&Path>| -> Result<Output> {
        let mut cmd = Command::new(plugin_binary());
        cmd.arg("validate").args(args);
        cmd.stdin(match stdin {
            Some(path) => Stdio::from(std::fs::File::open(path)?),
            None => Stdio::null(),
        });
        Ok(cmd.output()?)
    };
    let out = validate(&[&bad.display().to_string()], None)?;
    let text = String::from_utf8_lossy(&out.stdout);
    println!("validate bad.yaml ({}):\n{text}", out.status);
    ensure!(out.status.code() == Some(1), "exit {}: {text}", out.status);
    let file = bad.display().to_string();
    for needle in [
        format!("{file}: Pod default/web (document 1): annotation kill.nri-chaos.io/container.app: \"{{after: 2x}}\": after: \"2x\" is not a duration"),
        format!("{file}: Pod default/web (document 1): annotation stress.nri-chaos.io/pod: \"{{cpu: {{workers: 2}}}}\": duration is required"),
        format!("{file}: Deployment shop/api (document 2): annotation oom.nri-chaos.io/container.api: \"{{score: 2000}}\": score: \"2000\" is out of range"),
        "FAILED: 1 file(s), 2 object(s) with a pod spec, 5 nri-chaos annotation(s): 3 bad".to_string(),
    ] {
        ensure!(text.contains(&needle), "missing {needle:?} in:\n{text}");
    }
    ensure!(
        !text.contains("freeze.nri-chaos.io"),
        "the good freeze was reported:\n{text}"
    );
    ensure!(
        !text.contains("netem.nri-chaos.io"),
        "the good netem was reported:\n{text}"
    );

    // The same findings as JSON, for CI tools.
    let out = validate(&["-o", "json", &file], None)?;
    ensure!(out.status.code() == Some(1), "exit {}", out.status);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let findings = json["findings"].as_array().context("findings")?;
    ensure!(json["bad"] == 3 && findings.len() == 3, "{json:#}");
    ensure!(
        findings.iter().any(|f| f["file"] == file.as_str()
            && f["object"] == "Deployment shop/api"
            && f["document"] == 2
            && f["key"] == "oom.nri-chaos.io/container.api"
            && f["value"] == "{score: 2000}"
            && f["reason"]
                .as_str()
                .is_some_and(|r| r.starts_with("score: \"2000\" is out of range"))),
        "{json:#}"
    );
    let out = validate(&[&clean.display().to_string()], None)?;
    let text = String::from_utf8_lossy(&out.stdout);
    ensure!(
        out.status.success(),
        "clean manifest: {}: {text}",
        out.status
    );
    ensure!(text.starts_with("ok: 1 file(s), 1 object(s)"), "{text}");
    let out = validate(&["-"], Some(&clean))?;
    ensure!(
        out.status.success(),
        "clean manifest on stdin: {}",
        out.status
    );
    let out = validate(&["-"], Some(&bad))?;
    ensure!(
        out.status.code() == Some(1),
        "bad manifest on stdin: {}",
        out.status
    );

    let policy = dir.join("policy.toml");
    let (policy_arg, clean_arg) = (policy.display().to_string(), clean.display().to_string());
    let policy_only = ["--policy", policy_arg.as_str()];
    let policy_and_clean = ["--policy", policy_arg.as_str(), clean_arg.as_str()];
    std::fs::write(&policy, "allowed_faults = [\"kill\"]\n")?;
    let out = validate(&policy_only, None)?;
    ensure!(out.status.success(), "policy alone: {}", out.status);
    let out = validate(&policy_and_clean, None)?;
    ensure!(out.status.success(), "kill allowed: {}", out.status);
    std::fs::write(&policy, "allowed_faults = [\"freeze\"]\n")?;
    let out = validate(&policy_and_clean, None)?;
    let text = String::from_utf8_lossy(&out.stdout);
    ensure!(
        out.status.code() == Some(1),
        "kill refused by policy: {text}"
    );
    ensure!(text.contains("policy"), "{text}");
    std::fs::write(&policy, "alowed_faults = [\"kill\"]\n")?;
    let out = validate(&policy_only, None)?;
    let text = String::from_utf8_lossy(&out.stdout);
    ensure!(out.status.code() == Some(1), "bad policy: {text}");
    ensure!(text.contains("alowed_faults"), "{text}");
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// `ctl explain` needs no daemon, prints the grammar's fields; an unknown kind lists the kinds.
#[test]
fn ctl_explain_prints_the_fields_of_a_kind() -> Result<()> {
    let out = Command::new(plugin_binary())
        .args([
            "ctl",
            "--socket",
            "/nonexistent/control.sock",
            "explain",
            "freeze",
        ])
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    ensure!(
        out.status.success(),
        "{}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    ensure!(
        text.contains("KIND: freeze") && text.contains("duration") && text.contains("required"),
        "{text}"
    );
    ensure!(
        text.contains("freeze.nri-chaos.io/container.app: \"{after: 10s, duration: 30s}\""),
        "{text}"
    );
    let out = Command::new(plugin_binary())
        .args(["ctl", "explain", "frezee"])
        .output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(!out.status.success());
    ensure!(
        stderr.contains("unknown fault kind \"frezee\" (known: kill, freeze"),
        "{stderr}"
    );
    Ok(())
}

/// `ctl` without a daemon says what to do.
#[test]
fn ctl_without_a_daemon_says_how_to_start_it() -> Result<()> {
    let dir = std::env::temp_dir().join(format!("nri-chaos-ctl-{}", std::process::id()));
    let out = Command::new(plugin_binary())
        .args(["ctl", "--socket"])
        .arg(dir.join("control.sock"))
        .arg("status")
        .output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(!out.status.success());
    ensure!(
        stderr.contains("nri-chaos is not running: no socket at")
            && stderr.contains("start it with `nri-chaos run`, or pass --socket"),
        "{stderr}"
    );
    Ok(())
}

fn deploy_dir() -> PathBuf {
    workspace_root().join("deploy")
}

fn yaml_docs(path: &Path) -> Result<Vec<yaml_rust2::Yaml>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    yaml_rust2::YamlLoader::load_from_str(&text)
        .with_context(|| format!("parsing {}", path.display()))
}

/// Every manifest in deploy/kubernetes parses as Kubernetes objects of the expected kinds and
/// apiVersions; the DaemonSet has what nri-chaos needs; the ConfigMap's policy is accepted.
#[test]
fn deploy_manifests_are_the_right_kubernetes_objects() -> Result<()> {
    let mut seen = Vec::new();
    let mut dir: Vec<PathBuf> = std::fs::read_dir(deploy_dir().join("kubernetes"))?
        .map(|e| e.map(|e| e.path()))
        .collect::<std::io::Result<_>>()?;
    dir.sort();
    for path in dir {
        for doc in yaml_docs(&path)? {
            let api = doc["apiVersion"]
                .as_str()
                .context("apiVersion")?
                .to_string();
            let kind = doc["kind"].as_str().context("kind")?.to_string();
            let name = doc["metadata"]["name"].as_str().context("metadata.name")?;
            ensure!(name.starts_with("nri-chaos"), "{kind} {name}");
            // Namespace and RuntimeClass are cluster scoped.
            if kind != "Namespace" && kind != "RuntimeClass" {
                ensure!(
                    doc["metadata"]["namespace"].as_str() == Some("nri-chaos"),
                    "{kind} {name}"
                );
            }
            if kind == "DaemonSet" {
                check_daemonset(&doc)?;
            }
            if kind == "RuntimeClass" {
                ensure!(
                    doc["handler"].as_str() == Some("nri-chaos"),
                    "RuntimeClass {name} must name the containerd handler nri-chaos"
                );
            }
            if kind == "ConfigMap" {
                let toml = doc["data"]["config.toml"].as_str().context("config.toml")?;
                let policy = injector::Policy::from_toml_str(toml)
                    .map_err(|e| anyhow::anyhow!("ConfigMap policy: {e}"))?;
                ensure!(policy.namespaces.deny.contains(&"kube-system".to_string()));
            }
            seen.push((api, kind));
        }
    }
    seen.sort();
    let want: Vec<(String, String)> = [
        ("apps/v1", "DaemonSet"),
        ("node.k8s.io/v1", "RuntimeClass"),
        ("v1", "ConfigMap"),
        ("v1", "Namespace"),
        ("v1", "ServiceAccount"),
    ]
    .iter()
    .map(|(a, k)| (a.to_string(), k.to_string()))
    .collect();
    ensure!(seen == want, "deploy/kubernetes objects: {seen:?}");
    Ok(())
}

fn check_daemonset(ds: &yaml_rust2::Yaml) -> Result<()> {
    let spec = &ds["spec"]["template"]["spec"];
    ensure!(spec["hostPID"].as_bool() == Some(true), "hostPID");
    let labels = &ds["spec"]["template"]["metadata"]["labels"];
    let selector = &ds["spec"]["selector"]["matchLabels"];
    ensure!(
        !selector.is_badvalue() && selector == labels,
        "selector must match the pod labels"
    );
    let main = &spec["containers"][0];
    ensure!(
        main["securityContext"]["privileged"].as_bool() == Some(true),
        "privileged"
    );
    let args: Vec<&str> = main["args"]
        .as_vec()
        .context("args")?
        .iter()
        .filter_map(|a| a.as_str())
        .collect();
    ensure!(args.first() == Some(&"run"), "{args:?}");
    let host_paths: Vec<&str> = spec["volumes"]
        .as_vec()
        .context("volumes")?
        .iter()
        .filter_map(|v| v["hostPath"]["path"].as_str())
        .collect();
    for path in [
        "/var/run/nri",
        "/sys/fs/cgroup",
        "/run/nri-chaos",
        "/opt/nri-chaos/bin",
    ] {
        ensure!(
            host_paths.contains(&path),
            "no hostPath {path}: {host_paths:?}"
        );
    }
    let init = &spec["initContainers"][0];
    let script = format!("{:?}", init["args"]);
    for binary in ["nri-chaos-hook", "containerd-shim-nri-chaos-v2"] {
        ensure!(
            script.contains(binary),
            "the init container must install {binary}"
        );
    }
    Ok(())
}

/// The containerd 1.7 drop-in is accepted by a real containerd 1.7: a private containerd
/// importing it (with only the socket path moved into a temp dir) opens the NRI socket.
#[tokio::test]
async fn containerd_17_drop_in_enables_nri() -> Result<()> {
    common::require_root();
    let runtime = Runtime::ensure()?;
    let version = ContainerdVersion::V17;
    let drop_in = std::fs::read_to_string(deploy_dir().join("containerd/nri-1.7.toml"))?;
    let dir = tempfile_dir("dropin")?;
    let nri_sock = dir.join("nri.sock");
    let moved = drop_in.replace(
        "\"/var/run/nri/nri.sock\"",
        &format!("\"{}\"", nri_sock.display()),
    );
    let changed: Vec<(&str, &str)> = drop_in
        .lines()
        .zip(moved.lines())
        .filter(|(a, b)| a != b)
        .collect();
    ensure!(
        changed.len() == 1 && changed[0].0.contains("socket_path"),
        "{changed:?}"
    );
    let moved = moved
        .replace(
            "\"/opt/nri/plugins\"",
            &format!("\"{}/plugins\"", dir.display()),
        )
        .replace(
            "\"/etc/nri/conf.d\"",
            &format!("\"{}/conf.d\"", dir.display()),
        );
    std::fs::write(dir.join("nri-1.7.toml"), moved)?;
    let d = dir.display();
    std::fs::write(
        dir.join("config.toml"),
        format!(
            r#"version = 2
imports = ["{d}/nri-1.7.toml"]
root = "{d}/root"
state = "{d}/state"

[grpc]
  address = "{d}/containerd.sock"

[ttrpc]
  address = "{d}/containerd.sock.ttrpc"

[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = "{d}/opt"

# NRI starts with the CRI plugin: a minimal CRI that never runs a pod.
[plugins."io.containerd.grpc.v1.cri"]
  disable_tcp_service = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  netns_mounts_under_state_dir = true
  disable_apparmor = true
  enable_cdi = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{d}/cni/bin"
    conf_dir = "{d}/cni/conf"
"#
        ),
    )?;
    let log = std::fs::File::create(dir.join("containerd.log"))?;
    let mut child = Command::new(runtime.containerd(version))
        .arg("--config")
        .arg(dir.join("config.toml"))
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()?;
    let appeared = common::eventually(Duration::from_secs(20), || nri_sock.exists()).await;
    // SAFETY: kill has no memory preconditions; the pid is our own child, not yet reaped.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let _ = child.wait();
    let log = std::fs::read_to_string(dir.join("containerd.log")).unwrap_or_default();
    let _ = std::fs::remove_dir_all(&dir);
    ensure!(
        log.contains("created NRI interface"),
        "containerd 1.7 did not enable NRI with the drop-in; log:\n{log}"
    );
    ensure!(
        appeared,
        "containerd 1.7 with the drop-in opened no NRI socket; log:\n{log}"
    );
    Ok(())
}

fn tempfile_dir(tag: &str) -> Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("nri-chaos-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// The `nri-chaos` runtime handler drop-ins are read by a real containerd of their version:
/// `containerd config dump` of a config importing each shows the handler with runc's
/// runtime type, the wrapper as runtime path and the runc options passed through.
#[test]
fn runtime_handler_drop_ins_load_in_real_containerd() -> Result<()> {
    let runtime = Runtime::ensure()?;
    for (version, file, config_version) in [
        (ContainerdVersion::V17, "nri-chaos-runtime-1.7.toml", 2),
        (ContainerdVersion::V2, "nri-chaos-runtime-2.x.toml", 3),
    ] {
        let dir = tempfile_dir(&format!("handler-{}", version.tag()))?;
        let d = dir.display();
        let drop_in = deploy_dir().join("containerd").join(file);
        std::fs::write(
            dir.join("config.toml"),
            format!(
                "version = {config_version}\nimports = [\"{}\"]\nroot = \"{d}/root\"\nstate = \"{d}/state\"\n",
                drop_in.display()
            ),
        )?;
        let out = Command::new(runtime.containerd(version))
            .arg("--config")
            .arg(dir.join("config.toml"))
            .args(["config", "dump"])
            .stdin(Stdio::null())
            .output()?;
        let _ = std::fs::remove_dir_all(&dir);
        let dump = String::from_utf8_lossy(&out.stdout);
        ensure!(
            out.status.success(),
            "{version} config dump of {file} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        // The handler's table runs from its header to the next table of another runtime.
        let section: Vec<&str> = dump
            .lines()
            .skip_while(|l| !l.trim_end().ends_with("runtimes.nri-chaos]"))
            .take_while(|l| !l.contains("runtimes.") || l.contains("runtimes.nri-chaos"))
            .collect();
        let has = |key: &str, value: &str| {
            section
                .iter()
                .any(|l| l.trim_start().starts_with(key) && l.contains(value))
        };
        ensure!(
            has("runtime_type", "io.containerd.runc.v2")
                && has(
                    "runtime_path",
                    "/opt/nri-chaos/bin/containerd-shim-nri-chaos-v2"
                )
                && has("SystemdCgroup", "true"),
            "{version} does not read the nri-chaos handler from {file}:\n{}",
            section.join("\n")
        );
    }
    Ok(())
}
