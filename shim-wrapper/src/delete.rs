//! `delete`: the runc shim's `delete` runs with containerd's arguments, environment and stdin;
//! its stdout (a protobuf `DeleteResponse`) and exit status are passed back unchanged.
//!
//! containerd runs `delete` for each task of a shim it saw die. When the wrapper died (say
//! SIGKILLed) its runc shim lives on, and containerd, which only knew the wrapper, will never
//! `Shutdown` it: so once the runc shim has no container process left it is ended here, and
//! the sockets nobody listens on are removed. Nothing of the pod is left behind.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::error::ShimError;
use crate::procfs;
use crate::runc;
use crate::start::{alive, socket_path, ADDRESS_FILE, SOCKET_SUFFIX};

/// How long the runc shim's last container processes get to exit after `runc delete`.
const IDLE_WAIT: Duration = Duration::from_secs(2);

/// Runs the runc shim's `delete`; returns its stdout and status.
pub fn run(args: &[OsString]) -> Result<(Vec<u8>, ExitStatus), ShimError> {
    let binary = runc::locate(args)?;
    let out = Command::new(&binary)
        .args(args)
        .stdin(Stdio::inherit())
        .stderr(Stdio::inherit())
        .output()
        .map_err(ShimError::io("running", &binary))?;
    let bundle = runc::flag_value(args, "bundle")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    orphan_cleanup(&bundle);
    Ok((out.stdout, out.status))
}

/// The wrapper socket named in `<bundle>/nri-chaos-shim.address` and the runc shim socket
/// next to it: nothing to do while the wrapper lives; else end an idle orphaned runc shim and
/// remove both sockets once nobody listens on them.
fn orphan_cleanup(bundle: &Path) {
    let Ok(address) = std::fs::read_to_string(bundle.join(ADDRESS_FILE)) else {
        return;
    };
    let Ok(ours) = socket_path(address.trim()) else {
        return;
    };
    let Some(upstream) = ours
        .to_str()
        .and_then(|s| s.strip_suffix(SOCKET_SUFFIX))
        .map(PathBuf::from)
    else {
        return;
    };
    if alive(&ours) {
        return;
    }
    let _ = std::fs::remove_file(&ours);
    if let Some(pid) = procfs::listener_pid(&upstream) {
        let deadline = Instant::now() + IDLE_WAIT;
        while procfs::has_children(pid) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        if procfs::has_children(pid) {
            // Other tasks of the pod still run: a later `delete` ends it.
            return;
        }
        procfs::kill_and_wait(pid, Duration::from_secs(2));
    }
    if upstream.exists() && !alive(&upstream) {
        let _ = std::fs::remove_file(&upstream);
    }
}
