//! What the kernel says, read directly (never through nri-chaos's state): freezer state, the
//! processes of a cgroup, oom_score_adj, the root qdisc of a network namespace, the OCI hook
//! process of a container, and stressor processes.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::util;

/// netem's root qdisc handle as `tc` prints it (`injector`'s `NRI_CHAOS_HANDLE`, 0x4e43).
const OUR_QDISC: &str = "4e43:";

/// cgroup v2 only (the VM node), or the v1 hybrid of the host.
pub fn unified() -> bool {
    Path::new("/sys/fs/cgroup/cgroup.controllers").exists()
}

/// The directory of a process's cgroup that holds its freezer (v1 `freezer`, v2 unified).
pub fn freezer_dir(pid: u32) -> Option<PathBuf> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    let v2 = unified();
    text.lines().find_map(|line| {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        let path = path.trim_start_matches('/');
        if v2 && controllers.is_empty() {
            Some(Path::new("/sys/fs/cgroup").join(path))
        } else if !v2 && controllers.split(',').any(|c| c == "freezer") {
            Some(Path::new("/sys/fs/cgroup/freezer").join(path))
        } else {
            None
        }
    })
}

/// Whether a freezer cgroup directory is frozen (or freezing): v1 `freezer.state`, v2
/// `cgroup.freeze` (what was asked) or `cgroup.events` `frozen 1` (what the kernel did).
pub fn frozen(dir: &Path) -> bool {
    if let Ok(state) = std::fs::read_to_string(dir.join("freezer.state")) {
        return state.trim() != "THAWED";
    }
    let asked = std::fs::read_to_string(dir.join("cgroup.freeze"))
        .map(|s| s.trim() == "1")
        .unwrap_or(false);
    let events = std::fs::read_to_string(dir.join("cgroup.events"))
        .map(|s| s.lines().any(|l| l.trim() == "frozen 1"))
        .unwrap_or(false);
    asked || events
}

/// Pids in the cgroup directory `dir`.
pub fn procs(dir: &Path) -> Vec<u32> {
    std::fs::read_to_string(dir.join("cgroup.procs"))
        .map(|s| s.lines().filter_map(|l| l.trim().parse().ok()).collect())
        .unwrap_or_default()
}

pub fn oom_score_adj(pid: u32) -> Option<i32> {
    std::fs::read_to_string(format!("/proc/{pid}/oom_score_adj"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// `process.oomScoreAdj` of an OCI `config.json` (what runc set at the start).
pub fn spec_oom_score_adj(config: &Path) -> Option<i32> {
    let text = std::fs::read_to_string(config).ok()?;
    let rest = &text[text.find("\"oomScoreAdj\"")? + "\"oomScoreAdj\"".len()..];
    let rest = rest.trim_start().strip_prefix(':')?.trim_start();
    let end = rest
        .find(|c: char| c != '-' && !c.is_ascii_digit())
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

/// `tc qdisc show` in the network namespace of `pid`.
pub fn qdiscs(pid: u32) -> Result<String, String> {
    let netns = format!("--net=/proc/{pid}/ns/net");
    let out = Command::new("nsenter")
        .args([netns.as_str(), "tc", "qdisc", "show"])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("running nsenter tc: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "nsenter tc for pid {pid}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The lines of a `tc qdisc show` output that are nri-chaos's netem.
pub fn our_qdiscs(tc: &str) -> Vec<String> {
    tc.lines()
        .filter(|l| l.contains(OUR_QDISC))
        .map(|l| l.trim().to_string())
        .collect()
}

/// The parent pid of `pid` (field 4 of `/proc/<pid>/stat`).
fn ppid(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn cmdline(pid: i32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|raw| String::from_utf8_lossy(&raw).replace('\0', " "))
        .unwrap_or_default()
}

/// The `nri-chaos-hook` process runc runs for container `container_id` (its parent, runc,
/// names the container on its command line).
pub fn hook_of(container_id: &str) -> Option<i32> {
    util::pids_with_cmdline("nri-chaos-hook")
        .into_iter()
        .map(|(pid, _)| pid)
        .find(|pid| ppid(*pid).is_some_and(|parent| cmdline(parent).contains(container_id)))
}

/// Whether `pid` is a stressor (`nri-chaos stress-worker`).
pub fn is_stressor(pid: u32) -> bool {
    cmdline(pid as i32).contains("stress-worker")
}

/// `nri-chaos stress-worker` processes inside the node's cgroups (`cgroup_root`).
pub fn stressors(cgroup_root: &str) -> Vec<(i32, String)> {
    util::pids_with_cmdline("stress-worker")
        .into_iter()
        .filter(|(pid, _)| {
            std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
                .is_ok_and(|c| c.contains(cgroup_root))
        })
        .collect()
}

/// A process of the pod sandbox (its pause), from the sandbox's cgroup
/// `<cgroup parent>/<sandbox id>`: its network namespace is the pod's.
pub fn sandbox_pid(pod: &crate::Pod) -> Option<u32> {
    util::pids_in_cgroup(&format!("{}/{}", pod.cgroup_parent, pod.id))
        .first()
        .map(|pid| *pid as u32)
}

/// Every frozen (or freezing) cgroup at or below the node's `cgroup_root`.
pub fn frozen_cgroups(cgroup_root: &str) -> Vec<PathBuf> {
    util::cgroup_dirs(cgroup_root)
        .into_iter()
        .filter(|d| frozen(d))
        .collect()
}

/// Every process at or below the node's `cgroup_root`.
pub fn node_pids(cgroup_root: &str) -> Vec<i32> {
    util::pids_in_cgroup(cgroup_root)
}

pub fn signal_kill(pid: i32) {
    util::signal(pid, libc::SIGKILL);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_qdisc_is_found_by_its_handle() {
        let tc = "qdisc noqueue 0: dev lo root refcnt 2\n\
                  qdisc netem 4e43: dev eth0 root refcnt 2 limit 1000 delay 100ms\n";
        assert_eq!(our_qdiscs(tc).len(), 1);
        assert!(our_qdiscs("qdisc netem 8001: dev eth0 root").is_empty());
    }

    #[test]
    fn the_spec_oom_score_adj_is_read() {
        let dir = std::env::temp_dir().join(format!("crash-spec-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let config = dir.join("config.json");
        std::fs::write(
            &config,
            r#"{"process":{"args":["sleep"],"oomScoreAdj": -998,"cwd":"/"}}"#,
        )
        .unwrap();
        assert_eq!(spec_oom_score_adj(&config), Some(-998));
        std::fs::write(&config, r#"{"process":{"oomScoreAdj":0}}"#).unwrap();
        assert_eq!(spec_oom_score_adj(&config), Some(0));
        std::fs::write(&config, r#"{"process":{}}"#).unwrap();
        assert_eq!(spec_oom_score_adj(&config), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn freezer_files_are_read_for_both_versions() {
        let dir = std::env::temp_dir().join(format!("crash-probe-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("cgroup.freeze"), "0\n").unwrap();
        std::fs::write(dir.join("cgroup.events"), "populated 1\nfrozen 0\n").unwrap();
        assert!(!frozen(&dir));
        std::fs::write(dir.join("cgroup.events"), "populated 1\nfrozen 1\n").unwrap();
        assert!(frozen(&dir));
        std::fs::write(dir.join("freezer.state"), "FREEZING\n").unwrap();
        assert!(frozen(&dir));
        std::fs::write(dir.join("freezer.state"), "THAWED\n").unwrap();
        assert!(!frozen(&dir));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
