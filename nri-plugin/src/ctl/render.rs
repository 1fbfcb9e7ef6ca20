//! `ctl` output: aligned tables for people, JSON for scripts.

use nri_chaos_proto::control::{Event, Fault, ListResponse, Rejection, StatusResponse};
use serde_json::{json, Value};

/// `2025-01-02T03:04:05.678Z` for unix milliseconds; `-` for 0.
pub fn time(unix_ms: i64) -> String {
    if unix_ms <= 0 {
        return "-".to_string();
    }
    let secs = unix_ms.div_euclid(1000);
    let millis = unix_ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (year, month, day) = crate::civil::civil_date(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// An aligned table: the header, then the rows (`ctl explain` uses it too).
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: Vec<String>| {
        let last = cells.len().saturating_sub(1);
        for (i, (cell, width)) in cells.iter().zip(&widths).enumerate() {
            if i == last {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<width$}  "));
            }
        }
        out.push('\n');
    };
    line(header.iter().map(|h| h.to_string()).collect());
    for row in rows {
        line(row.clone());
    }
    out
}

/// Faults as a table.
pub fn faults_table(faults: &[Fault]) -> String {
    let rows: Vec<Vec<String>> = faults
        .iter()
        .map(|f| {
            let mut value = f.value.clone();
            if !f.error.is_empty() {
                value = format!("{value} ({})", f.error);
            }
            vec![
                f.id.to_string(),
                f.state.clone(),
                f.kind.clone(),
                f.pod.clone(),
                f.container.clone(),
                time(f.planned_unix_ms),
                time(f.applied_unix_ms),
                f.source.clone(),
                value,
            ]
        })
        .collect();
    table(
        &[
            "ID",
            "STATE",
            "KIND",
            "POD",
            "CONTAINER",
            "PLANNED",
            "APPLIED",
            "SOURCE",
            "VALUE",
        ],
        &rows,
    )
}

fn rejections_table(rejections: &[Rejection]) -> String {
    let rows: Vec<Vec<String>> = rejections
        .iter()
        .map(|r| {
            vec![
                time(r.at_unix_ms),
                r.pod.clone(),
                r.container.clone(),
                r.class.clone(),
                r.key.clone(),
                r.value.clone(),
                r.reason.clone(),
            ]
        })
        .collect();
    table(
        &["AT", "POD", "CONTAINER", "CLASS", "KEY", "VALUE", "REASON"],
        &rows,
    )
}

/// `ctl list` for people.
pub fn list_table(list: &ListResponse) -> String {
    let mut out = String::new();
    if list.faults.is_empty() {
        out.push_str("no faults\n");
    } else {
        out.push_str(&faults_table(&list.faults));
    }
    if !list.rejections.is_empty() {
        out.push_str("\nrejected annotations:\n");
        out.push_str(&rejections_table(&list.rejections));
    }
    out
}

/// One fault as JSON.
pub fn fault_json(f: &Fault) -> Value {
    json!({
        "id": f.id,
        "pod": f.pod,
        "container": f.container,
        "container_id": f.container_id,
        "kind": f.kind,
        "value": f.value,
        "source": f.source,
        "planned": (f.planned_unix_ms > 0).then(|| time(f.planned_unix_ms)),
        "planned_unix_ms": f.planned_unix_ms,
        "applied": (f.applied_unix_ms > 0).then(|| time(f.applied_unix_ms)),
        "applied_unix_ms": f.applied_unix_ms,
        "state": f.state,
        "error": f.error,
        "firings": f.firings,
    })
}

/// Faults as a JSON array.
pub fn faults_json(faults: &[Fault]) -> String {
    let value = Value::Array(faults.iter().map(fault_json).collect());
    format!("{value:#}\n")
}

fn rejection_json(r: &Rejection) -> Value {
    json!({
        "pod": r.pod, "container": r.container, "key": r.key, "value": r.value,
        "reason": r.reason, "class": r.class, "at": time(r.at_unix_ms),
        "at_unix_ms": r.at_unix_ms,
    })
}

/// `ctl list` as one JSON value.
pub fn list_value(list: &ListResponse) -> Value {
    json!({
        "faults": list.faults.iter().map(fault_json).collect::<Vec<_>>(),
        "rejections": list.rejections.iter().map(rejection_json).collect::<Vec<_>>(),
    })
}

/// `ctl list --json`.
pub fn list_json(list: &ListResponse) -> String {
    format!("{:#}\n", list_value(list))
}

/// One event of `ctl events --json`: one line.
pub fn event_json(e: &Event) -> String {
    let mut value = json!({
        "seq": e.seq,
        "at": time(e.at_unix_ms),
        "at_unix_ms": e.at_unix_ms,
        "event": e.event,
    });
    if let Some(fault) = e.fault.as_ref() {
        value["fault"] = fault_json(fault);
    }
    if let Some(rejection) = e.rejection.as_ref() {
        value["rejection"] = rejection_json(rejection);
    }
    format!("{value}\n")
}

/// The header of `ctl events` for people.
pub const EVENT_HEADER: &str =
    "TIME                      EVENT      ID     KIND    POD/CONTAINER  DETAIL\n";

/// One event of `ctl events` for people: one line, columns as in [`EVENT_HEADER`].
pub fn event_line(e: &Event) -> String {
    let at = time(e.at_unix_ms);
    let target = |pod: &str, container: &str| {
        if container.is_empty() {
            pod.to_string()
        } else {
            format!("{pod}/{container}")
        }
    };
    if let Some(f) = e.fault.as_ref() {
        let mut detail = format!("{} {}", f.source, f.value);
        if !f.error.is_empty() {
            detail = format!("{detail} ({})", f.error);
        }
        format!(
            "{at:<24}  {:<9}  {:<5}  {:<6}  {}  {}\n",
            e.event,
            f.id,
            f.kind,
            target(&f.pod, &f.container),
            detail.trim()
        )
    } else if let Some(r) = e.rejection.as_ref() {
        format!(
            "{at:<24}  {:<9}  {:<5}  {:<6}  {}  annotation {}: {:?}: {} ({})\n",
            e.event,
            "-",
            "-",
            target(&r.pod, &r.container),
            r.key,
            r.value,
            r.reason,
            r.class
        )
    } else {
        format!("{at:<24}  {}\n", e.event)
    }
}

/// `ctl status --json`.
pub fn status_json(s: &StatusResponse) -> String {
    let value = json!({
        "version": s.version,
        "nri_connected": s.nri_connected,
        "runtime_name": s.runtime_name,
        "runtime_version": s.runtime_version,
        "nri_protocol": s.nri_protocol,
        "uptime_seconds": s.uptime_seconds,
        "nri_reconnects": s.nri_reconnects,
        "faults_armed": s.faults_armed,
        "faults_applied": s.faults_applied,
        "faults_recovered": s.faults_recovered,
        "faults_failed": s.faults_failed,
        "rejections": s.rejections,
        "control_socket": s.control_socket,
        "metrics_address": s.metrics_address,
        "policy": s.policy,
    });
    format!("{value:#}\n")
}

/// `ctl status` for people.
pub fn status_text(s: &StatusResponse) -> String {
    let runtime = if s.runtime_name.is_empty() {
        "-".to_string()
    } else {
        format!("{} {}", s.runtime_name, s.runtime_version)
    };
    let rows = vec![
        vec!["nri-chaos".to_string(), s.version.clone()],
        vec![
            "nri".to_string(),
            if s.nri_connected {
                "connected"
            } else {
                "disconnected"
            }
            .to_string(),
        ],
        vec!["runtime".to_string(), runtime],
        vec!["nri protocol".to_string(), s.nri_protocol.clone()],
        vec!["uptime".to_string(), format!("{}s", s.uptime_seconds)],
        vec!["reconnects".to_string(), s.nri_reconnects.to_string()],
        vec![
            "faults".to_string(),
            format!(
                "{} active, {} applied, {} recovered, {} failed",
                s.faults_armed, s.faults_applied, s.faults_recovered, s.faults_failed
            ),
        ],
        vec!["rejections".to_string(), s.rejections.to_string()],
        vec!["control socket".to_string(), s.control_socket.clone()],
        vec!["metrics".to_string(), s.metrics_address.clone()],
    ];
    let mut out = table(&["FIELD", "VALUE"], &rows);
    out.push_str("\npolicy in force:\n");
    for line in s.policy.lines() {
        out.push_str("  ");
        out.push_str(line);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_utc() {
        assert_eq!(time(0), "-");
        assert_eq!(time(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
        assert_eq!(time(951_782_400_000), "2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn fault_table_has_planned_and_applied() {
        let fault = Fault {
            id: 7,
            pod: "default/web".into(),
            container: "app".into(),
            kind: "kill".into(),
            value: "{}".into(),
            source: "ctl".into(),
            state: "applied".into(),
            planned_unix_ms: 1_700_000_000_000,
            applied_unix_ms: 1_700_000_000_002,
            ..Default::default()
        };
        let text = faults_table(&[fault]);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("ID  STATE"), "{text}");
        assert!(lines[1].contains("2023-11-14T22:13:20.000Z"), "{text}");
        assert!(lines[1].contains("2023-11-14T22:13:20.002Z"), "{text}");
        let json: Value = serde_json::from_str(&faults_json(&[Fault::default()])).unwrap();
        assert!(json[0]["planned"].is_null());
    }

    #[test]
    fn events_are_one_line_each() {
        let fault = Fault {
            id: 3,
            pod: "default/web".into(),
            container: "app".into(),
            kind: "kill".into(),
            value: "{after: 1s}".into(),
            source: "kill.nri-chaos.io/container.app".into(),
            state: "applied".into(),
            ..Default::default()
        };
        let applied = Event {
            seq: 9,
            at_unix_ms: 1_700_000_000_000,
            event: "applied".into(),
            fault: Some(fault).into(),
            ..Default::default()
        };
        let line = event_line(&applied);
        assert_eq!(line.lines().count(), 1, "{line}");
        assert!(line.starts_with("2023-11-14T22:13:20.000Z  applied    3      kill    default/web/app  kill.nri-chaos.io/container.app {after: 1s}"), "{line}");
        let json: Value = serde_json::from_str(&event_json(&applied)).unwrap();
        assert_eq!(json["seq"], 9);
        assert_eq!(json["fault"]["state"], "applied");
        assert!(json.get("rejection").is_none());
        let rejected = Event {
            seq: 10,
            event: "rejected".into(),
            rejection: Some(Rejection {
                pod: "default/web".into(),
                container: "app".into(),
                key: "kill.nri-chaos.io".into(),
                value: "{after: 2x}".into(),
                reason: "after: \"2x\" is not a duration".into(),
                class: "parse".into(),
                ..Default::default()
            })
            .into(),
            ..Default::default()
        };
        let line = event_line(&rejected);
        assert!(line.contains("rejected") && line.contains("annotation kill.nri-chaos.io: \"{after: 2x}\": after: \"2x\" is not a duration (parse)"), "{line}");
        let json: Value = serde_json::from_str(&event_json(&rejected)).unwrap();
        assert_eq!(json["rejection"]["class"], "parse");
    }
}
