//! The firing ledger: how many times each fault has fired for a pod or a container, across
//! container restarts, so `count` is honoured when the kubelet restarts a killed container.
//!
//! In memory, keyed by [`FaultKey`]. It is made durable by the store (`crate::store`): once
//! [`FiringLedger::track_changes`] is on, every change is remembered in order, and the
//! store's one writer takes them ([`FiringLedger::take_changes`]) with the counts as they are
//! at that moment, so a later count is never overwritten by an earlier one.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::annotations::FaultKind;
use crate::scope::FaultKey;

/// The key of the previous version's ledger (pod UID, container name, kind): a bridge while
/// callers move to [`FaultKey`]. An empty container name is the pod.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LedgerKey {
    /// The pod UID.
    pub pod_uid: String,
    /// The container name (not its id, which changes on restart); empty for the pod.
    pub container_name: String,
    /// The fault kind.
    pub kind: FaultKind,
}

impl LedgerKey {
    /// A key.
    pub fn new(
        pod_uid: impl Into<String>,
        container_name: impl Into<String>,
        kind: FaultKind,
    ) -> Self {
        LedgerKey {
            pod_uid: pod_uid.into(),
            container_name: container_name.into(),
            kind,
        }
    }
}

impl From<&LedgerKey> for FaultKey {
    fn from(key: &LedgerKey) -> Self {
        if key.container_name.is_empty() {
            FaultKey {
                scope: crate::scope::Scope::Pod {
                    pod_uid: key.pod_uid.clone(),
                },
                kind: key.kind,
            }
        } else {
            FaultKey::of(key.kind, &key.pod_uid, &key.container_name)
        }
    }
}

impl From<&FaultKey> for FaultKey {
    fn from(key: &FaultKey) -> Self {
        key.clone()
    }
}

/// Whether a key's pod UID belongs to pod `pod_uid`: the UID itself, or the UID with a
/// `#<tag>` suffix (faults that count apart from the pod's annotations, such as `ctl
/// inject`'s `<uid>#ctl`; Kubernetes UIDs never hold `#`).
pub fn belongs_to_pod(key_pod_uid: &str, pod_uid: &str) -> bool {
    key_pod_uid
        .strip_prefix(pod_uid)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('#'))
}

/// A change of the ledger, as the store writes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LedgerChange {
    /// `key` has taken `count` firings in all (0: none, the key is gone).
    Fired {
        /// The key.
        key: FaultKey,
        /// Its count now.
        count: u32,
    },
    /// Every key of the pod is gone.
    ForgetPod {
        /// The pod UID.
        pod_uid: String,
    },
}

#[derive(Debug, Clone)]
enum Changed {
    Key(FaultKey),
    Pod(String),
}

#[derive(Debug, Default)]
struct Counts {
    counts: BTreeMap<FaultKey, u32>,
    /// Changes not yet taken by the store, in order; `None` when nobody takes them.
    changes: Option<Vec<Changed>>,
}

impl Counts {
    fn changed(&mut self, change: Changed) {
        if let Some(changes) = &mut self.changes {
            changes.push(change);
        }
    }
}

type Notify = Box<dyn Fn() + Send + Sync>;

/// Firings taken per [`FaultKey`]. Thread safe: every method takes `&self`.
#[derive(Default)]
pub struct FiringLedger {
    counts: Mutex<Counts>,
    notify: Option<Notify>,
}

impl std::fmt::Debug for FiringLedger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FiringLedger")
            .field("keys", &self.len())
            .finish_non_exhaustive()
    }
}

impl FiringLedger {
    /// An empty ledger.
    pub fn new() -> Self {
        Self::default()
    }

    /// A ledger holding `counts`.
    pub fn from_counts(counts: BTreeMap<FaultKey, u32>) -> Self {
        FiringLedger {
            counts: Mutex::new(Counts {
                counts,
                changes: None,
            }),
            notify: None,
        }
    }

    /// Remembers every change from now on for [`FiringLedger::take_changes`], and calls
    /// `notify` after each (outside the lock; it must not block).
    pub fn track_changes(mut self, notify: impl Fn() + Send + Sync + 'static) -> Self {
        self.lock().changes = Some(Vec::new());
        self.notify = Some(Box::new(notify));
        self
    }

    fn lock(&self) -> MutexGuard<'_, Counts> {
        self.counts.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn notify(&self) {
        if let Some(notify) = &self.notify {
            notify();
        }
    }

    /// Atomically takes one firing for `key` if the total stays within `limit` (`None` =
    /// unlimited). Returns the 1-based ordinal of this firing, or `None` when the limit is
    /// spent. Claim before acting, whatever the probability draw says: a failed draw still
    /// consumes a firing.
    pub fn claim(&self, key: impl Into<FaultKey>, limit: Option<u32>) -> Option<u32> {
        let next = self.take(key.into(), limit, true)?;
        self.notify();
        Some(next)
    }

    /// [`FiringLedger::claim`] without recording a change: the caller makes the new count
    /// durable itself, together with the firing's first journal record (the store's
    /// `record_firing`), so that a crash keeps both or neither.
    pub fn claim_deferred(&self, key: impl Into<FaultKey>, limit: Option<u32>) -> Option<u32> {
        self.take(key.into(), limit, false)
    }

    fn take(&self, key: FaultKey, limit: Option<u32>, track: bool) -> Option<u32> {
        let mut counts = self.lock();
        let taken = counts.counts.get(&key).copied().unwrap_or(0);
        if limit.is_some_and(|l| taken >= l) {
            return None;
        }
        let next = taken.checked_add(1)?;
        counts.counts.insert(key.clone(), next);
        if track {
            counts.changed(Changed::Key(key));
        }
        Some(next)
    }

    /// Records that `key` changed (a deferred claim that no journal record carried), so the
    /// store's writer writes its count.
    pub fn touch(&self, key: impl Into<FaultKey>) {
        self.lock().changed(Changed::Key(key.into()));
        self.notify();
    }

    /// Firings taken so far for `key`.
    pub fn count(&self, key: impl Into<FaultKey>) -> u32 {
        self.lock().counts.get(&key.into()).copied().unwrap_or(0)
    }

    /// Gives back one firing of `key` that did nothing (its target was already gone), so that
    /// `count` counts faults that happened.
    pub fn release(&self, key: impl Into<FaultKey>) {
        let key = key.into();
        {
            let mut counts = self.lock();
            let Some(taken) = counts.counts.get_mut(&key) else {
                return;
            };
            *taken = taken.saturating_sub(1);
            if *taken == 0 {
                counts.counts.remove(&key);
            }
            counts.changed(Changed::Key(key));
        }
        self.notify();
    }

    /// Forgets every key of pod `pod_uid` (see [`belongs_to_pod`]); call when the pod is
    /// removed.
    pub fn forget_pod(&self, pod_uid: &str) {
        let forgot = {
            let mut counts = self.lock();
            let before = counts.counts.len();
            counts
                .counts
                .retain(|k, _| !belongs_to_pod(k.scope.pod_uid(), pod_uid));
            let forgot = counts.counts.len() != before;
            if forgot {
                counts.changed(Changed::Pod(pod_uid.to_string()));
            }
            forgot
        };
        if forgot {
            self.notify();
        }
    }

    /// Keeps only the keys of the pods in `pod_uids` (after a full resynchronization, every
    /// other pod is gone for good).
    pub fn retain_pods(&self, pod_uids: &[String]) {
        let gone: Vec<String> = {
            let counts = self.lock();
            let mut gone: Vec<String> = counts
                .counts
                .keys()
                .map(|k| k.scope.pod_uid())
                .filter(|uid| !pod_uids.iter().any(|live| belongs_to_pod(uid, live)))
                .map(str::to_string)
                .collect();
            gone.dedup();
            gone
        };
        for uid in gone {
            self.forget_pod(&uid);
        }
    }

    /// Number of keys held.
    pub fn len(&self) -> usize {
        self.lock().counts.len()
    }

    /// True when no key is held.
    pub fn is_empty(&self) -> bool {
        self.lock().counts.is_empty()
    }

    /// Every key and its count, sorted.
    pub fn snapshot(&self) -> Vec<(FaultKey, u32)> {
        self.lock()
            .counts
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect()
    }

    /// The changes since the last call, in order, each key with its count now (a key changed
    /// several times is given once, at its last change, so it never comes before a later
    /// forget of its pod). Empty unless [`FiringLedger::track_changes`] is on.
    pub fn take_changes(&self) -> Vec<LedgerChange> {
        let mut counts = self.lock();
        let Some(changes) = counts.changes.as_mut().map(std::mem::take) else {
            return Vec::new();
        };
        let last: HashMap<&FaultKey, usize> = changes
            .iter()
            .enumerate()
            .filter_map(|(i, c)| match c {
                Changed::Key(key) => Some((key, i)),
                Changed::Pod(_) => None,
            })
            .collect();
        let out = changes
            .iter()
            .enumerate()
            .filter_map(|(i, change)| match change {
                Changed::Key(key) => (last.get(key) == Some(&i)).then(|| LedgerChange::Fired {
                    key: key.clone(),
                    count: counts.counts.get(key).copied().unwrap_or(0),
                }),
                Changed::Pod(uid) => Some(LedgerChange::ForgetPod {
                    pod_uid: uid.clone(),
                }),
            })
            .collect();
        out
    }

    /// Puts back changes the store could not write, to be taken again (before any newer).
    pub fn untake(&self, changes: &[LedgerChange]) {
        let mut counts = self.lock();
        if let Some(pending) = counts.changes.as_mut() {
            let back = changes.iter().map(|c| match c {
                LedgerChange::Fired { key, .. } => Changed::Key(key.clone()),
                LedgerChange::ForgetPod { pod_uid } => Changed::Pod(pod_uid.clone()),
            });
            let newer = std::mem::take(pending);
            pending.extend(back);
            pending.extend(newer);
        }
    }
}
