use std::collections::VecDeque;
use std::time::Duration;

use super::*;
use crate::annotations::FaultKind;

/// A scripted Rng: returns the given words in order, then panics (a test asked for too many).
struct Scripted(VecDeque<u64>);

impl Scripted {
    fn new(words: &[u64]) -> Self {
        Scripted(words.iter().copied().collect())
    }
}

impl Rng for Scripted {
    fn next_u64(&mut self) -> u64 {
        self.0.pop_front().expect("scripted rng exhausted")
    }
}

/// A word whose next_f64() is (approximately) `x`.
fn word_for(x: f64) -> u64 {
    ((x * (1u64 << 53) as f64) as u64) << 11
}

fn s(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn timing(after: u64, every: Option<u64>, count: Option<u32>) -> Timing {
    Timing {
        after: s(after),
        every: every.map(s),
        count,
        ..Timing::default()
    }
}

#[test]
fn single_firing_without_every() {
    let sched = Schedule::new(&timing(10, None, Some(1)));
    let mut rng = Scripted::new(&[]);
    assert_eq!(
        sched.firing(0, &mut rng),
        Some(Firing {
            index: 0,
            offset: s(10),
            fire: true
        })
    );
    assert_eq!(sched.firing(1, &mut rng), None);
    // count > 1 without every: still one firing per container instance (the ledger spreads
    // the count over restarts).
    let sched = Schedule::new(&timing(0, None, Some(3)));
    assert!(sched.firing(0, &mut rng).is_some());
    assert_eq!(sched.firing(1, &mut rng), None);
}

#[test]
fn every_and_count() {
    let sched = Schedule::new(&timing(5, Some(30), Some(3)));
    let mut rng = Scripted::new(&[]);
    let offsets: Vec<Duration> = (0..10)
        .map_while(|i| sched.firing(i, &mut rng))
        .map(|f| f.offset)
        .collect();
    assert_eq!(offsets, vec![s(5), s(35), s(65)]);
    let unlimited = Schedule::new(&timing(0, Some(1), None));
    assert_eq!(
        unlimited.firing(1_000_000, &mut rng).unwrap().offset,
        s(1_000_000)
    );
    assert_eq!(unlimited.count_limit(), None);
}

#[test]
fn overflowing_offset_is_none() {
    let t = Timing {
        after: Duration::MAX,
        every: Some(s(1)),
        count: None,
        ..Timing::default()
    };
    assert_eq!(Schedule::new(&t).firing(1, &mut Scripted::new(&[])), None);
}

#[test]
fn jitter_bounds_and_clamp() {
    let t = Timing {
        after: s(10),
        jitter: s(2),
        ..Timing::default()
    };
    let sched = Schedule::new(&t);
    // Lowest word: -jitter; highest word: +jitter; middle: about 0.
    let lo = sched.firing(0, &mut Scripted::new(&[0])).unwrap();
    assert_eq!(lo.offset, s(8));
    let hi = sched.firing(0, &mut Scripted::new(&[u64::MAX])).unwrap();
    assert!(
        hi.offset <= s(12) && hi.offset > s(12) - Duration::from_micros(1),
        "{hi:?}"
    );
    let mid = sched.firing(0, &mut Scripted::new(&[1 << 63])).unwrap();
    assert!(
        mid.offset.abs_diff(s(10)) < Duration::from_micros(1),
        "{mid:?}"
    );
    // Many random draws stay within bounds.
    let mut rng = SplitMix64::new(99);
    for _ in 0..1000 {
        let f = sched.firing(0, &mut rng).unwrap();
        assert!(f.offset >= s(8) && f.offset <= s(12));
    }
    // Never before container start.
    let t = Timing {
        after: s(1),
        jitter: s(5),
        ..Timing::default()
    };
    let f = Schedule::new(&t)
        .firing(0, &mut Scripted::new(&[0]))
        .unwrap();
    assert_eq!(f.offset, Duration::ZERO);
}

#[test]
fn probability_draws() {
    let t = Timing {
        probability: 0.25,
        ..Timing::default()
    };
    let sched = Schedule::new(&t);
    assert!(
        sched
            .firing(0, &mut Scripted::new(&[word_for(0.1)]))
            .unwrap()
            .fire
    );
    assert!(
        !sched
            .firing(0, &mut Scripted::new(&[word_for(0.3)]))
            .unwrap()
            .fire
    );
    assert!(
        !sched
            .firing(0, &mut Scripted::new(&[word_for(0.25)]))
            .unwrap()
            .fire
    );
    // p = 1 and p = 0 draw nothing.
    let always = Schedule::new(&Timing::default());
    assert!(always.firing(0, &mut Scripted::new(&[])).unwrap().fire);
    let never = Schedule::new(&Timing {
        probability: 0.0,
        ..Timing::default()
    });
    assert!(!never.firing(0, &mut Scripted::new(&[])).unwrap().fire);
    // Jitter draw comes first, then the probability draw.
    let both = Schedule::new(&Timing {
        jitter: s(1),
        after: s(5),
        probability: 0.5,
        ..Timing::default()
    });
    let f = both
        .firing(0, &mut Scripted::new(&[0, word_for(0.9)]))
        .unwrap();
    assert_eq!(f.offset, s(4));
    assert!(!f.fire);
    // Statistically about right.
    let mut rng = SplitMix64::new(5);
    let hits = (0..10_000)
        .filter(|_| sched.firing(0, &mut rng).unwrap().fire)
        .count();
    assert!((2200..2800).contains(&hits), "{hits}");
}

#[test]
fn count_across_restarts_via_the_ledger() {
    // kill with count 2: the container is killed on its first two starts only.
    let t = timing(0, None, Some(2));
    let sched = Schedule::new(&t);
    let ledger = FiringLedger::new();
    let key = LedgerKey::new("uid-1", "app", FaultKind::Kill);
    let mut rng = SplitMix64::new(1);
    let mut acted = Vec::new();
    for _instance in 0..4 {
        // Each container instance starts its index at 0.
        for i in 0.. {
            let Some(f) = sched.firing(i, &mut rng) else {
                break;
            };
            match ledger.claim(&key, sched.count_limit()) {
                Some(ordinal) => acted.push((ordinal, f.offset)),
                None => break,
            }
        }
    }
    assert_eq!(acted, vec![(1, s(0)), (2, s(0))]);
    assert_eq!(ledger.count(&key), 2);
}

#[test]
fn failed_draw_consumes_a_count() {
    let t = Timing {
        probability: 0.5,
        count: Some(1),
        ..Timing::default()
    };
    let sched = Schedule::new(&t);
    let ledger = FiringLedger::new();
    let key = LedgerKey::new("u", "c", FaultKind::Freeze);
    let f = sched
        .firing(0, &mut Scripted::new(&[word_for(0.9)]))
        .unwrap();
    assert!(!f.fire);
    assert_eq!(ledger.claim(&key, sched.count_limit()), Some(1));
    // Restarted container: nothing left.
    assert_eq!(ledger.claim(&key, sched.count_limit()), None);
}

#[test]
fn ledger_claim_count_forget() {
    let ledger = FiringLedger::new();
    let a = LedgerKey::new("pod-a", "app", FaultKind::Kill);
    let b = LedgerKey::new("pod-a", "app", FaultKind::Freeze);
    let c = LedgerKey::new("pod-b", "app", FaultKind::Kill);
    assert_eq!(ledger.claim(&a, Some(2)), Some(1));
    assert_eq!(ledger.claim(&a, Some(2)), Some(2));
    assert_eq!(ledger.claim(&a, Some(2)), None);
    assert_eq!(ledger.claim(&a, Some(3)), Some(3));
    assert_eq!(ledger.claim(&b, None), Some(1));
    assert_eq!(ledger.claim(&c, Some(0)), None);
    assert_eq!(ledger.claim(&c, None), Some(1));
    assert_eq!(ledger.count(&a), 3);
    assert_eq!(ledger.len(), 3);
    ledger.forget_pod("pod-a");
    assert_eq!(ledger.count(&a), 0);
    assert_eq!(ledger.count(&c), 1);
    assert_eq!(ledger.len(), 1);
    ledger.forget_pod("pod-b");
    assert!(ledger.is_empty());
}

#[test]
fn ledger_claim_is_atomic_across_threads() {
    let ledger = std::sync::Arc::new(FiringLedger::new());
    let key = LedgerKey::new("p", "c", FaultKind::Kill);
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let ledger = ledger.clone();
            let key = key.clone();
            std::thread::spawn(move || {
                (0..100)
                    .filter(|_| ledger.claim(&key, Some(250)).is_some())
                    .count()
            })
        })
        .collect();
    let total: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
    assert_eq!(total, 250);
    assert_eq!(ledger.count(&key), 250);
}

#[test]
fn release_gives_a_firing_back_and_retain_prunes_gone_pods() {
    let ledger = FiringLedger::new();
    let key = LedgerKey::new("uid-1", "app", FaultKind::Kill);
    let other = LedgerKey::new("uid-2", "app", FaultKind::Kill);
    assert_eq!(ledger.claim(&key, Some(2)), Some(1));
    assert_eq!(ledger.claim(&key, Some(2)), Some(2));
    assert_eq!(ledger.claim(&key, Some(2)), None);
    ledger.release(&key);
    assert_eq!(ledger.count(&key), 1);
    assert_eq!(ledger.claim(&key, Some(2)), Some(2));
    ledger.release(&other);
    assert_eq!(ledger.count(&other), 0);
    assert_eq!(ledger.claim(&other, None), Some(1));
    ledger.retain_pods(&["uid-2".to_string()]);
    assert_eq!(ledger.count(&key), 0);
    assert_eq!(ledger.count(&other), 1);
}

#[test]
fn a_pods_counts_include_its_tagged_ones() {
    use crate::schedule::belongs_to_pod;
    assert!(belongs_to_pod("uid-1", "uid-1"));
    assert!(belongs_to_pod("uid-1#ctl", "uid-1"));
    assert!(!belongs_to_pod("uid-10", "uid-1"));
    assert!(!belongs_to_pod("uid-1", "uid-1#ctl"));
    let ledger = FiringLedger::new();
    let injected = LedgerKey::new("uid-1#ctl", "app", FaultKind::Kill);
    let other = LedgerKey::new("uid-10", "app", FaultKind::Kill);
    ledger.claim(&injected, None);
    ledger.claim(&other, None);
    // A resync that lists the pod keeps its injected counts.
    ledger.retain_pods(&["uid-1".to_string(), "uid-10".to_string()]);
    assert_eq!(ledger.count(&injected), 1);
    ledger.forget_pod("uid-1");
    assert_eq!(ledger.count(&injected), 0);
    assert_eq!(ledger.count(&other), 1);
    // Without a store taking them, no change is remembered.
    assert!(ledger.take_changes().is_empty());
}
