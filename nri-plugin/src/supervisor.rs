//! Keeps nri-chaos registered: connect to the NRI socket, run a session until containerd goes
//! away, back off, connect again (re-register, resync). Faults already armed keep running in
//! the engine while containerd is away.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::UnixStream;

use crate::engine::Engine;
use crate::service::{NriPlugin, RuntimeInfo};
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
                    match Session::establish(stream, plugin, &self.registration).await {
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
