//! One pod of a round, driven like the kubelet would: run it, restart its killed container
//! with attempt+1, and watch its holding fault in the kernel (first and last moment seen
//! held, first moment seen ended). CRI calls ride out a containerd restart by retrying.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use tokio::sync::Barrier;

use super::launch::{baseline_adj, container_dir, launch, patient, Live, SLEEPER};
use super::plan::{Disruption, Fault};
use super::probe;
use crate::{ContainerSpec, ContainerState, ContainerStatus, Cri, Pod, PodSpec};

/// When the kernel showed the pod's holding fault.
#[derive(Debug, Clone, Default)]
pub struct Held {
    pub first: Option<Instant>,
    pub last: Option<Instant>,
    /// First poll that saw it ended after it was held.
    pub ended: Option<Instant>,
}

/// What happened to one pod of the round.
#[derive(Debug)]
pub struct PodOutcome {
    pub name: String,
    pub fault: Fault,
    pub pod: Option<Pod>,
    /// Removed by the round's disruption.
    pub removed: bool,
    /// Exits with code 137 (SIGKILL) seen through CRI.
    pub kills: u32,
    pub held: Held,
    /// The container running at the end (none once removed).
    pub live: Option<Live>,
    /// Count errors found on the way (a start delayed after its count was spent).
    pub count_errors: Vec<String>,
}

/// The driver of one pod.
pub struct PodRun {
    pub cri: Cri,
    pub name: String,
    pub index: usize,
    pub fault: Fault,
    pub disruption: Disruption,
    /// Every pod of the round and the round itself meet here once their sandboxes run: the
    /// round's clock (the disruption's moment) starts when the containers are launched.
    pub ready: Arc<Barrier>,
    /// How often the holding fault is probed.
    pub poll: Duration,
    /// Extra time a fault may need because of the disruption (nri-chaos away, reconnecting)
    /// and the node's slowness.
    pub extra: Duration,
    /// The node's OCI bundles (`<state>/io.containerd.runtime.v2.task/k8s.io`).
    pub bundles: PathBuf,
}

impl PodRun {
    pub async fn run(self) -> Result<PodOutcome> {
        let t = Instant::now();
        let (key, value) = self.fault.annotation();
        let mut spec = PodSpec::new(&self.name).annotation(key, &value);
        let pod = patient("RunPodSandbox", || {
            spec.attempt += 1;
            let (cri, spec) = (self.cri.clone(), spec.clone());
            async move { cri.run_pod(&spec).await }
        })
        .await;
        self.ready.wait().await;
        let round_start = Instant::now();
        let pod = pod?;
        let sandbox_ms = t.elapsed().as_millis();
        let removed = Arc::new(AtomicBool::new(false));
        if let Disruption::RemovePod { pod: i, at_ms } = self.disruption {
            if i == self.index {
                let (cri, p, flag) = (self.cri.clone(), pod.clone(), removed.clone());
                let at = round_start + Duration::from_millis(at_ms);
                tokio::spawn(async move {
                    tokio::time::sleep_until(at.into()).await;
                    flag.store(true, Ordering::SeqCst);
                    let _ = patient("StopPodSandbox", || cri.stop_pod(&p)).await;
                    let _ = patient("RemovePodSandbox", || cri.remove_pod(&p)).await;
                });
            }
        }
        let mut out = PodOutcome {
            name: self.name.clone(),
            fault: self.fault,
            pod: Some(pod.clone()),
            removed: false,
            kills: 0,
            held: Held::default(),
            live: None,
            count_errors: Vec::new(),
        };
        let result = match self.fault {
            Fault::Kill { after_ms, count } => {
                self.kill_loop(
                    &pod,
                    &mut out,
                    Duration::from_millis(after_ms),
                    count,
                    &removed,
                )
                .await
            }
            Fault::StartDelay { delay_ms } => {
                self.hook_kill(&pod, &mut out, Duration::from_millis(delay_ms))
                    .await
            }
            _ => self.watch_holding(&pod, &mut out, &removed).await,
        };
        out.removed = removed.load(Ordering::SeqCst);
        println!(
            "INFO {}: sandbox {sandbox_ms} ms, done {} ms",
            self.name,
            t.elapsed().as_millis()
        );
        if out.removed {
            out.live = None;
            return Ok(out);
        }
        result.map(|()| out)
    }

    /// Polls CRI until the container exited (`Some`) or `window` passed (`None`).
    async fn exit_within(
        &self,
        id: &str,
        window: Duration,
        removed: &AtomicBool,
    ) -> Option<ContainerStatus> {
        let deadline = Instant::now() + window;
        while Instant::now() < deadline && !removed.load(Ordering::SeqCst) {
            if let Ok(status) = self.cri.container_status(id).await {
                if status.state == ContainerState::Exited {
                    return Some(status);
                }
            }
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
        None
    }

    /// Kill with `count`: restart each killed instance until one survives its window.
    async fn kill_loop(
        &self,
        pod: &Pod,
        out: &mut PodOutcome,
        after: Duration,
        count: u32,
        removed: &AtomicBool,
    ) -> Result<()> {
        let mut attempt = 0;
        let window = after + Duration::from_millis(2000) + self.extra;
        for _ in 0..count + 3 {
            if removed.load(Ordering::SeqCst) {
                return Ok(());
            }
            let (live, used) =
                launch(&self.cri, &self.bundles, pod, attempt, &Mutex::new(None)).await?;
            attempt = used + 1;
            match self.exit_within(&live.id, window, removed).await {
                // A container that died while containerd was down is reported with exit 255
                // and reason `Unknown` after the restart: containerd lost its exit status.
                Some(status)
                    if status.exit_code == 137
                        || (status.exit_code == 255
                            && status.reason == "Unknown"
                            && matches!(self.disruption, Disruption::ContainerdRestart { .. })) =>
                {
                    out.kills += 1;
                    let _ =
                        patient("RemoveContainer", || self.cri.remove_container(&live.id)).await;
                }
                Some(status) => bail!(
                    "container {} exited {} ({})",
                    live.id,
                    status.exit_code,
                    status.reason
                ),
                None => {
                    out.live = Some(live);
                    return Ok(());
                }
            }
        }
        bail!("container still killed after {} kills", out.kills)
    }

    /// `start: {delay}`: SIGKILL the hook mid-delay; the start fails, and the next start is
    /// not delayed (the fault's count, 1, was spent by the killed start).
    async fn hook_kill(&self, pod: &Pod, out: &mut PodOutcome, delay: Duration) -> Result<()> {
        let Disruption::HookKill { into_ms, .. } = self.disruption else {
            bail!("a start delay pod is only planned with a hook kill");
        };
        let spec = ContainerSpec::new("app", SLEEPER);
        let id = self.cri.create_container(pod, &spec).await?;
        let starting = {
            let (cri, id) = (self.cri.clone(), id.clone());
            tokio::spawn(async move { cri.start_container(&id).await })
        };
        let seen_by = Instant::now() + Duration::from_secs(10);
        let hook = loop {
            if let Some(pid) = probe::hook_of(&id) {
                break pid;
            }
            if Instant::now() >= seen_by {
                bail!("no nri-chaos-hook process for container {id} within 10 s");
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        tokio::time::sleep(Duration::from_millis(into_ms)).await;
        probe::signal_kill(hook);
        let started = starting.await.context("start task")?;
        println!(
            "INFO {}: hook pid {hook} SIGKILLed {into_ms} ms into its {} ms delay; StartContainer: {}",
            self.name,
            delay.as_millis(),
            match &started {
                Ok(()) => "ok".to_string(),
                Err(e) => format!("{e:#}").replace('\n', " "),
            }
        );
        if probe::hook_of(&id).is_some() {
            bail!("the hook of {id} is still there after its SIGKILL");
        }
        let _ = self.cri.stop_container(&id, 0).await;
        let _ = self.cri.remove_container(&id).await;
        let id = self
            .cri
            .create_container(pod, &ContainerSpec::new("app", SLEEPER).attempt(1))
            .await?;
        let t = Instant::now();
        self.cri.start_container(&id).await?;
        let took = t.elapsed();
        // What runc was told to run: the hook again in the new container's OCI spec means
        // the start fault was planned again although its count, 1, was spent.
        let spec = std::fs::read_to_string(self.bundles.join(&id).join("config.json"))
            .context("reading the restarted container's OCI spec")?;
        if spec.contains("nri-chaos-hook") {
            out.count_errors.push(format!(
                "{}: the restarted container has the hook again (its start took {} ms): count 1 was spent",
                self.name,
                took.as_millis()
            ));
        }
        let pid = self.cri.container_pid(&id).await?.context("no pid")?;
        let dir = probe::freezer_dir(pid).context("no freezer cgroup")?;
        let baseline_adj = baseline_adj(&self.bundles, &id, pid);
        out.live = Some(Live {
            id,
            baseline_adj,
            dir,
        });
        Ok(())
    }

    /// Whether the fault holds now, as the kernel shows it: for netem in the network
    /// namespace of the pod sandbox's process `sandbox`; for the others in the container's
    /// cgroup `dir` (from before it starts).
    fn is_held(&self, sandbox: Option<u32>, dir: &Path) -> bool {
        match self.fault {
            Fault::Netem { .. } => sandbox.is_some_and(|pid| {
                probe::qdiscs(pid).is_ok_and(|tc| !probe::our_qdiscs(&tc).is_empty())
            }),
            Fault::Freeze { .. } => probe::frozen(dir),
            // By name: runc's own init processes pass through the cgroup at the start.
            Fault::Stress { .. } => probe::procs(dir).into_iter().any(probe::is_stressor),
            // The fault sets exactly `score`; a process that has not yet taken the spec's
            // value (runc's init inherits the shim's) is not mistaken for it.
            Fault::OomScore { score, .. } => probe::procs(dir)
                .into_iter()
                .any(|pid| probe::oom_score_adj(pid) == Some(score as i32)),
            Fault::Kill { .. } | Fault::StartDelay { .. } => false,
        }
    }

    /// Probes the holding fault every `poll` until it ended, the pod was removed, or its
    /// deadline passed by far (then `ended` stays `None`: a leftover). The probing starts
    /// before the fault can be applied, so its first sighting is when it was applied (within
    /// one probe): netem in the pod sandbox's network namespace from before CreateContainer
    /// (the plugin arms it there), the others in the container's cgroup from right after
    /// CreateContainer (their `after` counts from the start). Should the first probe still
    /// find it held, its start is taken as the earliest possible (the launch plus `after`).
    async fn watch_holding(
        &self,
        pod: &Pod,
        out: &mut PodOutcome,
        removed: &AtomicBool,
    ) -> Result<()> {
        let launched = Instant::now();
        let created = Arc::new(Mutex::new(None::<String>));
        let launching = {
            let (cri, pod, bundles) = (self.cri.clone(), pod.clone(), self.bundles.clone());
            let created = created.clone();
            tokio::spawn(async move { launch(&cri, &bundles, &pod, 0, &created).await })
        };
        let sandbox =
            match self.fault {
                Fault::Netem { .. } => Some(probe::sandbox_pid(pod).with_context(|| {
                    format!("no process in the pod sandbox cgroup of {}", pod.id)
                })?),
                _ => None,
            };
        let hold = self.fault.holds().unwrap_or_default();
        // How long to wait for the fault to show (after the launch) and then to end (after it
        // showed): a fault re-armed after a crash starts late, and TCG makes starts slow.
        let margin = self.extra + Duration::from_secs(3);
        let mut launch_done: Option<Instant> = None;
        let held = &mut out.held;
        let mut first_probe = true;
        while !removed.load(Ordering::SeqCst) {
            if launch_done.is_none() && launching.is_finished() {
                launch_done = Some(Instant::now());
            }
            let give_up = match (held.first, launch_done) {
                (Some(first), _) => Some(first.max(launched) + hold + margin),
                (None, Some(done)) => Some(done + self.fault.after() + margin),
                (None, None) => None,
            };
            if give_up.is_some_and(|at| Instant::now() >= at) {
                break;
            }
            let id = created.lock().unwrap_or_else(|e| e.into_inner()).clone();
            let Some(id) = id
                .filter(|_| sandbox.is_none())
                .or(sandbox.map(|_| String::new()))
            else {
                tokio::time::sleep(self.poll).await;
                continue;
            };
            let dir = container_dir(pod, &id);
            let now_held = self.is_held(sandbox, &dir);
            let now = Instant::now();
            if now_held {
                let earliest = if first_probe {
                    launched + self.fault.after()
                } else {
                    now
                };
                held.first.get_or_insert(earliest.min(now));
                held.last = Some(now);
            } else if held.first.is_some() {
                held.ended = Some(now);
                break;
            }
            first_probe = false;
            tokio::time::sleep(self.poll).await;
        }
        let (live, _) = launching.await.context("launch task")??;
        if sandbox.is_none() && container_dir(pod, &live.id) != live.dir {
            bail!(
                "container {} is in cgroup {}, not in {} where it was probed",
                live.id,
                live.dir.display(),
                container_dir(pod, &live.id).display()
            );
        }
        out.live = Some(live);
        Ok(())
    }
}
