//! The few /proc lookups `delete` needs: which process listens on a unix socket path, whether
//! it has children, and ending it. Hand-written: a dozen lines of /proc parsing, where the
//! procfs crate would be a large dependency for two file formats.

use std::path::Path;
use std::time::{Duration, Instant};

use rustix::process::{kill_process, Pid, Signal};

/// Inode of the listening socket bound to `path` (/proc/net/unix: `Num RefCount Protocol
/// Flags Type St Inode Path`, flag 0x10000 = accepting connections).
fn listener_inode(path: &Path) -> Option<u64> {
    let wanted = path.to_str()?;
    let table = std::fs::read_to_string("/proc/net/unix").ok()?;
    table.lines().skip(1).find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        let listening = u32::from_str_radix(f.get(3)?, 16).ok()? & 0x10000 != 0;
        (listening && f.get(7) == Some(&wanted)).then(|| f.get(6)?.parse().ok())?
    })
}

fn pids() -> impl Iterator<Item = i32> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
}

/// The process holding the listening socket bound to `path`.
pub fn listener_pid(path: &Path) -> Option<i32> {
    let target = format!("socket:[{}]", listener_inode(path)?);
    pids().find(|pid| {
        std::fs::read_dir(format!("/proc/{pid}/fd"))
            .into_iter()
            .flatten()
            .flatten()
            .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|l| l.as_os_str() == target.as_str()))
    })
}

/// Parent pid from `/proc/<pid>/stat` (the field after the parenthesised command).
fn ppid(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// Whether any process has `pid` as its parent.
pub fn has_children(pid: i32) -> bool {
    pids().any(|p| ppid(p) == Some(pid))
}

/// SIGKILL `pid` and wait up to `timeout` for it to be gone.
pub fn kill_and_wait(pid: i32, timeout: Duration) {
    let Some(p) = Pid::from_raw(pid) else {
        return;
    };
    let _ = kill_process(p, Signal::KILL);
    let deadline = Instant::now() + timeout;
    while Path::new(&format!("/proc/{pid}")).exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_process_listening_on_a_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        let _l = std::os::unix::net::UnixListener::bind(&path).unwrap();
        assert_eq!(listener_pid(&path), Some(std::process::id() as i32));
        assert_eq!(listener_pid(&dir.path().join("none")), None);
    }

    #[test]
    fn sees_children() {
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap();
        assert!(has_children(std::process::id() as i32));
        kill_and_wait(child.id() as i32, Duration::from_secs(2));
        let _ = child.wait();
    }
}
