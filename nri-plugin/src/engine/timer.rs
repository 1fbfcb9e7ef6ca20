//! Sub-millisecond waits for firings. tokio's timer wheel ticks in whole milliseconds and its
//! driver parks in `epoll_wait` with a millisecond timeout, so a firing woken by it alone is up
//! to ~2 ms late before any scheduling. The runner sleeps on tokio until [`LEAD`] before the
//! planned instant, then waits the rest here: one thread keeps the near deadlines in a heap
//! and sleeps on a condvar, whose timed wait is a futex with an hrtimer (tens of us of slack),
//! and wakes each waiting task at its deadline. Hand-written: no crate offers a precise
//! deadline future for tokio without a runtime of its own.
//! Only deadlines less than [`LEAD`] ahead come here, so the heap stays small and the thread
//! sleeps between firings (no spinning).

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::{Condvar, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

/// How long before its deadline a wait leaves tokio's timer for the precise one (more than
/// tokio's worst rounding, so the hand-over is never itself late).
pub(super) const LEAD: Duration = Duration::from_millis(4);

/// A waiting task: woken (its sender used or dropped) at `deadline`.
struct Waiter {
    deadline: Instant,
    seq: u64,
    wake: oneshot::Sender<()>,
}

impl PartialEq for Waiter {
    fn eq(&self, other: &Self) -> bool {
        (self.deadline, self.seq) == (other.deadline, other.seq)
    }
}
impl Eq for Waiter {}
impl PartialOrd for Waiter {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Waiter {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.deadline, self.seq).cmp(&(other.deadline, other.seq))
    }
}

struct Waiters {
    heap: BinaryHeap<Reverse<Waiter>>,
    seq: u64,
}

struct Precise {
    waiters: Mutex<Waiters>,
    changed: Condvar,
}

fn lock(mutex: &Mutex<Waiters>) -> MutexGuard<'_, Waiters> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Precise {
    /// Wakes every waiter whose deadline has come, then sleeps until the next one.
    fn run(&self) {
        let mut waiters = lock(&self.waiters);
        loop {
            let now = Instant::now();
            while waiters
                .heap
                .peek()
                .is_some_and(|Reverse(w)| w.deadline <= now)
            {
                if let Some(Reverse(waiter)) = waiters.heap.pop() {
                    // A dropped receiver is a wait that was given up: nothing to wake.
                    let _ = waiter.wake.send(());
                }
            }
            waiters = match waiters.heap.peek() {
                Some(Reverse(next)) => {
                    let left = next.deadline.saturating_duration_since(now);
                    self.changed
                        .wait_timeout(waiters, left)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0
                }
                None => self
                    .changed
                    .wait(waiters)
                    .unwrap_or_else(PoisonError::into_inner),
            };
        }
    }

    fn add(&self, deadline: Instant) -> oneshot::Receiver<()> {
        let (wake, woken) = oneshot::channel();
        let mut waiters = lock(&self.waiters);
        waiters.seq = waiters.seq.wrapping_add(1);
        let seq = waiters.seq;
        waiters.heap.push(Reverse(Waiter {
            deadline,
            seq,
            wake,
        }));
        drop(waiters);
        self.changed.notify_one();
        woken
    }
}

static PRECISE: Precise = Precise {
    waiters: Mutex::new(Waiters {
        heap: BinaryHeap::new(),
        seq: 0,
    }),
    changed: Condvar::new(),
};

/// The timer thread, started on first use; `None` if it could not be started (waits then
/// fall back to tokio's timer).
fn precise() -> Option<&'static Precise> {
    static STARTED: OnceLock<bool> = OnceLock::new();
    let started = *STARTED.get_or_init(|| {
        match std::thread::Builder::new()
            .name("nri-chaos-timer".into())
            .spawn(|| PRECISE.run())
        {
            Ok(_) => true,
            Err(err) => {
                tracing::warn!(error = %err, "cannot start the firing timer thread; firings use tokio's 1 ms timer");
                false
            }
        }
    });
    started.then_some(&PRECISE)
}

/// Waits for `deadline` on the precise timer. Callers first sleep on tokio's timer until
/// [`LEAD`] before it, so that the thread only holds near deadlines.
pub(super) async fn sleep_until(deadline: Instant) {
    if Instant::now() >= deadline {
        return;
    }
    match precise() {
        Some(precise) => {
            let _ = precise.add(deadline).await;
        }
        None => tokio::time::sleep_until(deadline.into()).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The precise wait ends at its deadline, not at tokio's next millisecond tick: of 50
    /// sub-millisecond waits, the median ends within 500 us of its deadline (on tokio's timer
    /// alone it is about half a tick, 500 us, plus the wake).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn waits_end_at_their_deadline_not_a_tick_later() {
        let mut late = Vec::new();
        for i in 0..50u64 {
            let deadline = Instant::now() + Duration::from_micros(300 + 37 * i);
            sleep_until(deadline).await;
            let now = Instant::now();
            assert!(now >= deadline, "woken {:?} early", deadline - now);
            late.push(now - deadline);
        }
        late.sort();
        let median = late[late.len() / 2];
        assert!(
            median < Duration::from_micros(500),
            "median lateness {median:?} (all: {late:?})"
        );
    }

    /// Deadlines registered out of order are each woken, none early.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn out_of_order_deadlines_all_wake() {
        let start = Instant::now();
        let offsets = [3u64, 1, 2];
        let handles: Vec<_> = offsets
            .iter()
            .map(|ms| {
                let deadline = start + Duration::from_millis(*ms);
                tokio::spawn(async move {
                    sleep_until(deadline).await;
                    Instant::now() >= deadline
                })
            })
            .collect();
        for handle in handles {
            assert!(handle.await.expect("task"));
        }
    }

    /// A wait that was given up (its future dropped) does not stop the others.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_dropped_wait_leaves_the_others_working() {
        let soon = Instant::now() + Duration::from_millis(2);
        drop(tokio::time::timeout(Duration::from_micros(100), sleep_until(soon)).await);
        let later = Instant::now() + Duration::from_millis(3);
        sleep_until(later).await;
        assert!(Instant::now() >= later);
    }
}
