//! `nri-chaos-hook` without containerd or NRI: runc runs a bundle whose config.json lists the
//! hook (as a hooks.d install would), and the hook binary is run directly with bad input.
//! Prints the hook's wall time per invocation.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use nri_chaos_tests::{plugin_binary, Runtime};

static NEXT: AtomicU32 = AtomicU32::new(0);

/// `nri-chaos-hook`: `$NRI_CHAOS_HOOK_BIN`, else next to the plugin binary.
fn hook_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("NRI_CHAOS_HOOK_BIN").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    let hook = plugin_binary().with_file_name("nri-chaos-hook");
    assert!(
        hook.is_file(),
        "the OCI hook binary was not found at {}; build it with cargo build -p nri-chaos-oci-hooks or set NRI_CHAOS_HOOK_BIN",
        hook.display()
    );
    hook
}

fn json_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A scratch dir removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(what: &str) -> Result<Scratch> {
        let dir = std::env::temp_dir().join(format!(
            "nri-chaos-hook-{what}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        Ok(Scratch(dir))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A bundle: busybox rootfs + config.json running `args`, with `annotations`, listing the
/// hook at createRuntime; no network namespace entry (the host's network).
fn bundle(
    dir: &Path,
    rt: &Runtime,
    id: &str,
    args: &[&str],
    annotations: &[(&str, &str)],
) -> Result<PathBuf> {
    bundle_with_network(dir, rt, id, args, annotations, None)
}

/// [`bundle`] with a `network` entry in `linux.namespaces` (`Some("")`: a new namespace,
/// `Some(path)`: join that one).
fn bundle_with_network(
    dir: &Path,
    rt: &Runtime,
    id: &str,
    args: &[&str],
    annotations: &[(&str, &str)],
    network: Option<&str>,
) -> Result<PathBuf> {
    let bundle = dir.join("bundle");
    let rootfs = bundle.join("rootfs");
    for d in ["bin", "proc", "dev", "sys", "tmp"] {
        std::fs::create_dir_all(rootfs.join(d))?;
    }
    std::fs::copy(rt.busybox(), rootfs.join("bin/busybox"))?;
    for applet in ["sh", "cat", "true", "sleep"] {
        std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(applet))?;
    }
    let hook = hook_binary();
    let hook = json_str(&hook.display().to_string());
    let args: Vec<String> = args.iter().map(|a| json_str(a)).collect();
    let annotations: Vec<String> = annotations
        .iter()
        .map(|(k, v)| format!("{}: {}", json_str(k), json_str(v)))
        .collect();
    let config = format!(
        r#"{{
  "ociVersion": "1.0.2",
  "process": {{
    "terminal": false, "user": {{"uid": 0, "gid": 0}},
    "args": [{args}], "env": ["PATH=/bin"], "cwd": "/",
    "capabilities": {{"bounding": ["CAP_KILL"], "effective": ["CAP_KILL"], "permitted": ["CAP_KILL"]}},
    "noNewPrivileges": true
  }},
  "root": {{"path": "rootfs", "readonly": true}},
  "hostname": "hook-test",
  "mounts": [
    {{"destination": "/proc", "type": "proc", "source": "proc"}},
    {{"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}},
    {{"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "nodev"]}}
  ],
  "hooks": {{"createRuntime": [{{"path": {hook}, "args": ["nri-chaos-hook", "createRuntime"], "timeout": 20}}]}},
  "annotations": {{{annotations}}},
  "linux": {{
    "cgroupsPath": "/nri-chaos-e2e-runc-{id}",
    "namespaces": [{{"type": "pid"}}, {{"type": "ipc"}}, {{"type": "uts"}}, {{"type": "mount"}}{network}],
    "maskedPaths": ["/proc/kcore"], "readonlyPaths": ["/proc/sys"]
  }}
}}
"#,
        args = args.join(", "),
        annotations = annotations.join(", "),
        network = match network {
            None => String::new(),
            Some("") => r#", {"type": "network"}"#.to_string(),
            Some(path) => format!(r#", {{"type": "network", "path": {}}}"#, json_str(path)),
        },
    );
    std::fs::write(bundle.join("config.json"), config)?;
    Ok(bundle)
}

/// Runs `cmd` with `stdin` written then closed; kills it after `limit`.
fn run_with_limit(
    cmd: &mut Command,
    stdin: Option<&[u8]>,
    limit: Duration,
) -> Result<(Output, Duration)> {
    let started = Instant::now();
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("spawning {cmd:?}"))?;
    let mut pipe = child.stdin.take();
    if let (Some(data), Some(p)) = (stdin, pipe.as_mut()) {
        // A hook that rejects its arguments exits without reading stdin: EPIPE is fine.
        if let Err(err) = p.write_all(data) {
            ensure!(
                err.kind() == std::io::ErrorKind::BrokenPipe,
                "writing stdin: {err}"
            );
        }
    }
    // `None` keeps stdin open (a runtime that never closes it) until the child exits.
    let keep_open = if stdin.is_some() {
        drop(pipe);
        None
    } else {
        pipe
    };
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let out = match rx.recv_timeout(limit) {
        Ok(out) => out?,
        Err(_) => {
            // SAFETY: kill(2) on the PID of our own unreaped child; no memory is involved.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            bail!("{cmd:?} did not finish within {limit:?}: a hang");
        }
    };
    drop(keep_open);
    Ok((out, started.elapsed()))
}

fn runc_run(rt: &Runtime, dir: &Path, bundle: &Path, id: &str) -> Result<(Output, Duration)> {
    run_with_limit(
        Command::new(rt.runc())
            .arg("--root")
            .arg(dir.join("runc-root"))
            .arg("run")
            .arg("--bundle")
            .arg(bundle)
            .arg(id),
        Some(b""),
        Duration::from_secs(30),
    )
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Standalone (our annotation, no plan) and plugin-plan forms: `start.fail` makes `runc run`
/// fail with the hook's message.
#[test]
fn runc_run_fails_with_the_start_fault() -> Result<()> {
    common::require_root();
    let rt = Runtime::ensure()?;
    let plan = r#"{"version":1,"faults":[{"kind":"start","key":"start.nri-chaos.io/container.app","value":"{fail: {exit_code: 3}}"}]}"#;
    for (form, key, value) in [
        ("standalone", "start.nri-chaos.io", "{fail: {exit_code: 3}}"),
        ("plan", "nri-chaos.io/plan", plan),
    ] {
        let scratch = Scratch::new("fail")?;
        let id = format!("hookfail-{}-{form}", std::process::id());
        let bundle = bundle(&scratch.0, &rt, &id, &["true"], &[(key, value)])?;
        let (out, _) = runc_run(&rt, &scratch.0, &bundle, &id)?;
        let stderr = text(&out.stderr);
        println!("runc run ({form}): {} | {}", out.status, stderr.trim());
        ensure!(
            !out.status.success(),
            "{form}: runc run succeeded despite start.fail"
        );
        ensure!(
            stderr.contains("nri-chaos: start fault from annotation start.nri-chaos.io")
                && stderr.contains("failing the container start with exit code 3"),
            "{form}: runc stderr lacks the hook message: {stderr}"
        );
    }
    Ok(())
}

/// `start.delay` holds `runc run` and `oom.score` is in place before the app runs (the app
/// reads its own score).
#[test]
fn runc_run_is_delayed_and_scored() -> Result<()> {
    common::require_root();
    let rt = Runtime::ensure()?;
    let scratch = Scratch::new("delay")?;
    let id = format!("hookdelay-{}", std::process::id());
    let bundle = bundle(
        &scratch.0,
        &rt,
        &id,
        &["cat", "/proc/self/oom_score_adj"],
        &[
            ("start.nri-chaos.io", "{delay: 1s}"),
            ("oom.nri-chaos.io", "{score: 700}"),
        ],
    )?;
    let (out, took) = runc_run(&rt, &scratch.0, &bundle, &id)?;
    println!(
        "runc run with start delay 1s: {took:.3?}, stdout {:?}",
        text(&out.stdout)
    );
    ensure!(
        out.status.success(),
        "runc run failed: {}",
        text(&out.stderr)
    );
    ensure!(
        text(&out.stdout).trim() == "700",
        "app saw oom_score_adj {:?}, want 700",
        text(&out.stdout)
    );
    ensure!(
        took >= Duration::from_secs(1),
        "runc run took {took:?}, want >= 1 s"
    );
    Ok(())
}

/// Standalone (hooks.d) netem on a container that shares the host's network: the hook reads
/// `linux.namespaces` and refuses with the policy's reason (it never touches the node's own
/// interfaces), whether the config has no network entry or joins the host's namespace by
/// path. A container with its own namespace is not refused: the hook goes on to shape it
/// (here it has only loopback, which the hook reports). runc shows a hook's stderr only when
/// the hook fails, so a `start.fail` rides along to make the hook's report visible.
#[test]
fn standalone_netem_on_the_host_network_is_refused() -> Result<()> {
    common::require_root();
    let rt = Runtime::ensure()?;
    let refusal = "netem on a hostNetwork pod would shape the node's own network; refused by policy (allow_netem_host_network = false)";
    let host_ns = format!("/proc/{}/ns/net", std::process::id());
    for (form, network, refused) in [
        ("no network namespace entry", None, true),
        ("the host's namespace by path", Some(host_ns.as_str()), true),
        ("a namespace of its own", Some(""), false),
    ] {
        let scratch = Scratch::new("hostnet")?;
        let id = format!(
            "hooknet-{}-{}",
            std::process::id(),
            NEXT.load(Ordering::Relaxed)
        );
        let bundle = bundle_with_network(
            &scratch.0,
            &rt,
            &id,
            &["true"],
            &[
                ("netem.nri-chaos.io/pod", "{delay: 100ms}"),
                ("start.nri-chaos.io", "{fail: {exit_code: 3}}"),
            ],
            network,
        )?;
        let (out, _) = runc_run(&rt, &scratch.0, &bundle, &id)?;
        let stderr = text(&out.stderr);
        println!("runc run ({form}): {} | {}", out.status, stderr.trim());
        ensure!(
            stderr.contains("failing the container start with exit code 3"),
            "{form}: runc stderr lacks the hook's report: {stderr}"
        );
        ensure!(
            stderr.contains(refusal) == refused,
            "{form}: refused is {}, want {refused}: {stderr}",
            stderr.contains(refusal)
        );
        if refused {
            ensure!(
                !stderr.contains("not available") && !stderr.contains("interface"),
                "{form}: the hook went on to the node's interfaces: {stderr}"
            );
        } else {
            ensure!(
                stderr.contains("the pod's network namespace has no interface but loopback"),
                "{form}: the hook did not try its own namespace: {stderr}"
            );
        }
    }
    Ok(())
}

/// (what, hook args, stdin (None: never closed), expected stderr text).
type BadCase<'a> = (&'a str, Vec<&'a str>, Option<&'a [u8]>, &'a str);

/// Bad input: a clear error on stderr, exit 2, never a hang.
#[test]
fn malformed_input_is_a_clear_error_never_a_hang() -> Result<()> {
    let hook = hook_binary();
    let scratch = Scratch::new("bad")?;
    let bad_bundle = scratch.0.join("bad-bundle");
    std::fs::create_dir_all(&bad_bundle)?;
    std::fs::write(bad_bundle.join("config.json"), "{\"annotations\": [1, 2]")?;
    let state_for = |bundle: &Path| {
        format!(
            r#"{{"ociVersion":"1.0.2","id":"x","status":"creating","pid":1,"bundle":{}}}"#,
            json_str(&bundle.display().to_string())
        )
    };
    let bad_state = state_for(&bad_bundle);
    let missing_state = state_for(&scratch.0.join("nope"));
    let cases: Vec<BadCase> = vec![
        (
            "garbage stdin",
            vec!["createRuntime"],
            Some(b"garbage"),
            "the OCI state on stdin is not valid",
        ),
        (
            "empty stdin",
            vec!["createRuntime"],
            Some(b""),
            "stdin is empty",
        ),
        (
            "stdin never closed",
            vec!["createRuntime"],
            None,
            "was not received on stdin within 2s",
        ),
        (
            "malformed config.json",
            vec!["createRuntime"],
            Some(bad_state.as_bytes()),
            "not a valid OCI runtime config",
        ),
        (
            "missing bundle",
            vec!["createRuntime"],
            Some(missing_state.as_bytes()),
            "config.json: No such file",
        ),
        (
            "no hook point",
            vec![],
            Some(b"{}"),
            "usage: nri-chaos-hook",
        ),
        (
            "unknown hook point",
            vec!["prestart"],
            Some(b"{}"),
            "unknown hook point \"prestart\"",
        ),
    ];
    for (what, args, stdin, needle) in cases {
        let (out, took) = run_with_limit(
            Command::new(&hook).args(&args),
            stdin,
            Duration::from_secs(10),
        )?;
        let stderr = text(&out.stderr);
        println!(
            "{what}: exit {:?} in {took:.3?}: {}",
            out.status.code(),
            stderr.trim()
        );
        ensure!(
            out.status.code() == Some(2),
            "{what}: exit {:?}, want 2",
            out.status.code()
        );
        ensure!(
            stderr.starts_with("nri-chaos-hook: ") && stderr.contains(needle),
            "{what}: stderr {stderr:?} lacks {needle:?}"
        );
        ensure!(took < Duration::from_secs(4), "{what}: took {took:?}");
    }
    Ok(())
}

/// Figures: the hook's wall time per invocation with no work and with a 100 ms start delay.
#[test]
fn hook_wall_time_figures() -> Result<()> {
    let hook = hook_binary();
    let scratch = Scratch::new("figures")?;
    let mut report = Vec::new();
    for (what, annotations, n, delay) in [
        ("no work for the hook", "{}", 200, Duration::ZERO),
        (
            "start delay 100ms",
            r#"{"start.nri-chaos.io": "{delay: 100ms}"}"#,
            20,
            Duration::from_millis(100),
        ),
    ] {
        let bundle = scratch.0.join(what.replace(' ', "-"));
        std::fs::create_dir_all(&bundle)?;
        std::fs::write(
            bundle.join("config.json"),
            format!(r#"{{"ociVersion":"1.0.2","annotations":{annotations}}}"#),
        )?;
        let state = format!(
            r#"{{"ociVersion":"1.0.2","id":"x","status":"creating","pid":{},"bundle":{}}}"#,
            std::process::id(),
            json_str(&bundle.display().to_string())
        );
        let mut times = Vec::with_capacity(n);
        for _ in 0..n {
            let (out, took) = run_with_limit(
                Command::new(&hook).arg("createRuntime"),
                Some(state.as_bytes()),
                Duration::from_secs(10),
            )?;
            ensure!(out.status.success(), "{what}: {}", text(&out.stderr));
            times.push(took);
        }
        times.sort();
        let (p50, p99) = (percentile(&times, 0.5), percentile(&times, 0.99));
        ensure!(p50 >= delay, "{what}: p50 {p50:?} below the delay");
        report.push(format!(
            "hook wall time, {what} (n={n}): p50 {p50:.2?}, p99 {p99:.2?} (overhead beyond the delay p50 {:.2?})",
            p50.saturating_sub(delay)
        ));
    }
    for line in report {
        println!("{line}");
    }
    Ok(())
}
