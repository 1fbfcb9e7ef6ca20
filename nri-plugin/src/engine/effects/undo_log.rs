//! The engine's journal as a fault's [`UndoLog`]: each record is a journal entry of the
//! firing's target, written before the side effect it covers.

use std::sync::Arc;
use std::time::Duration;

use injector::faults::{Slot, UndoLog, UndoLogError};
use injector::{FaultKey, FaultKind, JournalEntry, Recovery};

use crate::engine::journal_ops::entry;
use crate::engine::runner::Target;
use crate::engine::Inner;
use crate::store::AckError;

/// The journal entries of one firing.
pub(super) struct JournalLog {
    engine: Arc<Inner>,
    target: Target,
    kind: FaultKind,
    hold: Option<Duration>,
    entries: Vec<Option<JournalEntry>>,
    /// The ledger key of a deferred claim whose count is not yet durable: written with the
    /// first record ([`crate::store::Store::record_firing`]).
    count_with_first: Option<FaultKey>,
}

fn journal_error(op: &'static str) -> impl FnOnce(AckError) -> UndoLogError {
    move |err| UndoLogError::Journal {
        op,
        reason: err.to_string(),
    }
}

impl JournalLog {
    pub(super) fn new(
        engine: Arc<Inner>,
        target: Target,
        kind: FaultKind,
        hold: Option<Duration>,
        count_with_first: Option<FaultKey>,
    ) -> JournalLog {
        JournalLog {
            engine,
            target,
            kind,
            hold,
            entries: Vec::new(),
            count_with_first,
        }
    }

    /// The deferred count no record carried (the firing journaled nothing) is made durable
    /// on its own.
    pub(super) fn settle_count(&mut self) {
        if let Some(key) = self.count_with_first.take() {
            self.engine.store.settle(key);
        }
    }

    /// Clears every entry still recorded (the firing is recovered).
    pub(super) fn clear_all(&mut self) {
        for slot in 0..self.entries.len() {
            if let Err(err) = self.clear(Slot(slot)) {
                tracing::error!(pod = %self.target.pod, container = %self.target.container, fault = self.kind.as_str(), error = %err, "clearing a recovered fault from the journal");
            }
        }
    }
}

impl UndoLog for JournalLog {
    fn record(&mut self, recovery: Recovery) -> Result<Slot, UndoLogError> {
        let journaled = entry(&self.target, self.kind, self.hold, recovery);
        let ack = match self.count_with_first.take() {
            Some(key) => self.engine.store.record_firing(&journaled, key),
            None => self.engine.store.record(&journaled),
        };
        ack.wait().map_err(journal_error("record"))?;
        self.entries.push(Some(journaled));
        Ok(Slot(self.entries.len() - 1))
    }

    fn update(&mut self, slot: Slot, recovery: Recovery) -> Result<(), UndoLogError> {
        let Some(Some(journaled)) = self.entries.get_mut(slot.0) else {
            return Ok(());
        };
        journaled.recovery = recovery;
        self.engine
            .store
            .record(journaled)
            .wait()
            .map_err(journal_error("update"))
    }

    fn clear(&mut self, slot: Slot) -> Result<(), UndoLogError> {
        let Some(journaled) = self.entries.get_mut(slot.0).and_then(Option::take) else {
            return Ok(());
        };
        self.engine
            .store
            .clear(&journaled.id)
            .wait()
            .map_err(journal_error("clear"))
            .inspect_err(|_| {
                // Kept: a clear that failed is retried by the next clear_all, or replayed
                // (a no-op recovery) at the next start.
                if let Some(s) = self.entries.get_mut(slot.0) {
                    *s = Some(journaled.clone());
                }
            })
    }
}
