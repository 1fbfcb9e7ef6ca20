//! The firing ledger on disk: `count` holds across container restarts and plugin restarts.
//! Written atomically (temp file + rename) after every firing; read at start.

use std::path::{Path, PathBuf};

use injector::FiringLedger;

/// Where the ledger lives under the state dir.
pub fn ledger_path(state_dir: &Path) -> PathBuf {
    state_dir.join("firings.ledger")
}

/// Loads the ledger; a missing file is an empty ledger, an unreadable one is reported and
/// replaced by an empty one (the plugin must start).
pub fn load(path: &Path) -> FiringLedger {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let (ledger, errors) = FiringLedger::from_text_lossy(&text);
            for err in errors {
                tracing::error!(path = %path.display(), error = %err, "firing ledger line dropped");
            }
            ledger
        }
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => FiringLedger::new(),
        Err(err) => {
            tracing::error!(path = %path.display(), error = %err, "cannot read the firing ledger; starting with an empty one");
            FiringLedger::new()
        }
    }
}

/// Saves the ledger atomically.
pub fn save(path: &Path, ledger: &FiringLedger) -> std::io::Result<()> {
    let tmp = path.with_extension("ledger.tmp");
    std::fs::write(&tmp, ledger.to_text())?;
    std::fs::rename(&tmp, path)
}
