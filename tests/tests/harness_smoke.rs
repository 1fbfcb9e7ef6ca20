//! Proves the harness itself against both containerd lines: a private node starts, CRI works
//! as the kubelet uses it, containerd restarts, and teardown leaves nothing behind.
//! Needs root: without it the tests fail (not skip) with a clear message.

use std::path::Path;
use std::time::{Duration, Instant};

use nri_chaos_tests::{
    require_root, ContainerSpec, ContainerState, ContainerdVersion, Node, NodeEnv, PodSpec,
};

struct Timer {
    label: String,
    start: Instant,
    last: Instant,
}

impl Timer {
    fn new(label: String) -> Self {
        let now = Instant::now();
        Self {
            label,
            start: now,
            last: now,
        }
    }

    fn lap(&mut self, what: &str) {
        let now = Instant::now();
        eprintln!(
            "[{}] {what}: {:?} (total {:?})",
            self.label,
            now - self.last,
            now - self.start
        );
        self.last = now;
    }
}

fn sha256_hex(data: &str) -> String {
    use std::io::Write;
    let mut child = std::process::Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("sha256sum");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(data.as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("sha256sum output");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .expect("hash")
        .to_string()
}

/// Everything a node could leave on the host: processes naming its dir, mounts below it, its
/// bridge, its cgroups in every hierarchy, the dir itself, CNI result cache entries and shim
/// sockets of its pods.
fn leftovers(dir: &Path, bridge: &str, cgroup_root: &str, pod_ids: &[String]) -> Vec<String> {
    let mut left = Vec::new();
    let sock = dir.join("containerd.sock");
    for id in pod_ids {
        let shim_sock = Path::new("/run/containerd/s")
            .join(sha256_hex(&format!("{}/k8s.io/{id}", sock.display())));
        if shim_sock.exists() {
            left.push(format!("shim socket {}", shim_sock.display()));
        }
        if let Ok(rd) = std::fs::read_dir("/var/lib/cni/results") {
            for e in rd.flatten() {
                if e.file_name().to_string_lossy().contains(id.as_str()) {
                    left.push(format!("CNI result {}", e.path().display()));
                }
            }
        }
    }
    let needle = dir.display().to_string();
    let me = std::process::id().to_string();
    for e in std::fs::read_dir("/proc").expect("read /proc").flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        if !name.bytes().all(|b| b.is_ascii_digit()) || name == me {
            continue;
        }
        if let Ok(raw) = std::fs::read(e.path().join("cmdline")) {
            let cmd = String::from_utf8_lossy(&raw).replace('\0', " ");
            if cmd.contains(&needle) {
                left.push(format!("process {name}: {cmd}"));
            }
        }
    }
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    for line in mountinfo.lines().filter(|l| l.contains(&needle)) {
        left.push(format!("mount: {line}"));
    }
    if Path::new("/sys/class/net").join(bridge).exists() {
        left.push(format!("bridge {bridge}"));
    }
    for e in std::fs::read_dir("/sys/fs/cgroup")
        .expect("cgroup root")
        .flatten()
    {
        let p = e.path().join(cgroup_root.trim_start_matches('/'));
        if p.exists() {
            left.push(format!("cgroup {}", p.display()));
        }
    }
    if dir.exists() {
        left.push(format!("node dir {}", dir.display()));
    }
    left
}

async fn smoke(version: ContainerdVersion) {
    require_root().expect("root");
    let env = NodeEnv::print().expect("runtime cache");
    let mut t = Timer::new(version.to_string());

    let mut node = Node::start(version).await.expect("node start");
    t.lap("node start");
    let cri = node.cri().await.expect("cri");

    let (name, rt_version) = cri.version().await.expect("CRI version");
    eprintln!("[{version}] CRI runtime: {name} {rt_version}");
    assert_eq!(name, "containerd");
    assert!(
        rt_version.starts_with(version.version_prefix()),
        "{version}: runtime version {rt_version}"
    );
    let pkg = node.runtime().containerd_version(version);
    assert!(
        pkg.starts_with(version.version_prefix()),
        "package version {pkg} (env {env:?})"
    );

    // NRI is enabled on the node's private socket.
    let nri = std::fs::metadata(node.nri_socket())
        .unwrap_or_else(|e| panic!("NRI socket {}: {e}", node.nri_socket().display()));
    assert!(std::os::unix::fs::FileTypeExt::is_socket(&nri.file_type()));

    let pod = cri
        .run_pod(&PodSpec::new("smoke").annotation("kill.nri-chaos.io/pod", "{after: 1h}"))
        .await
        .expect("run pod");
    t.lap("RunPodSandbox");
    assert!(
        pod.cgroup_parent.starts_with(node.cgroup_root()),
        "{}",
        pod.cgroup_parent
    );

    // exit code
    let id = cri
        .run_container(&pod, &ContainerSpec::new("exit7", &["sh", "-c", "exit 7"]))
        .await
        .expect("run exit7");
    let st = cri
        .wait_exited(&id, Duration::from_secs(20))
        .await
        .expect("exit7 exits");
    t.lap("container exit 7 (create+start+exit)");
    assert_eq!(st.exit_code, 7, "{st:?}");
    // Both set; containerd 2.x may stamp started_at a few µs *after* finished_at for a
    // container that exits at once, so no ordering is asserted.
    assert!(st.finished_at > 0 && st.started_at > 0, "{st:?}");
    cri.remove_container(&id).await.expect("remove exit7");

    // memory limit visible in the host cgroup, then stop
    let id = cri
        .run_container(
            &pod,
            &ContainerSpec::new("sleeper", &["sleep", "300"])
                .memory_limit(64 << 20)
                .cpu_quota(50_000, 100_000),
        )
        .await
        .expect("run sleeper");
    let st = cri.container_status(&id).await.expect("status");
    assert_eq!(st.state, ContainerState::Running, "{st:?}");
    let pid = cri
        .container_pid(&id)
        .await
        .expect("pid")
        .expect("running container has a pid");
    // CRI says Running once `runc start` returns, which can be before the init's execve has
    // finished (its cmdline reads empty, or `runc init`, meanwhile): give the exec 2 s.
    let want = b"sleep\x00300\x00";
    let deadline = Instant::now() + Duration::from_secs(2);
    let cmdline = loop {
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).expect("cmdline");
        if cmdline == want || Instant::now() >= deadline {
            break cmdline;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(cmdline, want, "host pid {pid}");
    let limit_file = pod
        .container_cgroup_dir("memory", &id)
        .join("memory.limit_in_bytes");
    let limit = std::fs::read_to_string(&limit_file)
        .unwrap_or_else(|e| panic!("{}: {e}", limit_file.display()));
    assert_eq!(limit.trim(), "67108864", "{}", limit_file.display());
    let quota_file = pod
        .container_cgroup_dir("cpu", &id)
        .join("cpu.cfs_quota_us");
    let quota = std::fs::read_to_string(&quota_file)
        .unwrap_or_else(|e| panic!("{}: {e}", quota_file.display()));
    assert_eq!(quota.trim(), "50000", "{}", quota_file.display());
    t.lap("container with 64Mi / 0.5 CPU limits running, host cgroups checked");
    cri.stop_container(&id, 2).await.expect("stop sleeper");
    let st = cri
        .wait_exited(&id, Duration::from_secs(10))
        .await
        .expect("sleeper exited");
    t.lap("StopContainer (timeout 2s)");
    assert_eq!(st.state, ContainerState::Exited);
    eprintln!(
        "[{version}] stopped container: exit {} reason {:?}",
        st.exit_code, st.reason
    );
    assert_ne!(st.exit_code, 0, "{st:?}");

    // exec works
    let id = cri
        .run_container(&pod, &ContainerSpec::new("exec", &["sleep", "300"]))
        .await
        .expect("run exec target");
    let out = cri
        .exec_sync(&id, &["sh", "-c", "echo hi; hostname"], 10)
        .await
        .expect("exec");
    assert_eq!(out.exit_code, 0, "{out:?}");
    assert_eq!(out.stdout, "hi\nsmoke\n", "{out:?}");
    // Kubelet default: the container has its own PID namespace (its command is PID 1).
    let out = cri
        .exec_sync(&id, &["cat", "/proc/1/cmdline"], 10)
        .await
        .expect("exec");
    assert_eq!(out.stdout, "sleep\x00300\x00", "{out:?}");
    t.lap("ExecSync");

    // shareProcessNamespace: PID 1 is the pause process.
    let shared = cri
        .run_pod(&PodSpec::new("shared").share_pid_namespace())
        .await
        .expect("shared pod");
    let sid = cri
        .run_container(&shared, &ContainerSpec::new("c", &["sleep", "300"]))
        .await
        .expect("run in shared pod");
    let out = cri
        .exec_sync(&sid, &["cat", "/proc/1/cmdline"], 10)
        .await
        .expect("exec");
    assert!(
        out.stdout.contains("trap"),
        "PID 1 in a shared pod: {out:?}"
    );
    cri.stop_pod(&shared).await.expect("stop shared pod");
    cri.remove_pod(&shared).await.expect("remove shared pod");
    t.lap("shared PID namespace pod");

    // CRI errors carry the gRPC status message.
    let mut bogus = pod.clone();
    bogus.id = "0000000000000000000000000000000000000000000000000000000000000000".into();
    let err = cri
        .create_container(&bogus, &ContainerSpec::new("x", &["true"]))
        .await
        .expect_err("bogus pod");
    let msg = err.to_string();
    assert!(
        msg.contains("CreateContainer failed") && msg.contains("NotFound"),
        "{msg}"
    );
    eprintln!("[{version}] CRI error text: {msg}");

    // containerd restart: the running container survives, new containers run
    node.restart_containerd().await.expect("restart containerd");
    t.lap("containerd restart");
    let st = cri
        .container_status(&id)
        .await
        .expect("status after restart");
    assert_eq!(st.state, ContainerState::Running, "{st:?}");
    let id2 = cri
        .run_container(
            &pod,
            &ContainerSpec::new("after-restart", &["sh", "-c", "echo ok; exit 3"]).attempt(1),
        )
        .await
        .expect("run after restart");
    let st = cri
        .wait_exited(&id2, Duration::from_secs(20))
        .await
        .expect("exits");
    assert_eq!(st.exit_code, 3, "{st:?}");
    let log = std::fs::read_to_string(pod.container_log("after-restart", 1)).expect("log");
    assert!(log.contains("ok"), "container log: {log}");
    t.lap("container after restart");

    let dir = node.dir().to_path_buf();
    let bridge = node.bridge().to_string();
    let cgroup_root = node.cgroup_root().to_string();
    let pod_ids = vec![pod.id.clone(), shared.id.clone()];
    assert!(
        Path::new("/sys/class/net").join(&bridge).exists(),
        "bridge {bridge} should exist while pods run"
    );
    // leave the pod and a running container for shutdown to clean
    node.shutdown().await.expect("shutdown");
    t.lap("node shutdown");
    let left = leftovers(&dir, &bridge, &cgroup_root, &pod_ids);
    assert!(
        left.is_empty(),
        "left behind after shutdown:\n{}",
        left.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smoke_containerd_17() {
    smoke(ContainerdVersion::V17).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smoke_containerd_2() {
    smoke(ContainerdVersion::V2).await;
}

/// A node dropped without shutdown (a panicking test) still cleans up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_cleans_up() {
    require_root().expect("root");
    let node = Node::start(ContainerdVersion::V2)
        .await
        .expect("node start");
    let cri = node.cri().await.expect("cri");
    let pod = cri.run_pod(&PodSpec::new("dropped")).await.expect("pod");
    cri.run_container(&pod, &ContainerSpec::new("c", &["sleep", "300"]))
        .await
        .expect("container");
    let (dir, bridge, cg) = (
        node.dir().to_path_buf(),
        node.bridge().to_string(),
        node.cgroup_root().to_string(),
    );
    let t = Instant::now();
    drop(node);
    eprintln!("[drop] synchronous teardown: {:?}", t.elapsed());
    let left = leftovers(&dir, &bridge, &cg, std::slice::from_ref(&pod.id));
    assert!(
        left.is_empty(),
        "left behind after drop:\n{}",
        left.join("\n")
    );
}

/// PluginProcess plumbing, with a shell script standing in for the nri-chaos binary: the
/// arguments, the appended log, wait_log_contains, SIGTERM stop with exit status, and kill.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugin_process_lifecycle() {
    require_root().expect("root");
    let node = Node::start(ContainerdVersion::V17)
        .await
        .expect("node start");
    let fake = node.dir().join("fake-nri-chaos");
    std::fs::write(
        &fake,
        "#!/bin/sh\necho \"args: $*\"\necho \"config: $(cat \"$5\")\"\n\
         trap 'echo bye; exit 3' TERM\nwhile :; do sleep 0.05; done\n",
    )
    .expect("write fake");
    std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod");

    let p = node
        .start_plugin(&fake, "strict = true\n")
        .expect("start plugin");
    let line = p
        .wait_log_contains("args:", Duration::from_secs(5))
        .await
        .expect("args logged");
    let expected = format!(
        "args: run --nri-socket {} --config {} --state-dir {} --exec-dir {} --metrics-address 127.0.0.1:0",
        node.nri_socket().display(),
        node.dir().join("nri-chaos.toml").display(),
        node.dir().join("nri-chaos-state").display(),
        node.exec_dir().display()
    );
    assert_eq!(line, expected);
    let line = p
        .wait_log_contains("config:", Duration::from_secs(5))
        .await
        .expect("config logged");
    assert_eq!(line, "config: strict = true");
    let status = p.stop().await.expect("stop");
    assert_eq!(status.code(), Some(3), "{status:?}");
    assert!(p.log().contains("bye"));

    // A second process appends to the same log; its searches only see its own lines.
    let p2 = node.start_plugin(&fake, "x = 1\n").expect("start again");
    p2.wait_log_contains("config: x = 1", Duration::from_secs(5))
        .await
        .expect("second config");
    assert!(!p2.log().contains("strict"), "{}", p2.log());
    let err = p2
        .wait_log_contains("never printed", Duration::from_millis(200))
        .await
        .expect_err("times out");
    assert!(format!("{err:#}").contains("never printed"));
    let status = p2.kill().expect("kill");
    assert_eq!(status.code(), None, "killed by signal: {status:?}");
    let log = std::fs::read_to_string(node.plugin_log()).expect("log");
    assert!(
        log.contains("strict = true") && log.contains("x = 1"),
        "{log}"
    );
    node.shutdown().await.expect("shutdown");
}
