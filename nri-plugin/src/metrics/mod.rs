//! The plugin's Prometheus figures, kept and encoded (text format 0.0.4) by prometheus-client,
//! served by [`server`] (`GET /metrics`, loopback by default; `off` disables it).
//!
//! Families (names as exposed; prometheus-client appends `_total` to counters, `_info` to
//! info metrics): `nri_chaos_faults_{applied,recovered,failed}_total{kind}`,
//! `nri_chaos_annotation_rejections_total{reason}`, `nri_chaos_nri_reconnects_total`,
//! `nri_chaos_nri_connected`, `nri_chaos_handler_seconds{event}` and
//! `nri_chaos_firing_lateness_seconds{kind}` (histograms), `nri_chaos_build_info{version}`,
//! `nri_chaos_faults_active{kind}`, `nri_chaos_journal_entries`,
//! `nri_chaos_log_lines_dropped_total` and `process_resident_memory_bytes` (the last four read
//! at scrape time). Every fault kind of
//! [`FaultKind::ALL`] and every class of [`RejectionClass::ALL`] is listed from the start.

pub mod server;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use injector::FaultKind;
use prometheus_client::encoding::prometheus_text;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Registry, Unit};

use crate::engine::introspect::RejectionClass;

pub use server::{bind, parse_address, serve, Limits, DEFAULT_ADDRESS};

/// Upper bounds (seconds) of the NRI handler time buckets: fine around the 200 us target so
/// the benchmark's p50/p99 read from them are close, and up to containerd's 2 s request
/// timeout so a slow handler shows how slow.
const HANDLER_BUCKETS: &[f64] = &[
    0.000_005, 0.000_01, 0.000_025, 0.000_05, 0.000_075, 0.000_1, 0.000_15, 0.000_2, 0.000_25,
    0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0,
];
/// Upper bounds (seconds) of the firing lateness buckets.
const LATENESS_BUCKETS: &[f64] = &[
    0.000_1, 0.000_5, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

/// One label: (name, value); every value is a static name (kind, class, event).
type Label = [(&'static str, &'static str); 1];
type Histograms = Family<Label, Histogram, fn() -> Histogram>;

fn kind(kind: FaultKind) -> Label {
    [("kind", kind.as_str())]
}

fn handler_histogram() -> Histogram {
    Histogram::new(HANDLER_BUCKETS.iter().copied())
}

fn lateness_histogram() -> Histogram {
    Histogram::new(LATENESS_BUCKETS.iter().copied())
}

/// Figures read when /metrics is scraped rather than counted as things happen.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    /// Faults armed or holding now, by kind (kinds left out count 0).
    pub active: Vec<(FaultKind, i64)>,
    /// Entries in the journal of active faults.
    pub journal_entries: i64,
}

/// The plugin's figures.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    applied: Family<Label, Counter>,
    recovered: Family<Label, Counter>,
    failed: Family<Label, Counter>,
    rejections: Family<Label, Counter>,
    reconnects: Counter,
    connected: Gauge,
    handler: Histograms,
    lateness: Histograms,
    active: Family<Label, Gauge>,
    journal_entries: Gauge,
    resident_memory: Gauge,
    log_dropped: Counter,
    sessions: AtomicU64,
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}

impl Metrics {
    /// Every family registered, every fault kind and rejection class listed with zero.
    pub fn new() -> Metrics {
        let metrics = Metrics {
            registry: Registry::default(),
            applied: Family::default(),
            recovered: Family::default(),
            failed: Family::default(),
            rejections: Family::default(),
            reconnects: Counter::default(),
            connected: Gauge::default(),
            handler: Family::new_with_constructor(handler_histogram),
            lateness: Family::new_with_constructor(lateness_histogram),
            active: Family::default(),
            journal_entries: Gauge::default(),
            resident_memory: Gauge::default(),
            log_dropped: Counter::default(),
            sessions: AtomicU64::new(0),
        };
        // Creating a label's series lists it (at zero); the guard is dropped at once.
        for fault in FaultKind::ALL {
            let label = kind(fault);
            drop(metrics.applied.get_or_create(&label));
            drop(metrics.recovered.get_or_create(&label));
            drop(metrics.failed.get_or_create(&label));
            drop(metrics.lateness.get_or_create(&label));
            drop(metrics.active.get_or_create(&label));
        }
        for class in RejectionClass::ALL {
            drop(
                metrics
                    .rejections
                    .get_or_create(&[("reason", class.as_str())]),
            );
        }
        metrics.register()
    }

    fn register(mut self) -> Metrics {
        let r = &mut self.registry;
        r.register(
            "nri_chaos_faults_applied",
            "Fault firings applied, by fault kind",
            self.applied.clone(),
        );
        r.register(
            "nri_chaos_faults_recovered",
            "Holding faults recovered, by fault kind",
            self.recovered.clone(),
        );
        r.register(
            "nri_chaos_faults_failed",
            "Fault firings that could not be applied, by fault kind",
            self.failed.clone(),
        );
        r.register(
            "nri_chaos_annotation_rejections",
            "Annotations rejected, by reason class (parse, policy, unsupported)",
            self.rejections.clone(),
        );
        r.register(
            "nri_chaos_nri_reconnects",
            "Sessions with the runtime registered after the first",
            self.reconnects.clone(),
        );
        r.register(
            "nri_chaos_nri_connected",
            "1 while a session with the runtime is up",
            self.connected.clone(),
        );
        r.register(
            "nri_chaos_handler_seconds",
            "Time spent in NRI event handlers, by event",
            self.handler.clone(),
        );
        r.register(
            "nri_chaos_firing_lateness_seconds",
            "How late fault firings start against their plan, by fault kind",
            self.lateness.clone(),
        );
        r.register(
            "nri_chaos_faults_active",
            "Faults armed or holding now, by fault kind",
            self.active.clone(),
        );
        r.register(
            "nri_chaos_journal_entries",
            "Faults in the journal of active faults (recovered after a crash)",
            self.journal_entries.clone(),
        );
        r.register(
            "nri_chaos_log_lines_dropped",
            "Log lines dropped because the log writer's queue was full",
            self.log_dropped.clone(),
        );
        r.register(
            "nri_chaos_build",
            "The nri-chaos build",
            Info::new([("version", env!("CARGO_PKG_VERSION"))]),
        );
        // Outside the nri_chaos_ prefix: the name every process exporter uses.
        r.register_with_unit(
            "process_resident_memory",
            "Resident memory of the nri-chaos process",
            Unit::Bytes,
            self.resident_memory.clone(),
        );
        self
    }

    /// A firing was applied, `lateness` after its plan.
    pub fn fault_applied(&self, fault: FaultKind, lateness: Duration) {
        self.applied.get_or_create(&kind(fault)).inc();
        self.lateness
            .get_or_create(&kind(fault))
            .observe(lateness.as_secs_f64());
    }

    /// A holding firing was recovered.
    pub fn fault_recovered(&self, fault: FaultKind) {
        self.recovered.get_or_create(&kind(fault)).inc();
    }

    /// A firing could not be applied.
    pub fn fault_failed(&self, fault: FaultKind) {
        self.failed.get_or_create(&kind(fault)).inc();
    }

    /// An annotation was rejected.
    pub fn annotation_rejected(&self, class: RejectionClass) {
        self.rejections
            .get_or_create(&[("reason", class.as_str())])
            .inc();
    }

    /// An NRI handler took `elapsed`; `event` such as `handler.create_container`.
    pub fn handler(&self, event: &'static str, elapsed: Duration) {
        let event = event.strip_prefix("handler.").unwrap_or(event);
        self.handler
            .get_or_create(&[("event", event)])
            .observe(elapsed.as_secs_f64());
    }

    /// A session with the runtime was registered; every one after the first is a reconnect.
    pub fn nri_registered(&self) {
        if self.sessions.fetch_add(1, Ordering::Relaxed) > 0 {
            self.reconnects.inc();
        }
        self.connected.set(1);
    }

    /// The session with the runtime ended.
    pub fn nri_lost(&self) {
        self.connected.set(0);
    }

    /// Whether a session with the runtime is up.
    pub fn nri_connected(&self) -> bool {
        self.connected.get() == 1
    }

    /// Reconnects since start.
    pub fn nri_reconnects(&self) -> u64 {
        self.reconnects.get()
    }

    /// Applied, recovered, failed firings and rejections since start.
    pub fn totals(&self) -> (u64, u64, u64, u64) {
        let sum = |family: &Family<Label, Counter>| -> u64 {
            FaultKind::ALL
                .iter()
                .filter_map(|fault| family.get(&kind(*fault)).map(|c| c.get()))
                .sum()
        };
        let rejections = RejectionClass::ALL
            .iter()
            .filter_map(|class| {
                self.rejections
                    .get(&[("reason", class.as_str())])
                    .map(|c| c.get())
            })
            .sum();
        (
            sum(&self.applied),
            sum(&self.recovered),
            sum(&self.failed),
            rejections,
        )
    }

    /// The exposition text (Prometheus text format 0.0.4), with the scrape-time figures
    /// `observed` and this process's resident memory.
    pub fn render(&self, observed: &Observed) -> String {
        for fault in FaultKind::ALL {
            let count = observed
                .active
                .iter()
                .find(|(k, _)| *k == fault)
                .map_or(0, |(_, n)| *n);
            self.active.get_or_create(&kind(fault)).set(count);
        }
        self.journal_entries.set(observed.journal_entries);
        self.resident_memory.set(resident_memory_bytes());
        // Counted by the log writer; brought up to its figure at each scrape.
        let dropped = crate::logging::dropped_lines();
        let shown = self.log_dropped.get();
        if dropped > shown {
            self.log_dropped.inc_by(dropped - shown);
        }
        let mut text = String::new();
        if let Err(err) = prometheus_text::encode(&mut text, &self.registry) {
            tracing::warn!(error = %err, "encoding metrics");
        }
        text
    }
}

/// This process's resident memory in bytes from `/proc/self/status` (`VmRSS`, KiB); 0 when
/// it cannot be read. prometheus-client has no process collector, so this stays ours.
fn resident_memory_bytes() -> i64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse::<i64>().ok())
        .map_or(0, |kib| kib.saturating_mul(1024))
}

#[cfg(test)]
mod tests;
