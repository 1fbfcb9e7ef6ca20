//! The engine's use of the durable store (`crate::store`): every fault with a side effect to
//! undo is journaled (durable) before the side effect and cleared after its recovery; each
//! firing is claimed from the ledger; at start, what a previous run left is recovered
//! (deadline passed) or resumed (its remaining time).

use std::sync::Arc;
use std::time::Duration;

use injector::journal::{now_unix_ms, recover_entry};
use injector::{FaultKey, FaultKind, JournalEntry, Recovery};
use tokio::sync::watch;

use super::runner::{stopped, Target};
use super::Inner;
use crate::store::Claim;

/// The source `ctl list` shows for a fault resumed from the journal at start.
pub(super) const JOURNAL_SOURCE: &str = "journal";

/// A journal entry for `target`, holding until `hold` from now (None: until stopped).
pub(super) fn entry(
    target: &Target,
    kind: FaultKind,
    hold: Option<Duration>,
    recovery: Recovery,
) -> JournalEntry {
    let now = now_unix_ms();
    JournalEntry {
        id: injector::journal::new_fault_id(),
        pod: target.pod.clone(),
        pod_uid: target.pod_uid.clone(),
        container_id: target.container_id.clone(),
        container_name: target.container.clone(),
        kind,
        applied_at_unix_ms: now,
        deadline_unix_ms: hold.map(|hold| now.saturating_add(hold.as_millis() as u64)),
        recovery,
        source: target.source.clone(),
        value: target.value.clone(),
    }
}

impl Inner {
    /// Takes one firing from the ledger; None when `count` is spent. Never blocks: the
    /// claim's ack says when the count is in the log (a fault task awaits it before acting).
    pub(crate) fn claim_firing(
        &self,
        key: impl Into<FaultKey>,
        limit: Option<u32>,
    ) -> Option<Claim> {
        self.store.claim(key, limit)
    }

    /// Gives back a firing that did nothing (the target was already gone).
    pub(crate) fn release_firing(&self, key: impl Into<FaultKey>) {
        self.store.release(key);
    }

    /// Runs the recovery an entry describes (blocking: call on a blocking thread), then
    /// clears it. A failed recovery stays in the journal for the next start to retry.
    pub(super) fn recover_journaled(&self, entry: &JournalEntry) -> bool {
        match recover_entry(entry, &self.seams.kernel()) {
            Ok(()) => {
                if let Err(err) = self.store.clear(&entry.id).wait() {
                    tracing::error!(fault_id = %entry.id, error = %err, "clearing a recovered fault from the journal; the next start repeats its recovery");
                }
                true
            }
            Err(err) => {
                tracing::error!(fault_id = %entry.id, pod = %entry.pod, container = %entry.container_name, fault = entry.kind.as_str(), error = %err, "recovery failed; kept in the journal for the next start");
                false
            }
        }
    }
}

/// Recovers `entry` on a blocking thread.
pub(super) async fn recover_blocking(engine: &Arc<Inner>, entry: JournalEntry) -> bool {
    let engine = engine.clone();
    tokio::task::spawn_blocking(move || engine.recover_journaled(&entry))
        .await
        .unwrap_or(false)
}

/// A fault found in the journal at start: recovered at its deadline, or at once if that
/// passed, or when its container is reported gone (stop signal).
pub(super) async fn resume(
    engine: Arc<Inner>,
    entry: JournalEntry,
    fault_id: u64,
    mut stop: watch::Receiver<bool>,
) {
    let now = now_unix_ms();
    let remaining = entry
        .deadline_unix_ms
        .map(|deadline| Duration::from_millis(deadline.saturating_sub(now)));
    match remaining {
        Some(remaining) if !remaining.is_zero() => {
            tracing::info!(fault_id = %entry.id, pod = %entry.pod, container = %entry.container_name, fault = entry.kind.as_str(), remaining_ms = remaining.as_millis() as u64, "resumed from the journal; recovery at its deadline");
            tokio::select! {
                _ = tokio::time::sleep(remaining) => {}
                _ = stopped(&mut stop) => {}
            }
        }
        Some(_) => {}
        None => {
            tracing::info!(fault_id = %entry.id, pod = %entry.pod, container = %entry.container_name, fault = entry.kind.as_str(), "resumed from the journal; recovery when the container stops");
            stopped(&mut stop).await;
        }
    }
    let id = entry.id.clone();
    let (pod, container, kind) = (entry.pod.clone(), entry.container_name.clone(), entry.kind);
    let key = injector::FaultKey::of(entry.kind, &entry.pod_uid, &entry.container_name);
    if recover_blocking(&engine, entry).await {
        engine.registry.recovered(fault_id);
        tracing::info!(fault_id = %id, pod = %pod, container = %container, fault = kind.as_str(), "recovered from the journal");
    } else {
        engine.registry.failed(
            fault_id,
            "recovery failed; kept in the journal for the next start",
        );
    }
    engine.registry.ended(fault_id);
    engine.disarm(&key, fault_id);
}
