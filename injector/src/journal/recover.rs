//! Undoing a journaled fault: [`recover_entry`] hands the entry's [`super::Recovery`] to its
//! kind's own recovery ([`crate::faults::recover`]).

pub use crate::faults::stress::kill_if_same;
use crate::faults::{Kernel, UndoError};

use super::JournalEntry;

/// Performs the recovery an entry describes, through its kind's `Fault::recover`; safe to
/// repeat. The caller clears the entry when this returns `Ok` and keeps it for a retry
/// otherwise.
pub fn recover_entry(entry: &JournalEntry, kernel: &Kernel<'_>) -> Result<(), UndoError> {
    crate::faults::recover(kernel, &entry.recovery)?;
    tracing::info!(fault = %entry.id, pod = %entry.pod, container = %entry.container_name, kind = entry.kind.as_str(), "recovered");
    Ok(())
}
