//! The daemon's one durable store (journal of active faults + firing ledger, one log:
//! `injector::store`), written by ONE writer on its own thread.
//!
//! Why a thread of the plugin: the writer blocks on `write` and `fdatasync`, so it must not
//! run on the async runtime, and its callers are of three kinds that the plugin alone has: NRI
//! handlers (never wait, never touch the disk), fault tasks (await the acknowledgement) and
//! blocking effect code (waits for it). The injector (also linked into the OCI hook) keeps
//! the format and the file operations and stays free of the async runtime.
//!
//! Submitting never blocks: an operation goes into a bounded channel
//! ([`CHANNEL_CAPACITY`]); when the channel is full it waits in an ordered overflow that
//! the writer takes right after the channel, so the order of submission is the order of
//! writing. Firing counts are not sent at all: a claim changes the in-memory
//! [`FiringLedger`], which remembers the change and rings the writer; the writer writes each
//! changed key with its count at that moment, so an older count never overwrites a newer one.
//! Every operation can be acknowledged ([`Ack`]) once the batch holding it is fsynced; a
//! firing count once it is written, just before that fsync ([`Claim`]).

mod writer;

#[cfg(test)]
mod tests;

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use injector::store::{StoreError, StoreFile, StoreState};
use injector::{FaultKey, FiringLedger, JournalEntry};
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{mpsc, oneshot};

pub(crate) use writer::Sink;

/// Operations the channel holds before new ones wait in the overflow.
pub const CHANNEL_CAPACITY: usize = 256;

/// Why a write is not durable.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AckError {
    /// The write failed (the next write rewrites the log from what is durable).
    #[error(transparent)]
    Write(#[from] StoreError),
    /// The writer is gone (the store was dropped, or its thread died).
    #[error("the store's writer has stopped; nothing more is made durable")]
    WriterGone,
}

type AckTx = oneshot::Sender<Result<(), AckError>>;

/// The acknowledgement of a write: resolves once it is durable (or why not).
#[derive(Debug)]
#[must_use = "an Ack does nothing unless awaited or waited for"]
pub struct Ack(oneshot::Receiver<Result<(), AckError>>);

impl Ack {
    fn pair() -> (AckTx, Ack) {
        let (tx, rx) = oneshot::channel();
        (tx, Ack(rx))
    }

    /// Waits (async) for the acknowledgement.
    pub async fn acked(self) -> Result<(), AckError> {
        self.0.await.unwrap_or(Err(AckError::WriterGone))
    }

    /// The outcome if it is already known (tests: "not acknowledged yet").
    #[cfg(test)]
    fn try_now(&mut self) -> Option<Result<(), AckError>> {
        self.0.try_recv().ok()
    }

    /// Waits (blocking) for the acknowledgement: only on a blocking thread
    /// (`spawn_blocking`), never on an async worker.
    pub fn wait(self) -> Result<(), AckError> {
        self.0.blocking_recv().unwrap_or(Err(AckError::WriterGone))
    }
}

/// One firing taken from the ledger.
///
/// Its `ack` resolves once the count is written to the log, where a restarted nri-chaos
/// reads it, and before the fsync that follows in the same batch: a fault task waits for it
/// before acting, so a crash of nri-chaos never lets a fault fire beyond its `count`, without
/// putting a disk flush between a firing's plan and its effect (the firing lateness).
#[derive(Debug)]
pub struct Claim {
    /// 1-based, counted across restarts.
    pub ordinal: u32,
    /// Resolves once the count is in the log.
    pub ack: Ack,
}

/// An operation for the writer.
#[derive(Debug)]
enum Op {
    /// The ledger changed (its changes are taken at every batch anyway).
    Wake,
    /// Write or replace a journal entry; with a key, that key's count is written in the same
    /// batch (a firing claimed with [`Store::claim_deferred`]).
    Journal(Box<JournalEntry>, Option<FaultKey>, AckTx),
    /// Clear a journal entry.
    Clear(String, AckTx),
    /// Acknowledge once everything submitted before is durable.
    Sync(AckTx),
}

#[derive(Debug)]
struct Shared {
    ledger: FiringLedger,
    /// Operations that found the channel full, in order.
    overflow: Mutex<Vec<Op>>,
    /// Acknowledgements of ledger changes, due after the next durable batch.
    ledger_acks: Mutex<Vec<AckTx>>,
    /// Journal entries in the durable state.
    journal_len: AtomicUsize,
    /// What the log held at open, for the engine to resume.
    resumed: Mutex<Vec<JournalEntry>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The handle of the store (cheap to clone). The writer ends when the last handle is dropped,
/// after writing what was submitted.
#[derive(Debug, Clone)]
pub struct Store {
    shared: Arc<Shared>,
    tx: mpsc::Sender<Op>,
}

impl Store {
    /// Opens the store under `state_dir` (loading, migrating and compacting the log: see
    /// `injector::store`) and starts its writer. Problems in the log are logged, never fatal;
    /// it fails only when the directory cannot be used.
    pub fn open(state_dir: &Path) -> Result<Store, StoreError> {
        let opened = StoreFile::open(state_dir)?;
        for problem in &opened.problems {
            tracing::error!(path = %opened.file.path().display(), problem = %problem, "store: damaged record set aside");
        }
        tracing::info!(
            path = %opened.file.path().display(),
            firing_counts = opened.state.firings.len(),
            journal_entries = opened.state.journal.len(),
            "store opened"
        );
        let path = opened.file.path().to_path_buf();
        Store::start(opened.file, opened.state).map_err(|err| StoreError::Io {
            op: "start the writer thread for",
            path,
            source: Arc::new(err),
        })
    }

    /// Starts the writer on `sink`, whose durable content is `state`.
    pub(crate) fn start<S: Sink>(sink: S, state: StoreState) -> std::io::Result<Store> {
        let (tx, rx) = mpsc::channel(CHANNEL_CAPACITY);
        let ring = tx.downgrade();
        // The ledger rings through a weak sender: the store's handles alone keep it open.
        let ledger = FiringLedger::from_counts(state.firings.clone()).track_changes(move || {
            if let Some(tx) = ring.upgrade() {
                // Full: the writer has a batch to take, and takes the ledger's changes with it.
                let _ = tx.try_send(Op::Wake);
            }
        });
        let shared = Arc::new(Shared {
            ledger,
            overflow: Mutex::new(Vec::new()),
            ledger_acks: Mutex::new(Vec::new()),
            journal_len: AtomicUsize::new(state.journal.len()),
            resumed: Mutex::new(state.journal_entries()),
        });
        let writer_shared = shared.clone();
        std::thread::Builder::new()
            .name("nri-chaos-store".into())
            .spawn(move || writer::run(sink, state, rx, &writer_shared))?;
        Ok(Store { shared, tx })
    }

    fn submit(&self, op: Op) {
        let mut overflow = lock(&self.shared.overflow);
        if !overflow.is_empty() {
            // The writer has yet to take the overflow: it is woken already.
            if !matches!(op, Op::Wake) {
                overflow.push(op);
            }
            return;
        }
        match self.tx.try_send(op) {
            Ok(()) | Err(TrySendError::Full(Op::Wake)) => {}
            Err(TrySendError::Full(op)) => overflow.push(op),
            // Dropping the op drops its acknowledgement: the caller sees `WriterGone`.
            Err(TrySendError::Closed(_)) => {}
        }
    }

    /// The in-memory firing ledger (counts are read here; changes go through
    /// [`Store::claim`], [`Store::release`], [`Store::forget_pod`]).
    pub fn ledger(&self) -> &FiringLedger {
        &self.shared.ledger
    }

    /// Takes one firing for `key` within `limit` (see [`FiringLedger::claim`]). Never blocks:
    /// the count is in memory at once, and the claim's `ack` says when it is in the log.
    pub fn claim(&self, key: impl Into<FaultKey>, limit: Option<u32>) -> Option<Claim> {
        let ordinal = self.shared.ledger.claim(key, limit)?;
        // After the change: the writer takes the acknowledgements before the changes.
        let (tx, ack) = Ack::pair();
        lock(&self.shared.ledger_acks).push(tx);
        self.submit(Op::Wake);
        Some(Claim { ordinal, ack })
    }

    /// Takes one firing for `key` within `limit` in memory only: its count becomes durable
    /// with the firing's first journal record ([`Store::record_firing`]), one write for both,
    /// so a crash keeps the firing counted and journaled, or neither (it fires again after the
    /// restart). For faults that journal before any side effect; the others [`Store::claim`].
    pub fn claim_deferred(&self, key: impl Into<FaultKey>, limit: Option<u32>) -> Option<u32> {
        self.shared.ledger.claim_deferred(key, limit)
    }

    /// Makes the count of a deferred claim durable when no journal record carried it (the
    /// firing did nothing that needs undoing).
    pub fn settle(&self, key: impl Into<FaultKey>) {
        self.shared.ledger.touch(key);
    }

    /// Gives back a firing that did nothing.
    pub fn release(&self, key: impl Into<FaultKey>) {
        self.shared.ledger.release(key);
    }

    /// Forgets every firing count of pod `pod_uid` (the pod was removed).
    pub fn forget_pod(&self, pod_uid: &str) {
        self.shared.ledger.forget_pod(pod_uid);
    }

    /// Forgets the counts of every pod not in `pod_uids` (after a full resynchronization).
    pub fn retain_pods(&self, pod_uids: &[String]) {
        self.shared.ledger.retain_pods(pod_uids);
    }

    /// Writes (or replaces) a journal entry; it must be durable (the ack) BEFORE the side
    /// effect it describes.
    pub fn record(&self, entry: &JournalEntry) -> Ack {
        let (tx, ack) = Ack::pair();
        self.submit(Op::Journal(Box::new(entry.clone()), None, tx));
        ack
    }

    /// [`Store::record`] with the count of `key` (claimed with [`Store::claim_deferred`])
    /// written in the same batch: durable together, or not at all.
    pub fn record_firing(&self, entry: &JournalEntry, key: FaultKey) -> Ack {
        let (tx, ack) = Ack::pair();
        self.submit(Op::Journal(Box::new(entry.clone()), Some(key), tx));
        ack
    }

    /// Clears a journal entry after its recovery. A clear that is lost in a crash only makes
    /// the next start run the (repeatable) recovery once more.
    pub fn clear(&self, id: &str) -> Ack {
        let (tx, ack) = Ack::pair();
        self.submit(Op::Clear(id.to_string(), tx));
        ack
    }

    /// Resolves once everything submitted before is durable.
    pub fn sync(&self) -> Ack {
        let (tx, ack) = Ack::pair();
        self.submit(Op::Sync(tx));
        ack
    }

    /// Journal entries in the durable state (what a crash now would leave to recover).
    pub fn journal_len(&self) -> usize {
        self.shared.journal_len.load(Ordering::Relaxed)
    }

    /// The journal entries found at open, oldest first (once; then empty).
    pub fn take_resumed(&self) -> Vec<JournalEntry> {
        std::mem::take(&mut *lock(&self.shared.resumed))
    }
}
