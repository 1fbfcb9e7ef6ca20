//! Keeps nri-chaos registered: connect to the NRI socket, run a session until containerd goes
//! away, back off, connect again (re-register, resync). Faults already armed keep running in
//! the engine while containerd is away.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::UnixStream;

use crate::engine::Engine;
use crate::service::{NriPlugin, RuntimeInfo};
use crate::transport::sched::{HandlerSched, SchedError};
use crate::transport::session::{Registration, Session};

/// First retry delay after a failed connect or a lost session.
const BACKOFF_START: Duration = Duration::from_millis(100);
/// Longest retry delay.
const BACKOFF_MAX: Duration = Duration::from_secs(2);

/// What the supervisor needs.
#[derive(Debug, Clone)]
pub struct Supervisor {
    /// containerd's NRI socket.
    pub socket: PathBuf,
    /// Name and index to register with.
    pub registration: Registration,
    /// The fault engine (outlives sessions).
    pub engine: Engine,
    /// Runtime name/version of the current session.
    pub runtime: Arc<Mutex<RuntimeInfo>>,
}

impl Supervisor {
    /// Runs until the task is cancelled (the caller selects on its shutdown signal).
    pub async fn run(self) {
        let mut backoff = BACKOFF_START;
        let mut reported_waiting = false;
        let mut sessions = 0u64;
        loop {
            match UnixStream::connect(&self.socket).await {
                Ok(stream) => {
                    let plugin =
                        Arc::new(NriPlugin::new(self.engine.clone(), self.runtime.clone()));
                    let engine = self.engine.clone();
                    let after_write = Arc::new(move || engine.after_reply());
                    match Session::establish(stream, plugin, &self.registration, after_write).await
                    {
                        Ok(mut session) => {
                            sessions += 1;
                            reported_waiting = false;
                            backoff = BACKOFF_START;
                            self.engine.metrics().nri_registered();
                            tracing::info!(socket = %self.socket.display(), name = %self.registration.name, index = %self.registration.index, reconnects = sessions - 1, "registered with the runtime");
                            let reason = session.closed().await;
                            self.engine.metrics().nri_lost();
                            let runtime =
                                self.runtime.lock().map(|r| r.clone()).unwrap_or_default();
                            tracing::warn!(reason = %reason, runtime = %runtime.name, version = %runtime.version, "NRI connection lost; reconnecting");
                            session.close().await;
                            // What a handler left after the last frame written starts now.
                            self.engine.after_reply();
                        }
                        Err(err) => {
                            tracing::error!(error = %err, "registration failed; retrying");
                        }
                    }
                }
                Err(err) => {
                    if !reported_waiting {
                        tracing::warn!(socket = %self.socket.display(), error = %err, "NRI socket not reachable (is NRI enabled in containerd?); retrying with backoff");
                        reported_waiting = true;
                    }
                }
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }
}

/// The NRI thread ([`Supervisor::spawn`]): stopped and joined by [`NriThread::stop`].
#[derive(Debug)]
pub struct NriThread {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Why the NRI thread did not start.
#[derive(Debug, thiserror::Error)]
pub enum NriThreadError {
    /// The scheduling setting was refused (only given explicitly is this an error).
    #[error(transparent)]
    Sched(#[from] SchedError),
    /// The thread or its runtime could not be made.
    #[error("starting the NRI thread: {0}")]
    Start(#[from] std::io::Error),
}

impl Supervisor {
    /// Runs the supervisor (the NRI transport, ttrpc and every handler) on a thread of its
    /// own, `nri-chaos-nri`, with a single-threaded runtime, scheduled as `sched` (see
    /// [`crate::transport::sched`]). Where the kernel refuses `sched`: an error when
    /// `required`, else a warning and the fair class. Returns the scheduling in force.
    pub fn spawn(
        self,
        sched: HandlerSched,
        required: bool,
    ) -> Result<(NriThread, HandlerSched), NriThreadError> {
        let (started_tx, started_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("nri-chaos-nri".to_string())
            .spawn(move || {
                let in_force = match sched {
                    HandlerSched::Fair => Ok(HandlerSched::Fair),
                    fifo => match fifo.apply_here() {
                        Ok(()) => Ok(fifo),
                        Err(err) if required => Err(NriThreadError::Sched(err)),
                        Err(err) => {
                            tracing::warn!(error = %err, "NRI handlers run in the fair scheduling class");
                            Ok(HandlerSched::Fair)
                        }
                    },
                };
                let runtime = in_force.and_then(|in_force| {
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()?;
                    Ok((runtime, in_force))
                });
                let (runtime, in_force) = match runtime {
                    Ok(ready) => ready,
                    Err(err) => {
                        let _ = started_tx.send(Err(err));
                        return;
                    }
                };
                let _ = started_tx.send(Ok(in_force));
                runtime.block_on(async move {
                    tokio::select! {
                        () = self.run() => {}
                        _ = stop_rx => {}
                    }
                });
            })?;
        let in_force = started_rx.recv().map_err(|_| {
            NriThreadError::Start(std::io::Error::other(
                "the NRI thread ended before it started",
            ))
        })??;
        Ok((
            NriThread {
                stop: Some(stop_tx),
                thread: Some(thread),
            },
            in_force,
        ))
    }
}

impl NriThread {
    /// Ends the NRI session and waits (at most `limit`) for the thread to end.
    pub async fn stop(mut self, limit: Duration) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let joined = tokio::task::spawn_blocking(move || thread.join());
            if tokio::time::timeout(limit, joined).await.is_err() {
                tracing::warn!(limit = ?limit, "the NRI thread did not end in time");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The scheduling policy of this process's thread named `name` (field 41 of its stat).
    fn policy_of_thread(name: &str) -> Option<u32> {
        for task in std::fs::read_dir("/proc/self/task").ok()?.flatten() {
            let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
            if comm.trim() == name {
                let stat = std::fs::read_to_string(task.path().join("stat")).ok()?;
                return crate::transport::sched::policy_in_stat(&stat);
            }
        }
        None
    }

    /// Needs root (CAP_SYS_NICE): the NRI thread runs SCHED_FIFO, the caller's threads stay
    /// fair, and stop ends the thread (no containerd here: the supervisor retries the socket).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_nri_thread_runs_real_time_and_stops() {
        let dir = tempfile::tempdir().unwrap();
        let seams = crate::engine::Seams {
            signaller: Arc::new(injector::seams::signal::RecordingSignaller::new()),
            freezer: Arc::new(injector::seams::cgroup::RecordingFreezer::new()),
            procs: Arc::new(injector::seams::procfs::FakeProcesses::default()),
            cgroups: injector::seams::cgroup::CgroupFs::new(dir.path().join("cgroup")),
            proc_root: dir.path().join("proc"),
            netlink: Arc::new(injector::seams::netlink::RecordingNetlink::new()),
            stressors: Arc::new(injector::seams::stressors::RecordingSpawner::new()),
        };
        let engine = Engine::new(
            injector::Policy::default(),
            seams,
            dir.path(),
            &dir.path().join("exec"),
        )
        .unwrap();
        let supervisor = Supervisor {
            socket: dir.path().join("no-containerd.sock"),
            registration: Registration {
                name: "test".into(),
                index: "10".into(),
            },
            engine,
            runtime: Arc::default(),
        };
        let (thread, in_force) = supervisor
            .spawn(HandlerSched::Fifo(1), true)
            .expect("SCHED_FIFO 1 (the unit tests run as root)");
        assert_eq!(in_force, HandlerSched::Fifo(1));
        assert_eq!(
            policy_of_thread("nri-chaos-nri"),
            Some(libc::SCHED_FIFO as u32)
        );
        let here = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
        assert_eq!(
            crate::transport::sched::policy_in_stat(&here),
            Some(libc::SCHED_OTHER as u32),
            "the runtime workers stay fair"
        );
        thread.stop(Duration::from_secs(2)).await;
        assert_eq!(policy_of_thread("nri-chaos-nri"), None, "the thread ended");
    }
}
