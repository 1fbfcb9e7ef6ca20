//! Prometheus figures in the text exposition format (0.0.4), written by hand, and a minimal
//! HTTP/1.1 responder for `GET /metrics` (loopback by default; `off` disables it).
//!
//! Families: `nri_chaos_faults_{applied,recovered,failed}_total{kind}`,
//! `nri_chaos_annotation_rejections_total{reason}` (parse, policy, unsupported),
//! `nri_chaos_nri_reconnects_total`, `nri_chaos_nri_connected`,
//! `nri_chaos_handler_seconds{event}` and `nri_chaos_firing_lateness_seconds{kind}`
//! (histograms with fixed buckets).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use injector::FaultKind;
use thiserror::Error;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::engine::introspect::RejectionClass;

/// The default listen address: loopback only.
pub const DEFAULT_ADDRESS: &str = "127.0.0.1:9464";

/// Upper bounds (seconds) of the NRI handler time buckets.
const HANDLER_BUCKETS: &[f64] = &[
    0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.1,
];
/// Upper bounds (seconds) of the firing lateness buckets.
const LATENESS_BUCKETS: &[f64] = &[
    0.000_1, 0.000_5, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

/// Fault kinds listed with zero counts before anything happens.
const LISTED_KINDS: &[FaultKind] = &[
    FaultKind::Kill,
    FaultKind::Freeze,
    FaultKind::Stress,
    FaultKind::Oom,
];

/// Errors of the metrics endpoint.
#[derive(Debug, Error)]
pub enum MetricsError {
    /// The configured address is neither `off` nor `host:port`.
    #[error("metrics address '{0}' is not 'off' or an IP:port such as 127.0.0.1:9464")]
    BadAddress(String),
    /// The address cannot be bound.
    #[error("metrics address {address}: {source}")]
    Bind {
        /// The address.
        address: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// Parses a metrics address: `off` (or empty) disables the endpoint.
pub fn parse_address(text: &str) -> Result<Option<SocketAddr>, MetricsError> {
    let text = text.trim();
    if text.is_empty() || text.eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    text.parse()
        .map(Some)
        .map_err(|_| MetricsError::BadAddress(text.to_string()))
}

#[derive(Debug, Clone)]
struct Histogram {
    bounds: &'static [f64],
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            counts: vec![0; bounds.len()],
            sum: 0.0,
            count: 0,
        }
    }

    fn observe(&mut self, seconds: f64) {
        for (bound, count) in self.bounds.iter().zip(self.counts.iter_mut()) {
            if seconds <= *bound {
                *count += 1;
            }
        }
        self.sum += seconds;
        self.count += 1;
    }
}

#[derive(Debug, Default)]
struct Families {
    /// (family, label value) -> count.
    counters: BTreeMap<(&'static str, String), u64>,
    /// (family, label value) -> histogram.
    histograms: BTreeMap<(&'static str, String), Histogram>,
}

/// The plugin's figures.
#[derive(Debug, Default)]
pub struct Metrics {
    families: Mutex<Families>,
    reconnects: AtomicU64,
    sessions: AtomicU64,
    connected: AtomicBool,
}

const APPLIED: &str = "nri_chaos_faults_applied_total";
const RECOVERED: &str = "nri_chaos_faults_recovered_total";
const FAILED: &str = "nri_chaos_faults_failed_total";
const REJECTIONS: &str = "nri_chaos_annotation_rejections_total";
const HANDLER: &str = "nri_chaos_handler_seconds";
const LATENESS: &str = "nri_chaos_firing_lateness_seconds";

impl Metrics {
    fn families(&self) -> MutexGuard<'_, Families> {
        self.families
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn count(&self, family: &'static str, label: &str) {
        *self
            .families()
            .counters
            .entry((family, label.to_string()))
            .or_default() += 1;
    }

    fn observe(&self, family: &'static str, label: &str, bounds: &'static [f64], value: Duration) {
        self.families()
            .histograms
            .entry((family, label.to_string()))
            .or_insert_with(|| Histogram::new(bounds))
            .observe(value.as_secs_f64());
    }

    /// A firing was applied, `lateness` after its plan.
    pub fn fault_applied(&self, kind: FaultKind, lateness: Duration) {
        self.count(APPLIED, kind.as_str());
        self.observe(LATENESS, kind.as_str(), LATENESS_BUCKETS, lateness);
    }

    /// A holding firing was recovered.
    pub fn fault_recovered(&self, kind: FaultKind) {
        self.count(RECOVERED, kind.as_str());
    }

    /// A firing could not be applied.
    pub fn fault_failed(&self, kind: FaultKind) {
        self.count(FAILED, kind.as_str());
    }

    /// An annotation was rejected.
    pub fn annotation_rejected(&self, class: RejectionClass) {
        self.count(REJECTIONS, class.as_str());
    }

    /// An NRI handler took `elapsed`; `event` such as `handler.create_container`.
    pub fn handler(&self, event: &str, elapsed: Duration) {
        let event = event.strip_prefix("handler.").unwrap_or(event);
        self.observe(HANDLER, event, HANDLER_BUCKETS, elapsed);
    }

    /// A session with the runtime was registered; every one after the first is a reconnect.
    pub fn nri_registered(&self) {
        if self.sessions.fetch_add(1, Ordering::Relaxed) > 0 {
            self.reconnects.fetch_add(1, Ordering::Relaxed);
        }
        self.connected.store(true, Ordering::Relaxed);
    }

    /// The session with the runtime ended.
    pub fn nri_lost(&self) {
        self.connected.store(false, Ordering::Relaxed);
    }

    /// Whether a session with the runtime is up.
    pub fn nri_connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }

    /// Reconnects since start.
    pub fn nri_reconnects(&self) -> u64 {
        self.reconnects.load(Ordering::Relaxed)
    }

    /// Sum of one counter family over its labels.
    pub fn total(&self, family: &str) -> u64 {
        self.families()
            .counters
            .iter()
            .filter(|((name, _), _)| *name == family)
            .map(|(_, count)| *count)
            .sum()
    }

    /// Applied, recovered, failed firings and rejections since start.
    pub fn totals(&self) -> (u64, u64, u64, u64) {
        (
            self.total(APPLIED),
            self.total(RECOVERED),
            self.total(FAILED),
            self.total(REJECTIONS),
        )
    }

    /// The exposition text.
    pub fn render(&self) -> String {
        let families = self.families();
        let mut out = String::new();
        let kinds: Vec<String> = LISTED_KINDS
            .iter()
            .map(|k| k.as_str().to_string())
            .collect();
        let classes: Vec<String> = RejectionClass::ALL
            .iter()
            .map(|c| c.as_str().to_string())
            .collect();
        let counter =
            |out: &mut String, name: &'static str, label: &str, help: &str, listed: &[String]| {
                let _ = writeln!(out, "# HELP {name} {help}");
                let _ = writeln!(out, "# TYPE {name} counter");
                let mut values: BTreeMap<String, u64> =
                    listed.iter().map(|l| (l.clone(), 0)).collect();
                for ((family, value), count) in &families.counters {
                    if *family == name {
                        values.insert(value.clone(), *count);
                    }
                }
                for (value, count) in values {
                    let _ = writeln!(out, "{name}{{{label}=\"{}\"}} {count}", escape(&value));
                }
            };
        counter(
            &mut out,
            APPLIED,
            "kind",
            "Fault firings applied, by fault kind.",
            &kinds,
        );
        counter(
            &mut out,
            RECOVERED,
            "kind",
            "Holding faults recovered, by fault kind.",
            &kinds,
        );
        counter(
            &mut out,
            FAILED,
            "kind",
            "Fault firings that could not be applied, by fault kind.",
            &kinds,
        );
        counter(
            &mut out,
            REJECTIONS,
            "reason",
            "Annotations rejected, by reason class (parse, policy, unsupported).",
            &classes,
        );
        let _ = writeln!(out, "# HELP nri_chaos_nri_reconnects_total Sessions with the runtime registered after the first.");
        let _ = writeln!(out, "# TYPE nri_chaos_nri_reconnects_total counter");
        let _ = writeln!(
            out,
            "nri_chaos_nri_reconnects_total {}",
            self.nri_reconnects()
        );
        let _ = writeln!(
            out,
            "# HELP nri_chaos_nri_connected 1 while a session with the runtime is up."
        );
        let _ = writeln!(out, "# TYPE nri_chaos_nri_connected gauge");
        let _ = writeln!(
            out,
            "nri_chaos_nri_connected {}",
            u8::from(self.nri_connected())
        );
        let histogram = |out: &mut String, name: &'static str, label: &str, help: &str| {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} histogram");
            for ((family, value), hist) in &families.histograms {
                if *family != name {
                    continue;
                }
                let value = escape(value);
                for (bound, count) in hist.bounds.iter().zip(&hist.counts) {
                    let _ = writeln!(
                        out,
                        "{name}_bucket{{{label}=\"{value}\",le=\"{bound}\"}} {count}"
                    );
                }
                let _ = writeln!(
                    out,
                    "{name}_bucket{{{label}=\"{value}\",le=\"+Inf\"}} {}",
                    hist.count
                );
                let _ = writeln!(out, "{name}_sum{{{label}=\"{value}\"}} {}", hist.sum);
                let _ = writeln!(out, "{name}_count{{{label}=\"{value}\"}} {}", hist.count);
            }
        };
        histogram(
            &mut out,
            HANDLER,
            "event",
            "Time spent in NRI event handlers, by event.",
        );
        histogram(
            &mut out,
            LATENESS,
            "kind",
            "How late fault firings start against their plan, by fault kind.",
        );
        out
    }
}

fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Binds `address`; the caller spawns [`serve`] with the listener.
pub async fn bind(address: SocketAddr) -> Result<TcpListener, MetricsError> {
    TcpListener::bind(address)
        .await
        .map_err(|source| MetricsError::Bind { address, source })
}

/// Answers `GET /metrics` on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, metrics: impl Fn() -> String + Send + Sync + 'static) {
    let metrics = std::sync::Arc::new(metrics);
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let metrics = metrics.clone();
                tokio::spawn(async move {
                    if let Err(err) = answer(stream, || metrics()).await {
                        tracing::debug!(error = %err, "metrics request");
                    }
                });
            }
            Err(err) => {
                tracing::warn!(error = %err, "metrics endpoint: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Reads one request (head only, at most 8 KiB, 5 s) and answers it; the connection closes.
async fn answer(mut stream: TcpStream, metrics: impl FnOnce() -> String) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    let read = async {
        while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 8192 {
            let n = stream.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            head.extend_from_slice(&buf[..n]);
        }
        Ok::<(), std::io::Error>(())
    };
    if tokio::time::timeout(Duration::from_secs(5), read)
        .await
        .is_err()
    {
        return Ok(());
    }
    let (status, content_type, body) = respond(&head, metrics);
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

/// Status line, content type and body for a request head.
fn respond(head: &[u8], metrics: impl FnOnce() -> String) -> (&'static str, &'static str, String) {
    let text = String::from_utf8_lossy(head);
    let mut parts = text.lines().next().unwrap_or_default().split_whitespace();
    let (method, target) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    );
    let path = target.split('?').next().unwrap_or_default();
    match (method, path) {
        ("GET", "/metrics") => (
            "200 OK",
            "text/plain; version=0.0.4; charset=utf-8",
            metrics(),
        ),
        ("GET", "/") => (
            "200 OK",
            "text/plain; charset=utf-8",
            "nri-chaos: metrics at /metrics\n".to_string(),
        ),
        ("GET", _) => (
            "404 Not Found",
            "text/plain; charset=utf-8",
            "not found; try /metrics\n".to_string(),
        ),
        _ => (
            "405 Method Not Allowed",
            "text/plain; charset=utf-8",
            "only GET /metrics\n".to_string(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parses exposition text into (sample name with labels) -> value, checking each line's
    /// shape and that every sample belongs to a family declared with # TYPE.
    fn parse(text: &str) -> BTreeMap<String, f64> {
        let mut types = BTreeMap::new();
        let mut samples = BTreeMap::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let mut it = rest.split_whitespace();
                types.insert(
                    it.next().unwrap().to_string(),
                    it.next().unwrap().to_string(),
                );
                continue;
            }
            if line.starts_with('#') {
                continue;
            }
            let (name, value) = line.rsplit_once(' ').unwrap();
            let base = name.split('{').next().unwrap();
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| base.strip_suffix(s).filter(|f| types.contains_key(*f)))
                .unwrap_or(base);
            assert!(types.contains_key(family), "undeclared family in {line}");
            samples.insert(name.to_string(), value.parse::<f64>().unwrap());
        }
        samples
    }

    #[test]
    fn render_is_valid_exposition_text_with_the_counts() {
        let metrics = Metrics::default();
        metrics.fault_applied(FaultKind::Kill, Duration::from_millis(2));
        metrics.fault_applied(FaultKind::Freeze, Duration::from_micros(300));
        metrics.fault_recovered(FaultKind::Freeze);
        metrics.annotation_rejected(RejectionClass::Policy);
        metrics.handler("handler.create_container", Duration::from_micros(40));
        metrics.nri_registered();
        metrics.nri_lost();
        metrics.nri_registered();
        let samples = parse(&metrics.render());
        assert_eq!(
            samples["nri_chaos_faults_applied_total{kind=\"kill\"}"],
            1.0
        );
        assert_eq!(samples["nri_chaos_faults_applied_total{kind=\"oom\"}"], 0.0);
        assert_eq!(
            samples["nri_chaos_faults_recovered_total{kind=\"freeze\"}"],
            1.0
        );
        assert_eq!(
            samples["nri_chaos_annotation_rejections_total{reason=\"policy\"}"],
            1.0
        );
        assert_eq!(samples["nri_chaos_nri_reconnects_total"], 1.0);
        assert_eq!(samples["nri_chaos_nri_connected"], 1.0);
        assert_eq!(
            samples["nri_chaos_handler_seconds_bucket{event=\"create_container\",le=\"0.00005\"}"],
            1.0
        );
        assert_eq!(
            samples["nri_chaos_handler_seconds_bucket{event=\"create_container\",le=\"0.000025\"}"],
            0.0
        );
        assert_eq!(
            samples["nri_chaos_firing_lateness_seconds_count{kind=\"kill\"}"],
            1.0
        );
        assert_eq!(
            samples["nri_chaos_firing_lateness_seconds_bucket{kind=\"kill\",le=\"0.001\"}"],
            0.0
        );
        assert_eq!(
            samples["nri_chaos_firing_lateness_seconds_bucket{kind=\"kill\",le=\"0.005\"}"],
            1.0
        );
    }

    #[test]
    fn addresses() {
        assert_eq!(parse_address("off").unwrap(), None);
        assert_eq!(
            parse_address("127.0.0.1:9464").unwrap(),
            Some("127.0.0.1:9464".parse().unwrap())
        );
        let err = parse_address("localhost").unwrap_err().to_string();
        assert!(err.contains("'localhost'"), "{err}");
    }

    #[test]
    fn routes() {
        let (status, kind, body) = respond(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", || {
            "m 1\n".into()
        });
        assert_eq!((status, body.as_str()), ("200 OK", "m 1\n"));
        assert!(kind.contains("version=0.0.4"));
        assert_eq!(
            respond(b"GET /nope HTTP/1.1\r\n\r\n", String::new).0,
            "404 Not Found"
        );
        assert_eq!(
            respond(b"POST /metrics HTTP/1.1\r\n\r\n", String::new).0,
            "405 Method Not Allowed"
        );
    }

    #[tokio::test]
    async fn serves_over_tcp() {
        let listener = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let address = listener.local_addr().unwrap();
        let task = tokio::spawn(serve(listener, || "nri_chaos_x 1\n".to_string()));
        let mut stream = TcpStream::connect(address).await.unwrap();
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n")
            .await
            .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).await.unwrap();
        assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
        assert!(response.ends_with("\r\n\r\nnri_chaos_x 1\n"), "{response}");
        task.abort();
    }
}
