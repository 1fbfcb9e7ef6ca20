use std::collections::BTreeSet;

use prometheus_parse::{Scrape, Value};

use super::*;

type Labels = [(&'static str, &'static str)];

fn parse(text: &str) -> Scrape {
    Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).expect("exposition text parses")
}

/// The value of the sample `name` whose labels include `labels`.
fn value(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    let sample = scrape
        .samples
        .iter()
        .find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .unwrap_or_else(|| panic!("no sample {name} {labels:?}"));
    match &sample.value {
        Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
        other => panic!("{name} is {other:?}"),
    }
}

/// Cumulative count of the bucket `le` of histogram `name` with `labels`.
fn bucket(scrape: &Scrape, name: &str, labels: &[(&str, &str)], le: f64) -> f64 {
    let sample = scrape
        .samples
        .iter()
        .find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .unwrap_or_else(|| panic!("no histogram {name} {labels:?}"));
    let Value::Histogram(buckets) = &sample.value else {
        panic!("{name} is not a histogram");
    };
    buckets
        .iter()
        .find(|b| (b.less_than - le).abs() < le * 1e-9)
        .unwrap_or_else(|| panic!("no bucket le={le} in {name}"))
        .count
}

#[test]
fn counts_what_happened() {
    let metrics = Metrics::default();
    metrics.fault_applied(FaultKind::Kill, Duration::from_millis(2));
    metrics.fault_applied(FaultKind::Freeze, Duration::from_micros(300));
    metrics.fault_recovered(FaultKind::Freeze);
    metrics.annotation_rejected(RejectionClass::Policy);
    metrics.handler("handler.create_container", Duration::from_micros(40));
    metrics.nri_registered();
    metrics.nri_lost();
    metrics.nri_registered();
    let text = metrics.render(&Observed::default());
    let s = parse(&text);
    let kill = [("kind", "kill")];
    assert_eq!(value(&s, "nri_chaos_faults_applied_total", &kill), 1.0);
    assert_eq!(
        value(&s, "nri_chaos_faults_applied_total", &[("kind", "oom")]),
        0.0
    );
    assert_eq!(
        value(
            &s,
            "nri_chaos_faults_recovered_total",
            &[("kind", "freeze")]
        ),
        1.0
    );
    assert_eq!(
        value(
            &s,
            "nri_chaos_annotation_rejections_total",
            &[("reason", "policy")]
        ),
        1.0
    );
    assert_eq!(
        value(
            &s,
            "nri_chaos_annotation_rejections_total",
            &[("reason", "parse")]
        ),
        0.0
    );
    assert_eq!(value(&s, "nri_chaos_nri_reconnects_total", &[]), 1.0);
    assert_eq!(value(&s, "nri_chaos_nri_connected", &[]), 1.0);
    let create = [("event", "create_container")];
    assert_eq!(value(&s, "nri_chaos_handler_seconds_count", &create), 1.0);
    assert_eq!(
        value(&s, "nri_chaos_firing_lateness_seconds_count", &kill),
        1.0
    );
    // (histogram, labels, bucket bound, cumulative count)
    let buckets: [(&str, &Labels, f64, f64); 4] = [
        ("nri_chaos_handler_seconds", &create, 0.000025, 0.0),
        ("nri_chaos_handler_seconds", &create, 0.00005, 1.0),
        ("nri_chaos_firing_lateness_seconds", &kill, 0.001, 0.0),
        ("nri_chaos_firing_lateness_seconds", &kill, 0.005, 1.0),
    ];
    for (name, labels, le, want) in buckets {
        assert_eq!(
            bucket(&s, name, labels, le),
            want,
            "{name} {labels:?} le={le}"
        );
    }
    assert_eq!(metrics.totals(), (2, 1, 0, 1));
    assert!(metrics.nri_connected());
    assert_eq!(metrics.nri_reconnects(), 1);
}

#[test]
fn exposes_the_documented_names_and_every_fault_kind() {
    let metrics = Metrics::default();
    // Handler series are per event seen (no table of events): one event shows the family.
    metrics.handler("handler.synchronize", Duration::from_micros(5));
    let text = metrics.render(&Observed::default());
    let s = parse(&text);
    let documented: BTreeSet<&str> = [
        "nri_chaos_faults_applied_total",
        "nri_chaos_faults_recovered_total",
        "nri_chaos_faults_failed_total",
        "nri_chaos_annotation_rejections_total",
        "nri_chaos_nri_reconnects_total",
        "nri_chaos_nri_connected",
        "nri_chaos_handler_seconds",
        "nri_chaos_firing_lateness_seconds",
        "nri_chaos_faults_active",
        "nri_chaos_journal_entries",
        "nri_chaos_log_lines_dropped_total",
        "nri_chaos_build_info",
        "process_resident_memory_bytes",
    ]
    .into_iter()
    .collect();
    let exposed: BTreeSet<&str> = s.docs.keys().map(String::as_str).collect();
    assert_eq!(exposed, documented, "{text}");
    assert!(
        text.contains("# TYPE nri_chaos_faults_applied_total counter\n"),
        "{text}"
    );
    assert!(
        text.contains("# TYPE nri_chaos_handler_seconds histogram\n"),
        "{text}"
    );
    for family in [
        "nri_chaos_faults_applied_total",
        "nri_chaos_faults_recovered_total",
        "nri_chaos_faults_failed_total",
        "nri_chaos_faults_active",
        "nri_chaos_firing_lateness_seconds_count",
    ] {
        for fault in FaultKind::ALL {
            assert_eq!(
                value(&s, family, &[("kind", fault.as_str())]),
                0.0,
                "{family} {fault}"
            );
        }
    }
    for class in RejectionClass::ALL {
        assert_eq!(
            value(
                &s,
                "nri_chaos_annotation_rejections_total",
                &[("reason", class.as_str())]
            ),
            0.0
        );
    }
    assert_eq!(
        value(
            &s,
            "nri_chaos_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        1.0
    );
}

#[test]
fn scrape_time_figures_are_read_at_each_render() {
    let metrics = Metrics::default();
    let observed = Observed {
        active: vec![(FaultKind::Freeze, 2), (FaultKind::Netem, 1)],
        journal_entries: 3,
    };
    let s = parse(&metrics.render(&observed));
    let active = |s: &Scrape, fault: &str| value(s, "nri_chaos_faults_active", &[("kind", fault)]);
    assert_eq!(active(&s, "freeze"), 2.0);
    assert_eq!(active(&s, "netem"), 1.0);
    assert_eq!(active(&s, "kill"), 0.0);
    assert_eq!(value(&s, "nri_chaos_journal_entries", &[]), 3.0);
    let rss = value(&s, "process_resident_memory_bytes", &[]);
    assert!(rss > 1024.0 * 1024.0, "resident memory {rss}");
    // A fault that ended drops back to zero at the next scrape.
    let s = parse(&metrics.render(&Observed::default()));
    assert_eq!(active(&s, "freeze"), 0.0);
    assert_eq!(value(&s, "nri_chaos_journal_entries", &[]), 0.0);
}
