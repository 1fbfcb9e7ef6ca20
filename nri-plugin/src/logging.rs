//! The daemon's log: `tracing` events formatted on the calling thread and appended, as one
//! line each, to a bounded in-memory queue that a writer thread writes to stderr. A line
//! logged inside an NRI handler ([`crate::in_handler::run`]) only joins the queue: the writer takes it
//! within [`FLUSH_EVERY`] (sooner when the queue is half full), so the handler neither
//! writes to a pipe or journald nor wakes another thread (on a small VM, waking the writer
//! per line, as tracing-appender's `non_blocking` does, cost about 13 us in the handler).
//! Any other line wakes the writer at once. A line that finds the queue full is dropped and
//! counted ([`dropped_lines`], `nri_chaos_log_lines_dropped_total`); what is queued is
//! written when the [`LogGuard`] is dropped at exit. A handler's line given to [`later`] is
//! not even formatted in the handler: the writer formats it in its place, with its time.
// Hand-written: the crates of the field (tracing-appender) wake their writer for every line.

use std::io::Write;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, SystemTime};

use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

mod later;

/// Most bytes queued; past half of it the writer is woken at once. Grown as lines come
/// (nothing is allocated up front), kept for reuse.
pub const QUEUE_BYTES: usize = 64 << 10;
/// How long a line may wait in the queue.
pub const FLUSH_EVERY: Duration = Duration::from_millis(50);

#[derive(Debug, Default)]
struct Queue {
    bytes: Vec<u8>,
    /// Lines to format on the writer thread, each at its place in `bytes`.
    later: Vec<later::Later>,
    dropped: u64,
    closed: bool,
    /// The writer thread runs (else lines go straight to stderr).
    threaded: bool,
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

/// The queue, set once by [`init`].
static SHARED: OnceLock<Arc<Shared>> = OnceLock::new();

/// One formatted line (the fmt layer writes each event with one `write_all`).
struct Line<'a>(&'a Shared);

impl Write for Line<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        // A line of `later` being formatted on the writer thread.
        if later::captured(buf) {
            return Ok(buf.len());
        }
        let mut queue = self.0.lock();
        if queue.bytes.len() + buf.len() > QUEUE_BYTES {
            queue.dropped += 1;
        } else {
            queue.bytes.extend_from_slice(buf);
            if queue.bytes.len() > QUEUE_BYTES / 2 || !crate::in_handler::active() {
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

/// Logs a line of an NRI handler: `emit`, its `tracing` call over owned fields, runs on the
/// writer thread, in the queue's order and with this instant as the line's time (without the
/// writer thread, here and now).
pub fn later(emit: impl FnOnce() + Send + 'static) {
    match SHARED.get() {
        Some(shared) => queue_later(shared, Box::new(emit)),
        None => emit(),
    }
}

fn queue_later(shared: &Shared, emit: Box<dyn FnOnce() + Send>) {
    let at = SystemTime::now();
    let mut queue = shared.lock();
    if !queue.threaded {
        drop(queue);
        return emit();
    }
    if queue.later.len() >= later::MAX_LATER {
        queue.dropped += 1;
        return;
    }
    let offset = queue.bytes.len();
    queue.later.push(later::Later { offset, at, emit });
    if !crate::in_handler::active() {
        shared.wake.notify_one();
    }
}

/// Writes the queue to `sink` (stderr) every [`FLUSH_EVERY`] (sooner when woken) until
/// closed and empty.
fn write_out(shared: &Shared, sink: &mut impl Write) {
    let mut out = Vec::new();
    let mut lines = Vec::new();
    let empty = |q: &Queue| q.bytes.is_empty() && q.later.is_empty();
    loop {
        let closed = {
            let queue = shared.lock();
            let (mut queue, _) = shared
                .wake
                .wait_timeout_while(queue, FLUSH_EVERY, |q| !q.closed && empty(q))
                .unwrap_or_else(|e| e.into_inner());
            std::mem::swap(&mut queue.bytes, &mut out);
            std::mem::swap(&mut queue.later, &mut lines);
            queue.closed
        };
        // Nowhere to report a failed write to stderr; the lines are lost either way.
        let mut start = 0;
        for line in lines.drain(..) {
            let end = line.offset.min(out.len());
            let _ = sink.write_all(&out[start..end]);
            start = end;
            let _ = sink.write_all(&later::format(line));
        }
        let _ = sink.write_all(&out[start..]);
        out.clear();
        if closed && empty(&shared.lock()) {
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
        Ok(handle) => {
            shared.lock().threaded = true;
            Some(handle)
        }
        Err(err) => {
            eprintln!(
                "nri-chaos: cannot start the log writer thread ({err}); logging synchronously"
            );
            None
        }
    };
    let logs = tracing_subscriber::registry().with(filter);
    let layer = tracing_subscriber::fmt::layer()
        .with_ansi(false)
        .with_timer(later::LogTime);
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

    #[test]
    fn a_later_line_is_written_in_its_place_with_the_time_it_was_logged_at() {
        let shared = Arc::new(Shared::default());
        shared.lock().threaded = true;
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_timer(later::LogTime)
            .with_writer(QueueWriter(shared.clone()))
            .finish();
        let mut out = Vec::new();
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!("one");
            let pod = "default/web".to_string();
            queue_later(
                &shared,
                Box::new(move || tracing::info!(pod = %pod, fault = "kill", "two")),
            );
            assert!(
                shared.lock().bytes.ends_with(b"one\n"),
                "not formatted when logged"
            );
            std::thread::sleep(Duration::from_millis(5));
            tracing::info!("three");
            shared.lock().closed = true;
            write_out(&shared, &mut out);
        });
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert!(lines[0].ends_with(" one"), "{text}");
        assert!(
            lines[1].ends_with(" two pod=default/web fault=\"kill\""),
            "{text}"
        );
        assert!(lines[2].ends_with(" three"), "{text}");
        // RFC 3339 timestamps of one length: text order is time order. `two` was formatted
        // after `three` but carries its own, earlier, time.
        let time = |line: &str| line.split(' ').next().unwrap().to_string();
        assert!(time(lines[0]) <= time(lines[1]), "{text}");
        assert!(time(lines[1]) < time(lines[2]), "{text}");
    }

    /// Writes `text` as one line (inside an NRI handler when `quiet`) and returns how long the
    /// writer took to take it.
    fn taken_after(shared: &Shared, text: &str, quiet: bool) -> Duration {
        let started = std::time::Instant::now();
        let write = || Line(shared).write_all(text.as_bytes()).unwrap();
        if quiet {
            crate::in_handler::run(write);
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
