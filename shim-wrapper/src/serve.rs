//! The long-lived server: accepts containerd's ttrpc connections on the wrapper's socket and
//! forwards each to the runc shim frame by frame, so every task API method of both service
//! names (`containerd.task.v2.Task`, `v3`) passes with its metadata and deadline unchanged.
//! Requests are read whole (ttrpc frames) so that the few calls the `exec` fault needs are
//! looked into (`intercept`); the others, and all answers of the runc shim, pass as they came.
//! It exits when the runc shim exits (after `Shutdown`, or killed), removing its socket.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use std::sync::Arc;

use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::task::JoinSet;

use crate::conn::{Conn, Listener, Reader};
use crate::error::ShimError;
use crate::frame::Frame;
use crate::intercept::{route, Route, Shared};
use crate::timing::Timing;

/// First argument of the serve mode (containerd never passes it).
pub const SERVE_FLAG: &str = "--nri-chaos-serve";
/// How often the runc shim's socket is probed when its pid is unknown.
const PROBE_EVERY: Duration = Duration::from_millis(500);

/// What `start` tells the server; id, namespace and containerd's address are there so `ps`
/// names the pod and the containerd it belongs to, as the runc shim's command line does.
#[derive(Debug, Clone, PartialEq)]
pub struct ServeArgs {
    pub id: String,
    pub address: String,
    pub namespace: String,
    pub listen: PathBuf,
    pub upstream: PathBuf,
    pub upstream_pid: Option<i32>,
}

impl ServeArgs {
    pub fn to_args(&self) -> Vec<OsString> {
        let mut v: Vec<OsString> = vec![
            "-id".into(),
            self.id.clone().into(),
            "-namespace".into(),
            self.namespace.clone().into(),
            "-address".into(),
            self.address.clone().into(),
            "-listen".into(),
            self.listen.clone().into(),
            "-upstream".into(),
            self.upstream.clone().into(),
        ];
        if let Some(pid) = self.upstream_pid {
            v.push("-upstream-pid".into());
            v.push(pid.to_string().into());
        }
        v
    }

    pub fn parse(args: &[OsString]) -> Result<Self, ShimError> {
        let get = |flag: &'static str| {
            crate::runc::flag_value(args, flag).ok_or(ShimError::ServeArg { flag })
        };
        let upstream_pid = match crate::runc::flag_value(args, "upstream-pid") {
            None => None,
            Some(p) => Some(p.parse().map_err(|_| ShimError::ServeArg {
                flag: "upstream-pid",
            })?),
        };
        Ok(Self {
            id: get("id")?,
            namespace: get("namespace")?,
            address: get("address")?,
            listen: get("listen")?.into(),
            upstream: get("upstream")?.into(),
            upstream_pid,
        })
    }
}

pub fn run(args: &ServeArgs) -> Result<(), ShimError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(ShimError::io("building the runtime for", &args.listen))?;
    let _guard = rt.enter();
    let Some(listener) = bind(&args.listen)? else {
        // Another server of this runc shim is already listening.
        return Ok(());
    };
    ready();
    rt.block_on(serve(args, listener));
    let _ = std::fs::remove_file(&args.listen);
    // containerd 1.7's runc shim removes, on exit, the socket named in `<bundle>/address`,
    // which `start` pointed at the wrapper (for containerd's reconnects); 2.x's removes none:
    // so the wrapper removes the runc shim's socket once nothing listens on it any more.
    if let Err(e) = std::os::unix::net::UnixStream::connect(&args.upstream) {
        if e.kind() == std::io::ErrorKind::ConnectionRefused {
            let _ = std::fs::remove_file(&args.upstream);
        }
    }
    Ok(())
}

/// Tells `start`, which waits on the read end of the pipe it gave as stdout, that the socket
/// listens (one byte; `start` has gone when the server writes anything else, and it never
/// does). Stdout that is not a pipe (a server started by hand) gets nothing.
fn ready() {
    let stdout = std::io::stdout();
    let is_pipe = rustix::fs::fstat(&stdout).is_ok_and(|st| {
        rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::Fifo
    });
    if is_pipe {
        let _ = rustix::io::write(&stdout, b"\n");
    }
}

/// Binds `path`; `None` when a live server already listens there (a stale file is replaced).
fn bind(path: &Path) -> Result<Option<Listener>, ShimError> {
    use std::os::unix::net::UnixListener;
    let listener = match UnixListener::bind(path) {
        Ok(l) => l,
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Ok(None);
            }
            let _ = std::fs::remove_file(path);
            UnixListener::bind(path).map_err(ShimError::io("listening on", path))?
        }
        Err(e) => return Err(ShimError::io("listening on", path)(e)),
    };
    Listener::new(listener)
        .map(Some)
        .map_err(ShimError::io("listening on", path))
}

async fn serve(args: &ServeArgs, listener: Listener) {
    let gone = upstream_gone(&args.upstream, args.upstream_pid);
    tokio::pin!(gone);
    let shared = Arc::new(Shared::default());
    let _watcher = tokio::spawn(crate::inject::watch(shared.clone()));
    loop {
        tokio::select! {
            _ = &mut gone => return,
            conn = listener.accept() => {
                // A failed accept (EMFILE, say) drops that one connection only.
                if let Ok(conn) = conn {
                    let upstream = args.upstream.clone();
                    let shared = shared.clone();
                    tokio::spawn(async move { forward(conn, &upstream, shared).await });
                }
            }
        }
    }
}

/// Read buffer per direction: a frame of the task API (an Exec with its process spec is a
/// few KiB) usually arrives in one read; larger payloads are read past the buffer.
const READ_BUFFER: usize = 4 << 10;

/// containerd's side of a connection, written by the runc shim's answers and by the answers
/// made here, a whole frame at a time (the lock keeps frames whole).
type ClientWriter = Arc<tokio::sync::Mutex<Arc<Conn>>>;

/// Writes `frame` to containerd; false once that side is closed.
async fn answer_client(client: &ClientWriter, frame: &Frame) -> bool {
    client.lock().await.write_all(&frame.0).await.is_ok()
}

/// Forwards one connection until containerd closes it: requests go through [`route`] and are
/// written to the runc shim by the reader itself; the runc shim's frames are written back to
/// containerd by the task reading them, as they came (no queue or task in between: one hop
/// each way). Answers made here and held requests run as tasks of the connection, ended with it.
async fn forward(conn: Arc<Conn>, upstream: &Path, shared: Arc<Shared>) {
    let mut from_client = BufReader::with_capacity(READ_BUFFER, Reader(conn.clone()));
    // The runc shim is connected while the first frame arrives, so the connect is not on
    // that call's path (a connection that only probes, `start` asking whether this server is
    // alive, costs the runc shim one accepted connection that closes at once).
    let (first, up) = tokio::join!(
        Frame::read(&mut from_client),
        crate::conn::connect(upstream)
    );
    let Ok(Some(first)) = first else {
        return;
    };
    // Only when the runc shim is gone does connect fail; dropping `conn` tells containerd.
    let Ok(up_w) = up else {
        return;
    };
    let mut from_up = BufReader::with_capacity(READ_BUFFER, Reader(up_w.clone()));
    let client: ClientWriter = Arc::new(tokio::sync::Mutex::new(conn));
    let replies = client.clone();
    let timing = Timing::new();
    let answers = timing.clone();
    let up_reader = tokio::spawn(async move {
        while let Ok(Some(frame)) = Frame::read(&mut from_up).await {
            let got = Instant::now();
            if !answer_client(&replies, &frame).await {
                break;
            }
            answers.answered(&frame, got);
        }
    });
    let mut calls = JoinSet::new();
    let mut first = Some((first, Instant::now()));
    loop {
        let (frame, read) = match first.take() {
            Some(first) => first,
            None => match Frame::read(&mut from_client).await {
                Ok(Some(frame)) => (frame, Instant::now()),
                _ => break,
            },
        };
        let mut routed = if frame.is_request() {
            route(&shared, &frame)
        } else {
            Route::Forward
        };
        if let Route::AfterPlan(plan) = routed {
            let wait = Instant::now();
            crate::planning::recorded(plan).await;
            crate::timing::plan_waited(wait);
            routed = route(&shared, &frame);
        }
        match routed {
            // AfterPlan a second time: that plan was recorded or abandoned meanwhile, and a
            // second wait would be for one that never comes.
            Route::Forward | Route::AfterPlan(_) => {
                if up_w.write_all(&frame.0).await.is_err() {
                    break;
                }
                timing.sent(&frame, read);
            }
            Route::ForwardCreate(planned) => {
                if up_w.write_all(&frame.0).await.is_err() {
                    break;
                }
                timing.sent(&frame, read);
                planned.read();
            }
            Route::ForwardAfter(hold) => {
                let client = client.clone();
                let upstream = upstream.to_path_buf();
                calls.spawn(async move {
                    tokio::time::sleep(hold).await;
                    if let Some(answer) = call_alone(&upstream, &frame).await {
                        answer_client(&client, &answer).await;
                    }
                });
            }
            Route::Answer(response) => {
                let client = client.clone();
                let stream_id = frame.header().stream_id;
                calls.spawn(async move {
                    let payload = response.await;
                    answer_client(&client, &Frame::response(stream_id, &payload)).await;
                });
            }
        }
        // Reap finished calls so a long connection does not collect them.
        while calls.try_join_next().is_some() {}
    }
    // containerd closed: the runc shim sees the end as well, then its answers drain.
    calls.abort_all();
    up_w.shutdown_write();
    drop(up_w);
    let _ = up_reader.await;
    client.lock().await.shutdown_write();
}

/// Sends one held request to the runc shim on a connection of its own and returns its answer.
/// Not on the shared connection: its ttrpc server refuses a stream id lower than one it has
/// seen, and later calls have passed the held one by then.
async fn call_alone(upstream: &Path, frame: &Frame) -> Option<Frame> {
    let mut up = UnixStream::connect(upstream).await.ok()?;
    up.write_all(&frame.0).await.ok()?;
    let stream_id = frame.header().stream_id;
    loop {
        let answer = Frame::read(&mut up).await.ok()??;
        if answer.header().stream_id == stream_id {
            return Some(answer);
        }
    }
}

/// Resolves when the runc shim has exited: its pidfd turns readable, or (pid unknown) its
/// socket stops accepting.
async fn upstream_gone(socket: &Path, pid: Option<i32>) {
    let pidfd = pid
        .and_then(rustix::process::Pid::from_raw)
        .and_then(|p| rustix::process::pidfd_open(p, rustix::process::PidfdFlags::empty()).ok())
        .and_then(|fd| {
            // SAFETY: `fd` is an OwnedFd moved into the AsyncFd, which keeps it open and
            // unchanged for its whole life.
            unsafe { AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE) }.ok()
        });
    match pidfd {
        Some(fd) => {
            let _ = fd.readable().await;
        }
        None => loop {
            tokio::time::sleep(PROBE_EVERY).await;
            if let Err(e) = UnixStream::connect(socket).await {
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
                ) {
                    return;
                }
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serve_args_round_trip() {
        let a = ServeArgs {
            id: "sandbox1".into(),
            namespace: "k8s.io".into(),
            address: "/run/containerd/containerd.sock".into(),
            listen: "/run/containerd/s/x.nri-chaos".into(),
            upstream: "/run/containerd/s/x".into(),
            upstream_pid: Some(42),
        };
        assert_eq!(ServeArgs::parse(&a.to_args()).unwrap(), a);
        let b = ServeArgs {
            upstream_pid: None,
            ..a
        };
        assert_eq!(ServeArgs::parse(&b.to_args()).unwrap(), b);
    }
}
