//! The wrapper's memory of its pod: each container's exec fault windows (from the plan read at
//! Create), when it started, and the execs the wrapper answers itself (`fail`, `hang`) or
//! holds (`delay`). Plain data behind one lock; nothing here waits or touches the disk.

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::time::{Duration, Instant, SystemTime};

use injector::faults::exec::{ExecAction, ExecWindow};
use injector::{Rng, SplitMix64};
use tokio::sync::watch;

use crate::plan::ExecPlan;

/// How an exec ended: its status and when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exit {
    /// The exit status containerd reports (N for `fail`, 128+signal when killed).
    pub status: u32,
    /// When.
    pub at: SystemTime,
}

/// An exec the wrapper answers itself: the runc shim never sees it, so no process runs.
#[derive(Debug)]
pub struct Synthetic {
    /// What it does.
    pub action: ExecAction,
    /// containerd's stdio of the exec (FIFO paths), as ExecProcessRequest gave them.
    pub stdio: Stdio,
    /// Write ends of stdout/stderr held while it "runs" (closing them ends containerd's copy).
    pub held: Vec<OwnedFd>,
    /// `None` while running; Wait answers once it is set.
    pub exit: watch::Sender<Option<Exit>>,
}

/// The stdio fields of an exec.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stdio {
    /// stdin FIFO (never opened: the command does not run).
    pub stdin: String,
    /// stdout FIFO.
    pub stdout: String,
    /// stderr FIFO.
    pub stderr: String,
    /// A terminal was asked for.
    pub terminal: bool,
}

/// One window of a container, with the annotation it came from (for messages).
#[derive(Debug, Clone)]
pub struct Window {
    /// `key: "value"` of the pod annotation.
    pub origin: String,
    /// What `after` counts from: `None` for the container's start (annotation faults), the
    /// moment the wrapper read it for an injected fault.
    pub since: Option<Instant>,
    /// The decisions so far.
    pub window: ExecWindow,
}

/// When an inject file was last seen changed: modification time and length.
pub type Stamp = (SystemTime, u64);

#[derive(Debug, Default)]
struct Container {
    name: String,
    started: Option<Instant>,
    /// The last stamp of the file `ctl inject` writes for this container, and its faults.
    stamp: Option<Stamp>,
    injected: Vec<Window>,
}

/// What to do with an exec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Not faulted: forward it.
    Forward,
    /// Forward it; its Start is held this long.
    Delay(Duration, String),
    /// Answer it here (fail or hang).
    Synthesize(ExecAction, String),
}

/// Keys an exec: (container id, exec id).
pub type ExecKey = (String, String);

/// The pod's exec faults and the execs in flight.
#[derive(Debug)]
pub struct PodExecs {
    containers: HashMap<String, Container>,
    /// By container name, so `count` holds across restarts of the container in this pod.
    windows: HashMap<String, Vec<Window>>,
    synthetic: HashMap<ExecKey, Synthetic>,
    delayed: HashMap<ExecKey, Duration>,
    rng: SplitMix64,
}

impl Default for PodExecs {
    fn default() -> Self {
        let seed = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0)
            ^ u64::from(std::process::id());
        PodExecs {
            containers: HashMap::new(),
            windows: HashMap::new(),
            synthetic: HashMap::new(),
            delayed: HashMap::new(),
            rng: SplitMix64::new(seed),
        }
    }
}

impl PodExecs {
    /// Task Create of container `id` with its `plan`. A restarted container (same name, same
    /// plan) keeps the windows, and so what `count` has used up.
    pub fn created(&mut self, id: &str, plan: ExecPlan) {
        let ExecPlan { name, windows } = plan;
        let same = self.windows.get(&name).is_some_and(|old| {
            old.len() == windows.len()
                && old.iter().zip(&windows).all(|(a, b)| a.origin == b.origin)
        });
        if !same {
            if windows.is_empty() {
                self.windows.remove(&name);
            } else {
                self.windows.insert(name.clone(), windows);
            }
        }
        self.containers.insert(
            id.to_string(),
            Container {
                name,
                ..Container::default()
            },
        );
    }

    /// The containers whose inject files to look at: container id, last stamp.
    pub fn watched(&self) -> Vec<(String, Option<Stamp>)> {
        self.containers
            .iter()
            .map(|(id, c)| (id.clone(), c.stamp))
            .collect()
    }

    /// The injected faults of container `id` (empty when its file is gone), read at `stamp`.
    pub fn set_injected(&mut self, id: &str, stamp: Option<Stamp>, windows: Vec<Window>) {
        if let Some(c) = self.containers.get_mut(id) {
            c.stamp = stamp;
            c.injected = windows;
        }
    }

    /// Task Start of container `id` (its init process): `after` counts from here.
    pub fn started(&mut self, id: &str, at: Instant) {
        if let Some(c) = self.containers.get_mut(id) {
            c.started.get_or_insert(at);
        }
    }

    /// Task Delete of container `id` (not of an exec).
    pub fn deleted(&mut self, id: &str) {
        self.containers.remove(id);
        self.delayed.retain(|(c, _), _| c != id);
    }

    /// Whether any container has exec faults (else Exec frames need no decoding).
    pub fn has_faults(&self) -> bool {
        !self.windows.is_empty() || self.containers.values().any(|c| !c.injected.is_empty())
    }

    /// Whether an exec is being answered here (else Wait, Kill, ... need no decoding).
    pub fn has_synthetic(&self) -> bool {
        !self.synthetic.is_empty()
    }

    /// Decides for exec `exec_id` of container `id` with command line `argv`, at `now`.
    pub fn decide(
        &mut self,
        id: &str,
        exec_id: &str,
        argv: &[String],
        stdio: Stdio,
        now: Instant,
    ) -> Decision {
        let Some(container) = self.containers.get_mut(id) else {
            return Decision::Forward;
        };
        let started = container.started.unwrap_or(now);
        let annotated = self.windows.get_mut(&container.name).into_iter().flatten();
        for w in annotated.chain(container.injected.iter_mut()) {
            let elapsed = now.saturating_duration_since(w.since.unwrap_or(started));
            let draw = self.rng.next_f64();
            let Some(action) = w.window.decide(argv, elapsed, draw) else {
                continue;
            };
            let key = (id.to_string(), exec_id.to_string());
            return match action {
                ExecAction::Delay(d) => {
                    self.delayed.insert(key, d);
                    Decision::Delay(d, w.origin.clone())
                }
                action => {
                    let (exit, _) = watch::channel(None);
                    self.synthetic.insert(
                        key,
                        Synthetic {
                            action,
                            stdio,
                            held: Vec::new(),
                            exit,
                        },
                    );
                    Decision::Synthesize(action, w.origin.clone())
                }
            };
        }
        Decision::Forward
    }

    /// The hold of a delayed exec, taken at its Start.
    pub fn take_delay(&mut self, key: &ExecKey) -> Option<Duration> {
        self.delayed.remove(key)
    }

    /// An exec answered here.
    pub fn synthetic(&mut self, key: &ExecKey) -> Option<&mut Synthetic> {
        self.synthetic.get_mut(key)
    }

    /// Forgets an exec answered here (its Delete).
    pub fn remove_synthetic(&mut self, key: &ExecKey) -> Option<Synthetic> {
        self.synthetic.remove(key)
    }
}

impl Synthetic {
    /// Ends it with `status` (once): its stdio write ends close, then Wait answers.
    pub fn finish(&mut self, status: u32) -> Exit {
        if let Some(exit) = *self.exit.borrow() {
            return exit;
        }
        self.held.clear();
        let exit = Exit {
            status,
            at: SystemTime::now(),
        };
        self.exit.send_replace(Some(exit));
        exit
    }

    /// Its exit, if it ended.
    pub fn exited(&self) -> Option<Exit> {
        *self.exit.borrow()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use injector::FaultKind;
    use injector::{FaultRequest, FaultSpec};

    fn plan(name: &str, value: &str) -> ExecPlan {
        let req = FaultRequest::parse(FaultKind::Exec, "exec.nri-chaos.io", value).unwrap();
        let FaultSpec::Exec(fault) = req.spec else {
            panic!()
        };
        ExecPlan {
            name: name.into(),
            windows: vec![Window {
                origin: format!("exec.nri-chaos.io: {value:?}"),
                since: None,
                window: ExecWindow::new(fault, req.timing),
            }],
        }
    }

    fn argv(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn decisions_follow_match_and_count_across_restarts() {
        let mut pod = PodExecs::default();
        let t0 = Instant::now();
        pod.created(
            "c1",
            plan("app", "{fail: {exit_code: 7}, match: healthz, count: 2}"),
        );
        pod.started("c1", t0);
        let hz = argv(&["sh", "-c", "echo healthz"]);
        let d = pod.decide("c1", "e1", &hz, Stdio::default(), t0);
        assert!(
            matches!(
                d,
                Decision::Synthesize(ExecAction::Fail { exit_code: 7 }, _)
            ),
            "{d:?}"
        );
        assert!(pod.has_synthetic());
        let hi = argv(&["echo", "hi"]);
        assert_eq!(
            pod.decide("c1", "e2", &hi, Stdio::default(), t0),
            Decision::Forward
        );
        // The container restarts (same name, same plan): one exec of count is left.
        pod.deleted("c1");
        pod.created(
            "c2",
            plan("app", "{fail: {exit_code: 7}, match: healthz, count: 2}"),
        );
        pod.started("c2", t0);
        assert!(matches!(
            pod.decide("c2", "e3", &hz, Stdio::default(), t0),
            Decision::Synthesize(..)
        ));
        assert_eq!(
            pod.decide("c2", "e4", &hz, Stdio::default(), t0),
            Decision::Forward
        );
        // A container without a plan, or unknown: forwarded.
        pod.created("c3", ExecPlan::default());
        assert_eq!(
            pod.decide("c3", "e5", &hz, Stdio::default(), t0),
            Decision::Forward
        );
        assert_eq!(
            pod.decide("nope", "e6", &hz, Stdio::default(), t0),
            Decision::Forward
        );
    }

    #[test]
    fn delay_is_held_once_and_synthetic_execs_finish_once() {
        let mut pod = PodExecs::default();
        let t0 = Instant::now();
        pod.created("c1", plan("app", "{delay: 2s, after: 1s}"));
        pod.started("c1", t0);
        let a = argv(&["true"]);
        assert_eq!(
            pod.decide("c1", "e0", &a, Stdio::default(), t0),
            Decision::Forward
        );
        let later = t0 + Duration::from_secs(1);
        assert!(matches!(
            pod.decide("c1", "e1", &a, Stdio::default(), later),
            Decision::Delay(d, _) if d == Duration::from_secs(2)
        ));
        let key = ("c1".to_string(), "e1".to_string());
        assert_eq!(pod.take_delay(&key), Some(Duration::from_secs(2)));
        assert_eq!(pod.take_delay(&key), None);

        pod.created("c2", plan("hung", "{hang: true}"));
        pod.started("c2", t0);
        assert!(matches!(
            pod.decide("c2", "h", &a, Stdio::default(), t0),
            Decision::Synthesize(ExecAction::Hang, _)
        ));
        let key = ("c2".to_string(), "h".to_string());
        let s = pod.synthetic(&key).unwrap();
        let mut rx = s.exit.subscribe();
        assert_eq!(s.exited(), None);
        assert_eq!(s.finish(137).status, 137);
        assert_eq!(s.finish(1).status, 137);
        assert_eq!(rx.borrow_and_update().map(|e| e.status), Some(137));
        assert!(pod.remove_synthetic(&key).is_some());
        assert!(!pod.has_synthetic());
    }
}
