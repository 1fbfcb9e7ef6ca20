//! `start`: run the runc shim's `start` with containerd's arguments, environment and stdin,
//! put the wrapper's server in front of the address it answered, and answer containerd in
//! the runc shim's form with the wrapper's address.

use std::ffi::OsString;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::answer::StartAnswer;
use crate::error::ShimError;
use crate::group::ANSWER_FILE;
use crate::runc;
use crate::serve::{ServeArgs, SERVE_FLAG};

/// Suffix of the wrapper's socket next to the runc shim's (never the runc shim's own name).
pub const SOCKET_SUFFIX: &str = ".nri-chaos";
/// Longest path a `sockaddr_un` holds (108 bytes with the NUL).
const SUN_PATH_MAX: usize = 107;
/// The wrapper's address, in each bundle it started for.
pub const ADDRESS_FILE: &str = "nri-chaos-shim.address";
const READY_TIMEOUT: Duration = Duration::from_secs(3);
/// What an empty pipe always takes without blocking (one page, its smallest capacity).
const PIPE_MIN_CAPACITY: usize = 4096;

/// What `start` hands back to containerd.
#[derive(Debug)]
pub enum Outcome {
    /// Print these bytes, exit 0.
    Answer(Vec<u8>),
    /// The runc shim failed: print its stdout, exit with its status.
    Failed { stdout: Vec<u8>, status: ExitStatus },
}

/// The socket path of a `unix://` (or bare path) address.
pub fn socket_path(address: &str) -> Result<PathBuf, ShimError> {
    let path = address.strip_prefix("unix://").unwrap_or(address);
    if !path.starts_with('/') {
        return Err(ShimError::NotUnix {
            address: address.to_string(),
        });
    }
    Ok(PathBuf::from(path))
}

/// The wrapper's socket for a runc shim socket.
pub fn wrapper_socket(upstream: &Path) -> Result<PathBuf, ShimError> {
    let mut s = upstream.as_os_str().to_os_string();
    s.push(SOCKET_SUFFIX);
    let path = PathBuf::from(s);
    let len = path.as_os_str().len();
    if len > SUN_PATH_MAX {
        return Err(ShimError::SocketPathTooLong {
            path,
            len,
            max: SUN_PATH_MAX,
        });
    }
    Ok(path)
}

pub fn alive(socket: &Path) -> bool {
    UnixStream::connect(socket).is_ok()
}

pub fn run(args: &[OsString]) -> Result<Outcome, ShimError> {
    let mut input = Vec::new();
    std::io::stdin()
        .read_to_end(&mut input)
        .map_err(ShimError::io("reading stdin", "-"))?;
    let id = runc::flag_value(args, "id").unwrap_or_default();
    if let Some(answer) = crate::group::answer(Path::new("."), &id) {
        return Ok(Outcome::Answer(answer));
    }
    let binary = runc::locate(args)?;
    let mut child = Command::new(&binary)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(ShimError::io("spawning", &binary))?;
    if let Some(mut stdin) = child.stdin.take() {
        if input.len() <= PIPE_MIN_CAPACITY {
            // An empty pipe takes it whole: written (and closed) without blocking.
            let _ = stdin.write_all(&input);
        } else {
            // A writer thread: the child may answer before reading all of stdin.
            std::thread::spawn(move || {
                let _ = stdin.write_all(&input);
            });
        }
    }
    let out = child
        .wait_with_output()
        .map_err(ShimError::io("waiting for", &binary))?;
    if !out.status.success() {
        return Ok(Outcome::Failed {
            stdout: out.stdout,
            status: out.status,
        });
    }
    let answer = StartAnswer::parse(&out.stdout)?;
    let upstream = socket_path(answer.address())?;
    let ours = wrapper_socket(&upstream)?;
    // One wrapper per runc shim: a pod's later containers get the running wrapper. (The
    // server replaces a stale socket file itself and leaves a live one alone.)
    if !alive(&ours) {
        spawn_server(args, Path::new("."), &ours, &upstream)?;
    }
    let address = format!("unix://{}", ours.display());
    // For `delete` after a dead wrapper (containerd 2.x keeps no `address` file).
    std::fs::write(ADDRESS_FILE, &address).map_err(ShimError::io("writing", ADDRESS_FILE))?;
    // containerd 1.7 reconnects through `<bundle>/address` after its own restart.
    let cwd_address = Path::new("address");
    if std::fs::read_to_string(cwd_address).is_ok_and(|a| a.trim() == answer.address()) {
        std::fs::write(cwd_address, &address).map_err(ShimError::io("writing", cwd_address))?;
    }
    let ours_answer = answer.encode_with_address(&address)?;
    // For this group's later containers (`group`).
    std::fs::write(ANSWER_FILE, &ours_answer).map_err(ShimError::io("writing", ANSWER_FILE))?;
    Ok(Outcome::Answer(ours_answer))
}

/// The server's stderr: containerd's shim log FIFO `<bundle>/log` (containerd reads it into
/// its own log, as for the runc shim), else nothing. It stays non-blocking: a line that does
/// not fit while containerd is away is lost rather than stalling the server (`log`).
fn shim_log(bundle: &Path) -> Stdio {
    use rustix::fs::{Mode, OFlags};
    let flags = OFlags::WRONLY | OFlags::NONBLOCK | OFlags::CLOEXEC | OFlags::NOCTTY;
    match rustix::fs::open(bundle.join("log"), flags, Mode::empty()) {
        Ok(fd) => Stdio::from(fd),
        Err(_) => Stdio::null(),
    }
}

/// Starts the long-lived server detached (own process group, no stdio, cwd `/`) and waits
/// until it listens. The runc shim's pid is read from `<bundle>/shim.pid`.
pub fn spawn_server(
    args: &[OsString],
    bundle: &Path,
    ours: &Path,
    upstream: &Path,
) -> Result<(), ShimError> {
    let exe = std::env::current_exe().map_err(ShimError::io("resolving", "/proc/self/exe"))?;
    let pid_file = bundle.join("shim.pid");
    let upstream_pid = std::fs::read_to_string(pid_file)
        .ok()
        .and_then(|s| s.trim().parse::<i32>().ok());
    let serve = ServeArgs {
        id: runc::flag_value(args, "id").unwrap_or_default(),
        namespace: runc::flag_value(args, "namespace").unwrap_or_default(),
        address: runc::flag_value(args, "address").unwrap_or_default(),
        listen: ours.to_path_buf(),
        upstream: upstream.to_path_buf(),
        upstream_pid,
    };
    let (ready, ready_w) = std::io::pipe().map_err(ShimError::io("creating a pipe for", &exe))?;
    // The command (holding the write end) is dropped once spawned: then only the server
    // holds it, and its exit reads as end of file.
    Command::new(&exe)
        .arg(SERVE_FLAG)
        .args(serve.to_args())
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(ready_w)
        .stderr(shim_log(bundle))
        .process_group(0)
        .spawn()
        .map_err(ShimError::io("spawning", &exe))?;
    wait_ready(ready);
    // Ready, or gone because another server of this runc shim listens, or too slow.
    if alive(ours) {
        return Ok(());
    }
    Err(ShimError::ServerNotReady {
        path: ours.to_path_buf(),
        ms: READY_TIMEOUT.as_millis() as u64,
    })
}

/// Waits up to [`READY_TIMEOUT`] for the server's one byte on `ready` (it listens) or the end
/// of file (it exited): no polling of the socket.
fn wait_ready(mut ready: std::io::PipeReader) {
    use rustix::event::{poll, PollFd, PollFlags, Timespec};
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        let timeout = Timespec::try_from(left).ok();
        let mut fds = [PollFd::new(&ready, PollFlags::IN)];
        match poll(&mut fds, timeout.as_ref()) {
            Ok(0) => return,
            Ok(_) => {
                let mut byte = [0u8; 1];
                let _ = ready.read(&mut byte);
                return;
            }
            Err(rustix::io::Errno::INTR) => continue,
            Err(_) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrapper_socket_never_takes_the_runc_shim_name() {
        let up = socket_path("unix:///run/containerd/s/abc").unwrap();
        assert_eq!(up, PathBuf::from("/run/containerd/s/abc"));
        assert_eq!(
            wrapper_socket(&up).unwrap(),
            PathBuf::from("/run/containerd/s/abc.nri-chaos")
        );
        assert!(socket_path("vsock://3:1024").is_err());
        let long = PathBuf::from(format!("/{}", "a".repeat(100)));
        assert!(wrapper_socket(&long).is_err());
    }

    #[test]
    fn readiness_is_the_byte_or_the_end_of_file_not_the_timeout() {
        let (ready, mut w) = std::io::pipe().unwrap();
        w.write_all(b"\n").unwrap();
        let t = Instant::now();
        wait_ready(ready);
        assert!(t.elapsed() < READY_TIMEOUT / 10, "{:?}", t.elapsed());
        let (ready, w) = std::io::pipe().unwrap();
        let exits = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            drop(w);
        });
        let t = Instant::now();
        wait_ready(ready);
        assert!(t.elapsed() < READY_TIMEOUT / 10, "{:?}", t.elapsed());
        exits.join().unwrap();
    }
}
