//! Node teardown: ends every process of a node by PID, unmounts, removes cgroups, bridge and
//! host-side leftovers; and reaps node dirs of test processes that died without teardown.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use super::{node_cgroup, DIR_PREFIX};
use crate::util;

/// Sandbox ids containerd recorded under a node dir (for nodes whose CRI client is gone).
pub(super) fn sandbox_ids_on_disk(dir: &Path) -> Vec<String> {
    let mut ids = Vec::new();
    for sub in [
        "state/io.containerd.grpc.v1.cri/sandboxes",
        "root/io.containerd.grpc.v1.cri/sandboxes",
    ] {
        if let Ok(rd) = std::fs::read_dir(dir.join(sub)) {
            ids.extend(
                rd.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.len() == 64 && n.bytes().all(|b| b.is_ascii_hexdigit())),
            );
        }
    }
    ids
}

pub(super) fn print_log_tails(dir: &Path, what: &str) {
    eprintln!(
        "[nri-chaos-tests] node {what} containerd log tail:\n{}",
        util::tail(&dir.join("containerd.log"), 40)
    );
    let plugin_log = dir.join("nri-chaos.log");
    if plugin_log.exists() {
        eprintln!(
            "[nri-chaos-tests] nri-chaos log tail:\n{}",
            util::tail(&plugin_log, 40)
        );
    }
}

/// Ends every process of a node (by PID), unmounts below its dir, removes its cgroups, bridge,
/// CNI result entries and shim sockets, then the dir. Returns what could not be cleaned.
/// Suffix of the shim wrapper's socket next to the runc shim's (shim-wrapper/src/start.rs).
const WRAPPER_SOCKET_SUFFIX: &str = ".nri-chaos";

/// The runc shim's socket of a pod (`/run/containerd/s/sha256(<grpc address>/k8s.io/<pod>)`)
/// and the shim wrapper's next to it (`<runc socket>.nri-chaos`).
pub(super) fn shim_sockets(cri_sock: &Path, pod_id: &str) -> Vec<PathBuf> {
    let key = format!("{}/k8s.io/{pod_id}", cri_sock.display());
    match util::sha256_hex(key.as_bytes()) {
        Ok(hex) => [hex.clone(), format!("{hex}{WRAPPER_SOCKET_SUFFIX}")]
            .into_iter()
            .map(|name| Path::new("/run/containerd/s").join(name))
            .collect(),
        Err(_) => Vec::new(),
    }
}

pub(super) fn clean_node(dir: &Path, id: &str, pod_ids: &[String]) -> Vec<String> {
    let mut left = Vec::new();
    let dir_str = dir.display().to_string();
    let cgroup_root = node_cgroup(id);
    let bridge = format!("ncb{id}");
    let net_name = format!("nri-chaos-{id}");
    // 1. Processes started for this node (containerd, shims, plugins, ctr): their command
    //    line names the node dir. Ended by PID.
    //    Repeated: a dying containerd or shim may spawn cleanup processes (`shim delete`,
    //    `runc delete`) after the first scan.
    for round in 0..5 {
        let procs = util::pids_with_cmdline(&dir_str);
        if procs.is_empty() {
            break;
        }
        let pids: Vec<i32> = procs.iter().map(|(p, _)| *p).collect();
        let first = if round == 0 {
            libc::SIGTERM
        } else {
            libc::SIGKILL
        };
        let survivors = util::end_pids(&pids, first, Duration::from_secs(3));
        for (pid, cmd) in procs.iter().filter(|(p, _)| survivors.contains(p)) {
            left.push(format!("process {pid} survived SIGKILL: {cmd}"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    // 2. Container processes in the node's cgroups.
    for pid in util::kill_cgroup(&cgroup_root, Duration::from_secs(5)) {
        left.push(format!(
            "process {pid} in cgroup {cgroup_root} survived SIGKILL"
        ));
    }
    // 3. Mounts (rootfs overlays, shm, netns bind mounts) under the node dir.
    for m in util::unmount_all_under(dir) {
        left.push(format!("mount {} could not be unmounted", m.display()));
    }
    // 4. Cgroups in every hierarchy (v1 controllers, name=systemd, unified).
    for d in util::remove_cgroup_tree(&cgroup_root, Duration::from_secs(5)) {
        left.push(format!("cgroup {} could not be removed", d.display()));
    }
    // 5. The bridge (veths went with their netns).
    let bridge_path = Path::new("/sys/class/net").join(&bridge);
    if bridge_path.exists() {
        let _ = Command::new("ip")
            .args(["link", "del", &bridge])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if bridge_path.exists() {
            left.push(format!("bridge {bridge} could not be deleted"));
        }
    }
    // 6. libcni keeps results in /var/lib/cni/results (not configurable in containerd);
    //    entries of this node's pods are named `<network>-<sandbox id>-<ifname>`. Shim
    //    sockets live in /run/containerd/s/<sha256(address/namespace/sandbox id)>. Both are
    //    normally removed by CNI DEL / the shim; this catches what a kill left.
    if let Ok(rd) = std::fs::read_dir("/var/lib/cni/results") {
        let prefix = format!("{net_name}-");
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with(&prefix)
                || pod_ids.iter().any(|id| name.contains(&format!("-{id}-")))
            {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    let cri_sock = dir.join("containerd.sock");
    for pod in pod_ids {
        for sock in shim_sockets(&cri_sock, pod) {
            if sock.exists() {
                let _ = std::fs::remove_file(&sock);
            }
        }
    }
    // 7. Final check, then the dir (only when nothing is mounted below it).
    for (pid, cmd) in util::pids_with_cmdline(&dir_str) {
        left.push(format!("process {pid} still running: {cmd}"));
    }
    let mounts = util::mounts_under(dir);
    for m in &mounts {
        left.push(format!("mount still present: {}", m.display()));
    }
    if !left.is_empty() {
        print_log_tails(dir, id);
    }
    let keep = std::env::var_os("NRI_CHAOS_E2E_KEEP").is_some_and(|v| !v.is_empty());
    if keep {
        // Nothing live is left: stale-node reaping skips it.
        let _ = std::fs::write(dir.join("torn-down"), "");
        eprintln!("[nri-chaos-tests] keeping node dir {}", dir.display());
    } else if mounts.is_empty() {
        if let Err(e) = std::fs::remove_dir_all(dir) {
            left.push(format!("removing {}: {e}", dir.display()));
        }
    } else {
        left.push(format!(
            "node dir {} kept because mounts remain below it",
            dir.display()
        ));
    }
    left
}

/// `<pid> <start time>` of a live process (recorded in each node dir as its owner); None
/// when the process is gone or a zombie (a killed test whose parent has not reaped it yet).
pub(super) fn owner_stamp(pid: u32) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    let mut fields = rest.split_whitespace();
    if matches!(fields.next(), Some("Z") | Some("X") | None) {
        return None;
    }
    // Field 22 (starttime) is the 19th after the state field.
    let start = fields.nth(18)?;
    Some(format!("{pid} {start}"))
}

/// Tears down node dirs whose owning test process is gone (killed by a timeout or SIGKILL, so
/// no Drop ran). Dirs of live processes, and kept dirs already torn down, are left alone.
pub(super) fn reap_stale_nodes(base: &Path) {
    let Ok(rd) = std::fs::read_dir(base) else {
        return;
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix(DIR_PREFIX) else {
            continue;
        };
        let dir = e.path();
        if dir.join("torn-down").exists() {
            continue;
        }
        let Ok(owner) = std::fs::read_to_string(dir.join("owner")) else {
            continue;
        };
        let owner = owner.trim();
        let alive = owner
            .split_whitespace()
            .next()
            .and_then(|p| p.parse::<u32>().ok())
            .and_then(owner_stamp)
            .is_some_and(|now| now == owner);
        if alive {
            continue;
        }
        let Some((_, id)) = rest.rsplit_once('-') else {
            continue;
        };
        eprintln!(
            "[nri-chaos-tests] reaping stale node dir {} (owner {owner} is gone)",
            dir.display()
        );
        let pod_ids = sandbox_ids_on_disk(&dir);
        let left = clean_node(&dir, id, &pod_ids);
        if !left.is_empty() {
            eprintln!(
                "[nri-chaos-tests] stale node {id} left:\n  {}",
                left.join("\n  ")
            );
        }
    }
}
