//! The store's writer: no count is lost under concurrent claims, acknowledgements come only
//! after fsync, a failed write is reported and repaired, removed pods are forgotten.

use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use injector::seams::cgroup::FreezerLocation;
use injector::store::{read_state, StoreError, StoreState};
use injector::{FaultKey, FaultKind, JournalEntry, Recovery};

use super::*;

fn key(uid: &str, container: &str) -> FaultKey {
    FaultKey::of(FaultKind::Kill, uid, container)
}

fn entry(id: &str) -> JournalEntry {
    JournalEntry {
        id: id.into(),
        pod: "default/web".into(),
        pod_uid: "uid-1".into(),
        container_id: "c1".into(),
        container_name: "app".into(),
        kind: FaultKind::Freeze,
        applied_at_unix_ms: 1,
        deadline_unix_ms: None,
        recovery: Recovery::Thaw {
            freezer: FreezerLocation::V1 {
                state_file: "/sys/fs/cgroup/freezer/x/freezer.state".into(),
            },
        },
        source: String::new(),
        value: String::new(),
    }
}

#[test]
fn concurrent_claims_from_many_threads_never_lose_a_count() {
    const THREADS: usize = 8;
    const CLAIMS: usize = 150;
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            let store = store.clone();
            std::thread::spawn(move || {
                for i in 0..CLAIMS {
                    // Half wait for each count to be durable (fault tasks), half never wait
                    // (NRI handlers).
                    let claim = store.claim(key("uid-1", "app"), None).unwrap();
                    let other = store.claim(key(&format!("uid-{t}"), "db"), None).unwrap();
                    if t % 2 == 0 {
                        claim.ack.wait().unwrap();
                    }
                    assert_eq!(other.ordinal as usize, i + 1);
                }
            })
        })
        .collect();
    threads.into_iter().for_each(|t| t.join().unwrap());
    store.sync().wait().unwrap();
    let expected = (THREADS * CLAIMS) as u32;
    assert_eq!(store.ledger().count(key("uid-1", "app")), expected);
    // What a restart reads back (a crash now loses nothing: the sync was acknowledged).
    let (state, problems) = read_state(dir.path()).unwrap();
    assert!(problems.is_empty(), "{problems:?}");
    assert_eq!(state.firings.get(&key("uid-1", "app")), Some(&expected));
    for t in 0..THREADS {
        assert_eq!(
            state.firings.get(&key(&format!("uid-{t}"), "db")),
            Some(&(CLAIMS as u32))
        );
    }
    // And the log was appended to, one record per changed key and batch, not rewritten.
    let lines = std::fs::read_to_string(dir.path().join(injector::store::LOG_NAME))
        .unwrap()
        .lines()
        .count();
    assert!(lines > THREADS, "{lines} lines");
    drop(store);
    let again = Store::open(dir.path()).unwrap();
    assert_eq!(again.ledger().count(key("uid-1", "app")), expected);
}

/// A sink that records what happens and holds every fsync until the test lets it go.
struct GatedSink {
    events: Arc<Mutex<Vec<&'static str>>>,
    gate: std_mpsc::Receiver<Result<(), StoreError>>,
    records: usize,
}

impl Sink for GatedSink {
    fn append(&mut self, _bytes: &[u8], records: usize) -> Result<(), StoreError> {
        self.events.lock().unwrap().push("append");
        self.records += records;
        Ok(())
    }
    fn sync(&mut self) -> Result<(), StoreError> {
        self.events.lock().unwrap().push("fsync started");
        let outcome = self.gate.recv().unwrap();
        self.events.lock().unwrap().push("fsync done");
        outcome
    }
    fn compact(&mut self, _state: &StoreState) -> Result<(), StoreError> {
        self.events.lock().unwrap().push("compact");
        Ok(())
    }
    fn records(&self) -> usize {
        self.records
    }
}

type Gate = std_mpsc::SyncSender<Result<(), StoreError>>;

fn gated() -> (Store, Gate, Arc<Mutex<Vec<&'static str>>>) {
    let events = Arc::new(Mutex::new(Vec::new()));
    // A rendezvous: each fsync takes exactly one outcome the test hands over.
    let (open, gate) = std_mpsc::sync_channel(0);
    let sink = GatedSink {
        events: events.clone(),
        gate,
        records: 0,
    };
    let store = Store::start(sink, StoreState::default()).unwrap();
    (store, open, events)
}

fn wait_for(events: &Mutex<Vec<&'static str>>, what: &str) {
    for _ in 0..500 {
        if events.lock().unwrap().contains(&what) {
            return;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    panic!("never saw {what}: {:?}", events.lock().unwrap());
}

fn count(events: &Mutex<Vec<&'static str>>, what: &str) -> usize {
    events
        .lock()
        .unwrap()
        .iter()
        .filter(|e| **e == what)
        .count()
}

#[test]
fn acknowledged_only_after_fsync_and_counts_once_written() {
    let (store, open, events) = gated();
    let mut journaled = store.record(&entry("j-1"));
    wait_for(&events, "fsync started");
    std::thread::sleep(Duration::from_millis(30));
    assert!(journaled.try_now().is_none(), "acknowledged before fsync");
    assert_eq!(store.journal_len(), 0, "not durable yet");
    // A claim now goes into the next batch, once this fsync is done.
    let mut claim = store.claim(key("uid-1", "app"), Some(1)).unwrap();
    std::thread::sleep(Duration::from_millis(30));
    assert!(claim.ack.try_now().is_none(), "acknowledged before written");
    open.send(Ok(())).unwrap();
    journaled.wait().unwrap();
    assert_eq!(store.journal_len(), 1);
    // The count is acknowledged once appended, while its batch's fsync is still held.
    claim.ack.wait().unwrap();
    assert_eq!(count(&events, "append"), 2);
    assert_eq!(count(&events, "fsync done"), 1);
    let mut synced = store.sync();
    std::thread::sleep(Duration::from_millis(30));
    assert!(synced.try_now().is_none(), "a sync waits for the fsync");
    let feeder = std::thread::spawn(move || while open.send(Ok(())).is_ok() {});
    synced.wait().unwrap();
    assert_eq!(
        &events.lock().unwrap()[..6],
        [
            "append",
            "fsync started",
            "fsync done",
            "append",
            "fsync started",
            "fsync done"
        ]
    );
    drop(store);
    feeder.join().unwrap();
}

#[test]
fn a_failed_fsync_is_reported_and_the_next_write_rewrites_the_log() {
    let (store, open, events) = gated();
    let ack = store.record(&entry("j-1"));
    open.send(Err(StoreError::Io {
        op: "fsync",
        path: "/test".into(),
        source: Arc::new(std::io::Error::other("disk on fire")),
    }))
    .unwrap();
    let err = ack.wait().unwrap_err().to_string();
    assert!(err.contains("fsync /test"), "{err}");
    assert_eq!(store.journal_len(), 0);
    store.record(&entry("j-2")).wait().unwrap();
    assert_eq!(events.lock().unwrap().last(), Some(&"compact"));
    assert_eq!(store.journal_len(), 1, "only what was acknowledged");
}

#[test]
fn a_removed_pod_is_forgotten_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    for k in [
        key("uid-1", "app"),
        key("uid-1#ctl", "app"),
        key("uid-2", "app"),
    ] {
        store.claim(&k, None).unwrap().ack.wait().unwrap();
    }
    store.forget_pod("uid-1");
    store.sync().wait().unwrap();
    let (state, _) = read_state(dir.path()).unwrap();
    assert_eq!(
        state.firings.into_iter().collect::<Vec<_>>(),
        vec![(key("uid-2", "app"), 1)]
    );
    store.retain_pods(&[]);
    store.sync().wait().unwrap();
    assert!(read_state(dir.path()).unwrap().0.firings.is_empty());
}

#[test]
fn the_log_is_compacted_when_it_grows() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    for _ in 0..(2 * injector::store::COMPACT_SLACK) {
        store
            .claim(key("uid-1", "app"), None)
            .unwrap()
            .ack
            .wait()
            .unwrap();
    }
    let lines = std::fs::read_to_string(dir.path().join(injector::store::LOG_NAME))
        .unwrap()
        .lines()
        .count();
    assert!(lines <= injector::store::COMPACT_SLACK + 8, "{lines} lines");
    let (state, _) = read_state(dir.path()).unwrap();
    assert_eq!(
        state.firings.get(&key("uid-1", "app")),
        Some(&(2 * injector::store::COMPACT_SLACK as u32))
    );
}

#[test]
fn more_operations_than_the_channel_holds_keep_their_order() {
    let (store, open, events) = gated();
    let first = store.record(&entry("first"));
    wait_for(&events, "fsync started");
    // The writer is held in its fsync: the channel fills up and the rest waits in the
    // overflow. Each entry is cleared right after it is written.
    let mut acks = Vec::new();
    for i in 0..(3 * CHANNEL_CAPACITY) {
        let id = format!("x-{i}");
        acks.push(store.record(&entry(&id)));
        acks.push(store.clear(&id));
    }
    assert!(
        lock(&store.shared.overflow).len() > CHANNEL_CAPACITY,
        "the overflow is used"
    );
    // Claims meanwhile (as from NRI handlers): nothing blocks, nothing is lost.
    let claims: Vec<Claim> = (0..(3 * CHANNEL_CAPACITY))
        .map(|_| store.claim(key("uid-1", "app"), None).unwrap())
        .collect();
    let feeder = std::thread::spawn(move || while open.send(Ok(())).is_ok() {});
    first.wait().unwrap();
    for ack in acks {
        ack.wait().unwrap();
    }
    for claim in claims {
        claim.ack.wait().unwrap();
    }
    // A clear written before its entry would leave the entry behind.
    assert_eq!(store.journal_len(), 1);
    assert_eq!(
        store.ledger().take_changes(),
        Vec::new(),
        "every count was taken by the writer"
    );
    assert_eq!(
        store.ledger().count(key("uid-1", "app")),
        3 * CHANNEL_CAPACITY as u32
    );
    drop(store);
    feeder.join().unwrap();
}

/// A deferred claim is in memory only until the firing's journal record carries it: a crash
/// before that record leaves neither (the firing is not taken and fires after the restart),
/// a crash after leaves both. Settled (no record), it is written on its own.
#[test]
fn a_deferred_claim_is_durable_only_with_its_journal_record() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let (freeze, other) = (key("uid-1", "app"), key("uid-2", "app"));
    assert_eq!(store.claim_deferred(&freeze, Some(1)), Some(1));
    assert_eq!(store.claim_deferred(&freeze, Some(1)), None, "count spent");
    // Other writes come and go; the deferred count stays out of the log.
    store.claim(&other, None).unwrap().ack.wait().unwrap();
    store.record(&entry("j-0")).wait().unwrap();
    let (on_disk, _) = read_state(dir.path()).unwrap();
    assert_eq!(on_disk.firings.get(&freeze), None, "{:?}", on_disk.firings);
    store
        .record_firing(&entry("j-1"), freeze.clone())
        .wait()
        .unwrap();
    let (on_disk, _) = read_state(dir.path()).unwrap();
    assert_eq!(on_disk.firings.get(&freeze), Some(&1));
    assert!(on_disk.journal.contains_key("j-1"));
    // A deferred firing that journals nothing is settled on its own.
    let third = key("uid-3", "app");
    assert_eq!(store.claim_deferred(&third, None), Some(1));
    store.settle(&third);
    store.sync().wait().unwrap();
    let (on_disk, _) = read_state(dir.path()).unwrap();
    assert_eq!(on_disk.firings.get(&third), Some(&1));
}
