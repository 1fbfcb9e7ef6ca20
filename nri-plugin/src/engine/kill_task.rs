//! The kill fault's life on the scheduler: wait for each planned firing, take it from the
//! ledger, signal the container's init process through its pidfd.

use std::sync::Arc;
use std::time::Instant;

use injector::faults::kill::KillFault;
use injector::{LedgerKey, Schedule, SplitMix64, Timing};

use super::Inner;

/// One armed kill fault of one container instance.
#[derive(Debug)]
pub(super) struct KillTarget {
    pub pod: String,
    pub container: String,
    pub container_id: String,
    pub pid: u32,
    pub key: LedgerKey,
    pub timing: Timing,
    pub kill: KillFault,
    pub started: Instant,
}

fn seed_for(target: &KillTarget) -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    nanos ^ u64::from(target.pid).rotate_left(32)
}

pub(super) async fn run(engine: Arc<Inner>, target: KillTarget) {
    let handle = match engine.signaller().open(target.pid) {
        Ok(handle) => handle,
        Err(err) => {
            tracing::warn!(pod = %target.pod, container = %target.container, pid = target.pid, error = %err, "kill: cannot take a handle on the container's init process; fault dropped");
            engine.disarm_finished(&target.container_id);
            return;
        }
    };
    let schedule = Schedule::new(&target.timing);
    let mut rng = SplitMix64::new(seed_for(&target));
    let mut index = 0u32;
    while let Some(firing) = schedule.firing(index, &mut rng) {
        index = index.saturating_add(1);
        let planned = target.started + firing.offset;
        tokio::time::sleep_until(planned.into()).await;
        let Some(ordinal) = engine.claim_firing(&target.key, target.timing.count) else {
            tracing::info!(pod = %target.pod, container = %target.container, fault = "kill", "count spent");
            break;
        };
        if !firing.fire {
            tracing::info!(pod = %target.pod, container = %target.container, fault = "kill", ordinal, "firing skipped by probability");
            continue;
        }
        let sent_at = Instant::now();
        let result = target.kill.execute(engine.signaller(), &handle);
        let lateness = sent_at.saturating_duration_since(planned);
        engine.stats().record("kill.lateness", lateness);
        match result {
            Ok(()) => tracing::info!(
                pod = %target.pod,
                container = %target.container,
                fault = "kill",
                signal = %target.kill.signal,
                pid = target.pid,
                ordinal,
                planned_after_ms = firing.offset.as_millis() as u64,
                lateness_us = lateness.as_micros() as u64,
                "signal sent"
            ),
            Err(err) => {
                // Nothing was signalled: give the firing back so `count` counts real kills.
                engine.release_firing(&target.key);
                tracing::info!(pod = %target.pod, container = %target.container, fault = "kill", error = %err, "container init is gone; nothing signalled");
                break;
            }
        }
        if target.timing.every.is_none() {
            break;
        }
    }
    engine.disarm_finished(&target.container_id);
}
