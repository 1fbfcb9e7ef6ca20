//! The scheduler: when each firing of a fault happens, and whether it acts.
//!
//! Pure: no clock inside. The caller passes the firing index within the current container
//! instance and gets the offset from container start; the [`FiringLedger`] carries `count`
//! across container restarts.
//!
//! Firing `i` (0-based within one container instance) is at `after + i * every`, moved by a
//! uniform random offset in `[-jitter, +jitter]` and clamped so it is never before container
//! start. Without `every` there is only firing 0. Each firing then draws against
//! `probability`. A firing whose probability draw fails still consumes one of `count`:
//! `count` counts firing opportunities, not successful injections (claim it in the ledger
//! before acting, whatever the draw says).

mod ledger;
mod rng;

use std::time::Duration;

pub use ledger::{belongs_to_pod, FiringLedger, LedgerChange, LedgerKey};
pub use rng::{Rng, SplitMix64};

use crate::plan::Timing;

/// One firing of a fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Firing {
    /// Index within this container instance (0-based).
    pub index: u32,
    /// When, from container start (jitter applied, never negative).
    pub offset: Duration,
    /// Whether the probability draw says to act.
    pub fire: bool,
}

/// The firing schedule of one fault request.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Schedule {
    timing: Timing,
}

fn nanos_to_duration(nanos: u128) -> Duration {
    const NS: u128 = 1_000_000_000;
    let secs = u64::try_from(nanos / NS).unwrap_or(u64::MAX);
    // The remainder is below 1e9, so it fits in u32.
    let sub = u32::try_from(nanos % NS).unwrap_or(0);
    Duration::new(secs, sub)
}

impl Schedule {
    /// The schedule of `timing`.
    pub fn new(timing: &Timing) -> Self {
        Schedule { timing: *timing }
    }

    /// The timing this schedule follows.
    pub fn timing(&self) -> &Timing {
        &self.timing
    }

    /// The total firing limit to pass to [`FiringLedger::claim`] (`None` = unlimited).
    pub fn count_limit(&self) -> Option<u32> {
        self.timing.count
    }

    /// Firing `index` of this container instance, or `None` when there is none: index >= 1
    /// without `every`, index >= `count`, or an offset too large to represent.
    ///
    /// Draws from `rng` only when needed: one word for jitter (when `jitter` > 0), then one
    /// for the probability (when 0 < `probability` < 1).
    pub fn firing<R: Rng + ?Sized>(&self, index: u32, rng: &mut R) -> Option<Firing> {
        let t = &self.timing;
        if index >= 1 && t.every.is_none() {
            return None;
        }
        if t.count.is_some_and(|c| index >= c) {
            return None;
        }
        let step = t.every.unwrap_or_default().checked_mul(index)?;
        let base = t.after.checked_add(step)?.as_nanos();
        let offset = if t.jitter.is_zero() {
            base
        } else {
            let j = t.jitter.as_nanos().min(u128::from(u64::MAX));
            let span = 2 * j + 1;
            let r = (u128::from(rng.next_u64()) * span) >> 64;
            (base + r).saturating_sub(j)
        };
        let fire = if t.probability >= 1.0 {
            true
        } else if t.probability > 0.0 {
            rng.next_f64() < t.probability
        } else {
            false
        };
        Some(Firing {
            index,
            offset: nanos_to_duration(offset),
            fire,
        })
    }
}

#[cfg(test)]
mod tests;
