//! The daemon's log: `tracing` events formatted on the calling thread and handed, as one
//! line each, to a writer thread that writes them to stderr (tracing-appender's
//! `non_blocking`). An NRI handler that logs a decision never waits on the write(2) to a
//! pipe or journald. The queue is small and bounded; a line that finds it full is dropped
//! and counted ([`dropped_lines`], `nri_chaos_log_lines_dropped_total`), and the lines still
//! queued are written when the [`LogGuard`] is dropped at exit.

use std::sync::OnceLock;

use tracing_appender::non_blocking::{ErrorCounter, NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// Lines the writer thread may have queued. The queue's slots are allocated up front (32
/// bytes each: 32 KiB, not the crate's default of 128,000 lines, 4 MiB of resident memory);
/// a line's text is allocated when it is queued. A burst of 1,024 lines faster than stderr
/// drains them is a flood: what does not fit is dropped and counted rather than making a
/// handler wait.
pub const QUEUE_LINES: usize = 1024;

/// The writer's drop counter, set once by [`init`].
static DROPPED: OnceLock<ErrorCounter> = OnceLock::new();

/// `--log-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One human-readable line per event (`key=value` fields).
    Plain,
    /// One JSON object per event (`timestamp`, `level`, `fields`, `target`).
    Json,
}

/// Keeps the writer thread; dropping it writes the queued lines (waiting up to about a
/// second), then reports the lines dropped, if any, straight to stderr.
#[derive(Debug)]
pub struct LogGuard {
    worker: Option<WorkerGuard>,
}

impl Drop for LogGuard {
    fn drop(&mut self) {
        drop(self.worker.take());
        let dropped = dropped_lines();
        if dropped > 0 {
            eprintln!("nri-chaos: {dropped} log lines were dropped: the log writer's queue of {QUEUE_LINES} lines was full");
        }
    }
}

/// Log lines dropped so far because the writer's queue was full (0 before [`init`]).
pub fn dropped_lines() -> u64 {
    DROPPED
        .get()
        .map_or(0, |counter| counter.dropped_lines() as u64)
}

/// Installs the global subscriber: `RUST_LOG`'s filter (see [`filter`]), lines in `format`
/// to stderr through the writer thread. Keep the guard until exit.
pub fn init(format: LogFormat) -> LogGuard {
    let (filter, warning) = filter();
    let (writer, worker) = NonBlockingBuilder::default()
        .buffered_lines_limit(QUEUE_LINES)
        .lossy(true)
        .thread_name("nri-chaos-log")
        .finish(std::io::stderr());
    let _ = DROPPED.set(writer.error_counter());
    let logs = tracing_subscriber::registry().with(filter);
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(writer)
        .with_ansi(false);
    match format {
        LogFormat::Plain => logs.with(layer).init(),
        LogFormat::Json => logs.with(layer.json().flatten_event(true)).init(),
    }
    if let Some(warning) = warning {
        tracing::warn!("{warning}");
    }
    LogGuard {
        worker: Some(worker),
    }
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
