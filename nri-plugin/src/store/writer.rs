//! The one writer: takes every operation submitted since its last batch (the channel, then
//! the overflow, then the ledger's changes), appends them with one write and one fsync, and
//! only then acknowledges them (firing counts are acknowledged once written, just before the
//! fsync: see [`super::Claim`]). A failed write is acknowledged as failed, the ledger's
//! changes are put back, and the next batch rewrites the whole log from the durable state
//! (so a half-written batch never stays in it).

use std::sync::atomic::Ordering;

use injector::store::{encode, Record, StoreError, StoreFile, StoreState, COMPACT_SLACK};
use injector::LedgerChange;
use tokio::sync::mpsc;

use super::{lock, AckError, AckTx, Op, Shared};

/// Operations taken from the channel for one batch at most.
const MAX_BATCH: usize = 1024;

/// Where the writer writes: the store's log, or a test's recording double.
pub(crate) trait Sink: Send + 'static {
    /// Appends encoded records (not yet durable).
    fn append(&mut self, bytes: &[u8], records: usize) -> Result<(), StoreError>;
    /// Makes the appended records durable.
    fn sync(&mut self) -> Result<(), StoreError>;
    /// Rewrites the log as `state`, durably.
    fn compact(&mut self, state: &StoreState) -> Result<(), StoreError>;
    /// Records in the log.
    fn records(&self) -> usize;
}

impl Sink for StoreFile {
    fn append(&mut self, bytes: &[u8], records: usize) -> Result<(), StoreError> {
        StoreFile::append(self, bytes, records)
    }
    fn sync(&mut self) -> Result<(), StoreError> {
        StoreFile::sync(self)
    }
    fn compact(&mut self, state: &StoreState) -> Result<(), StoreError> {
        StoreFile::compact(self, state)
    }
    fn records(&self) -> usize {
        StoreFile::records(self)
    }
}

struct Writer<S> {
    sink: S,
    /// Exactly what is durable.
    state: StoreState,
    /// The last write failed: the next one rewrites the log.
    rewrite: bool,
}

/// Runs until every handle of the store is dropped, then writes what is left and returns.
pub(super) fn run<S: Sink>(
    sink: S,
    state: StoreState,
    mut rx: mpsc::Receiver<Op>,
    shared: &Shared,
) {
    let mut writer = Writer {
        sink,
        state,
        rewrite: false,
    };
    while let Some(first) = rx.blocking_recv() {
        let mut ops = vec![first];
        let mut drained = false;
        while ops.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(op) => ops.push(op),
                Err(_) => {
                    drained = true;
                    break;
                }
            }
        }
        // The overflow holds only what was submitted after the whole channel: take it once
        // the channel is empty, so the order of submission is kept.
        if drained {
            ops.append(&mut lock(&shared.overflow));
        }
        writer.batch(ops, shared);
    }
    let rest = std::mem::take(&mut *lock(&shared.overflow));
    writer.batch(rest, shared);
}

impl<S: Sink> Writer<S> {
    fn batch(&mut self, ops: Vec<Op>, shared: &Shared) {
        let mut acks: Vec<AckTx> = Vec::with_capacity(ops.len());
        let mut records: Vec<Record> = Vec::with_capacity(ops.len());
        for op in ops {
            match op {
                Op::Wake => {}
                Op::Journal(entry, key, ack) => {
                    records.push(Record::Journal { entry: *entry });
                    if let Some(key) = key {
                        let count = shared.ledger.count(&key);
                        records.push(Record::from(LedgerChange::Fired { key, count }));
                    }
                    acks.push(ack);
                }
                Op::Clear(id, ack) => {
                    records.push(Record::Clear { id });
                    acks.push(ack);
                }
                Op::Sync(ack) => acks.push(ack),
            }
        }
        // Acknowledgements first, then changes: a claim's change precedes its acknowledgement,
        // so every acknowledgement taken here has its change in this batch or an earlier one.
        let mut written = std::mem::take(&mut *lock(&shared.ledger_acks));
        let changes = shared.ledger.take_changes();
        records.extend(changes.iter().cloned().map(Record::from));
        let result = if records.is_empty() {
            Ok(())
        } else {
            self.write(records, &mut written)
        };
        acks.append(&mut written);
        match &result {
            Ok(()) => {
                shared
                    .journal_len
                    .store(self.state.journal.len(), Ordering::Relaxed);
                self.maybe_compact();
            }
            Err(err) => {
                tracing::error!(error = %err, "store: a write failed; the next write rewrites the log");
                shared.ledger.untake(&changes);
            }
        }
        for ack in acks {
            let _ = ack.send(result.clone().map_err(AckError::from));
        }
    }

    /// Writes `records` durably; `written` is acknowledged as soon as they are in the log
    /// (before the fsync), and emptied then.
    fn write(&mut self, records: Vec<Record>, written: &mut Vec<AckTx>) -> Result<(), StoreError> {
        let count = records.len();
        let bytes = encode(&records)?;
        if self.rewrite {
            let mut next = self.state.clone();
            records.into_iter().for_each(|r| next.apply(r));
            self.sink.compact(&next)?;
            self.rewrite = false;
            self.state = next;
            return Ok(());
        }
        let synced = self.sink.append(&bytes, count).and_then(|()| {
            for ack in written.drain(..) {
                let _ = ack.send(Ok(()));
            }
            self.sink.sync()
        });
        if let Err(err) = synced {
            self.rewrite = true;
            return Err(err);
        }
        records.into_iter().for_each(|r| self.state.apply(r));
        Ok(())
    }

    fn maybe_compact(&mut self) {
        if self.sink.records() <= 4 * self.state.len() + COMPACT_SLACK {
            return;
        }
        match self.sink.compact(&self.state) {
            Ok(()) => tracing::debug!(records = self.sink.records(), "store: log compacted"),
            Err(err) => {
                tracing::error!(error = %err, "store: compaction failed; the log goes on growing")
            }
        }
    }
}
