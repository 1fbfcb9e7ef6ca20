//! Recovery on request and at start: `ctl recover`, and the journal a previous run left.

use std::sync::atomic::Ordering;
use std::time::Duration;

use injector::FaultKey;
use tokio::sync::watch;

use super::error::RecoverError;
use super::introspect::{self, FaultRecord};
use super::journal_ops;
use super::state::{ArmedFault, Origin};
use super::stop::stop_and_wait;
use super::{lock, Engine};

impl Engine {
    /// Start-up: every fault a previous run left in the journal is recovered at once if its
    /// deadline passed, or resumed to be recovered at its deadline (or when Synchronize
    /// reports its target gone). It stands for its annotation's fault, keyed by its scope, so
    /// the container's start does not apply it again. Call before connecting to the runtime.
    pub fn replay_journal(&self) {
        let entries = self.inner.store.take_resumed();
        if !entries.is_empty() {
            tracing::info!(
                faults = entries.len(),
                "journal of a previous run found; recovering"
            );
        }
        let mut state = lock(&self.inner.state);
        for entry in entries {
            let (stop, stop_rx) = watch::channel(false);
            let id = self.inner.next_fault_id.fetch_add(1, Ordering::Relaxed);
            let key = FaultKey::of(entry.kind, &entry.pod_uid, &entry.container_name);
            // A pod-scoped fault's instance is its sandbox; a container's sandbox is unknown.
            let sandbox = if entry.kind.is_pod_scoped() {
                entry.container_id.clone()
            } else {
                String::new()
            };
            // Visible to `ctl list` and recoverable with `ctl recover ID`.
            let source = match entry.source.as_str() {
                "" => journal_ops::JOURNAL_SOURCE.to_string(),
                key => format!("{key} ({})", journal_ops::JOURNAL_SOURCE),
            };
            self.inner.registry.resumed(
                introspect::NewFault {
                    id,
                    pod: &entry.pod,
                    container: &entry.container_name,
                    container_id: &entry.container_id,
                    kind: entry.kind,
                    value: &entry.value,
                    source: &source,
                    holds: true,
                },
                entry.applied_at_unix_ms,
            );
            let instance = entry.container_id.clone();
            let task = journal_ops::resume(self.inner.clone(), entry, id, stop_rx);
            self.inner.after_reply.start(Box::pin(task));
            state.insert(
                key,
                ArmedFault {
                    id,
                    origin: Origin::Journal,
                    instance,
                    sandbox,
                    stop,
                },
            );
        }
    }

    /// `ctl recover`: stops fault `id` (or every fault) now and waits (bounded by `grace`)
    /// for each to run its recovery. Returns the faults' records after recovery; an id that
    /// is unknown or has ended already is an error.
    pub async fn recover(
        &self,
        id: Option<u64>,
        grace: Duration,
    ) -> Result<Vec<FaultRecord>, RecoverError> {
        if let Some(id) = id {
            match self.inner.registry.get(id) {
                None => return Err(RecoverError::Unknown(id)),
                Some(record) if !record.state.is_active() => {
                    return Err(RecoverError::Ended {
                        id,
                        state: record.state.as_str(),
                    })
                }
                Some(_) => {}
            }
        }
        let faults = lock(&self.inner.state).take(|_, fault| id.is_none_or(|id| fault.id == id));
        let ids: Vec<u64> = faults.iter().map(|fault| fault.id).collect();
        if !stop_and_wait(faults, grace).await {
            tracing::error!(
                grace_ms = grace.as_millis() as u64,
                "ctl recover: some faults did not finish recovering in time"
            );
        }
        for id in &ids {
            tracing::info!(fault_id = id, "recovered on operator request");
        }
        Ok(ids
            .into_iter()
            .filter_map(|id| self.inner.registry.get(id))
            .collect())
    }
}
