//! Faults injected into running containers with `nri-chaos ctl inject`: the plugin writes the
//! container's injected exec faults (a plan in the format of the `nri-chaos.io/plan`
//! annotation) to the file the container's plan named at its Create, and removes it when the
//! fault ends (`ctl recover`, the container's end). The wrapper looks at those files every
//! [`EVERY`], off the request path (a task of its own, through tokio's blocking pool), and
//! swaps the container's injected faults when a file changes or goes away. `after` counts
//! from the moment the wrapper read the file.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use injector::hookplan::HookPlan;

use crate::execs::{Stamp, Window};
use crate::intercept::Shared;
use crate::plan::exec_windows;

/// How often the inject files are looked at.
pub const EVERY: Duration = Duration::from_millis(250);
/// Largest inject file read.
const MAX_BYTES: u64 = 64 << 10;

/// Runs for the life of the server.
pub async fn watch(shared: Arc<Shared>) {
    loop {
        tokio::time::sleep(EVERY).await;
        let watched = shared.execs().watched();
        for (id, path, old) in watched {
            let stamp = stamp(&path).await;
            if stamp == old {
                continue;
            }
            let windows = match stamp {
                None => Vec::new(),
                Some(_) => read(&id, &path).await,
            };
            shared.execs().set_injected(&id, stamp, windows);
        }
    }
}

async fn stamp(path: &Path) -> Option<Stamp> {
    let meta = tokio::fs::metadata(path).await.ok()?;
    Some((
        meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
        meta.len(),
    ))
}

/// The exec faults in the inject file of container `id` (none, with a log line, when it does
/// not read).
async fn read(id: &str, path: &Path) -> Vec<Window> {
    let text = match tokio::fs::read(path).await {
        Ok(bytes) if bytes.len() as u64 <= MAX_BYTES => {
            String::from_utf8_lossy(&bytes).into_owned()
        }
        Ok(bytes) => {
            crate::log(format_args!(
                "nri-chaos: container {id}: inject file {}: {} bytes, more than {MAX_BYTES}; ignored",
                path.display(),
                bytes.len()
            ));
            return Vec::new();
        }
        Err(err) => {
            crate::log(format_args!(
                "nri-chaos: container {id}: inject file {}: {err}",
                path.display()
            ));
            return Vec::new();
        }
    };
    match HookPlan::read(&text).and_then(|plan| exec_windows(&plan, Some(Instant::now()))) {
        Ok(windows) => {
            for w in &windows {
                crate::log(format_args!(
                    "nri-chaos: container {id}: exec fault {} injected ({})",
                    w.window.fault(),
                    w.origin
                ));
            }
            windows
        }
        Err(err) => {
            crate::log(format_args!(
                "nri-chaos: container {id}: inject file {}: {err}; ignored",
                path.display()
            ));
            Vec::new()
        }
    }
}
