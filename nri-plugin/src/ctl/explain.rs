//! `ctl explain KIND`: the fields of a fault kind, printed from the tables the annotation
//! grammar itself reads ([`injector::KindFields`]), so the two cannot disagree.

use injector::fields::{FieldSpec, FieldType};
use injector::{FaultKind, KindFields, Policy};
use serde_json::{json, Value};

use super::render::table;
use super::CtlError;

/// One printed row: a field (nested ones as `cpu.workers`), where it comes from, its spec.
struct Row {
    name: String,
    group: &'static str,
    spec: FieldSpec,
    required: bool,
}

fn rows(table: &KindFields) -> Vec<Row> {
    fn own(prefix: &str, specs: &[FieldSpec], out: &mut Vec<Row>) {
        for spec in specs {
            let name = format!("{prefix}{}", spec.name);
            out.push(Row {
                name: name.clone(),
                group: "fault",
                spec: *spec,
                required: false,
            });
            if let FieldType::Mapping(inner) = spec.ty {
                own(&format!("{name}."), inner, out);
            }
        }
    }
    let mut out = Vec::new();
    own("", table.own, &mut out);
    for spec in &table.timing {
        out.push(Row {
            name: spec.name.to_string(),
            group: "timing",
            spec: *spec,
            required: spec.name == "duration" && table.duration_required,
        });
    }
    out
}

/// The annotation key of the example.
fn example_key(kind: FaultKind) -> String {
    let domain = Policy::default().domain;
    if kind.is_pod_scoped() {
        format!("{kind}.{domain}/pod")
    } else {
        format!("{kind}.{domain}/container.app")
    }
}

/// `ctl explain KIND`, as text or JSON.
pub fn explain(kind: &str, json: bool) -> Result<String, CtlError> {
    let kind: FaultKind = kind
        .parse()
        .map_err(|err: injector::annotations::UnknownFaultKind| CtlError::Usage(err.to_string()))?;
    let fields = KindFields::of(kind);
    let rows = rows(&fields);
    let key = example_key(kind);
    if json {
        let value = json!({
            "kind": kind.as_str(),
            "keys": keys(kind),
            "fields": rows.iter().map(|row| json!({
                "name": row.name,
                "group": row.group,
                "type": row.spec.ty.to_string(),
                "default": if row.required { "required" } else { row.spec.default },
                "description": row.spec.help,
            })).collect::<Vec<Value>>(),
            "example": { key: fields.example },
        });
        return Ok(format!("{value:#}\n"));
    }
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|row| {
            vec![
                row.name.clone(),
                row.group.to_string(),
                row.spec.ty.to_string(),
                if row.required {
                    "required".to_string()
                } else {
                    row.spec.default.to_string()
                },
                row.spec.help.to_string(),
            ]
        })
        .collect();
    let mut out = format!(
        "KIND: {kind}\nKEYS: {}\n\nFIELDS:\n",
        keys(kind).join(" | ")
    );
    out.push_str(&table(
        &["NAME", "GROUP", "TYPE", "DEFAULT", "DESCRIPTION"],
        &cells,
    ));
    out.push_str(&format!(
        "\nEXAMPLE:\n  metadata:\n    annotations:\n      {key}: \"{}\"\n",
        fields.example
    ));
    Ok(out)
}

/// The annotation keys of `kind`, most specific first.
fn keys(kind: FaultKind) -> Vec<String> {
    let domain = Policy::default().domain;
    vec![
        format!("{kind}.{domain}/container.<name>"),
        format!("{kind}.{domain}/pod"),
        format!("{kind}.{domain}"),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explain_lists_the_grammar_fields_with_an_example() {
        let text = explain("stress", false).unwrap();
        for needle in [
            "KIND: stress",
            "cpu.workers",
            "memory.size",
            "duration",
            "required",
            "stress.nri-chaos.io/container.app: \"{duration: 2m",
        ] {
            assert!(text.contains(needle), "{needle} missing:\n{text}");
        }
        let kill = explain("kill", false).unwrap();
        assert!(kill.contains("SIGKILL"), "{kill}");
        assert!(
            !kill.lines().any(|l| l.starts_with("duration")),
            "kill refuses duration:\n{kill}"
        );
        let netem: Value = serde_json::from_str(&explain("netem", true).unwrap()).unwrap();
        assert!(netem["example"]["netem.nri-chaos.io/pod"].is_string());
        // The example it prints is one the grammar accepts.
        for kind in FaultKind::ALL {
            let doc: Value = serde_json::from_str(&explain(kind.as_str(), true).unwrap()).unwrap();
            let (_, value) = doc["example"].as_object().unwrap().iter().next().unwrap();
            injector::FaultRequest::parse(kind, "k", value.as_str().unwrap()).unwrap();
        }
    }

    #[test]
    fn an_unknown_kind_lists_the_kinds() {
        let err = explain("kil", false).unwrap_err().to_string();
        assert!(
            err.contains("unknown fault kind \"kil\"") && err.contains("kill, freeze, netem"),
            "{err}"
        );
    }
}
