//! The malformed annotation catalogue: bad units, huge numbers, negative values, unknown
//! fields, absurd but well-formed values, hostile YAML (deep nesting, alias bombs, several
//! documents), text no parser should take, and 1 MiB values. Each is planned as a pod
//! annotation through `plan_container`, the daemon's own entry point, and must give one
//! rejection whose message names the key, shows the value (cut, never the whole 1 MiB) and
//! says why, quickly (no exponential alias expansion). Annotations reach nri-chaos as NRI
//! protobuf strings, which are UTF-8 by construction; the bytes that are not are refused at
//! that layer (proto/tests/non_utf8.rs), so here the nearest text is tested: NUL, U+FFFD,
//! bidi controls, lone-surrogate escapes.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use injector::{plan_container, FaultKind, PodRef, Policy};

/// The memory limit of the container the catalogue plans for.
const LIMIT: u64 = 256 << 20;
/// One case may take this long at most (debug build, shared machine); the slowest is printed.
const MAX_CASE_TIME: Duration = Duration::from_millis(250);
/// A rejection message never gets longer than this, whatever the value.
const MAX_MESSAGE_BYTES: usize = 1024;

struct Case {
    key: &'static str,
    value: String,
    reason: &'static str,
}

fn case(key: &'static str, value: impl Into<String>, reason: &'static str) -> Case {
    Case {
        key,
        value: value.into(),
        reason,
    }
}

const KILL: &str = "kill.nri-chaos.io/container.app";
const FREEZE: &str = "freeze.nri-chaos.io/container.app";
const STRESS: &str = "stress.nri-chaos.io/container.app";
const NETEM: &str = "netem.nri-chaos.io/pod";
const OOM: &str = "oom.nri-chaos.io/container.app";
const START: &str = "start.nri-chaos.io/container.app";
const PARTITION: &str = "partition.nri-chaos.io/pod";
const BANDWIDTH: &str = "bandwidth.nri-chaos.io/pod";

fn catalogue() -> Vec<Case> {
    let mib = 1 << 20;
    let laughs = {
        // The billion laughs, YAML flavour: nine levels of ten aliases each.
        let mut v = String::from("a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
        for i in 1..9 {
            let refs = vec![format!("*a{}", i - 1); 10].join(", ");
            v.push_str(&format!("a{i}: &a{i} [{refs}]\n"));
        }
        v
    };
    let wide_laughs = {
        // As many aliases as fit in the 16 KiB the grammar reads.
        let mut v = String::from("a: &a [x, x, x, x, x, x, x, x]\nb: [");
        while v.len() < 16 * 1024 - 8 {
            v.push_str("*a, ");
        }
        v.push_str("*a]");
        v
    };
    let forty_fields: Vec<String> = (0..40).map(|i| format!("f{i}: 1")).collect();
    vec![
        // Bad units.
        case(KILL, "{after: 2x}", "after: \"2x\" is not a duration"),
        case(KILL, "{after: 10 s}", "is not a duration"),
        case(KILL, "{after: 1h30}", "is not a duration"),
        case(KILL, "{after: 5sec}", "is not a duration"),
        case(
            FREEZE,
            "{duration: 1d}",
            "duration: \"1d\" is not a duration",
        ),
        case(
            STRESS,
            "{memory: {size: 256MB}, duration: 1m}",
            "memory.size: \"256MB\" is not a size",
        ),
        case(
            STRESS,
            "{memory: {size: 1.5.5Gi}, duration: 1m}",
            "is not a size",
        ),
        case(NETEM, "{rate: 1mbits}", "rate: \"1mbits\" is not a rate"),
        case(
            NETEM,
            "{loss: fifty}",
            "loss: \"fifty\" is not a probability",
        ),
        case(NETEM, "{loss: 1.5}", "loss: \"1.5\" is out of range"),
        case(
            KILL,
            "{probability: 150%}",
            "probability: \"150%\" is out of range",
        ),
        case(
            KILL,
            "{signal: SIGFOO}",
            "signal: \"SIGFOO\" is not a signal",
        ),
        case(
            STRESS,
            "{cpu: {load: 0}, duration: 1m}",
            "cpu.load: \"0\" is not a load percentage",
        ),
        case(
            STRESS,
            "{cpu: {load: 101%}, duration: 1m}",
            "is not a load percentage",
        ),
        // Huge numbers.
        case(
            KILL,
            "{after: 99999999999999999999999999999h}",
            "after: \"99999999999999999999999999999h\" is too large",
        ),
        case(KILL, "{after: 5124096h}", "is too large"),
        case(
            KILL,
            "{count: 99999999999999999999}",
            "count: \"99999999999999999999\" is out of range",
        ),
        case(KILL, "{count: 4294967296}", "is out of range"),
        case(KILL, "{signal: 4294967305}", "is not a signal"),
        case(
            STRESS,
            "{memory: {size: 99999999999999999999999Ei}, duration: 1m}",
            "is too large",
        ),
        case(NETEM, "{rate: 99999999999999999999tbit}", "is too large"),
        case(
            NETEM,
            "{limit: 18446744073709551616}",
            "limit: \"18446744073709551616\" is out of range",
        ),
        case(OOM, "{score: 1001}", "score: \"1001\" is out of range"),
        case(
            START,
            "{fail: {exit_code: 256}}",
            "fail.exit_code: \"256\" is out of range",
        ),
        // Negative values.
        case(KILL, "{after: -1s}", "after: \"-1s\" is negative"),
        case(FREEZE, "{duration: -5s}", "is negative"),
        case(NETEM, "{delay: -10ms}", "delay: \"-10ms\" is negative"),
        case(KILL, "{count: -1}", "count: \"-1\" is not an integer"),
        case(OOM, "{score: -1000}", "score: \"-1000\" is not an integer"),
        case(
            STRESS,
            "{cpu: {workers: -2}, duration: 1m}",
            "cpu.workers: \"-2\" is not an integer",
        ),
        case(KILL, "{probability: -0.5}", "is not a probability"),
        case(KILL, "{signal: -9}", "is not a signal"),
        // Unknown fields, and fields a kind refuses.
        case(KILL, "{sginal: 9}", "unknown field \"sginal\""),
        case(
            STRESS,
            "{cpu: {wrokers: 1}, duration: 1m}",
            "unknown field \"cpu.wrokers\"",
        ),
        case(KILL, "{duration: 5s}", "duration: not accepted for kill"),
        case(START, "{after: 1s}", "after: not accepted for start"),
        case(FREEZE, "{after: 1s}", "duration is required"),
        case(STRESS, "{duration: 1m}", "stress needs at least one of"),
        case(
            NETEM,
            "{delay: 10ms, to: 10.0.0.1/8}",
            "to[0]: \"10.0.0.1/8\" is not a target: host bits set",
        ),
        // Network targets.
        case(
            PARTITION,
            "{direction: both}",
            "partition needs to: [targets]",
        ),
        case(PARTITION, "{to: []}", "to: \"[]\" lists no target"),
        case(
            PARTITION,
            "{to: [10.0.0.256]}",
            "is not an IPv4 or IPv6 address",
        ),
        case(
            PARTITION,
            "{to: ['fd00::1:80:x']}",
            "is not an IPv4 or IPv6 address",
        ),
        case(
            PARTITION,
            "{to: ['10.0.0.1:65536']}",
            "'65536' is not a port",
        ),
        case(
            PARTITION,
            "{to: ['10.0.0.1:9-1/tcp']}",
            "port range 9-1 runs backwards",
        ),
        case(
            PARTITION,
            "{to: ['10.0.0.1/sctp']}",
            "protocol 'sctp' is not tcp or udp",
        ),
        case(PARTITION, "{to: [{a: b}]}", "to[0]: expected a scalar"),
        case(
            PARTITION,
            "{to: [10.0.0.1], direction: up}",
            "direction: \"up\" is not a direction",
        ),
        case(BANDWIDTH, "{to: [10.0.0.1]}", "bandwidth needs rate"),
        case(
            BANDWIDTH,
            "{rate: 0bit, to: [10.0.0.1]}",
            "rate: below 8bit",
        ),
        case(
            BANDWIDTH,
            "{rate: 1mbit, to: [10.0.0.1], burst: 0}",
            "burst: \"0\" is not a byte count",
        ),
        // Absurd but well-formed.
        case(KILL, "{every: 1ns}", "every: \"1ns\" is shorter than"),
        case(
            FREEZE,
            "{duration: 1ns, every: 2ns}",
            "every: \"2ns\" is shorter than",
        ),
        case(
            STRESS,
            "{memory: {size: 1Ei}, duration: 1m}",
            "memory.size: \"1Ei\" is larger than 128Ti",
        ),
        case(
            STRESS,
            "{memory: {size: 1E}, duration: 1m}",
            "memory.size: \"1E\" is larger than",
        ),
        case(KILL, "{count: 0}", "count: \"0\" is out of range"),
        case(FREEZE, "{duration: 0s}", "duration: \"0\" is zero"),
        case(KILL, "{every: 0s}", "every: \"0\" is zero"),
        case(
            STRESS,
            "{cpu: {workers: 100000}, duration: 1m}",
            "cpu.workers: \"100000\" is out of range",
        ),
        case(
            STRESS,
            "{memory: {size: 1Mi, workers: 65}, duration: 1m}",
            "memory.workers: \"65\" is out of range",
        ),
        case(
            FREEZE,
            "{duration: 5s, every: 5s}",
            "must be shorter than every",
        ),
        case(
            STRESS,
            "{memory: {size: 0}, duration: 1m}",
            "memory.size: \"0\" is zero",
        ),
        // Hostile YAML.
        case(KILL, "{a: ".repeat(4000), "value is not valid YAML"),
        case(KILL, "[".repeat(16 * 1024), "value is not valid YAML"),
        case(
            KILL,
            format!("{}1{}", "{a: ".repeat(3000), "}".repeat(3000)),
            "recursion limit exceeded",
        ),
        case(KILL, laughs, "YAML anchors and aliases"),
        case(KILL, wide_laughs, "YAML anchors and aliases"),
        case(KILL, "{after: *nowhere}", "YAML"),
        case(
            KILL,
            "{after: 1s}\n---\n{after: 2s}",
            "more than one YAML document",
        ),
        case(
            KILL,
            "{after: 1s, after: 2s}",
            "field \"after\" is given twice",
        ),
        case(KILL, forty_fields.join("\n"), "too many fields"),
        case(KILL, "!!binary aGVsbG8=", "expected a YAML mapping"),
        case(KILL, "kill", "expected a YAML mapping"),
        case(KILL, "", "value is empty"),
        case(KILL, "[1, 2]", "expected a YAML mapping"),
        case(
            KILL,
            "{? {a: 1} : 1}",
            "mapping keys must be plain field names",
        ),
        case(
            KILL,
            "{after: [1s]}",
            "after: expected a scalar, found a sequence",
        ),
        // Text no field takes (annotations are UTF-8 strings by the time they reach us).
        case(KILL, "{after: \u{0}1s}", "value is not valid YAML"),
        case(KILL, "{after: \u{fffd}1s}", "is not a duration"),
        case(KILL, "{\u{202e}after: 1s}", "unknown field"),
        case(KILL, "{after: \"\\ud800\"}", "YAML"),
        case(KILL, "{after: \"\\xZZ\"}", "YAML"),
        case(KILL, "{after: 1s\u{200b}}", "is not a duration"),
        // 1 MiB values.
        case(
            KILL,
            "a".repeat(mib),
            "value is 1048576 bytes long; at most 16384 bytes",
        ),
        case(
            KILL,
            format!("{{after: 1s, x: {}}}", "a".repeat(mib)),
            "bytes long",
        ),
        case(
            STRESS,
            format!("{{memory: {{size: {}Mi}}, duration: 1m}}", "9".repeat(mib)),
            "bytes long",
        ),
        case(KILL, "x".repeat(16 * 1024 + 1), "value is 16385 bytes long"),
        case(
            KILL,
            format!("{{after: {}}}", "9".repeat(16 * 1024 - 10)),
            "is too large",
        ),
        // Keys of our domain that do not parse.
        case("kil.nri-chaos.io", "{}", "unknown fault kind \"kil\""),
        case(
            "kill.nri-chaos.io/contianer.app",
            "{}",
            "unknown key suffix \"contianer.app\"",
        ),
        case(
            "kill.nri-chaos.io/container.",
            "{}",
            "missing container name",
        ),
        case("nri-chaos.io/pod", "{}", "missing fault kind"),
        case(
            PARTITION,
            format!("{{to: [{}]}}", vec!["10.0.0.1"; 300].join(", ")),
            "a sequence has more than 256 items",
        ),
    ]
}

/// The first characters of `value` as a rejection shows them (escaped, in quotes, cut).
fn shown_prefix(value: &str) -> String {
    let head: String = value.chars().take(24).collect();
    let quoted = format!("{head:?}");
    quoted[..quoted.len() - 1].to_string()
}

#[test]
fn every_malformed_annotation_is_rejected_with_key_value_and_reason() {
    let cases = catalogue();
    assert!(cases.len() >= 50, "the catalogue has {} cases", cases.len());
    let policy = Policy::default();
    let mut slowest = (Duration::ZERO, 0);
    let mut failures = Vec::new();
    for (i, c) in cases.iter().enumerate() {
        let annotations = HashMap::from([(c.key.to_string(), c.value.clone())]);
        let pod = PodRef {
            namespace: "default",
            name: "web",
            uid: "uid-1",
            annotations: &annotations,
            host_network: false,
        };
        let started = Instant::now();
        let plan = plan_container(&pod, "app", Some(LIMIT), &policy);
        let took = started.elapsed();
        if took > slowest.0 {
            slowest = (took, i);
        }
        let what = format!("case {i} ({} = {})", c.key, shown_prefix(&c.value));
        if !plan.faults.is_empty() || plan.rejections.len() != 1 {
            failures.push(format!("{what}: accepted or not one rejection: {plan}"));
            continue;
        }
        let message = plan.rejections[0].to_string();
        let head = &message[..message.floor_char_boundary(300)];
        if !message.starts_with(&format!("annotation {}: ", c.key)) {
            failures.push(format!("{what}: message does not name the key: {head}"));
        }
        if !message.contains(&shown_prefix(&c.value)) {
            failures.push(format!("{what}: message does not show the value: {head}"));
        }
        if !plan.rejections[0].reason.contains(c.reason) {
            failures.push(format!("{what}: reason lacks {:?}: {head}", c.reason));
        }
        if message.len() > MAX_MESSAGE_BYTES {
            failures.push(format!("{what}: message of {} bytes", message.len()));
        }
        if plan.rejections[0].value.len() > MAX_MESSAGE_BYTES + 32 {
            failures.push(format!(
                "{what}: the rejection keeps {} bytes of the value",
                plan.rejections[0].value.len()
            ));
        }
        if took > MAX_CASE_TIME {
            failures.push(format!("{what}: took {took:?}"));
        }
    }
    println!(
        "{} malformed annotations rejected; slowest {:?} (case {}: {} = {}, {} bytes)",
        cases.len(),
        slowest.0,
        slowest.1,
        cases[slowest.1].key,
        shown_prefix(&cases[slowest.1].value),
        cases[slowest.1].value.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The catalogue's worst values together on one pod: each is rejected by itself, and the
/// good annotation next to them still arms its fault.
#[test]
fn a_pod_full_of_bad_annotations_keeps_its_good_one() {
    let mut annotations: HashMap<String, String> = HashMap::from([
        (KILL.to_string(), "a".repeat(1 << 20)),
        (
            FREEZE.to_string(),
            "{duration: 1ns, every: 2ns}".to_string(),
        ),
        (
            STRESS.to_string(),
            "{memory: {size: 1Ei}, duration: 1m}".to_string(),
        ),
        (NETEM.to_string(), "[".repeat(16 * 1024)),
        ("kil.nri-chaos.io".to_string(), "{}".to_string()),
    ]);
    annotations.insert(OOM.to_string(), "{score: 800}".to_string());
    let pod = PodRef {
        namespace: "default",
        name: "web",
        uid: "uid-1",
        annotations: &annotations,
        host_network: false,
    };
    let plan = plan_container(&pod, "app", Some(LIMIT), &Policy::default());
    assert_eq!(plan.faults.len(), 1, "{plan}");
    assert_eq!(plan.faults[0].kind, FaultKind::Oom);
    let keys: Vec<&str> = plan.rejections.iter().map(|r| r.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "freeze.nri-chaos.io/container.app",
            "kil.nri-chaos.io",
            KILL,
            NETEM,
            STRESS
        ]
    );
    assert!(
        plan.to_string().len() < 4 * MAX_MESSAGE_BYTES,
        "{}",
        plan.to_string().len()
    );
}
