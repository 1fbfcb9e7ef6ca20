//! Reading a whole store log: every good record in order, and every problem with its
//! position. Never fails as a whole: what can be read is kept.

use super::record::{decode_line, Record};

/// A problem met while reading the log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LogProblem {
    /// The last record has no end of line: a crash cut it while it was written (it was never
    /// acknowledged). Dropped.
    #[error("store log: the last record (line {line}, byte {offset}, {len} bytes) was cut short by a crash; dropped")]
    TornTail {
        /// 1-based line number.
        line: usize,
        /// Byte offset of its start.
        offset: usize,
        /// Bytes it has.
        len: usize,
    },
    /// A whole line that is not a good record (damaged on disk). Skipped; the records after
    /// it are kept.
    #[error("store log: line {line} (byte {offset}) is corrupt and skipped: {reason}")]
    Corrupt {
        /// 1-based line number.
        line: usize,
        /// Byte offset of its start.
        offset: usize,
        /// Why.
        reason: String,
    },
}

/// What [`read_log`] found.
#[derive(Debug, Default)]
pub struct ReadLog {
    /// The good records, in order.
    pub records: Vec<Record>,
    /// The problems, in order.
    pub problems: Vec<LogProblem>,
}

/// Reads the records of a log.
pub fn read_log(bytes: &[u8]) -> ReadLog {
    let mut read = ReadLog::default();
    let mut offset = 0;
    let mut line = 0;
    while offset < bytes.len() {
        line += 1;
        let rest = &bytes[offset..];
        let Some(end) = rest.iter().position(|&b| b == b'\n') else {
            read.problems.push(LogProblem::TornTail {
                line,
                offset,
                len: rest.len(),
            });
            break;
        };
        let text = &rest[..end];
        if !text.is_empty() {
            match decode_line(text) {
                Ok(record) => read.records.push(record),
                Err(reason) => read.problems.push(LogProblem::Corrupt {
                    line,
                    offset,
                    reason,
                }),
            }
        }
        offset += end + 1;
    }
    read
}
