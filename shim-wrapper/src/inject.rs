//! Faults injected into running containers with `nri-chaos ctl inject`: the plugin writes a
//! container's injected exec faults (a plan in the format of the `nri-chaos.io/plan`
//! annotation) to `<exec dir>/<container id>.json` and removes it when the fault ends (`ctl
//! recover`, the container's end, a restart of nri-chaos). The directory is the node's
//! setting `NRI_CHAOS_EXEC_DIR` (containerd's environment, which shims inherit), else
//! `/run/nri-chaos/exec` (`injector::exec_inject`). The wrapper looks for its containers'
//! files every [`EVERY`], off the request path (a task of its own, through tokio's blocking
//! pool), and swaps a container's injected faults when its file changes or goes away. A
//! directory that does not exist yet (nri-chaos not running, or started after the pod) is
//! looked at again at each turn. `after` counts from the moment the wrapper read the file.

use std::io::ErrorKind;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use injector::exec_inject;
use injector::hookplan::HookPlan;

use crate::execs::{Stamp, Window};
use crate::intercept::Shared;
use crate::plan::exec_windows;

/// How often the inject files are looked at.
pub const EVERY: Duration = Duration::from_millis(250);
/// Largest inject file read.
const MAX_BYTES: u64 = 64 << 10;

/// Runs for the life of the server, on the directory of this node's setting.
pub async fn watch(shared: Arc<Shared>) {
    match exec_inject::from_env() {
        Ok(dir) => watch_dir(shared, &dir).await,
        Err(err) => crate::log(format_args!(
            "nri-chaos: {err}; exec faults injected with ctl inject cannot reach this pod"
        )),
    }
}

/// Looks for the inject files of the pod's containers in `dir` every [`EVERY`]. An error
/// other than a missing file (a directory that cannot be searched, a path through a file)
/// is logged once until a look succeeds again; the containers then run without injected
/// faults.
async fn watch_dir(shared: Arc<Shared>, dir: &Path) {
    let mut reported: Option<ErrorKind> = None;
    loop {
        tokio::time::sleep(EVERY).await;
        let watched = shared.execs().watched();
        for (id, old) in watched {
            let Some(path) = exec_inject::file(dir, &id) else {
                continue;
            };
            let stamp = match stamp(&path).await {
                Ok(stamp) => {
                    reported = None;
                    stamp
                }
                Err(err) => {
                    if reported != Some(err.kind()) {
                        reported = Some(err.kind());
                        crate::log(format_args!(
                            "nri-chaos: container {id}: inject file {}: {err}; exec faults injected with ctl inject cannot reach it (check {})",
                            path.display(),
                            exec_inject::DIR_ENV
                        ));
                    }
                    None
                }
            };
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

/// The file's stamp; `None` when there is no such file (or no directory yet).
async fn stamp(path: &Path) -> std::io::Result<Option<Stamp>> {
    match tokio::fs::metadata(path).await {
        Ok(meta) => Ok(Some((
            meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
            meta.len(),
        ))),
        Err(err) if err.kind() == ErrorKind::NotFound => Ok(None),
        Err(err) => Err(err),
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::execs::{Decision, Stdio};
    use crate::plan::ExecPlan;

    const PLAN: &str = r#"{"version":1,"faults":[{"kind":"exec","key":"exec.nri-chaos.io/container.app","value":"{fail: {exit_code: 5}}"}]}"#;

    /// Polls `cond` on the pod's exec state for up to 3 s.
    async fn until(shared: &Shared, cond: impl Fn(bool) -> bool) -> bool {
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if cond(shared.execs().has_faults()) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    }

    #[tokio::test]
    async fn a_directory_made_after_the_pod_is_picked_up() {
        let base = tempfile::tempdir().unwrap();
        let dir = base.path().join("exec");
        let shared = Arc::new(Shared::default());
        shared.execs().created(
            "c1",
            ExecPlan {
                name: "app".into(),
                windows: Vec::new(),
            },
        );
        let watcher = tokio::spawn({
            let (shared, dir) = (shared.clone(), dir.clone());
            async move { watch_dir(shared, &dir).await }
        });
        // No directory for a few turns (nri-chaos not running yet): nothing injected.
        tokio::time::sleep(EVERY * 3).await;
        assert!(!shared.execs().has_faults());
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("c1.json"), PLAN).unwrap();
        assert!(
            until(&shared, |on| on).await,
            "the injected fault was not read"
        );
        let argv = vec!["true".to_string()];
        let decided = shared
            .execs()
            .decide("c1", "e1", &argv, Stdio::default(), Instant::now());
        assert!(matches!(decided, Decision::Synthesize(..)), "{decided:?}");
        // The plugin removes the file (ctl recover, its restart): the fault ends.
        std::fs::remove_file(dir.join("c1.json")).unwrap();
        assert!(until(&shared, |on| !on).await, "the injected fault stayed");
        watcher.abort();
    }

    #[tokio::test]
    async fn a_directory_that_is_a_file_injects_nothing() {
        let base = tempfile::tempdir().unwrap();
        let not_dir = base.path().join("exec");
        std::fs::write(&not_dir, PLAN).unwrap();
        let err = stamp(&not_dir.join("c1.json")).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotADirectory);
        assert_eq!(
            stamp(&base.path().join("none/c1.json")).await.unwrap(),
            None
        );
        let shared = Arc::new(Shared::default());
        shared.execs().created("c1", ExecPlan::default());
        let watcher = tokio::spawn({
            let shared = shared.clone();
            async move { watch_dir(shared, &not_dir).await }
        });
        tokio::time::sleep(EVERY * 2).await;
        assert!(!shared.execs().has_faults());
        watcher.abort();
    }
}
