//! Log lines of NRI handlers formatted by the log writer thread. A handler hands
//! [`super::later`] the line's `tracing` call as a closure over its fields; the writer runs it
//! in the queue's order with the handler's timestamp (a [`LogTime`] override), so the text is
//! exactly what the handler would have written, without the ~20 us of cold formatting code in
//! the handler.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::FormatTime;

/// Lines waiting in the queue at most; past it a line is dropped and counted.
pub(super) const MAX_LATER: usize = 256;

/// A line to format on the writer thread: its place in the queue's bytes and its time.
pub(super) struct Later {
    pub offset: usize,
    pub at: SystemTime,
    pub emit: Box<dyn FnOnce() + Send>,
}

impl fmt::Debug for Later {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Later")
            .field("offset", &self.offset)
            .field("at", &self.at)
            .finish_non_exhaustive()
    }
}

thread_local! {
    /// The time the line being formatted on this thread was logged at (writer thread).
    static AT: Cell<Option<SystemTime>> = const { Cell::new(None) };
    /// Where the line being formatted on this thread goes instead of the queue.
    static CAPTURE: RefCell<Option<Vec<u8>>> = const { RefCell::new(None) };
}

/// Formats `later` (runs its `tracing` call) and returns the line.
pub(super) fn format(later: Later) -> Vec<u8> {
    AT.set(Some(later.at));
    CAPTURE.set(Some(Vec::new()));
    (later.emit)();
    AT.set(None);
    CAPTURE.take().unwrap_or_default()
}

/// Appends `buf` to the line being formatted on this thread; false when there is none.
pub(super) fn captured(buf: &[u8]) -> bool {
    CAPTURE.with_borrow_mut(|capture| match capture {
        Some(line) => {
            line.extend_from_slice(buf);
            true
        }
        None => false,
    })
}

/// The log's timestamps: `tracing-subscriber`'s default format (RFC 3339, UTC, microseconds),
/// of the time the line was logged at.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct LogTime;

impl FormatTime for LogTime {
    fn format_time(&self, w: &mut Writer<'_>) -> fmt::Result {
        write_time(w, AT.get().unwrap_or_else(SystemTime::now))
    }
}

// Hand-written: tracing-subscriber's formatter of a SystemTime is private and only formats now.
/// Writes `time` as `2026-12-02T08:39:28.667312Z` (days to a civil date: the proleptic
/// Gregorian calendar's 400-year eras).
fn write_time(w: &mut impl fmt::Write, time: SystemTime) -> fmt::Result {
    let (secs, nanos) = match time.duration_since(UNIX_EPOCH) {
        Ok(d) => (
            i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
            d.subsec_nanos(),
        ),
        Err(e) => {
            let d = e.duration();
            let secs = i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
            match d.subsec_nanos() {
                0 => (-secs, 0),
                n => (-secs - 1, 1_000_000_000 - n),
            }
        }
    };
    let (days, second) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (year, month, day) = crate::civil::civil_date(days);
    if year > 9999 {
        write!(w, "+{year}")?;
    } else if year < 0 {
        write!(w, "{year:05}")?;
    } else {
        write!(w, "{year:04}")?;
    }
    write!(
        w,
        "-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:06}Z",
        second / 3_600,
        second / 60 % 60,
        second % 60,
        nanos / 1_000
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn text(secs: u64, nanos: u32) -> String {
        let mut out = String::new();
        write_time(&mut out, UNIX_EPOCH + Duration::new(secs, nanos)).unwrap();
        out
    }

    #[test]
    fn times_are_written_in_tracing_subscribers_format() {
        assert_eq!(text(0, 0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(text(951_782_400, 0), "2000-02-29T00:00:00.000000Z");
        assert_eq!(
            text(1_796_200_768, 667_312_999),
            "2026-12-02T08:39:28.667312Z"
        );
        assert_eq!(text(4_102_444_800, 1_000), "2100-01-01T00:00:00.000001Z");
        // The same text as tracing-subscriber's own timer, read between two instants.
        let before = SystemTime::now();
        let mut theirs = String::new();
        tracing_subscriber::fmt::time::SystemTime
            .format_time(&mut Writer::new(&mut theirs))
            .unwrap();
        let after = SystemTime::now();
        let (mut low, mut high) = (String::new(), String::new());
        write_time(&mut low, before).unwrap();
        write_time(&mut high, after).unwrap();
        assert!(low <= theirs && theirs <= high, "{low} {theirs} {high}");
    }
}
