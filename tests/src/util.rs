//! Small host helpers: randomness, /proc scanning, mounts, cgroups, signals.

use std::ffi::CString;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

pub(crate) fn random_bytes<const N: usize>() -> [u8; N] {
    let mut buf = [0u8; N];
    let filled = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut buf));
    if filled.is_err() {
        // Fall back to time and pid: uniqueness, not secrecy, is what matters here.
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default()
            ^ u128::from(std::process::id()) << 64;
        for (i, b) in buf.iter_mut().enumerate() {
            *b = (seed >> ((i % 16) * 8)) as u8;
        }
    }
    buf
}

pub(crate) fn random_hex(bytes: usize) -> String {
    random_bytes::<16>()
        .iter()
        .take(bytes)
        .map(|b| format!("{b:02x}"))
        .collect()
}

pub(crate) fn random_uuid() -> String {
    let mut b = random_bytes::<16>();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

pub(crate) fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// `/sys/fs/cgroup/<controller><cgroup path>`.
pub(crate) fn cgroup_path(controller: &str, cgroup: &str) -> PathBuf {
    PathBuf::from(format!(
        "/sys/fs/cgroup/{controller}/{}",
        cgroup.trim_start_matches('/')
    ))
}

/// Mount points of every cgroup (v1 and v2) hierarchy on this host.
pub(crate) fn cgroup_mounts() -> Vec<PathBuf> {
    mountinfo()
        .into_iter()
        .filter(|m| m.fstype == "cgroup" || m.fstype == "cgroup2")
        .map(|m| m.mount_point)
        .collect()
}

#[derive(Debug, Clone)]
pub(crate) struct MountEntry {
    pub mount_point: PathBuf,
    pub fstype: String,
}

fn unescape_mount(s: &str) -> String {
    // mountinfo escapes space, tab, newline and backslash as \ooo.
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 3 < bytes.len() {
            if let Some(v) = std::str::from_utf8(&bytes[i + 1..i + 4])
                .ok()
                .and_then(|o| u8::from_str_radix(o, 8).ok())
            {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub(crate) fn mountinfo() -> Vec<MountEntry> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(' ').collect();
            let sep = fields.iter().position(|f| *f == "-")?;
            Some(MountEntry {
                mount_point: PathBuf::from(unescape_mount(fields.get(4)?)),
                fstype: fields.get(sep + 1)?.to_string(),
            })
        })
        .collect()
}

/// Mount points at or below `dir`, deepest first.
pub(crate) fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = mountinfo()
        .into_iter()
        .map(|m| m.mount_point)
        .filter(|p| p.starts_with(dir))
        .collect();
    v.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    v.dedup();
    v
}

/// Unmounts everything at or below `dir` (plain first, lazy detach if busy). Returns the
/// mount points that could not be unmounted.
pub(crate) fn unmount_all_under(dir: &Path) -> Vec<PathBuf> {
    for _round in 0..8 {
        let mounts = mounts_under(dir);
        if mounts.is_empty() {
            return Vec::new();
        }
        for m in mounts {
            let Ok(c) = CString::new(m.as_os_str().as_bytes()) else {
                continue;
            };
            // SAFETY: `c` is a valid NUL-terminated path that outlives both calls.
            let rc = unsafe { libc::umount2(c.as_ptr(), 0) };
            if rc != 0 {
                // SAFETY: as above.
                unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
            }
        }
    }
    mounts_under(dir)
}

/// Pids (other than ours) whose command line mentions `needle`.
pub(crate) fn pids_with_cmdline(needle: &str) -> Vec<(i32, String)> {
    let me = std::process::id() as i32;
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in rd.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(raw) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let cmd = String::from_utf8_lossy(&raw).replace('\0', " ");
        if cmd.contains(needle) && !is_zombie(pid) {
            out.push((pid, cmd.trim_end().to_string()));
        }
    }
    out
}

pub(crate) fn is_zombie(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next().map(|st| st == "Z"))
        })
        .unwrap_or(false)
}

pub(crate) fn alive(pid: i32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists() && !is_zombie(pid)
}

pub(crate) fn signal(pid: i32, sig: i32) {
    // SAFETY: kill(2) with a concrete positive pid; failure (ESRCH) is harmless here.
    unsafe {
        libc::kill(pid, sig);
    }
}

/// Every cgroup directory at or below `cgroup` (a path relative to the hierarchy root) in
/// every hierarchy, deepest first.
pub(crate) fn cgroup_dirs(cgroup: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for mount in cgroup_mounts() {
        let root = mount.join(cgroup.trim_start_matches('/'));
        if root.is_dir() {
            collect_dirs(&root, &mut out);
        }
    }
    out.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    out
}

fn collect_dirs(dir: &Path, out: &mut Vec<PathBuf>) {
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                collect_dirs(&e.path(), out);
            }
        }
    }
    out.push(dir.to_path_buf());
}

/// Pids in any cgroup at or below `cgroup`.
pub(crate) fn pids_in_cgroup(cgroup: &str) -> Vec<i32> {
    let mut pids: Vec<i32> = cgroup_dirs(cgroup)
        .iter()
        .filter_map(|d| std::fs::read_to_string(d.join("cgroup.procs")).ok())
        .flat_map(|s| {
            s.lines()
                .filter_map(|l| l.trim().parse::<i32>().ok())
                .collect::<Vec<_>>()
        })
        .collect();
    pids.sort_unstable();
    pids.dedup();
    pids
}

/// SIGKILLs every process in the cgroup subtree (thawing frozen v1/v2 cgroups first so the
/// kill can land) until none is left or `timeout` passes. Returns the survivors.
pub(crate) fn kill_cgroup(cgroup: &str, timeout: Duration) -> Vec<i32> {
    let deadline = Instant::now() + timeout;
    loop {
        for d in cgroup_dirs(cgroup) {
            let _ = std::fs::write(d.join("freezer.state"), "THAWED");
            let _ = std::fs::write(d.join("cgroup.freeze"), "0");
        }
        let pids = pids_in_cgroup(cgroup);
        let pids: Vec<i32> = pids.into_iter().filter(|p| !is_zombie(*p)).collect();
        if pids.is_empty() || Instant::now() >= deadline {
            return pids;
        }
        for p in &pids {
            signal(*p, libc::SIGKILL);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// rmdir every cgroup at or below `cgroup` in every hierarchy, retrying briefly (a cgroup
/// whose last task just died can be busy for a moment). Returns what remains.
pub(crate) fn remove_cgroup_tree(cgroup: &str, timeout: Duration) -> Vec<PathBuf> {
    let deadline = Instant::now() + timeout;
    loop {
        for d in cgroup_dirs(cgroup) {
            let _ = std::fs::remove_dir(&d);
        }
        let left = cgroup_dirs(cgroup);
        if left.is_empty() || Instant::now() >= deadline {
            return left;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits for pids to disappear, SIGKILLing them after `grace`. Returns the survivors.
pub(crate) fn end_pids(pids: &[i32], first: i32, grace: Duration) -> Vec<i32> {
    for p in pids {
        signal(*p, first);
    }
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline && pids.iter().any(|p| alive(*p)) {
        std::thread::sleep(Duration::from_millis(20));
    }
    let left: Vec<i32> = pids.iter().copied().filter(|p| alive(*p)).collect();
    for p in &left {
        signal(*p, libc::SIGKILL);
    }
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline && left.iter().any(|p| alive(*p)) {
        std::thread::sleep(Duration::from_millis(20));
    }
    left.into_iter().filter(|p| alive(*p)).collect()
}

/// Runs a command, returning stdout; the error carries stderr.
pub(crate) fn run(cmd: &mut std::process::Command) -> Result<String> {
    let out = cmd.output().with_context(|| format!("spawning {cmd:?}"))?;
    if !out.status.success() {
        anyhow::bail!(
            "{cmd:?} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Last `n` lines of a text file (for error messages).
pub(crate) fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// sha256 of `data` as lower-case hex (coreutils `sha256sum`).
pub(crate) fn sha256_hex(data: &[u8]) -> Result<String> {
    use std::io::Write;
    let mut child = std::process::Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .context("spawning sha256sum")?;
    child
        .stdin
        .take()
        .context("sha256sum stdin")?
        .write_all(data)?;
    let out = child.wait_with_output()?;
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .map(str::to_string)
        .context("sha256sum: no output")
}
