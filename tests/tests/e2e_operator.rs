//! The operator surface end to end, on real containerd 1.7 and 2.x nodes: `nri-chaos ctl`
//! over the control socket (inject into a running container, list, recover), the socket's
//! mode and its refusal of non-root clients, the Prometheus endpoint against what the test did,
//! the deploy/ manifests and the containerd 1.7 NRI drop-in.

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use common::ChaosNode;
use nri_chaos_tests::{
    plugin_binary, workspace_root, ContainerSpec, ContainerState, ContainerdVersion, PodSpec,
    Runtime,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SLEEPER: &[&str] = &["sleep", "3600"];
/// Metrics on an ephemeral loopback port (tests run in parallel); the log says which.
const CONFIG: &str = "metrics_address = \"127.0.0.1:0\"\n";

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

/// The metrics address nri-chaos logged.
async fn metrics_address(node: &ChaosNode) -> Result<String> {
    let line = node
        .plugin
        .wait_log_contains("metrics listening", Duration::from_secs(5))
        .await?;
    let address = line
        .split_whitespace()
        .find_map(|field| field.strip_prefix("address="))
        .context("no address= in the metrics line")?;
    Ok(address.to_string())
}

/// GET /metrics over plain TCP; the body.
async fn scrape(address: &str) -> Result<String> {
    let mut stream = tokio::net::TcpStream::connect(address).await?;
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
        .await?;
    let mut response = String::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_string(&mut response))
        .await
        .context("metrics endpoint did not answer")??;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .context("no HTTP head in the metrics response")?;
    ensure!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
    ensure!(head.contains("text/plain; version=0.0.4"), "{head}");
    Ok(body.to_string())
}

/// Parses Prometheus text: every sample line must be `name{labels} value` of a family
/// declared with `# TYPE`; returns sample -> value.
fn parse_prometheus(text: &str) -> Result<BTreeMap<String, f64>> {
    let mut families = BTreeMap::new();
    let mut samples = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut it = rest.split_whitespace();
            let (Some(name), Some(kind)) = (it.next(), it.next()) else {
                bail!("bad TYPE line: {line}");
            };
            ensure!(
                ["counter", "gauge", "histogram"].contains(&kind),
                "unknown type in {line}"
            );
            families.insert(name.to_string(), kind.to_string());
            continue;
        }
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let (name, value) = line
            .rsplit_once(' ')
            .with_context(|| format!("no value in {line}"))?;
        let value: f64 = value
            .parse()
            .with_context(|| format!("bad value in {line}"))?;
        let base = name.split('{').next().unwrap_or(name);
        ensure!(
            base.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "bad metric name in {line}"
        );
        if name.contains('{') {
            ensure!(name.ends_with('}'), "unterminated labels in {line}");
        }
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| {
                base.strip_suffix(suffix)
                    .filter(|f| families.get(*f).is_some_and(|k| k == "histogram"))
            })
            .unwrap_or(base);
        ensure!(
            families.contains_key(family),
            "sample of undeclared family: {line}"
        );
        samples.insert(name.to_string(), value);
    }
    Ok(samples)
}

fn sample(samples: &BTreeMap<String, f64>, name: &str) -> Result<f64> {
    samples
        .get(name)
        .copied()
        .with_context(|| format!("no sample {name}; have {:#?}", samples.keys()))
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
    let samples = parse_prometheus(&scrape(&metrics_address(&node).await?).await?)?;
    ensure!(sample(&samples, "nri_chaos_faults_applied_total{kind=\"kill\"}")? == 1.0);
    ensure!(sample(&samples, "nri_chaos_faults_failed_total{kind=\"kill\"}")? == 0.0);
    ensure!(
        sample(
            &samples,
            "nri_chaos_annotation_rejections_total{reason=\"parse\"}"
        )? == 1.0
    );
    ensure!(
        sample(
            &samples,
            "nri_chaos_annotation_rejections_total{reason=\"policy\"}"
        )? == 0.0
    );
    ensure!(sample(&samples, "nri_chaos_nri_reconnects_total")? == 0.0);
    ensure!(
        sample(
            &samples,
            "nri_chaos_firing_lateness_seconds_count{kind=\"kill\"}"
        )? == 1.0
    );
    ensure!(
        sample(
            &samples,
            "nri_chaos_handler_seconds_count{event=\"create_container\"}"
        )? >= 2.0
    );

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
    ensure!(
        !node
            .log_lines(&["refused a client that is not root", "uid=65534"])
            .is_empty(),
        "the refusal was not logged:\n{}",
        node.log()
    );
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

/// `ctl recover --all` ends a running freeze at once: the cgroup is THAWED when it returns.
async fn ctl_recover_all_thaws_a_running_freeze(version: ContainerdVersion) -> Result<()> {
    let node = ChaosNode::start(version, CONFIG).await?;
    let cri = node.node.cri().await?;
    let pod = cri
        .run_pod(&PodSpec::new("frozen").annotation(
            "freeze.nri-chaos.io/container.app",
            "{after: 500ms, duration: 1h}",
        ))
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
    let list = ctl_json(&node, &["list"])?;
    ensure!(
        list["faults"].as_array().is_some_and(|f| f
            .iter()
            .any(|f| f["kind"] == "freeze" && f["state"] == "applied")),
        "{list:#}"
    );
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
    let samples = parse_prometheus(&scrape(&metrics_address(&node).await?).await?)?;
    ensure!(sample(&samples, "nri_chaos_faults_applied_total{kind=\"freeze\"}")? == 1.0);
    ensure!(
        sample(
            &samples,
            "nri_chaos_faults_recovered_total{kind=\"freeze\"}"
        )? == 1.0
    );
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

on_both_containerd_versions!(
    ctl_inject_kill_list_metrics_and_root_only_socket,
    ctl_recover_all_thaws_a_running_freeze,
);

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
