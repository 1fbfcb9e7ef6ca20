//! Errors of the wrapper, each naming what it was doing and on which path or value.

use std::io;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ShimError {
    #[error("{name} not found on PATH ({path}) nor next to containerd ({beside}); set {env}")]
    RuncShimNotFound {
        name: &'static str,
        path: String,
        beside: String,
        env: &'static str,
    },
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("the runc shim's start answer is neither a bootstrap result, JSON nor an address: {answer:?}")]
    BadAnswer { answer: String },
    #[error("the runc shim's address {address:?} is not a unix socket address")]
    NotUnix { address: String },
    #[error("socket path {path} is {len} bytes, longer than a unix socket allows ({max})")]
    SocketPathTooLong {
        path: PathBuf,
        len: usize,
        max: usize,
    },
    #[error("encoding the start answer: {reason}")]
    Encode { reason: String },
    #[error("the wrapper server did not listen on {path} within {ms} ms")]
    ServerNotReady { path: PathBuf, ms: u64 },
    #[error("serve mode argument {flag} is missing or invalid")]
    ServeArg { flag: &'static str },
}

impl ShimError {
    /// An I/O error while doing `what` on `path`.
    pub fn io(what: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> Self {
        let path = path.into();
        move |source| ShimError::Io { what, path, source }
    }
}
