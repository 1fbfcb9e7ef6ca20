//! Scheduling glue between the runner and the faults: each kind's apply and recovery live in
//! `injector::faults::<kind>` behind one trait ([`Fault`]); here a firing finds its target
//! (the container's cgroup, its pod's network namespace...), calls the fault's apply with the
//! engine's seams and the journal as its undo log, and holds what it returns until the
//! runner recovers it.

mod undo_log;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures_core::future::BoxFuture;
use injector::faults::freeze::FreezeFault;
use injector::faults::kill::KillFault;
use injector::faults::oom::OomFault;
use injector::faults::stress::StressFault;
use injector::faults::{Container, Fault, Undo};
use injector::seams::cgroup::{resolve_from_proc, ContainerCgroup};
use injector::seams::signal::SignalError;
use injector::FaultKind;

use super::runner::{Effect, FireError, FiringInfo, Holding, Target};
use super::Inner;
use undo_log::JournalLog;

/// Finds what a firing acts on, at fire time.
type Resolve<T> = Box<dyn Fn(&Inner, &Target) -> Result<Arc<T>, FireError> + Send + Sync>;

/// An armed fault of kind `F`.
pub(super) struct FaultEffect<F: Fault> {
    fault: F,
    hold: Option<Duration>,
    resolve: Arc<Resolve<F::Target>>,
}

impl<F: Fault> std::fmt::Debug for FaultEffect<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FaultEffect")
            .field("kind", &F::KIND)
            .finish_non_exhaustive()
    }
}

fn cgroup_of(engine: &Inner, pid: u32) -> Result<ContainerCgroup, FireError> {
    resolve_from_proc(&engine.seams.cgroups, &engine.seams.proc_root, pid).map_err(|err| {
        if err.is_vanished() {
            FireError::TargetGone(err.to_string())
        } else {
            FireError::Failed(format!("finding the container's cgroup: {err}"))
        }
    })
}

/// A kill: the handle on the container's init process is taken now, at arm time, so a
/// recycled PID is never hit.
pub(super) fn kill(
    engine: &Inner,
    kill: KillFault,
    pid: u32,
) -> Result<FaultEffect<KillFault>, SignalError> {
    let process = Arc::new(engine.signaller().open(pid)?);
    let resolve: Resolve<_> = Box::new(move |_, _| Ok(process.clone()));
    Ok(FaultEffect {
        fault: kill,
        hold: None,
        resolve: Arc::new(resolve),
    })
}

/// A freeze of the container's cgroup.
pub(super) fn freeze(hold: Option<Duration>) -> FaultEffect<FreezeFault> {
    FaultEffect {
        fault: FreezeFault,
        hold,
        resolve: Arc::new(Box::new(|engine, target| {
            cgroup_of(engine, target.pid).map(Arc::new)
        })),
    }
}

fn container(hold: Duration, memory_limit: Option<u64>) -> Resolve<Container> {
    Box::new(move |engine, target| {
        Ok(Arc::new(Container {
            cgroup: cgroup_of(engine, target.pid)?,
            pid: target.pid,
            memory_limit,
            hold,
        }))
    })
}

/// Stressors in the container's cgroups.
pub(super) fn stress(
    stress: StressFault,
    hold: Duration,
    memory_limit: Option<u64>,
) -> FaultEffect<StressFault> {
    FaultEffect {
        fault: stress,
        hold: Some(hold),
        resolve: Arc::new(container(hold, memory_limit)),
    }
}

/// An OOM score raise or kill.
pub(super) fn oom(
    oom: OomFault,
    hold: Option<Duration>,
    memory_limit: Option<u64>,
) -> FaultEffect<OomFault> {
    FaultEffect {
        fault: oom,
        hold,
        resolve: Arc::new(container(hold.unwrap_or_default(), memory_limit)),
    }
}

/// A network fault (netem, partition, bandwidth) in the pod's network namespace.
pub(super) fn in_netns<F: Fault<Target = PathBuf>>(
    fault: F,
    netns: PathBuf,
    hold: Option<Duration>,
) -> FaultEffect<F> {
    let netns = Arc::new(netns);
    FaultEffect {
        fault,
        hold,
        resolve: Arc::new(Box::new(move |_, _| Ok(netns.clone()))),
    }
}

/// Applies one firing (blocking: on a blocking thread unless the kind never waits).
fn apply<F>(
    engine: &Arc<Inner>,
    target: &Target,
    fault: &F,
    hold: Option<Duration>,
    resolve: &Resolve<F::Target>,
    firing: FiringInfo,
) -> Result<Option<Box<dyn Holding>>, FireError>
where
    F: Fault + Send + Sync + 'static,
    F::Undo: 'static,
{
    // The fault logs its own line (`signal sent`, `netem installed`...) inside this span.
    let span = tracing::info_span!(
        "firing",
        pod = %target.pod,
        container = %target.container,
        ordinal = firing.ordinal,
        planned_after_ms = firing.offset.as_millis() as u64,
        lateness_us = firing.lateness.as_micros() as u64,
        fault = F::KIND.as_str(),
    );
    let _entered = span.enter();
    let on = resolve(engine, target)?;
    let deferred = firing.count_deferred.then(|| target.key.clone());
    let mut log = JournalLog::new(engine.clone(), target.clone(), F::KIND, hold, deferred);
    let applied = fault.apply(&engine.seams.kernel(), &on, &mut log);
    if applied.is_ok() {
        log.settle_count();
    }
    let undo = match applied {
        Ok(undo) => undo,
        Err(err) if F::target_gone(&err) => return Err(FireError::TargetGone(err.to_string())),
        Err(err) if F::transient(&err) => return Err(FireError::Passing(err.to_string())),
        Err(err) => return Err(FireError::Failed(err.to_string())),
    };
    if undo.recovery().is_none() {
        log.clear_all();
        return Ok(None);
    }
    Ok(Some(Box::new(Held::<F> { undo, log })))
}

impl<F> Effect for FaultEffect<F>
where
    F: Fault + Clone + Send + Sync + 'static,
    F::Target: Send + Sync,
    F::Undo: 'static,
{
    fn kind(&self) -> FaultKind {
        F::KIND
    }

    fn journals_first(&self) -> bool {
        F::JOURNALS_FIRST
    }

    async fn fire(
        &self,
        engine: &Arc<Inner>,
        target: &Target,
        firing: FiringInfo,
    ) -> Result<Option<Box<dyn Holding>>, FireError> {
        if !F::BLOCKS {
            return apply(
                engine,
                target,
                &self.fault,
                self.hold,
                &self.resolve,
                firing,
            );
        }
        let (engine, target) = (engine.clone(), target.clone());
        let (fault, hold, resolve) = (self.fault.clone(), self.hold, self.resolve.clone());
        tokio::task::spawn_blocking(move || apply(&engine, &target, &fault, hold, &resolve, firing))
            .await
            .map_err(|err| FireError::Failed(format!("{} task: {err}", F::KIND.as_str())))?
    }
}

/// A firing that holds: its undo, and its journal entries, cleared once it is recovered.
struct Held<F: Fault> {
    undo: F::Undo,
    log: JournalLog,
}

impl<F> Holding for Held<F>
where
    F: Fault + 'static,
    F::Undo: 'static,
{
    fn recover(self: Box<Self>, engine: &Arc<Inner>, target: &Target) -> BoxFuture<'static, ()> {
        let (engine, target) = (engine.clone(), target.clone());
        Box::pin(async move {
            let Held { undo, mut log } = *self;
            let kernel_engine = engine.clone();
            let recovered = tokio::task::spawn_blocking(move || {
                let result = F::recover(&kernel_engine.seams.kernel(), undo);
                if result.is_ok() {
                    log.clear_all();
                }
                result.map_err(|err| err.to_string())
            })
            .await
            .unwrap_or_else(|err| Err(format!("recovery task: {err}")));
            match recovered {
                Ok(()) => {
                    tracing::info!(pod = %target.pod, container = %target.container, fault = F::KIND.as_str(), "{}", F::RECOVERED)
                }
                Err(err) => {
                    tracing::error!(pod = %target.pod, container = %target.container, fault = F::KIND.as_str(), error = %err, "recovery failed; kept in the journal for the next start")
                }
            }
        })
    }
}
