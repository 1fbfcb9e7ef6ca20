//! Launching the pod's container as the kubelet would, through a containerd restart: CRI
//! calls are retried while containerd is away, and what the kernel shows of the container is
//! taken at its start.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::Result;

use super::probe;
use crate::{ContainerSpec, ContainerState, Cri, Pod};

pub(super) const SLEEPER: &[&str] = &["sleep", "3600"];
/// How long CRI may stay unreachable (a containerd restart) before a call counts as failed.
pub(super) const CRI_PATIENCE: Duration = Duration::from_secs(20);

/// A container of the pod, as the kernel showed it at its start.
#[derive(Debug, Clone)]
pub struct Live {
    pub id: String,
    /// oom_score_adj of its init right after the start (before any fault).
    pub baseline_adj: i32,
    /// Its freezer cgroup directory (v1 `freezer`, v2 unified).
    pub dir: PathBuf,
}

/// Retries `f` until it succeeds or CRI stayed unreachable for [`CRI_PATIENCE`].
pub(super) async fn patient<T, F, Fut>(what: &str, mut f: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let deadline = Instant::now() + CRI_PATIENCE;
    loop {
        match f().await {
            Ok(v) => return Ok(v),
            Err(e) if Instant::now() >= deadline => return Err(e.context(what.to_string())),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// The oom_score_adj runc gave the container (`process.oomScoreAdj` of its OCI spec), so a
/// fault already applied when it is read does not become the baseline; else the process's.
pub(super) fn baseline_adj(bundles: &Path, id: &str, pid: u32) -> i32 {
    probe::spec_oom_score_adj(&bundles.join(id).join("config.json"))
        .or_else(|| probe::oom_score_adj(pid))
        .unwrap_or(0)
}

/// Runs container `app` with `attempt` (a failed try, say during a containerd restart, moves
/// on to the next attempt as the kubelet does); returns it with its attempt.
pub(super) async fn launch(
    cri: &Cri,
    bundles: &Path,
    pod: &Pod,
    mut attempt: u32,
    created: &Mutex<Option<String>>,
) -> Result<(Live, u32)> {
    let mut last = None;
    let deadline = Instant::now() + CRI_PATIENCE;
    while Instant::now() < deadline {
        let spec = ContainerSpec::new("app", SLEEPER).attempt(attempt);
        let started = match cri.create_container(pod, &spec).await {
            Ok(id) => {
                *created.lock().unwrap_or_else(|e| e.into_inner()) = Some(id.clone());
                match cri.start_container(&id).await {
                    Ok(()) => Ok(id),
                    // containerd may have started it before it went away (a restart): ask
                    // once it answers again, as the kubelet would, instead of starting a
                    // second instance next to it.
                    Err(e) => {
                        match patient("ContainerStatus", || cri.container_status(&id)).await {
                            Ok(st) if st.state == ContainerState::Running => Ok(id),
                            Ok(st) if st.state == ContainerState::Created => {
                                cri.start_container(&id).await.map(|()| id)
                            }
                            _ => Err(e),
                        }
                    }
                }
            }
            Err(e) => Err(e),
        };
        match started {
            Ok(id) => {
                // A killed container may be gone already (TCG is slow): pid 0 then.
                let pid = patient("ContainerStatus", || cri.container_pid(&id))
                    .await?
                    .unwrap_or(0);
                let baseline_adj = baseline_adj(bundles, &id, pid);
                let dir = probe::freezer_dir(pid).unwrap_or_else(|| container_dir(pod, &id));
                return Ok((
                    Live {
                        id,
                        baseline_adj,
                        dir,
                    },
                    attempt,
                ));
            }
            Err(e) => last = Some(e),
        }
        attempt += 1;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Err(last.unwrap_or_else(|| anyhow::anyhow!("no attempt made")))
}

/// The freezer cgroup directory a container gets (cgroupfs driver: `<pod cgroup>/<id>`; v1
/// `freezer`, v2 unified), known as soon as it is created.
pub(super) fn container_dir(pod: &Pod, id: &str) -> PathBuf {
    let controller = if probe::unified() { "" } else { "freezer" };
    let dir = pod.container_cgroup_dir(controller, id);
    // `cgroup_path("", ..)` leaves a double slash; keep paths comparable.
    PathBuf::from(dir.to_string_lossy().replace("//", "/"))
}
