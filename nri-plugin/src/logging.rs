//! The daemon's log: `tracing` events formatted on the calling thread and appended, as one
//! line each, to a bounded in-memory queue that a writer thread writes to stderr. A line
//! logged inside an NRI handler ([`quietly`]) only joins the queue: the writer takes it
//! within [`FLUSH_EVERY`] (sooner when the queue is half full), so the handler neither
//! writes to a pipe or journald nor wakes another thread (on a small VM, waking the writer
//! per line, as tracing-appender's `non_blocking` does, cost about 13 us in the handler).
//! Any other line wakes the writer at once. A line that finds the queue full is dropped and
//! counted ([`dropped_lines`], `nri_chaos_log_lines_dropped_total`); what is queued is
//! written when the [`LogGuard`] is dropped at exit.
// Hand-written: the crates of the field (tracing-appender) wake their writer for every line.

use std::cell::Cell;
use std::io::Write;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// Most bytes queued; past half of it the writer is woken at once. Grown as lines come
/// (nothing is allocated up front), kept for reuse.
pub const QUEUE_BYTES: usize = 64 << 10;
/// How long a line may wait in the queue.
pub const FLUSH_EVERY: Duration = Duration::from_millis(50);

#[derive(Debug, Default)]
struct Queue {
    bytes: Vec<u8>,
    dropped: u64,
    closed: bool,
}

#[derive(Debug, Default)]
struct Shared {
    queue: Mutex<Queue>,
    wake: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        // A panic while holding it cannot leave the queue inconsistent (bytes only grow).
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }
}

thread_local! {
    /// True while this thread runs an NRI handler (see [`quietly`]).
    static QUIET: Cell<bool> = const { Cell::new(false) };
}

/// Runs `work` (an NRI handler) with its log lines queued without waking the writer.
pub fn quietly<T>(work: impl FnOnce() -> T) -> T {
    let outer = QUIET.replace(true);
    let result = work();
    QUIET.set(outer);
    result
}

/// The queue, set once by [`init`].
static SHARED: OnceLock<Arc<Shared>> = OnceLock::new();

/// One formatted line (the fmt layer writes each event with one `write_all`).
struct Line<'a>(&'a Shared);

impl Write for Line<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut queue = self.0.lock();
        if queue.bytes.len() + buf.len() > QUEUE_BYTES {
            queue.dropped += 1;
        } else {
            queue.bytes.extend_from_slice(buf);
            if queue.bytes.len() > QUEUE_BYTES / 2 || !QUIET.get() {
                self.0.wake.notify_one();
            }
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

struct QueueWriter(Arc<Shared>);

impl<'a> MakeWriter<'a> for QueueWriter {
    type Writer = Line<'a>;

    fn make_writer(&'a self) -> Line<'a> {
        Line(&self.0)
    }
}

/// Writes the queue to `sink` (stderr) every [`FLUSH_EVERY`] (sooner when woken) until
/// closed and empty.
fn write_out(shared: &Shared, sink: &mut impl Write) {
    let mut out = Vec::new();
    loop {
        let closed = {
            let queue = shared.lock();
            let (mut queue, _) = shared
                .wake
                .wait_timeout_while(queue, FLUSH_EVERY, |q| !q.closed && q.bytes.is_empty())
                .unwrap_or_else(|e| e.into_inner());
            std::mem::swap(&mut queue.bytes, &mut out);
            queue.closed
        };
        if !out.is_empty() {
            // Nowhere to report a failed write to stderr; the lines are lost either way.
            let _ = sink.write_all(&out);
            out.clear();
        }
        if closed && shared.lock().bytes.is_empty() {
            return;
        }
    }
}

/// `--log-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One human-readable line per event (`key=value` fields).
    Plain,
    /// One JSON object per event (`timestamp`, `level`, `fields`, `target`).
    Json,
}

/// Keeps the writer thread; dropping it writes the queued lines, then reports the lines
/// dropped, if any, straight to stderr.
#[derive(Debug)]
pub struct LogGuard {
    writer: Option<std::thread::JoinHandle<()>>,
}

impl Drop for LogGuard {
    fn drop(&mut self) {
        let Some(shared) = SHARED.get() else {
            return;
        };
        shared.lock().closed = true;
        shared.wake.notify_one();
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
        let dropped = dropped_lines();
        if dropped > 0 {
            eprintln!("nri-chaos: {dropped} log lines were dropped: the log queue of {QUEUE_BYTES} bytes was full");
        }
    }
}

/// Log lines dropped so far because the queue was full (0 before [`init`]).
pub fn dropped_lines() -> u64 {
    SHARED.get().map_or(0, |shared| shared.lock().dropped)
}

/// Installs the global subscriber: `RUST_LOG`'s filter (see [`filter`]), lines in `format`
/// to stderr through the queue. Keep the guard until exit.
pub fn init(format: LogFormat) -> LogGuard {
    let (filter, warning) = filter();
    let shared = SHARED.get_or_init(Arc::default).clone();
    let writer = {
        let shared = shared.clone();
        std::thread::Builder::new()
            .name("nri-chaos-log".to_string())
            .spawn(move || write_out(&shared, &mut std::io::stderr()))
    };
    // Without the thread, lines go straight to stderr from the logging thread.
    let writer = match writer {
        Ok(handle) => Some(handle),
        Err(err) => {
            eprintln!(
                "nri-chaos: cannot start the log writer thread ({err}); logging synchronously"
            );
            None
        }
    };
    let logs = tracing_subscriber::registry().with(filter);
    let layer = tracing_subscriber::fmt::layer().with_ansi(false);
    match (format, writer.is_some()) {
        (LogFormat::Plain, true) => logs.with(layer.with_writer(QueueWriter(shared))).init(),
        (LogFormat::Json, true) => logs
            .with(
                layer
                    .json()
                    .flatten_event(true)
                    .with_writer(QueueWriter(shared)),
            )
            .init(),
        (LogFormat::Plain, false) => logs.with(layer.with_writer(std::io::stderr)).init(),
        (LogFormat::Json, false) => logs
            .with(
                layer
                    .json()
                    .flatten_event(true)
                    .with_writer(std::io::stderr),
            )
            .init(),
    }
    if let Some(warning) = warning {
        tracing::warn!("{warning}");
    }
    LogGuard { writer }
}

/// The log filter from `RUST_LOG`: a level (`debug`) and/or `target=level` pairs
/// (`nri_chaos=debug,ttrpc=warn`); unset means `info`. `Targets`, not `EnvFilter`: no
/// span or field directives, and no regex engine in the daemon. A value it does not take
/// gives `info` and the reason, for the log.
fn filter() -> (Targets, Option<String>) {
    let info = || Targets::new().with_default(LevelFilter::INFO);
    let Some(text) = std::env::var("RUST_LOG")
        .ok()
        .filter(|t| !t.trim().is_empty())
    else {
        return (info(), None);
    };
    let unsupported = format!(
        "RUST_LOG={text:?} is not a level or target=level list (span and field directives are not supported); logging at info"
    );
    if text.contains(['[', '{', '"']) {
        return (info(), Some(unsupported));
    }
    match text.parse() {
        Ok(targets) => (targets, None),
        Err(_) => (info(), Some(unsupported)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queued_lines_are_written_in_order_and_a_full_queue_drops_and_counts() {
        let shared = Shared::default();
        let line = |text: &str| Line(&shared).write_all(text.as_bytes()).unwrap();
        line("one\n");
        line("two\n");
        let big = "x".repeat(QUEUE_BYTES - 4);
        line(&big);
        assert_eq!(
            shared.lock().dropped,
            1,
            "a line past the queue's bytes is dropped"
        );
        shared.lock().closed = true;
        let mut out = Vec::new();
        write_out(&shared, &mut out);
        assert_eq!(out, b"one\ntwo\n");
        assert!(shared.lock().bytes.is_empty());
    }

    /// Writes `text` as one line (inside an NRI handler when `quiet`) and returns how long the
    /// writer took to take it.
    fn taken_after(shared: &Shared, text: &str, quiet: bool) -> Duration {
        let started = std::time::Instant::now();
        let write = || Line(shared).write_all(text.as_bytes()).unwrap();
        if quiet {
            quietly(write);
        } else {
            write();
        }
        while !shared.lock().bytes.is_empty() {
            std::thread::yield_now();
        }
        started.elapsed()
    }

    #[test]
    fn a_line_outside_handlers_and_a_half_full_queue_are_written_at_once() {
        let shared = Arc::new(Shared::default());
        let writer = {
            let shared = shared.clone();
            std::thread::spawn(move || {
                let mut out = Vec::new();
                write_out(&shared, &mut out);
                out
            })
        };
        // The writer waits first; neither line may wait for the end of its period.
        std::thread::sleep(Duration::from_millis(1));
        let half = "y".repeat(QUEUE_BYTES / 2 + 1);
        let quiet_half = taken_after(&shared, &half, true);
        assert!(quiet_half < FLUSH_EVERY / 2, "half full: {quiet_half:?}");
        std::thread::sleep(Duration::from_millis(1));
        let loud = taken_after(&shared, "control socket line\n", false);
        assert!(loud < FLUSH_EVERY / 2, "outside a handler: {loud:?}");
        shared.lock().closed = true;
        shared.wake.notify_one();
        assert_eq!(writer.join().unwrap().len(), half.len() + 20);
    }
}
