//! The shim wrapper `containerd-shim-nri-chaos-v2` end to end: a pod on the `nri-chaos`
//! runtime handler (real containerd 1.7, 2.x and 2.3.4, the real runc shim behind the
//! wrapper) behaves as on `runc`, and nothing of it is left after the pod is removed.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use common::{eventually, ChaosNode};
use nri_chaos_tests::{
    try_shim_wrapper_binary, ContainerSpec, ContainerState, ContainerdVersion, PodSpec,
    SHIM_HANDLER, SHIM_WRAPPER_BIN,
};

const SLEEPER: &[&str] = &["sleep", "3600"];

/// `(pid, cmdline)` of every process whose command line contains `needle`.
fn processes_naming(needle: &str) -> Vec<(i32, String)> {
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    rd.flatten()
        .filter_map(|e| {
            let pid: i32 = e.file_name().to_str()?.parse().ok()?;
            let raw = std::fs::read(e.path().join("cmdline")).ok()?;
            let cmd = String::from_utf8_lossy(&raw).replace('\0', " ");
            cmd.contains(needle).then_some((pid, cmd))
        })
        .collect()
}

/// Within `timeout` no process names `pod_id` (wrapper server, runc shim) and none of the
/// pod's shim `sockets` exists.
async fn nothing_left(pod_id: &str, sockets: &[PathBuf], timeout: Duration) -> Result<()> {
    let gone = eventually(timeout, || {
        processes_naming(pod_id).is_empty() && sockets.iter().all(|s| !s.exists())
    })
    .await;
    ensure!(
        gone,
        "after RemovePodSandbox of {pod_id}: processes {:#?}, sockets left {:?}",
        processes_naming(pod_id),
        sockets.iter().filter(|s| s.exists()).collect::<Vec<_>>()
    );
    Ok(())
}

/// Create, start, logs, ExecSync output and exit codes, ContainerStats, a kill fault (137),
/// an OOM kill reported `OOMKilled`, restart with attempt+1, stop and remove on the `nri-chaos` handler; then no wrapper or
/// runc shim process and no socket of the pod is left.
async fn wrapped_pod_behaves_as_on_runc(version: ContainerdVersion) -> Result<()> {
    let wrapper = try_shim_wrapper_binary()?;
    let node = ChaosNode::start(version, "").await?;
    let cri = node.node.cri().await?;
    let pod = cri
        .run_pod(
            &PodSpec::new("wrapped")
                .runtime_handler(SHIM_HANDLER)
                .annotation("kill.nri-chaos.io/container.victim", "{after: 2s}")
                .annotation("oom.nri-chaos.io/container.hog", "{kill: true, after: 1s}"),
        )
        .await?;

    // The pod's task API goes through the wrapper: its server runs for this sandbox, in
    // front of the runc shim, each on its own socket.
    let serving = wrapper_server(&pod.id);
    ensure!(
        serving.len() == 1,
        "want one wrapper server ({}) for pod {}, found {serving:#?}",
        wrapper.display(),
        pod.id
    );
    let runc_shims: Vec<_> = processes_naming(&pod.id)
        .into_iter()
        .filter(|(_, cmd)| cmd.contains("containerd-shim-runc-v2"))
        .collect();
    ensure!(runc_shims.len() == 1, "runc shims: {runc_shims:#?}");
    let sockets = node.node.shim_sockets(&pod.id);
    for s in &sockets {
        ensure!(
            s.exists(),
            "socket {} missing while the pod runs",
            s.display()
        );
    }

    let app = cri
        .run_container(
            &pod,
            &ContainerSpec::new("app", &["sh", "-c", "echo started; exec sleep 3600"]),
        )
        .await?;
    let victim = cri
        .run_container(&pod, &ContainerSpec::new("victim", SLEEPER))
        .await?;
    let hog = cri
        .run_container(
            &pod,
            &ContainerSpec::new("hog", SLEEPER).memory_limit(64 << 20),
        )
        .await?;
    ensure!(
        cri.container_status(&app).await?.state == ContainerState::Running,
        "app is not running"
    );
    let status = cri.container_status(&app).await?;
    let log = std::fs::read_to_string(&status.log_path)
        .with_context(|| format!("reading {}", status.log_path))?;
    ensure!(log.contains("started"), "app log: {log:?}");

    let hi = cri.exec_sync(&app, &["echo", "hi"], 5).await?;
    ensure!(hi.exit_code == 0 && hi.stdout == "hi\n", "echo hi: {hi:?}");
    let three = cri
        .exec_sync(&app, &["sh", "-c", "echo out; echo err >&2; exit 3"], 5)
        .await?;
    ensure!(
        three.exit_code == 3 && three.stdout == "out\n" && three.stderr == "err\n",
        "exit 3: {three:?}"
    );
    let (cpu_ns, memory) = cri.container_stats(&app).await?;
    ensure!(
        cpu_ns > 0 && memory > 0,
        "ContainerStats: cpu {cpu_ns} ns, working set {memory} B"
    );

    let killed = cri.wait_exited(&victim, Duration::from_secs(10)).await?;
    ensure!(
        killed.exit_code == 137,
        "victim exit code {} (want 137 from the kill fault)",
        killed.exit_code
    );
    let oom = cri.wait_exited(&hog, Duration::from_secs(20)).await?;
    ensure!(
        oom.reason == "OOMKilled" && oom.exit_code == 137,
        "hog after the OOM kill: reason {:?} exit {} (want OOMKilled, 137)",
        oom.reason,
        oom.exit_code
    );
    let restarted = cri
        .run_container(&pod, &ContainerSpec::new("victim", SLEEPER).attempt(1))
        .await?;
    let status = cri.container_status(&restarted).await?;
    ensure!(
        status.attempt == 1 && status.state == ContainerState::Running,
        "restarted victim: attempt {} {:?}",
        status.attempt,
        status.state
    );

    cri.stop_container(&app, 2).await?;
    let stopped = cri.container_status(&app).await?;
    ensure!(
        stopped.state == ContainerState::Exited,
        "app after StopContainer: {:?}",
        stopped.state
    );
    cri.remove_container(&app).await?;
    cri.stop_pod(&pod).await?;
    cri.remove_pod(&pod).await?;

    nothing_left(&pod.id, &sockets, Duration::from_secs(5)).await?;
    println!(
        "{version}: wrapped pod ran (exec, stats {cpu_ns} ns / {memory} B, kill 137, \
         OOMKilled, restart attempt 1) and left nothing behind"
    );
    node.shutdown().await
}

/// Lines of /proc/net/unix bound to `socket`: its listener plus one per accepted connection.
fn unix_socket_lines(socket: &std::path::Path) -> usize {
    let needle = socket.display().to_string();
    std::fs::read_to_string("/proc/net/unix")
        .unwrap_or_default()
        .lines()
        .filter(|l| l.split_whitespace().last() == Some(needle.as_str()))
        .count()
}

/// The wrapper server of `pod_id`: `(pid, cmdline)`.
fn wrapper_server(pod_id: &str) -> Vec<(i32, String)> {
    processes_naming(pod_id)
        .into_iter()
        .filter(|(_, cmd)| cmd.contains(SHIM_WRAPPER_BIN) && cmd.contains("--nri-chaos-serve"))
        .collect()
}

/// containerd restarted while a wrapped pod runs: it reconnects through the wrapper and the
/// pod stays manageable (exec, create, start, stop, remove). Then the wrapper is SIGKILLed:
/// its containers are reported exited, the pod can still be stopped and removed with nothing
/// left behind, and a new sandbox runs through a new wrapper.
async fn containerd_restart_then_wrapper_sigkill(version: ContainerdVersion) -> Result<()> {
    try_shim_wrapper_binary()?;
    let mut node = ChaosNode::start(version, "").await?;
    let cri = node.node.cri().await?;
    let (pod, app) = common::wrapped_app(&cri, "restarted").await?;
    let sockets = node.node.shim_sockets(&pod.id);
    let ours = sockets.last().context("no wrapper socket path")?.clone();

    node.node.restart_containerd().await?;
    let hi = cri.exec_sync(&app, &["echo", "hi"], 5).await?;
    ensure!(
        hi.exit_code == 0 && hi.stdout == "hi\n",
        "after restart: {hi:?}"
    );
    let lines = unix_socket_lines(&ours);
    ensure!(
        lines >= 2,
        "after the containerd restart nobody is connected to the wrapper socket {} ({lines} \
         /proc/net/unix lines): containerd bypassed the wrapper",
        ours.display()
    );

    // Create, start, stop and remove still work through the wrapper after the restart.
    let extra = cri
        .run_container(&pod, &ContainerSpec::new("extra", SLEEPER))
        .await?;
    cri.stop_container(&extra, 2).await?;
    ensure!(
        cri.container_status(&extra).await?.state == ContainerState::Exited,
        "extra container not stopped after the containerd restart"
    );
    cri.remove_container(&extra).await?;

    let servers = wrapper_server(&pod.id);
    ensure!(servers.len() == 1, "wrapper servers: {servers:#?}");
    // SAFETY: kill(2) on the PID of the wrapper server this test's node started.
    unsafe { libc::kill(servers[0].0, libc::SIGKILL) };
    // containerd sees its shim gone and cleans the pod's tasks up: the containers are
    // reported exited (the kubelet then restarts them in a new sandbox), never left running
    // unmanaged.
    let state = cri
        .wait_exited(&app, Duration::from_secs(15))
        .await
        .context("app after the wrapper's SIGKILL")?;
    println!(
        "{version}: wrapper SIGKILLed -> app {:?} exit {} reason {:?}",
        state.state, state.exit_code, state.reason
    );
    // While containerd is still cleaning up after the dead shim, a sandbox call may fail
    // with "ttrpc: closed"; the kubelet retries them, and so does this test (for 10 s).
    let mut attempt = 0;
    loop {
        let result = async {
            cri.stop_pod(&pod).await?;
            cri.remove_pod(&pod).await
        }
        .await;
        match result {
            Ok(()) => break,
            Err(e) if attempt < 20 => {
                println!("{version}: removing the pod after the wrapper's death: {e:#} (retrying)");
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => return Err(e.context("the pod cannot be removed after the wrapper's death")),
        }
    }
    nothing_left(&pod.id, &sockets, Duration::from_secs(10)).await?;
    // The kubelet's next sandbox for the pod runs through a new wrapper.
    let again = cri
        .run_pod(
            &PodSpec::new("restarted")
                .attempt(1)
                .runtime_handler(SHIM_HANDLER),
        )
        .await?;
    let app = cri
        .run_container(&again, &ContainerSpec::new("app", SLEEPER))
        .await?;
    let hi = cri.exec_sync(&app, &["echo", "hi"], 5).await?;
    ensure!(
        hi.exit_code == 0 && hi.stdout == "hi\n",
        "new sandbox: {hi:?}"
    );
    ensure!(
        wrapper_server(&again.id).len() == 1,
        "no wrapper for the new sandbox"
    );
    node.shutdown().await
}

on_both_containerd_versions!(
    wrapped_pod_behaves_as_on_runc,
    containerd_restart_then_wrapper_sigkill
);
on_containerd_2_3!(
    wrapped_pod_behaves_as_on_runc,
    containerd_restart_then_wrapper_sigkill
);
