//! The previous version's state, read once at start and folded into the store: the text
//! ledger `firings.ledger` (`<pod-uid> <container> <fault> <count>` per line, percent-encoded
//! fields, `%` alone for an empty one) and the journal directory `journal/<fault-id>.json`
//! (one [`JournalEntry`] per file). A node upgraded while a fault held still recovers it.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use crate::annotations::FaultKind;
use crate::journal::JournalEntry;
use crate::schedule::LedgerKey;
use crate::scope::FaultKey;

use super::StoreProblem;

/// The previous version's ledger file, under the state directory.
pub const OLD_LEDGER: &str = "firings.ledger";
/// The previous version's journal directory, under the state directory.
pub const OLD_JOURNAL: &str = "journal";

/// What the previous version left.
#[derive(Debug, Default)]
pub struct OldState {
    /// Firing counts (the larger count when a key appears twice: never fire more than asked).
    pub firings: BTreeMap<FaultKey, u32>,
    /// Journal entries.
    pub journal: Vec<JournalEntry>,
    /// Files to remove once their content is durable in the store (bad ones stay).
    pub done: Vec<PathBuf>,
}

fn decode(token: &str) -> Result<String, String> {
    if token == "%" {
        return Ok(String::new());
    }
    let mut out = Vec::with_capacity(token.len());
    let mut bytes = token.bytes();
    while let Some(b) = bytes.next() {
        if b != b'%' {
            out.push(b);
            continue;
        }
        let hex = [bytes.next(), bytes.next()];
        let hex = match hex {
            [Some(h), Some(l)] => std::str::from_utf8(&[h, l])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok()),
            _ => None,
        };
        out.push(hex.ok_or_else(|| format!("bad escape in {token:?}"))?);
    }
    String::from_utf8(out).map_err(|_| format!("{token:?} does not decode to UTF-8"))
}

fn ledger_line(line: &str) -> Result<(FaultKey, u32), String> {
    let tokens: Vec<&str> = line.split_whitespace().collect();
    let [uid, name, kind, count] = tokens.as_slice() else {
        return Err(format!("expected 4 fields, found {}", tokens.len()));
    };
    let kind: FaultKind = kind.parse().map_err(|e| format!("{e}"))?;
    let count: u32 = count
        .parse()
        .map_err(|_| format!("count {count:?} is not a number"))?;
    let key = LedgerKey::new(decode(uid)?, decode(name)?, kind);
    Ok((FaultKey::from(&key), count))
}

/// Reads the old text ledger; bad lines are reported with their line number.
pub fn read_old_ledger(text: &str, path: &Path, old: &mut OldState) -> Vec<StoreProblem> {
    let mut problems = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match ledger_line(line) {
            Ok((key, count)) => {
                let slot = old.firings.entry(key).or_insert(0);
                *slot = count.max(*slot);
            }
            Err(reason) => problems.push(StoreProblem::Old {
                path: path.to_path_buf(),
                line: i + 1,
                reason,
            }),
        }
    }
    problems
}

/// Reads what the previous version left under `state_dir` (nothing is changed).
pub fn read_old(state_dir: &Path) -> (OldState, Vec<StoreProblem>) {
    let mut old = OldState::default();
    let mut problems = Vec::new();
    let ledger = state_dir.join(OLD_LEDGER);
    match fs::read_to_string(&ledger) {
        Ok(text) => {
            problems.extend(read_old_ledger(&text, &ledger, &mut old));
            old.done.push(ledger);
        }
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
        Err(err) => problems.push(StoreProblem::Old {
            path: ledger,
            line: 0,
            reason: err.to_string(),
        }),
    }
    let Ok(dir) = fs::read_dir(state_dir.join(OLD_JOURNAL)) else {
        return (old, problems);
    };
    let mut names: Vec<PathBuf> = dir.flatten().map(|e| e.path()).collect();
    names.sort();
    for path in names {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.starts_with('.') && name.ends_with(".tmp") {
            // A write the previous version never finished (its fault was never applied).
            old.done.push(path);
            continue;
        }
        if !name.ends_with(".json") {
            continue;
        }
        let parsed = fs::read(&path)
            .map_err(|e| e.to_string())
            .and_then(|b| serde_json::from_slice::<JournalEntry>(&b).map_err(|e| e.to_string()));
        match parsed {
            Ok(entry) => {
                old.journal.push(entry);
                old.done.push(path);
            }
            Err(reason) => problems.push(StoreProblem::Old {
                path,
                line: 0,
                reason,
            }),
        }
    }
    (old, problems)
}

/// Removes the old files once the store holds their content, then the journal directory if
/// it is empty. Failures are only logged: the files are read again (to the same result) at
/// the next start.
pub fn remove_old(state_dir: &Path, done: &[PathBuf]) {
    for path in done {
        if let Err(err) = fs::remove_file(path) {
            tracing::warn!(path = %path.display(), error = %err, "store: cannot remove a migrated file");
        }
    }
    // Only an empty directory goes; one with files that did not parse stays for inspection.
    let _ = fs::remove_dir(state_dir.join(OLD_JOURNAL));
    if !done.is_empty() {
        tracing::info!(
            files = done.len(),
            "store: the previous version's ledger and journal are folded in"
        );
    }
}
