//! One armed fault of one container instance on the scheduler: wait for each planned firing,
//! take it from the ledger, act, hold, recover. A stop signal (container stopped or removed,
//! plugin shutdown) ends the wait at once and runs the recovery of a fault that is holding.

use std::sync::Arc;
use std::time::{Duration, Instant};

use injector::{FaultKey, FaultKind, Schedule, SplitMix64, Timing};
use tokio::sync::watch;

use super::state::Origin;
use super::{timer, Inner};

/// What the runner needs about its target.
#[derive(Debug, Clone)]
pub(super) struct Target {
    /// The engine's id of this armed fault.
    pub fault_id: u64,
    /// The annotation key it came from, or `ctl` (journaled, shown after a restart).
    pub source: String,
    /// The annotation value, as written (journaled, shown after a restart).
    pub value: String,
    pub pod: String,
    pub pod_uid: String,
    /// Container name ("" for a pod-scoped fault).
    pub container: String,
    /// The instance acted on: container id, or the pod's sandbox id (pod-scoped fault).
    pub container_id: String,
    /// The pod's sandbox id.
    pub sandbox: String,
    /// What the fault is: its scope and kind.
    pub key: FaultKey,
    /// Where it came from (how its firings are counted).
    pub origin: Origin,
    pub pid: u32,
    /// The pod's network namespace (pod-scoped faults: netem).
    pub netns: Option<std::path::PathBuf>,
    pub started: Instant,
}

/// A fault's effect for one firing: `fire` applies it, and a holding fault returns the
/// recovery to run when its `duration` ends or the fault is stopped.
pub(super) trait Effect: Send + Sync {
    fn kind(&self) -> FaultKind;
    /// Whether `fire` journals before any side effect (see `Fault::JOURNALS_FIRST`): its
    /// firing's count is then made durable with that journal record, not before.
    fn journals_first(&self) -> bool {
        false
    }
    /// Applies one firing; `Ok(Some(..))` holds until `duration` ends, then recovers.
    fn fire(
        &self,
        engine: &Arc<Inner>,
        target: &Target,
        firing: FiringInfo,
    ) -> impl std::future::Future<Output = Result<Option<Box<dyn Holding>>, FireError>> + Send;
}

/// Which firing this is, for logs and figures.
#[derive(Debug, Clone, Copy)]
pub(super) struct FiringInfo {
    /// 1-based, counted across container restarts.
    pub ordinal: u32,
    /// Planned offset from container start.
    pub offset: Duration,
    /// How late the firing started against its plan.
    pub lateness: Duration,
    /// The firing was claimed from the ledger in memory only: its count is written with the
    /// firing's first journal record.
    pub count_deferred: bool,
}

/// A fault that holds and must be recovered.
pub(super) trait Holding: Send {
    /// Ends the fault; runs once, whatever stopped it.
    fn recover(
        self: Box<Self>,
        engine: &Arc<Inner>,
        target: &Target,
    ) -> futures_core::future::BoxFuture<'static, ()>;
}

/// Why a firing did nothing.
#[derive(Debug)]
pub(super) enum FireError {
    /// The container is gone: the fault ends quietly and the firing is given back.
    TargetGone(String),
    /// The fault could not be applied: reported, the firing is given back, the fault ends.
    Failed(String),
    /// The fault could not be applied this time, nothing was done, and it may well apply a
    /// moment later (a freeze held in `FREEZING` by a task in uninterruptible sleep): the
    /// firing is tried again, [`RETRIES`] times, [`RETRY_PAUSE`] apart, then it is `Failed`.
    Passing(String),
}

/// How many times a passing failure is retried.
pub(super) const RETRIES: u32 = 4;
/// The pause before each retry.
pub(super) const RETRY_PAUSE: Duration = Duration::from_secs(1);

/// Where a fault's firings are counted.
enum Counter {
    /// In the durable ledger, shared by every instance of the fault's scope.
    Ledger(FaultKey),
    /// By this task alone (`ctl inject`: each injection has its own `count`).
    Own(u32),
}

impl Counter {
    fn of(target: &Target) -> Counter {
        match target.origin {
            Origin::Ctl => Counter::Own(0),
            Origin::Annotation | Origin::Journal => Counter::Ledger(target.key.clone()),
        }
    }

    /// Takes one firing: `Ok(None)` when `limit` is spent. A ledger firing is in the store's
    /// log before this returns, so a crash never lets it fire again; `Err` says why it could
    /// not be recorded (the firing is given back and must not act). With `deferred`, the
    /// count is taken in memory only and written with the firing's first journal record
    /// (the effect journals before acting): a crash between the claim and the effect then
    /// leaves the firing untaken, and it fires after the restart.
    async fn claim(
        &mut self,
        engine: &Inner,
        limit: Option<u32>,
        deferred: bool,
    ) -> Result<Option<u32>, String> {
        match self {
            Counter::Ledger(key) if deferred => Ok(engine.store.claim_deferred(&*key, limit)),
            Counter::Ledger(key) => {
                let Some(claim) = engine.claim_firing(&*key, limit) else {
                    return Ok(None);
                };
                if let Err(err) = claim.ack.acked().await {
                    engine.release_firing(&*key);
                    return Err(format!(
                        "cannot record the firing durably, so it does not act: {err}"
                    ));
                }
                Ok(Some(claim.ordinal))
            }
            Counter::Own(taken) => {
                if limit.is_some_and(|limit| *taken >= limit) {
                    return Ok(None);
                }
                *taken += 1;
                Ok(Some(*taken))
            }
        }
    }

    /// Makes a deferred claim durable that no journal record will carry (a firing skipped by
    /// its probability draw still counts).
    fn settle(&self, engine: &Inner, deferred: bool) {
        if let (Counter::Ledger(key), true) = (self, deferred) {
            engine.store.settle(key);
        }
    }

    /// Gives back a firing that did nothing.
    fn release(&mut self, engine: &Inner) {
        match self {
            Counter::Ledger(key) => engine.release_firing(&*key),
            Counter::Own(taken) => *taken = taken.saturating_sub(1),
        }
    }
}

/// Resolves when `stop` is raised (or its sender dropped).
pub(super) async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|raised| *raised).await;
}

fn seed(target: &Target) -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    nanos ^ u64::from(target.pid).rotate_left(32)
}

/// Runs `effect` on `target` per `timing` until the schedule, the count or a stop ends it.
pub(super) async fn run<E: Effect>(
    engine: Arc<Inner>,
    target: Target,
    timing: Timing,
    effect: E,
    mut stop: watch::Receiver<bool>,
) {
    let kind = effect.kind();
    let mut counter = Counter::of(&target);
    let schedule = Schedule::new(&timing);
    let mut rng = SplitMix64::new(seed(&target));
    let mut index = 0u32;
    while let Some(firing) = schedule.firing(index, &mut rng) {
        index = index.saturating_add(1);
        let planned = target.started + firing.offset;
        engine.registry.planned(target.fault_id, planned);
        // The firing is claimed (durably) just before its instant, then the effect waits for
        // the instant itself on the precise timer: the claim's write is not in the lateness.
        // A crash in those last ms leaves a kill counted and not done: a fault never fires
        // more than `count` times. A fault that journals before acting has its count written
        // with that record instead (`Counter::claim`), so its firing is not lost that way.
        let claim_at = planned.checked_sub(timer::LEAD).unwrap_or(planned);
        // Biased, the stop first: a task started after its stop was raised (a stop in the
        // same NRI exchange as the start, see `after_reply`) never claims nor fires.
        tokio::select! {
            biased;
            _ = stopped(&mut stop) => break,
            _ = tokio::time::sleep_until(claim_at.into()) => {}
        }
        let deferred = effect.journals_first() && matches!(counter, Counter::Ledger(_));
        let ordinal = match counter.claim(&engine, timing.count, deferred).await {
            Ok(Some(ordinal)) => ordinal,
            Ok(None) => {
                tracing::info!(pod = %target.pod, container = %target.container, fault = kind.as_str(), "count spent");
                break;
            }
            Err(reason) => {
                engine.registry.failed(target.fault_id, &reason);
                tracing::error!(pod = %target.pod, container = %target.container, fault = kind.as_str(), reason = %reason, "firing not applied");
                break;
            }
        };
        let stopped_before = tokio::select! {
            biased;
            _ = stopped(&mut stop) => true,
            _ = timer::sleep_until(planned) => false,
        };
        if stopped_before {
            counter.release(&engine);
            break;
        }
        if !firing.fire {
            counter.settle(&engine, deferred);
            tracing::info!(pod = %target.pod, container = %target.container, fault = kind.as_str(), ordinal, "firing skipped by probability");
            continue;
        }
        let info = FiringInfo {
            ordinal,
            offset: firing.offset,
            lateness: Instant::now().saturating_duration_since(planned),
            count_deferred: deferred,
        };
        let Some((fired, lateness)) =
            fire_retrying(&effect, &engine, &target, info, planned, &mut stop).await
        else {
            counter.release(&engine);
            break;
        };
        match fired {
            Ok(None) => engine.registry.applied(target.fault_id, lateness),
            Ok(Some(holding)) => {
                engine.registry.applied(target.fault_id, lateness);
                let hold = timing.duration.unwrap_or(Duration::MAX);
                let until = Instant::now().checked_add(hold);
                let stopped_early = tokio::select! {
                    _ = async { match until { Some(until) => tokio::time::sleep_until(until.into()).await, None => std::future::pending().await } } => false,
                    _ = stopped(&mut stop) => true,
                };
                holding.recover(&engine, &target).await;
                engine.registry.recovered(target.fault_id);
                if stopped_early {
                    break;
                }
            }
            Err(FireError::TargetGone(reason)) => {
                counter.release(&engine);
                tracing::info!(pod = %target.pod, container = %target.container, fault = kind.as_str(), reason = %reason, "container is gone; nothing done");
                break;
            }
            Err(FireError::Failed(reason) | FireError::Passing(reason)) => {
                counter.release(&engine);
                engine.registry.failed(target.fault_id, &reason);
                tracing::error!(pod = %target.pod, container = %target.container, fault = kind.as_str(), reason = %reason, "fault could not be applied; container unaffected");
                break;
            }
        }
        if timing.every.is_none() {
            break;
        }
    }
    engine.registry.ended(target.fault_id);
    engine.disarm(&target.key, target.fault_id);
}

/// Fires `effect`, retrying a passing failure ([`RETRIES`] times, [`RETRY_PAUSE`] apart, the
/// same firing); returns what the last try gave and its lateness against `planned`, or `None`
/// when the fault was stopped during a pause (nothing was done).
async fn fire_retrying<E: Effect>(
    effect: &E,
    engine: &Arc<Inner>,
    target: &Target,
    mut info: FiringInfo,
    planned: Instant,
    stop: &mut watch::Receiver<bool>,
) -> Option<(Result<Option<Box<dyn Holding>>, FireError>, Duration)> {
    let mut retries = 0;
    loop {
        match effect.fire(engine, target, info).await {
            Err(FireError::Passing(reason)) if retries < RETRIES => {
                retries += 1;
                tracing::warn!(pod = %target.pod, container = %target.container, fault = effect.kind().as_str(), reason = %reason, retry = retries, of = RETRIES, "fault could not be applied this time; nothing done; retrying in {RETRY_PAUSE:?}");
                tokio::select! {
                    _ = tokio::time::sleep(RETRY_PAUSE) => {}
                    _ = stopped(stop) => return None,
                }
                info.lateness = Instant::now().saturating_duration_since(planned);
            }
            Err(FireError::Passing(reason)) => {
                let reason = format!(
                    "{reason} (tried {} times, {RETRY_PAUSE:?} apart)",
                    RETRIES + 1
                );
                return Some((Err(FireError::Failed(reason)), info.lateness));
            }
            fired => return Some((fired, info.lateness)),
        }
    }
}
