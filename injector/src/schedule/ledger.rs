//! The firing ledger: how many times each fault has fired for a pod's container, across
//! container restarts, so `count` is honoured when the kubelet restarts a killed container.
//!
//! Durable text form ([`FiringLedger::to_text`] / [`FiringLedger::from_text`]), one line per
//! key, fields separated by whitespace:
//!
//! ```text
//! # nri-chaos firing ledger v1: <pod-uid> <container> <fault> <count>
//! 0b7e5c1e-7a4e-4b8e-9f59-2a3c2d1e0f00 app kill 1
//! ```
//!
//! Fields are percent-encoded (`%20` for a space, `%25` for `%`; a lone `%` is the empty
//! string). The parser skips blank lines and `#` comments, tolerates any whitespace, keeps the
//! larger count when a key appears twice (never fire more than asked), and names the line of
//! any error.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::annotations::{quote, FaultKind};

/// Header line written by [`FiringLedger::to_text`].
pub const LEDGER_HEADER: &str =
    "# nri-chaos firing ledger v1: <pod-uid> <container> <fault> <count>";

/// Errors of the firing ledger's text form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LedgerError {
    /// A line that does not parse.
    #[error("firing ledger line {line}: {}: {reason}", quote(.text))]
    Line {
        /// 1-based line number.
        line: usize,
        /// The line.
        text: String,
        /// Why.
        reason: String,
    },
}

/// Identifies a fault of a container of a pod, stable across container restarts.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LedgerKey {
    /// The pod UID.
    pub pod_uid: String,
    /// The container name (not its id, which changes on restart).
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

/// Firings taken per [`LedgerKey`]. Thread safe: every method takes `&self`.
#[derive(Debug, Default)]
pub struct FiringLedger {
    counts: Mutex<BTreeMap<LedgerKey, u32>>,
}

fn encode(field: &str, out: &mut String) {
    if field.is_empty() {
        out.push('%');
        return;
    }
    for b in field.bytes() {
        if b.is_ascii_graphic() && b != b'%' && b != b'#' {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
}

fn decode(token: &str) -> Result<String, String> {
    if token == "%" {
        return Ok(String::new());
    }
    let bytes = token.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = token
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| format!("bad escape in {}", quote(token)))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| format!("{} does not decode to UTF-8", quote(token)))
}

fn parse_line(line: &str) -> Result<(LedgerKey, u32), String> {
    let tokens: Vec<&str> = line.split_whitespace().collect();
    let [uid, name, kind, count] = tokens.as_slice() else {
        return Err(format!(
            "expected 4 fields (<pod-uid> <container> <fault> <count>), found {}",
            tokens.len()
        ));
    };
    let kind = kind.parse::<FaultKind>().map_err(|e| e.to_string())?;
    let count = count.parse::<u32>().map_err(|_| {
        format!(
            "count {} is not a number from 0 to {}",
            quote(count),
            u32::MAX
        )
    })?;
    Ok((LedgerKey::new(decode(uid)?, decode(name)?, kind), count))
}

impl FiringLedger {
    /// An empty ledger.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<LedgerKey, u32>> {
        self.counts.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Atomically takes one firing for `key` if the total stays within `limit` (`None` =
    /// unlimited). Returns the 1-based ordinal of this firing, or `None` when the limit is
    /// spent. Claim before acting, whatever the probability draw says: a failed draw still
    /// consumes a firing.
    pub fn claim(&self, key: &LedgerKey, limit: Option<u32>) -> Option<u32> {
        let mut counts = self.lock();
        let taken = counts.get(key).copied().unwrap_or(0);
        if limit.is_some_and(|l| taken >= l) {
            return None;
        }
        let next = taken.checked_add(1)?;
        counts.insert(key.clone(), next);
        Some(next)
    }

    /// Firings taken so far for `key`.
    pub fn count(&self, key: &LedgerKey) -> u32 {
        self.lock().get(key).copied().unwrap_or(0)
    }

    /// Gives back one firing of `key` that did nothing (its target was already gone), so that
    /// `count` counts faults that happened.
    pub fn release(&self, key: &LedgerKey) {
        let mut counts = self.lock();
        if let Some(taken) = counts.get_mut(key) {
            *taken = taken.saturating_sub(1);
            if *taken == 0 {
                counts.remove(key);
            }
        }
    }

    /// Keeps only the keys of the pods in `pod_uids` (after a full resynchronization, every
    /// other pod is gone for good).
    pub fn retain_pods(&self, pod_uids: &[String]) {
        self.lock().retain(|k, _| pod_uids.contains(&k.pod_uid));
    }

    /// Forgets every key of pod `pod_uid` (call when the pod is removed).
    pub fn forget_pod(&self, pod_uid: &str) {
        self.lock().retain(|k, _| k.pod_uid != pod_uid);
    }

    /// Number of keys held.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// True when no key is held.
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    /// Every key and its count, sorted.
    pub fn snapshot(&self) -> Vec<(LedgerKey, u32)> {
        self.lock().iter().map(|(k, v)| (k.clone(), *v)).collect()
    }

    /// The durable text form (header, then one sorted line per key).
    pub fn to_text(&self) -> String {
        let counts = self.lock();
        let mut out = String::with_capacity(64 + counts.len() * 64);
        out.push_str(LEDGER_HEADER);
        out.push('\n');
        for (key, count) in counts.iter() {
            encode(&key.pod_uid, &mut out);
            out.push(' ');
            encode(&key.container_name, &mut out);
            let _ = writeln!(out, " {} {count}", key.kind);
        }
        out
    }

    /// Parses the text form; the first bad line is an error naming it.
    pub fn from_text(text: &str) -> Result<FiringLedger, LedgerError> {
        let (ledger, mut errors) = FiringLedger::from_text_lossy(text);
        if errors.is_empty() {
            Ok(ledger)
        } else {
            Err(errors.swap_remove(0))
        }
    }

    /// Parses the text form, keeping every good line and returning the errors of the bad ones
    /// (for recovering what can be recovered from a damaged state file).
    pub fn from_text_lossy(text: &str) -> (FiringLedger, Vec<LedgerError>) {
        let mut counts = BTreeMap::new();
        let mut errors = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            match parse_line(line) {
                Ok((key, count)) => {
                    let slot = counts.entry(key).or_insert(0);
                    *slot = count.max(*slot);
                }
                Err(reason) => errors.push(LedgerError::Line {
                    line: i + 1,
                    text: raw.to_string(),
                    reason,
                }),
            }
        }
        (
            FiringLedger {
                counts: Mutex::new(counts),
            },
            errors,
        )
    }
}
