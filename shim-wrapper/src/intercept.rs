//! Which task API calls the wrapper looks into, and what it answers itself.
//!
//! Decoded: `Create` (the container's exec plan is read from its bundle, off the request
//! path: `planning`), `Start` (a
//! container's start is when `after` counts from; an exec's Start may be held or answered
//! here), `Delete` (forgets a container), and `Exec` while the pod has exec faults. `Wait`,
//! `Kill`, `Delete`, `State`, `CloseIO` and `ResizePty` are decoded only while an exec is
//! being answered here, to find the calls about it. Every other frame, and every call the
//! wrapper does not answer, goes to the runc shim unchanged.
//!
//! How `fail` and `hang` are answered, and why so. containerd's CRI ExecSync calls the shim's
//! `Exec`, then `Wait` on the exec id, then `Start`; it reads the exit code from `Wait`'s
//! answer, and after it, waits until the exec's stdout and stderr FIFOs reach end of file;
//! on its timeout it sends `Kill(SIGKILL)` and waits for `Wait` again; it always ends with
//! `Delete`. The wrapper answers exactly these for the exec, and the runc shim never hears
//! of it, so no process runs: it works for any image (rewriting the exec's argv to a command
//! that exits N would need a shell or some binary in the image, which many images lack), no
//! process can be left in the container's cgroup, and the exit code is exactly N. The FIFOs'
//! write ends are opened at Start and closed at the exit, so containerd's copy ends as
//! after a real process. containerd's CRI ignores `/tasks/exit` events of exec ids (it
//! follows `Wait`), so none is published. `delay` holds the exec's `Start` frame, then passes
//! it on: the command runs normally, late.

use std::future::Future;
use std::os::fd::OwnedFd;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use containerd_shim_protos::api::{
    CloseIORequest, CreateTaskRequest, DeleteRequest, DeleteResponse, ExecProcessRequest,
    KillRequest, ResizePtyRequest, StartRequest, StartResponse, StateRequest, StateResponse,
    Status as TaskStatus, WaitRequest, WaitResponse,
};
use injector::faults::exec::ExecAction;
use protobuf::well_known_types::timestamp::Timestamp;
use protobuf::Message;
use tokio::sync::watch;
use ttrpc::proto::{Request, Response};

use crate::execs::{Decision, ExecKey, Exit, PodExecs, Stdio};
use crate::frame::Frame;
use crate::planning::{Pending, Planned};

/// How long the FIFOs' reader (containerd) gets to appear before a synthetic exec gives up
/// on its stdio.
const STDIO_WAIT: Duration = Duration::from_secs(2);
/// Exit status when an answered exec is deleted while it "runs" (as if SIGKILLed).
const KILLED: u32 = 128 + 9;

/// What becomes of a request frame.
pub enum Route {
    /// Pass it to the runc shim now.
    Forward,
    /// Pass this `Create` to the runc shim now, then read its plan ([`Planned::read`]):
    /// the plan is read from the bundle while runc creates the container, off the server's
    /// thread; the container's `Start` and `Delete` wait for it ([`Route::AfterPlan`]).
    ForwardCreate(Box<Planned>),
    /// A container's `Start` or `Delete` while its plan is still being read: wait for it
    /// ([`crate::planning::recorded`]), then route the frame again.
    AfterPlan(watch::Receiver<bool>),
    /// Pass it to the runc shim after this long (`delay`).
    ForwardAfter(Duration),
    /// Answer it here with the response this gives (an encoded ttrpc `Response`).
    Answer(Pin<Box<dyn Future<Output = Vec<u8>> + Send>>),
}

impl std::fmt::Debug for Route {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Route::Forward => f.write_str("Forward"),
            Route::ForwardCreate(c) => write!(f, "ForwardCreate({})", c.create().id),
            Route::AfterPlan(_) => f.write_str("AfterPlan"),
            Route::ForwardAfter(d) => write!(f, "ForwardAfter({d:?})"),
            Route::Answer(_) => f.write_str("Answer"),
        }
    }
}

/// The pod's state, shared by the connections of one wrapper.
#[derive(Debug, Default)]
pub struct Shared {
    execs: Mutex<PodExecs>,
    /// The plans being read.
    pub pending: Pending,
}

impl Shared {
    /// The pod's exec state.
    pub fn execs(&self) -> MutexGuard<'_, PodExecs> {
        // A panic under this lock leaves plain maps; serving on beats stopping the pod.
        self.execs.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn decode<M: Message>(req: &Request) -> Option<M> {
    M::parse_from_bytes(&req.payload).ok()
}

/// An encoded OK `Response` carrying `msg`.
fn ok(msg: &impl Message) -> Vec<u8> {
    let mut resp = Response::new();
    resp.status = protobuf::MessageField::some(ttrpc::get_status(ttrpc::Code::OK, ""));
    resp.payload = msg.write_to_bytes().unwrap_or_default();
    resp.write_to_bytes().unwrap_or_default()
}

fn answer(payload: Vec<u8>) -> Route {
    Route::Answer(Box::pin(std::future::ready(payload)))
}

fn timestamp(exit: &Exit) -> protobuf::MessageField<Timestamp> {
    protobuf::MessageField::some(Timestamp::from(exit.at))
}

/// Routes one request frame of a task API connection.
pub fn route(shared: &Arc<Shared>, frame: &Frame) -> Route {
    let Ok(req) = Request::parse_from_bytes(frame.payload()) else {
        return Route::Forward;
    };
    if !req.service.starts_with("containerd.task.v") {
        return Route::Forward;
    }
    match req.method.as_str() {
        "Create" => decode::<CreateTaskRequest>(&req).map_or(Route::Forward, |c| {
            Route::ForwardCreate(Box::new(Planned::begin(shared, c)))
        }),
        "Start" => decode::<StartRequest>(&req).map_or(Route::Forward, |s| {
            planning(shared, &s.id, &s.exec_id).unwrap_or_else(|| start(shared, s))
        }),
        "Exec" if shared.execs().has_faults() => {
            decode::<ExecProcessRequest>(&req).map_or(Route::Forward, |e| exec(shared, e))
        }
        "Delete" => decode::<DeleteRequest>(&req).map_or(Route::Forward, |d| {
            planning(shared, &d.id, &d.exec_id).unwrap_or_else(|| delete(shared, d))
        }),
        _ if shared.execs().has_synthetic() => about_synthetic(shared, &req),
        _ => Route::Forward,
    }
}

/// [`Route::AfterPlan`] for a call about container `id` itself (no exec) whose plan is
/// being read.
fn planning(shared: &Shared, id: &str, exec_id: &str) -> Option<Route> {
    if !exec_id.is_empty() {
        return None;
    }
    shared.pending.of(id).map(Route::AfterPlan)
}

fn start(shared: &Arc<Shared>, s: StartRequest) -> Route {
    if s.exec_id.is_empty() {
        shared.execs().started(&s.id, Instant::now());
        return Route::Forward;
    }
    let key = (s.id, s.exec_id);
    let mut execs = shared.execs();
    if let Some(d) = execs.take_delay(&key) {
        return Route::ForwardAfter(d);
    }
    let Some(synthetic) = execs.synthetic(&key) else {
        return Route::Forward;
    };
    let (action, stdio) = (synthetic.action, synthetic.stdio.clone());
    drop(execs);
    let shared = shared.clone();
    tokio::spawn(async move {
        let fds = open_stdio(&stdio).await;
        let mut execs = shared.execs();
        let Some(s) = execs.synthetic(&key) else {
            return;
        };
        match action {
            ExecAction::Fail { exit_code } => {
                drop(fds);
                s.finish(u32::from(exit_code));
            }
            _ if s.exited().is_none() => s.held = fds,
            _ => {}
        }
    });
    answer(ok(&StartResponse::new()))
}

fn exec(shared: &Arc<Shared>, e: ExecProcessRequest) -> Route {
    let argv = argv_of(&e);
    let stdio = Stdio {
        stdin: e.stdin.clone(),
        stdout: e.stdout.clone(),
        stderr: e.stderr.clone(),
        terminal: e.terminal,
    };
    let decision = shared
        .execs()
        .decide(&e.id, &e.exec_id, &argv, stdio, Instant::now());
    let what = match &decision {
        Decision::Forward => return Route::Forward,
        Decision::Delay(d, origin) => format!("started {d:?} late ({origin})"),
        Decision::Synthesize(ExecAction::Fail { exit_code }, origin) => {
            format!("not run, exits {exit_code} ({origin})")
        }
        Decision::Synthesize(_, origin) => format!("not run, hangs until killed ({origin})"),
    };
    crate::log(format_args!(
        "nri-chaos: container {} exec {} {:?}: {what}",
        e.id,
        e.exec_id,
        argv.join(" ")
    ));
    match decision {
        Decision::Synthesize(..) => answer(ok(&protobuf::well_known_types::empty::Empty::new())),
        _ => Route::Forward,
    }
}

/// The exec's argv, from the OCI process spec (JSON in an `Any`).
fn argv_of(e: &ExecProcessRequest) -> Vec<String> {
    #[derive(serde::Deserialize)]
    struct Process {
        #[serde(default)]
        args: Vec<String>,
    }
    e.spec
        .as_ref()
        .and_then(|any| serde_json::from_slice::<Process>(&any.value).ok())
        .map(|p| p.args)
        .unwrap_or_default()
}

fn delete(shared: &Arc<Shared>, d: DeleteRequest) -> Route {
    let mut execs = shared.execs();
    if d.exec_id.is_empty() {
        execs.deleted(&d.id);
        return Route::Forward;
    }
    let Some(mut s) = execs.remove_synthetic(&(d.id, d.exec_id)) else {
        return Route::Forward;
    };
    let exit = s.finish(KILLED);
    let mut resp = DeleteResponse::new();
    resp.exit_status = exit.status;
    resp.exited_at = timestamp(&exit);
    answer(ok(&resp))
}

/// `Wait`, `Kill`, `State`, `CloseIO`, `ResizePty` of an exec answered here.
fn about_synthetic(shared: &Arc<Shared>, req: &Request) -> Route {
    let key: Option<(ExecKey, u32)> = match req.method.as_str() {
        "Wait" => decode::<WaitRequest>(req).map(|r| ((r.id, r.exec_id), 0)),
        "Kill" => decode::<KillRequest>(req).map(|r| ((r.id, r.exec_id), r.signal)),
        "State" => decode::<StateRequest>(req).map(|r| ((r.id, r.exec_id), 0)),
        "CloseIO" => decode::<CloseIORequest>(req).map(|r| ((r.id, r.exec_id), 0)),
        "ResizePty" => decode::<ResizePtyRequest>(req).map(|r| ((r.id, r.exec_id), 0)),
        _ => None,
    };
    let Some((key, signal)) = key else {
        return Route::Forward;
    };
    let mut execs = shared.execs();
    let Some(s) = execs.synthetic(&key) else {
        return Route::Forward;
    };
    match req.method.as_str() {
        "Wait" => {
            let mut rx = s.exit.subscribe();
            Route::Answer(Box::pin(async move {
                let exit = rx.wait_for(Option::is_some).await.ok().and_then(|e| *e);
                let mut resp = WaitResponse::new();
                if let Some(exit) = exit {
                    resp.exit_status = exit.status;
                    resp.exited_at = timestamp(&exit);
                } else {
                    resp.exit_status = KILLED;
                }
                ok(&resp)
            }))
        }
        "Kill" => {
            let exit = s.finish(128 + signal);
            crate::log(format_args!(
                "nri-chaos: container {} exec {}: killed with signal {signal}, exit {}",
                key.0, key.1, exit.status
            ));
            answer(ok(&protobuf::well_known_types::empty::Empty::new()))
        }
        "State" => {
            let mut resp = StateResponse::new();
            resp.id = key.1.clone();
            resp.exec_id = key.1.clone();
            resp.stdin = s.stdio.stdin.clone();
            resp.stdout = s.stdio.stdout.clone();
            resp.stderr = s.stdio.stderr.clone();
            resp.terminal = s.stdio.terminal;
            let status = match s.exited() {
                Some(exit) => {
                    resp.exit_status = exit.status;
                    resp.exited_at = timestamp(&exit);
                    TaskStatus::STOPPED
                }
                None => TaskStatus::RUNNING,
            };
            resp.status = status.into();
            answer(ok(&resp))
        }
        _ => answer(ok(&protobuf::well_known_types::empty::Empty::new())),
    }
}

/// Opens the write ends of the exec's stdout and stderr FIFOs (containerd holds the read
/// ends), waiting up to [`STDIO_WAIT`] for containerd's reader. Only plain FIFO paths: a
/// `binary://` or `file://` log URI has no reader to end.
async fn open_stdio(stdio: &Stdio) -> Vec<OwnedFd> {
    use rustix::fs::{Mode, OFlags};
    let mut fds = Vec::new();
    let deadline = Instant::now() + STDIO_WAIT;
    for path in [&stdio.stdout, &stdio.stderr] {
        if !path.starts_with('/') {
            continue;
        }
        loop {
            let flags = OFlags::WRONLY | OFlags::NONBLOCK | OFlags::CLOEXEC | OFlags::NOCTTY;
            match rustix::fs::open(path.as_str(), flags, Mode::empty()) {
                Ok(fd) => {
                    fds.push(fd);
                    break;
                }
                // ENXIO: no reader yet.
                Err(rustix::io::Errno::NXIO) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                Err(err) => {
                    crate::log(format_args!(
                        "nri-chaos: exec stdio {path}: {err}; left unopened"
                    ));
                    break;
                }
            }
        }
    }
    fds
}

#[cfg(test)]
mod tests;
