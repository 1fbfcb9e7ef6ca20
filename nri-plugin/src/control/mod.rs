//! The control socket: nri-chaos's own ttrpc API (`nri_chaos.control.v1.Control`) on a unix
//! socket in the state dir, mode 0600. Every connection's peer credentials (SO_PEERCRED) are
//! checked: only uid 0 is served; anyone else is logged and the connection closed before a
//! byte is read. Connections are capped and silent ones closed ([`Limits`]).

mod accept;
mod in_flight;
mod limits;
mod service;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use nri_chaos_proto::control_ttrpc::create_control;
use thiserror::Error;
use tokio::net::{UnixListener, UnixStream};
use ttrpc::r#async::transport::Listener;
use ttrpc::r#async::Server;

pub use limits::Limits;
pub use service::ControlService;

use accept::RootOnly;

/// The socket's file name in the state dir.
pub const SOCKET_NAME: &str = "control.sock";

/// Errors of setting the control socket up.
#[derive(Debug, Error)]
pub enum ControlError {
    /// Another process answers on the socket already.
    #[error("control socket {0} is in use by another process (is another nri-chaos running with this state dir?)")]
    InUse(PathBuf),
    /// Binding, chmod or starting the server failed.
    #[error("control socket {path}: {reason}")]
    Setup {
        /// The socket path.
        path: PathBuf,
        /// What failed.
        reason: String,
    },
}

/// The running control server; dropping it does not remove the socket, [`Control::stop`] does.
pub struct Control {
    server: Server,
    path: PathBuf,
}

impl std::fmt::Debug for Control {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Control")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

fn setup(path: &Path, reason: impl ToString) -> ControlError {
    ControlError::Setup {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

/// Binds `path` (mode 0600; a stale socket file is replaced) and serves `service` on it
/// within [`Limits::DEFAULT`].
pub async fn serve(path: &Path, service: ControlService) -> Result<Control, ControlError> {
    serve_limited(path, service, Limits::DEFAULT).await
}

/// [`serve`] within `limits`.
pub async fn serve_limited(
    path: &Path,
    service: ControlService,
    limits: Limits,
) -> Result<Control, ControlError> {
    if path.exists() {
        if UnixStream::connect(path).await.is_ok() {
            return Err(ControlError::InUse(path.to_path_buf()));
        }
        std::fs::remove_file(path)
            .map_err(|err| setup(path, format!("removing the stale socket: {err}")))?;
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|err| setup(path, format!("creating {}: {err}", dir.display())))?;
    }
    let listener = UnixListener::bind(path).map_err(|err| setup(path, err))?;
    // Until this chmod the socket has the umask's mode (at most 0755 with the usual 022):
    // connecting needs write permission, which only the owner (root) has either way.
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|err| setup(path, format!("chmod 0600: {err}")))?;
    let mut server = Server::new()
        .register_service(create_control(Arc::new(service)))
        .add_listener(Listener::new(RootOnly::new(listener, limits)));
    server.start().await.map_err(|err| setup(path, err))?;
    tracing::info!(socket = %path.display(), "control socket listening (root only)");
    Ok(Control {
        server,
        path: path.to_path_buf(),
    })
}

impl Control {
    /// Stops serving and removes the socket file.
    pub async fn stop(mut self) {
        let _ = tokio::time::timeout(
            std::time::Duration::from_millis(500),
            self.server.shutdown(),
        )
        .await;
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests;
