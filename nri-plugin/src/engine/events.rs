//! The live feed behind `nri-chaos ctl events`: a bounded ring of the engine's recent
//! decisions (a fault armed, applied, recovered, stopped or failed; an annotation rejected).
//!
//! Pushing is a short lock and an O(1) insert, so the engine never waits on a reader; readers
//! long-poll ([`EventLog::wait`]) and a reader that falls behind by more than the ring holds
//! is told how many events it missed instead of holding memory for it.

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::watch;

use super::introspect::{FaultRecord, RejectionRecord};

/// Events kept for `ctl events`.
pub const CAPACITY: usize = 1024;

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// A fault was armed.
    Armed,
    /// A firing was applied.
    Applied,
    /// A holding firing was recovered.
    Recovered,
    /// A fault ended before it fired.
    Stopped,
    /// A firing could not be applied.
    Failed,
    /// An annotation was rejected.
    Rejected,
}

impl EventKind {
    /// Lower-case name, as `ctl events` prints it.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Armed => "armed",
            EventKind::Applied => "applied",
            EventKind::Recovered => "recovered",
            EventKind::Stopped => "stopped",
            EventKind::Failed => "failed",
            EventKind::Rejected => "rejected",
        }
    }
}

/// What an event is about.
#[derive(Debug, Clone, PartialEq)]
pub enum Subject {
    /// A fault, as it was at the event.
    Fault(FaultRecord),
    /// A rejected annotation.
    Rejection(RejectionRecord),
}

/// One event.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// 1, 2, 3 ... in the order the engine decided.
    pub seq: u64,
    /// Wall clock, unix milliseconds.
    pub at_unix_ms: u64,
    /// What happened.
    pub kind: EventKind,
    /// To what.
    pub subject: Subject,
}

/// The events after some sequence number.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Batch {
    /// The events, oldest first.
    pub events: Vec<Event>,
    /// The newest sequence number (the next `since`).
    pub last_seq: u64,
    /// Events after `since` that the ring no longer holds.
    pub dropped: u64,
}

#[derive(Debug, Default)]
struct Ring {
    events: VecDeque<Event>,
    last_seq: u64,
}

/// The ring and its wake-up signal.
#[derive(Debug)]
pub struct EventLog {
    ring: Mutex<Ring>,
    latest: watch::Sender<u64>,
}

impl Default for EventLog {
    fn default() -> Self {
        EventLog {
            // Reserved whole: growing it would move every event in the call that crosses a
            // power of two (an NRI handler's); address space until the events come.
            ring: Mutex::new(Ring {
                events: VecDeque::with_capacity(CAPACITY),
                last_seq: 0,
            }),
            latest: watch::Sender::new(0),
        }
    }
}

fn lock(ring: &Mutex<Ring>) -> MutexGuard<'_, Ring> {
    ring.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl EventLog {
    /// Records an event; the oldest one goes when the ring is full.
    pub fn push(&self, kind: EventKind, subject: Subject, at_unix_ms: u64) {
        let mut ring = lock(&self.ring);
        ring.last_seq += 1;
        let seq = ring.last_seq;
        if ring.events.len() >= CAPACITY {
            ring.events.pop_front();
        }
        ring.events.push_back(Event {
            seq,
            at_unix_ms,
            kind,
            subject,
        });
        // Under the ring lock, so the signal never goes backwards; never blocks.
        self.latest.send_replace(seq);
    }

    /// The events after `since` that the ring holds (`since` 0: all of them).
    pub fn since(&self, since: u64) -> Batch {
        let ring = lock(&self.ring);
        let first = ring.events.front().map_or(ring.last_seq + 1, |e| e.seq);
        let dropped = if since == 0 {
            0
        } else {
            first.saturating_sub(since + 1)
        };
        Batch {
            events: ring
                .events
                .iter()
                .filter(|e| e.seq > since)
                .cloned()
                .collect(),
            last_seq: ring.last_seq,
            dropped,
        }
    }

    /// [`EventLog::since`], waiting up to `wait` for a first event when there is none yet.
    pub async fn wait(&self, since: u64, wait: Duration) -> Batch {
        let mut latest = self.latest.subscribe();
        let _ = tokio::time::timeout(wait, latest.wait_for(|seq| *seq > since)).await;
        self.since(since)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::introspect::RejectionClass;

    fn rejection(key: &str) -> Subject {
        Subject::Rejection(RejectionRecord {
            pod: "default/web".into(),
            container: "app".into(),
            key: key.into(),
            value: "{after: 2x}".into(),
            reason: "bad".into(),
            class: RejectionClass::Parse,
            at_unix_ms: 1,
            container_id: "c1".into(),
        })
    }

    #[test]
    fn the_ring_is_bounded_and_counts_what_a_slow_reader_missed() {
        let log = EventLog::default();
        for i in 0..(CAPACITY as u64 + 10) {
            log.push(EventKind::Rejected, rejection(&format!("k{i}")), i);
        }
        let all = log.since(0);
        assert_eq!(all.events.len(), CAPACITY);
        assert_eq!(all.last_seq, CAPACITY as u64 + 10);
        assert_eq!(all.events[0].seq, 11);
        let slow = log.since(5);
        assert_eq!(slow.dropped, 5, "seq 6..=10 fell off the ring");
        assert_eq!(slow.events.len(), CAPACITY);
        let current = log.since(all.last_seq);
        assert!(current.events.is_empty());
        assert_eq!(current.dropped, 0);
    }

    #[tokio::test]
    async fn a_waiting_reader_wakes_on_the_next_event() {
        let log = std::sync::Arc::new(EventLog::default());
        log.push(EventKind::Rejected, rejection("old"), 1);
        let started = std::time::Instant::now();
        let empty = log.wait(1, Duration::from_millis(50)).await;
        assert!(empty.events.is_empty());
        assert!(started.elapsed() >= Duration::from_millis(50));
        let waiter = {
            let log = log.clone();
            tokio::spawn(async move { log.wait(1, Duration::from_secs(10)).await })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        log.push(EventKind::Rejected, rejection("new"), 2);
        let batch = tokio::time::timeout(Duration::from_secs(2), waiter)
            .await
            .expect("woken before the wait ran out")
            .expect("task");
        assert_eq!(batch.events.len(), 1);
        assert_eq!(batch.events[0].seq, 2);
    }
}
