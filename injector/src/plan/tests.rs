use std::collections::HashMap;
use std::time::Duration;

use super::*;
use crate::faults::kill::Signal;
use crate::faults::stress::{CpuStress, MemoryStress};
use crate::units::Size;

const GI: u64 = 1 << 30;

fn annotations(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn plan_with(
    pairs: &[(&str, &str)],
    ns: &str,
    host_network: bool,
    limit: Option<u64>,
    policy: &Policy,
) -> ContainerPlan {
    let ann = annotations(pairs);
    let pod = PodRef {
        namespace: ns,
        name: "web-0",
        uid: "uid-1",
        annotations: &ann,
        host_network,
    };
    plan_container(&pod, "app", limit, policy)
}

fn plan(pairs: &[(&str, &str)]) -> ContainerPlan {
    plan_with(pairs, "default", false, Some(GI), &Policy::default())
}

/// The single accepted request for `<kind>.nri-chaos.io/container.app: value`.
fn accept(kind: &str, value: &str) -> FaultRequest {
    let key = format!("{kind}.nri-chaos.io/container.app");
    let p = plan(&[(&key, value)]);
    assert!(p.rejections.is_empty(), "{value}: {p}");
    assert_eq!(p.faults.len(), 1);
    p.faults.into_iter().next().unwrap()
}

/// The rejection reason for `<kind>.nri-chaos.io/container.app: value`.
fn reject(kind: &str, value: &str) -> String {
    let key = format!("{kind}.nri-chaos.io/container.app");
    let p = plan(&[(&key, value)]);
    assert!(p.faults.is_empty(), "{value}: {p}");
    assert_eq!(p.rejections.len(), 1);
    assert_eq!(p.rejections[0].key, key);
    assert_eq!(p.rejections[0].value, value);
    p.rejections[0].reason.clone()
}

fn assert_reject(kind: &str, value: &str, expected: &str) {
    let reason = reject(kind, value);
    assert!(
        reason.contains(expected),
        "{kind} {value}: got {reason:?}, want {expected:?}"
    );
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

#[test]
fn rejection_reads_as_documented() {
    let p = plan(&[("kill.nri-chaos.io/container.app", "{after: 2x}")]);
    assert_eq!(
        p.rejections[0].to_string(),
        "annotation kill.nri-chaos.io/container.app: \"{after: 2x}\": after: \"2x\" is not a duration (examples: 250ms, 30s, 1h30m)"
    );
}

#[test]
fn no_annotations_is_empty() {
    let p = plan(&[
        ("kubernetes.io/config.seen", "x"),
        ("kill.example.com/pod", "{}"),
    ]);
    assert!(p.is_empty());
    assert_eq!(p.to_string(), "no faults");
}

#[test]
fn precedence_container_pod_bare() {
    let bare = ("kill.nri-chaos.io", "{signal: HUP}");
    let pod = ("kill.nri-chaos.io/pod", "{signal: INT}");
    let ctr = ("kill.nri-chaos.io/container.app", "{signal: TERM}");
    let other = ("kill.nri-chaos.io/container.db", "{signal: USR1}");
    let signal = |p: &ContainerPlan| match &p.get(FaultKind::Kill).unwrap().spec {
        FaultSpec::Kill(k) => k.signal.name(),
        other => panic!("{other:?}"),
    };
    assert_eq!(signal(&plan(&[bare])), "SIGHUP");
    assert_eq!(signal(&plan(&[bare, pod])), "SIGINT");
    assert_eq!(signal(&plan(&[bare, pod, ctr, other])), "SIGTERM");
    assert_eq!(signal(&plan(&[bare, other])), "SIGHUP");
    assert_eq!(plan(&[bare, pod, ctr, other]).faults.len(), 1);
    assert_eq!(
        plan(&[bare, pod, ctr]).get(FaultKind::Kill).unwrap().key,
        ctr.0
    );
    // Only another container's key: nothing.
    assert!(plan(&[other]).is_empty());
    // The winning key is invalid: rejected, no fallback to the pod key.
    let p = plan(&[pod, ("kill.nri-chaos.io/container.app", "{signal: NOPE}")]);
    assert!(p.faults.is_empty());
    assert_eq!(p.rejections.len(), 1);
    assert_eq!(p.rejections[0].key, "kill.nri-chaos.io/container.app");
}

#[test]
fn one_request_per_kind_several_kinds() {
    let p = plan(&[
        ("freeze.nri-chaos.io/pod", "{duration: 10s}"),
        ("kill.nri-chaos.io", "{after: 1m}"),
        ("exec.nri-chaos.io/container.app", "{fail: {}}"),
    ]);
    let kinds: Vec<FaultKind> = p.faults.iter().map(|f| f.kind).collect();
    assert_eq!(
        kinds,
        vec![FaultKind::Kill, FaultKind::Freeze, FaultKind::Exec]
    );
}

#[test]
fn unknown_keys_of_our_domain_are_rejected_sorted() {
    let p = plan(&[
        ("kil.nri-chaos.io", "{}"),
        ("kill.nri-chaos.io/contianer.app", "{}"),
        ("other.example.com/kill", "{}"),
        ("kill.nri-chaos.io/pod", "{}"),
    ]);
    assert_eq!(p.faults.len(), 1);
    let keys: Vec<&str> = p.rejections.iter().map(|r| r.key.as_str()).collect();
    assert_eq!(
        keys,
        vec!["kil.nri-chaos.io", "kill.nri-chaos.io/contianer.app"]
    );
    assert!(p.rejections[0]
        .reason
        .contains("unknown fault kind \"kil\""));
    assert!(p.rejections[1]
        .reason
        .contains("unknown key suffix \"contianer.app\""));
}

#[test]
fn custom_domain() {
    let policy = Policy::from_toml_str("domain = \"chaos.example.org\"").unwrap();
    let p = plan_with(
        &[
            ("kill.chaos.example.org/pod", "{}"),
            ("kill.nri-chaos.io/pod", "{}"),
        ],
        "default",
        false,
        None,
        &policy,
    );
    assert_eq!(p.faults.len(), 1);
    assert_eq!(p.faults[0].key, "kill.chaos.example.org/pod");
    assert!(p.rejections.is_empty());
}

#[test]
fn value_shape_errors() {
    assert_reject(
        "kill",
        "",
        "value is empty; write {} to accept every default",
    );
    assert_reject(
        "kill",
        "SIGTERM",
        "expected a YAML mapping such as {after: 10s}, found the scalar \"SIGTERM\"",
    );
    assert_reject("kill", "[a, b]", "found a sequence");
    assert_reject("kill", "{after: 1s", "not valid YAML");
    assert_reject(
        "kill",
        "{after: 1s, after: 2s}",
        "field \"after\" is given twice",
    );
    assert_reject("kill", "{after: &a 1s, every: *a}", "anchors and aliases");
    assert_reject(
        "kill",
        "{after: [1s]}",
        "after: expected a scalar, found a sequence",
    );
    assert_reject(
        "kill",
        "{after: {x: 1}}",
        "after: expected a scalar, found a mapping",
    );
    assert_reject(
        "kill",
        "{after: }",
        "after: expected a scalar, found nothing (null)",
    );
}

#[test]
fn garbage_values_are_rejections_not_panics() {
    let huge = "9".repeat(400);
    let values = [
        "{".to_string(),
        "\u{0}\u{1}\u{2}".to_string(),
        "{after: \u{202e}1s}".to_string(),
        "{\u{1F4A5}: \u{1F4A5}}".to_string(),
        "{signal: ９}".to_string(),
        format!("{{count: {huge}}}"),
        format!("{{after: {huge}h}}"),
        format!("{{probability: {huge}%}}"),
        format!("{{signal: {huge}}}"),
        "{count: -1}".to_string(),
        "{count: 1.5}".to_string(),
        "{count: 0x10}".to_string(),
        "{probability: NaN}".to_string(),
        "{probability: .inf}".to_string(),
        "{after: 1e9s}".to_string(),
        "[".repeat(10_000),
        "{a: ".repeat(2_000),
        "x".repeat(100_000),
        "- - - - -".to_string(),
        "%TAG ! tag:x\n--- !foo {a: 1}".to_string(),
    ];
    for v in &values {
        for kind in FaultKind::ALL {
            let key = format!("{kind}.nri-chaos.io/pod");
            let p = plan(&[(key.as_str(), v.as_str())]);
            assert!(p.faults.is_empty(), "{kind} {v:?}: {p}");
            assert_eq!(p.rejections.len(), 1, "{kind} {v:?}");
            assert!(p.rejections[0].to_string().len() < 1000);
        }
    }
}

// ---- timing fields ----

#[test]
fn timing_defaults() {
    let r = accept("kill", "{}");
    assert_eq!(r.timing, Timing::default());
    assert_eq!(r.timing.count, Some(1));
    assert_eq!(r.timing.probability, 1.0);
    let r = accept("kill", "{every: 1m}");
    assert_eq!(r.timing.count, None, "every without count is unlimited");
    assert_eq!(r.timing.every, Some(secs(60)));
}

#[test]
fn timing_fields_accepted() {
    let r = accept(
        "freeze",
        "after: 1h30m\nduration: 250ms\nevery: 2m\ncount: 3\njitter: 1.5s\nprobability: 25%\n",
    );
    assert_eq!(
        r.timing,
        Timing {
            after: secs(5400),
            duration: Some(Duration::from_millis(250)),
            every: Some(secs(120)),
            count: Some(3),
            jitter: Duration::from_millis(1500),
            probability: 0.25,
        }
    );
    assert_eq!(accept("kill", "{probability: 0.5}").timing.probability, 0.5);
    assert_eq!(
        accept("kill", "{count: 4294967295}").timing.count,
        Some(u32::MAX)
    );
    assert_eq!(accept("kill", "{count: 3}").timing.every, None);
    assert_eq!(accept("kill", "{after: 0}").timing.after, Duration::ZERO);
}

#[test]
fn timing_fields_rejected() {
    assert_reject(
        "kill",
        "{after: 2x}",
        "after: \"2x\" is not a duration (examples: 250ms, 30s, 1h30m)",
    );
    assert_reject("kill", "{after: -5s}", "after: \"-5s\" is negative");
    assert_reject("kill", "{after: 30}", "after: \"30\" is not a duration");
    assert_reject("freeze", "{duration: 0s}", "duration: \"0\" is zero");
    assert_reject(
        "freeze",
        "{duration: soon}",
        "duration: \"soon\" is not a duration",
    );
    assert_reject("kill", "{every: 0s}", "every: \"0\" is zero");
    assert_reject("kill", "{every: -1m}", "every: \"-1m\" is negative");
    assert_reject(
        "kill",
        "{count: 0}",
        "count: \"0\" is out of range (expected 1 to 4294967295)",
    );
    assert_reject(
        "kill",
        "{count: 4294967296}",
        "count: \"4294967296\" is out of range",
    );
    assert_reject("kill", "{count: many}", "count: \"many\" is not an integer");
    assert_reject(
        "kill",
        "{jitter: lots}",
        "jitter: \"lots\" is not a duration",
    );
    assert_reject(
        "kill",
        "{probability: 1.5}",
        "probability: \"1.5\" is out of range",
    );
    assert_reject(
        "kill",
        "{probability: 150%}",
        "probability: \"150%\" is out of range",
    );
    assert_reject(
        "kill",
        "{probability: maybe}",
        "probability: \"maybe\" is not a probability",
    );
    assert_reject(
        "freeze",
        "{duration: 20s, every: 10s}",
        "duration (20s) must be shorter than every (10s)",
    );
    assert_reject(
        "freeze",
        "{duration: 10s, every: 10s}",
        "must be shorter than every",
    );
}

// ---- kill ----

#[test]
fn kill_fields() {
    let sig = |v: &str| match accept("kill", v).spec {
        FaultSpec::Kill(k) => k.signal,
        other => panic!("{other:?}"),
    };
    assert_eq!(sig("{}"), Signal::KILL);
    assert_eq!(sig("{signal: SIGTERM}"), Signal::TERM);
    assert_eq!(sig("{signal: KILL}"), Signal::KILL);
    assert_eq!(sig("{signal: sigterm}"), Signal::TERM);
    assert_eq!(sig("{signal: 9}"), Signal::KILL);
    assert_eq!(sig("{signal: '15'}"), Signal::TERM);
    assert_eq!(sig("{signal: SIGRTMIN+1}").number(), 35);
    assert_eq!(sig("{signal: 64}").number(), 64);
    assert_reject(
        "kill",
        "{signal: SIGFOO}",
        "signal: \"SIGFOO\" is not a signal",
    );
    assert_reject("kill", "{signal: 0}", "signal: \"0\" is not a signal");
    assert_reject("kill", "{signal: 32}", "signal: \"32\" is not a signal");
    assert_reject("kill", "{signal: 65}", "signal: \"65\" is not a signal");
    assert_reject("kill", "{signal: [9]}", "signal: expected a scalar");
    assert_reject(
        "kill",
        "{duration: 10s}",
        "duration: not accepted for kill (a kill is instantaneous",
    );
    assert_reject(
        "kill",
        "{sginal: TERM}",
        "unknown field \"sginal\" (accepted: after, every, count, jitter, probability, signal)",
    );
}

// ---- freeze ----

#[test]
fn freeze_fields() {
    let r = accept("freeze", "{duration: 30s}");
    assert_eq!(
        r.spec,
        FaultSpec::Freeze(crate::faults::freeze::FreezeFault)
    );
    assert_eq!(r.timing.duration, Some(secs(30)));
    assert_reject("freeze", "{}", "duration is required for freeze");
    assert_reject("freeze", "{after: 1s}", "duration is required");
    assert_reject(
        "freeze",
        "{duration: 1s, signal: KILL}",
        "unknown field \"signal\" (accepted: after, duration, every, count, jitter, probability)",
    );
}

// ---- netem ----

fn netem(v: &str) -> crate::faults::netem::NetemFault {
    match accept("netem", v).spec {
        FaultSpec::Netem(n) => n,
        other => panic!("{other:?}"),
    }
}

#[test]
fn netem_fields_accepted() {
    let n = netem("{delay: 100ms, jitter: 10ms, correlation: 25%, loss: 1%, duplicate: 0.5%, corrupt: 0.001, reorder: 25%, rate: 1mbit, limit: 1000, interface: eth0}");
    assert_eq!(n.delay, Some(Duration::from_millis(100)));
    assert_eq!(n.jitter, Some(Duration::from_millis(10)));
    assert_eq!(n.correlation, Some(0.25));
    assert_eq!(n.loss, Some(0.01));
    assert_eq!(n.duplicate, Some(0.005));
    assert_eq!(n.corrupt, Some(0.001));
    assert_eq!(n.reorder, Some(0.25));
    assert_eq!(n.rate_bytes_per_sec, Some(125_000));
    assert_eq!(n.limit, Some(1000));
    assert_eq!(n.interface.as_deref(), Some("eth0"));
    assert_eq!(netem("{loss: 5%}").loss, Some(0.05));
    assert_eq!(netem("{duplicate: 1%}").duplicate, Some(0.01));
    assert_eq!(netem("{corrupt: 1%}").corrupt, Some(0.01));
    assert_eq!(netem("{rate: 10kbps}").rate_bytes_per_sec, Some(10_000));
    assert_eq!(netem("{rate: 8000}").rate_bytes_per_sec, Some(1000));
    // jitter is netem's, the schedule has none.
    let r = accept("netem", "{delay: 1s, jitter: 100ms, after: 5s, duration: 1m, every: 5m, count: 2, probability: 50%}");
    assert_eq!(r.timing.jitter, Duration::ZERO);
    assert_eq!(r.timing.after, secs(5));
    assert_eq!(r.timing.count, Some(2));
    assert_eq!(accept("netem", "{delay: 1s}").timing.duration, None);
}

#[test]
fn netem_fields_rejected() {
    assert_reject(
        "netem",
        "{}",
        "netem needs at least one of: delay, loss, duplicate, corrupt, reorder, rate",
    );
    assert_reject(
        "netem",
        "{limit: 10, interface: eth0}",
        "netem needs at least one of",
    );
    assert_reject("netem", "{loss: 1%, jitter: 10ms}", "jitter needs delay");
    assert_reject("netem", "{reorder: 10%}", "reorder needs delay");
    assert_reject(
        "netem",
        "{delay: fast}",
        "delay: \"fast\" is not a duration",
    );
    assert_reject(
        "netem",
        "{delay: 1s, jitter: x}",
        "jitter: \"x\" is not a duration",
    );
    assert_reject(
        "netem",
        "{delay: 1s, correlation: 200%}",
        "correlation: \"200%\" is out of range",
    );
    assert_reject(
        "netem",
        "{loss: 5}",
        "loss: \"5\" is out of range: use 0 to 1 (e.g. 0.25) or 0% to 100%",
    );
    assert_reject(
        "netem",
        "{duplicate: lots}",
        "duplicate: \"lots\" is not a probability",
    );
    assert_reject(
        "netem",
        "{corrupt: -1%}",
        "corrupt: \"-1%\" is not a probability",
    );
    assert_reject(
        "netem",
        "{delay: 1s, reorder: 2}",
        "reorder: \"2\" is out of range",
    );
    assert_reject("netem", "{rate: 1mb}", "rate: \"1mb\" is not a rate");
    assert_reject("netem", "{rate: 1bit}", "rate: below 8bit");
    assert_reject(
        "netem",
        "{loss: 1%, limit: 0}",
        "limit: \"0\" is out of range",
    );
    assert_reject(
        "netem",
        "{loss: 1%, limit: 4294967296}",
        "limit: \"4294967296\" is out of range",
    );
    assert_reject(
        "netem",
        "{loss: 1%, interface: a/b}",
        "interface: \"a/b\" is not an interface name",
    );
    assert_reject(
        "netem",
        "{loss: 1%, interface: averyveryverylongname}",
        "is not an interface name",
    );
    assert_reject(
        "netem",
        "{loss: 1%, interface: ''}",
        "is not an interface name",
    );
    assert_reject(
        "netem",
        "{loss: 1%, bandwidth: 1mbit}",
        "unknown field \"bandwidth\" (accepted: after, duration, every, count, probability, delay, jitter, correlation, loss, duplicate, corrupt, reorder, rate, limit, interface, to, direction)",
    );
}

#[test]
fn netem_on_host_network() {
    let pairs = [("netem.nri-chaos.io/pod", "{delay: 100ms}")];
    let p = plan_with(&pairs, "default", true, None, &Policy::default());
    assert!(p.faults.is_empty());
    assert!(
        p.rejections[0]
            .reason
            .contains("allow_netem_host_network = false"),
        "{p}"
    );
    let policy = Policy::from_toml_str("allow_netem_host_network = true").unwrap();
    let p = plan_with(&pairs, "default", true, None, &policy);
    assert_eq!(p.faults.len(), 1);
}

// ---- stress ----

fn stress(v: &str) -> crate::faults::stress::StressFault {
    match accept("stress", v).spec {
        FaultSpec::Stress(s) => s,
        other => panic!("{other:?}"),
    }
}

#[test]
fn stress_fields_accepted() {
    let s = stress(
        "duration: 2m\ncpu:\n  workers: 2\n  load: 80\nmemory:\n  size: 256Mi\n  workers: 2\n",
    );
    assert_eq!(
        s.cpu,
        Some(CpuStress {
            workers: 2,
            load: 80
        })
    );
    assert_eq!(
        s.memory,
        Some(MemoryStress {
            size: Size::Bytes(256 << 20),
            workers: 2
        })
    );
    assert_eq!(
        stress("{duration: 1m, cpu: {}}").cpu,
        Some(CpuStress {
            workers: 1,
            load: 100
        })
    );
    assert_eq!(
        stress("{duration: 1m, cpu: {load: 50%}}").cpu.unwrap().load,
        50
    );
    assert_eq!(
        stress("{duration: 1m, cpu: {workers: 4, load: 1}}")
            .cpu
            .unwrap()
            .load,
        1
    );
    let m = stress("{duration: 1m, memory: {size: 50%}}")
        .memory
        .unwrap();
    assert_eq!(
        m,
        MemoryStress {
            size: Size::PercentOfLimit(50.0),
            workers: 1
        }
    );
    assert_eq!(
        stress("{duration: 1m, memory: {size: 1G}}")
            .memory
            .unwrap()
            .size,
        Size::Bytes(1_000_000_000)
    );
    assert_eq!(
        stress("{duration: 1m, memory: {size: 1048576}}")
            .memory
            .unwrap()
            .size,
        Size::Bytes(1 << 20)
    );
}

#[test]
fn stress_fields_rejected() {
    assert_reject(
        "stress",
        "{duration: 1m}",
        "stress needs at least one of: cpu, memory",
    );
    assert_reject(
        "stress",
        "{cpu: {workers: 1}}",
        "duration is required for stress",
    );
    assert_reject(
        "stress",
        "{duration: 1m, cpu: {workers: 0}}",
        "cpu.workers: \"0\" is out of range",
    );
    assert_reject(
        "stress",
        "{duration: 1m, cpu: {workers: two}}",
        "cpu.workers: \"two\" is not an integer",
    );
    assert_reject(
        "stress",
        "{duration: 1m, cpu: {load: 0}}",
        "cpu.load: \"0\" is not a load percentage",
    );
    assert_reject(
        "stress",
        "{duration: 1m, cpu: {load: 101}}",
        "cpu.load: \"101\" is not a load percentage",
    );
    assert_reject(
        "stress",
        "{duration: 1m, cpu: {load: 0.5}}",
        "cpu.load: \"0.5\"",
    );
    assert_reject(
        "stress",
        "{duration: 1m, cpu: {wrokers: 1}}",
        "unknown field \"cpu.wrokers\" (accepted: workers, load)",
    );
    assert_reject(
        "stress",
        "{duration: 1m, cpu: 2}",
        "cpu: expected a mapping such as {key: value}, found the scalar \"2\"",
    );
    assert_reject(
        "stress",
        "{duration: 1m, memory: {}}",
        "memory.size is required",
    );
    assert_reject(
        "stress",
        "{duration: 1m, memory: {size: lots}}",
        "memory.size: \"lots\" is not a size",
    );
    assert_reject(
        "stress",
        "{duration: 1m, memory: {size: 0}}",
        "memory.size: \"0\" is zero",
    );
    assert_reject(
        "stress",
        "{duration: 1m, memory: {size: 150%}}",
        "memory.size: \"150%\" is out of range",
    );
    assert_reject(
        "stress",
        "{duration: 1m, memory: {size: 1Mi, workers: 0}}",
        "memory.workers: \"0\" is out of range",
    );
    assert_reject(
        "stress",
        "{duration: 1m, memory: {size: 1Mi, workers: 65}}",
        "memory.workers: \"65\" is out of range",
    );
    assert_reject(
        "stress",
        "{duration: 1m, memory: {size: 1Mi, bytes: 1}}",
        "unknown field \"memory.bytes\" (accepted: size, workers)",
    );
}

#[test]
fn stress_policy_caps() {
    // Default max_cpu_workers = 4.
    assert_reject(
        "stress",
        "{duration: 1m, cpu: {workers: 5}}",
        "cpu.workers 5 exceeds the policy maximum (stress.max_cpu_workers = 4)",
    );
    let policy =
        Policy::from_toml_str("[stress]\nmax_cpu_workers = 8\nmax_memory = \"512Mi\"").unwrap();
    let run = |v: &str, limit: Option<u64>| {
        plan_with(
            &[("stress.nri-chaos.io/pod", v)],
            "default",
            false,
            limit,
            &policy,
        )
    };
    assert_eq!(
        run("{duration: 1m, cpu: {workers: 8}}", None).faults.len(),
        1
    );
    assert_eq!(
        run("{duration: 1m, memory: {size: 512Mi}}", None)
            .faults
            .len(),
        1
    );
    let p = run("{duration: 1m, memory: {size: 513Mi}}", None);
    assert!(
        p.rejections[0].reason.contains(
            "memory.size 513Mi exceeds the policy maximum (stress.max_memory = \"512Mi\")"
        ),
        "{p}"
    );
    // 50% of 1Gi = 512Mi: fine; 60% is not.
    assert_eq!(
        run("{duration: 1m, memory: {size: 50%}}", Some(GI))
            .faults
            .len(),
        1
    );
    assert_eq!(
        run("{duration: 1m, memory: {size: 60%}}", Some(GI))
            .rejections
            .len(),
        1
    );
    // A percentage without a memory limit cannot be resolved.
    let p = run("{duration: 1m, memory: {size: 50%}}", None);
    assert!(
        p.rejections[0]
            .reason
            .contains("this container has no memory limit"),
        "{p}"
    );
    // A percentage cap cannot be checked without a limit.
    let pct = Policy::from_toml_str("[stress]\nmax_memory = \"50%\"").unwrap();
    let p = plan_with(
        &[(
            "stress.nri-chaos.io/pod",
            "{duration: 1m, memory: {size: 1Mi}}",
        )],
        "default",
        false,
        None,
        &pct,
    );
    assert!(p.rejections[0].reason.contains("cannot be checked"), "{p}");
}

// ---- oom ----

#[test]
fn oom_fields() {
    let oom = |v: &str| match accept("oom", v).spec {
        FaultSpec::Oom(o) => o,
        other => panic!("{other:?}"),
    };
    assert_eq!(oom("{score: 1000}").score, Some(1000));
    assert_eq!(oom("{score: 0}").score, Some(0));
    assert!(!oom("{score: 500}").kill);
    assert!(oom("{kill: true}").kill);
    assert!(oom("{score: 900, kill: true, duration: 1m}").kill);
    assert_reject(
        "oom",
        "{score: 1001}",
        "score: \"1001\" is out of range (expected 0 to 1000)",
    );
    assert_reject("oom", "{score: -1}", "score: \"-1\" is not an integer");
    assert_reject("oom", "{kill: yes}", "kill: \"yes\" is not a boolean");
    assert_reject(
        "oom",
        "{kill: false}",
        "oom needs at least one of: score, kill: true",
    );
    assert_reject("oom", "{}", "oom needs at least one of");
    assert_reject("oom", "{scor: 1}", "unknown field \"scor\"");
}

#[test]
fn oom_kill_without_limit() {
    let pairs = [("oom.nri-chaos.io/pod", "{kill: true}")];
    let p = plan_with(&pairs, "default", false, None, &Policy::default());
    assert!(
        p.rejections[0]
            .reason
            .contains("allow_oom_kill_without_limit = false"),
        "{p}"
    );
    // A score alone is fine without a limit.
    assert_eq!(
        plan_with(
            &[("oom.nri-chaos.io/pod", "{score: 10}")],
            "default",
            false,
            None,
            &Policy::default()
        )
        .faults
        .len(),
        1
    );
    let policy = Policy::from_toml_str("allow_oom_kill_without_limit = true").unwrap();
    assert_eq!(
        plan_with(&pairs, "default", false, None, &policy)
            .faults
            .len(),
        1
    );
}

// ---- start ----

#[test]
fn start_fields() {
    let start = |v: &str| match accept("start", v).spec {
        FaultSpec::Start(s) => s,
        other => panic!("{other:?}"),
    };
    assert_eq!(start("{delay: 20s}").delay, Some(secs(20)));
    assert_eq!(start("{fail: {exit_code: 3}}").fail_exit_code, Some(3));
    assert_eq!(start("{fail: {exit_code: 255}}").fail_exit_code, Some(255));
    assert_eq!(start("{fail: {}}").fail_exit_code, Some(1));
    let r = accept("start", "{delay: 1s, count: 2, probability: 50%}");
    assert_eq!(r.timing.count, Some(2));
    assert_reject("start", "{}", "start needs at least one of: delay, fail");
    assert_reject("start", "{delay: 0s}", "delay: \"0\" is zero");
    assert_reject("start", "{delay: x}", "delay: \"x\" is not a duration");
    assert_reject(
        "start",
        "{fail: {exit_code: 0}}",
        "fail.exit_code: \"0\" is out of range (expected 1 to 255)",
    );
    assert_reject(
        "start",
        "{fail: {exit_code: 256}}",
        "fail.exit_code: \"256\" is out of range",
    );
    assert_reject(
        "start",
        "{fail: {code: 2}}",
        "unknown field \"fail.code\" (accepted: exit_code)",
    );
    assert_reject("start", "{fail: true}", "fail: expected a mapping");
    for field in ["after: 1s", "every: 1s", "duration: 1s", "jitter: 1s"] {
        assert_reject(
            "start",
            &format!("{{delay: 1s, {field}}}"),
            "not accepted for start",
        );
    }
}

// ---- exec ----

#[test]
fn exec_fields() {
    use crate::faults::exec::ExecAction;
    let exec = |v: &str| match accept("exec", v).spec {
        FaultSpec::Exec(e) => e,
        other => panic!("{other:?}"),
    };
    let f = exec("{fail: {exit_code: 7}, match: healthz}");
    assert_eq!(f.action, ExecAction::Fail { exit_code: 7 });
    assert_eq!(f.matches.as_deref(), Some("healthz"));
    assert_eq!(exec("{fail: {}}").action, ExecAction::Fail { exit_code: 1 });
    assert_eq!(exec("{hang: true}").action, ExecAction::Hang);
    assert_eq!(exec("{hang: true}").matches, None);
    assert_eq!(exec("{delay: 2s}").action, ExecAction::Delay(secs(2)));
    let windowed = accept("exec", "{delay: 2s, after: 1m, duration: 5m, count: 3}");
    assert_eq!(windowed.timing.duration, Some(secs(300)));
    assert_eq!(windowed.timing.count, Some(3));
    // By default every matching exec in the window is faulted.
    assert_eq!(accept("exec", "{hang: true}").timing.count, None);
    assert_reject(
        "exec",
        "{}",
        "exec needs exactly one of: fail, hang, delay (none given)",
    );
    assert_reject(
        "exec",
        "{hang: true, delay: 1s}",
        "exec needs exactly one of: fail, hang, delay (several given)",
    );
    assert_reject(
        "exec",
        "{fail: {exit_code: 0}}",
        "fail.exit_code: \"0\" is out of range (expected 1 to 255)",
    );
    assert_reject("exec", "{fail: 50%}", "fail: expected a mapping");
    assert_reject(
        "exec",
        "{fail: {code: 3}}",
        "unknown field \"fail.code\" (accepted: exit_code)",
    );
    assert_reject("exec", "{hang: false}", "hang: \"false\" is refused");
    assert_reject("exec", "{hang: yes}", "hang: \"yes\" is not a boolean");
    assert_reject("exec", "{delay: soon}", "delay: \"soon\" is not a duration");
    assert_reject("exec", "{delay: 0s}", "delay: \"0\" is zero");
    assert_reject(
        "exec",
        "{hang: true, match: ''}",
        "match: \"\" must be 1 to 1024",
    );
    assert_reject(
        "exec",
        "{hang: true, match: {a: 1}}",
        "match: expected a scalar",
    );
    assert_reject("exec", "{timeout: 1s}", "unknown field \"timeout\"");
    assert_reject(
        "exec",
        "{hang: true, jitter: 1s}",
        "jitter: not accepted for exec",
    );
    assert_reject(
        "exec",
        "{hang: true, every: 1m}",
        "every: for exec it repeats the window given by duration",
    );
    assert!(exec(crate::faults::exec::ExecFault::EXAMPLE)
        .matches
        .is_some());
}

#[test]
fn exec_windows_after_duration_every_count_probability() {
    use crate::faults::exec::{ExecAction, ExecWindow};
    let window = |v: &str| match accept("exec", v) {
        FaultRequest {
            spec: FaultSpec::Exec(e),
            timing,
            ..
        } => ExecWindow::new(e, timing),
        other => panic!("{other:?}"),
    };
    let ms = Duration::from_millis;
    let fail = Some(ExecAction::Fail { exit_code: 7 });
    let mut w = window("{fail: {exit_code: 7}, match: healthz, after: 2s, duration: 3s}");
    assert_eq!(w.decide(&["sh", "-c", "echo healthz"], ms(1999), 0.0), None);
    assert_eq!(w.decide(&["sh", "-c", "echo healthz"], ms(2000), 0.0), fail);
    assert_eq!(w.decide(&["echo", "hi"], ms(3000), 0.0), None);
    assert_eq!(w.decide(&["cat", "/healthz"], ms(4999), 0.0), fail);
    assert_eq!(w.decide(&["cat", "/healthz"], ms(5000), 0.0), None);
    // The command line is argv joined by single spaces.
    let mut w = window("{hang: true, match: 'echo healthz'}");
    assert_eq!(
        w.decide(&["sh", "-c", "echo healthz"], ms(0), 0.0),
        Some(ExecAction::Hang)
    );
    assert_eq!(w.decide(&["echo", "-n", "healthz"], ms(0), 0.0), None);
    // count: only that many execs are faulted; a failed draw uses one up.
    let mut w = window("{delay: 1s, count: 2, probability: 50%}");
    assert_eq!(w.decide(&["a"], ms(0), 0.9), None);
    assert_eq!(
        w.decide(&["a"], ms(0), 0.1),
        Some(ExecAction::Delay(secs(1)))
    );
    assert_eq!(w.decide(&["a"], ms(0), 0.1), None);
    // every repeats the window.
    let w = window("{hang: true, after: 1s, duration: 1s, every: 5s}");
    let inside: Vec<bool> = [0, 1000, 1999, 2000, 6000, 6999, 7000]
        .into_iter()
        .map(|t| w.in_window(ms(t)))
        .collect();
    assert_eq!(inside, vec![false, true, true, false, true, true, false]);
}

// ---- policy in planning ----

#[test]
fn namespace_policy() {
    let pairs = [
        ("kill.nri-chaos.io/pod", "{}"),
        ("freeze.nri-chaos.io", "{duration: 1s}"),
        ("kil.nri-chaos.io", "{}"),
    ];
    let p = plan_with(&pairs, "kube-system", false, None, &Policy::default());
    assert!(p.faults.is_empty());
    assert_eq!(p.rejections.len(), 3);
    let denied = p
        .rejections
        .iter()
        .find(|r| r.key == "kill.nri-chaos.io/pod")
        .unwrap();
    assert_eq!(
        denied.reason,
        "namespace \"kube-system\" is denied by policy (deny = [\"kube-system\"])"
    );
    let policy =
        Policy::from_toml_str("[namespaces]\nallow = [\"team-*\"]\ndeny = [\"team-prod?\"]")
            .unwrap();
    let run = |ns: &str| plan_with(&pairs[..1], ns, false, None, &policy);
    assert_eq!(run("team-a").faults.len(), 1);
    assert_eq!(run("kube-system").faults.len(), 1 - 1);
    assert!(run("default").rejections[0]
        .reason
        .contains("namespace \"default\" is not allowed by policy (allow = [\"team-*\"])"));
    assert!(run("team-prod1").rejections[0]
        .reason
        .contains("is denied by policy"));
    assert_eq!(run("team-prod").faults.len(), 1);
}

#[test]
fn allowed_faults_and_max_duration() {
    let policy =
        Policy::from_toml_str("allowed_faults = [\"kill\", \"freeze\"]\nmax_duration = \"1m\"")
            .unwrap();
    let run = |pairs: &[(&str, &str)]| plan_with(pairs, "default", false, Some(GI), &policy);
    assert_eq!(run(&[("kill.nri-chaos.io", "{}")]).faults.len(), 1);
    let p = run(&[("stress.nri-chaos.io", "{duration: 1s, cpu: {}}")]);
    assert_eq!(
        p.rejections[0].reason,
        "fault kind \"stress\" is not allowed by policy (allowed_faults = [\"kill\", \"freeze\"])"
    );
    assert_eq!(
        run(&[("freeze.nri-chaos.io", "{duration: 1m}")])
            .faults
            .len(),
        1
    );
    let p = run(&[("freeze.nri-chaos.io", "{duration: 61s}")]);
    assert_eq!(
        p.rejections[0].reason,
        "duration 1m1s exceeds the policy maximum (max_duration = \"1m\")"
    );
}

#[test]
fn plan_renders_compactly() {
    let p = plan(&[
        (
            "kill.nri-chaos.io/container.app",
            "{after: 2s, signal: SIGTERM}",
        ),
        (
            "freeze.nri-chaos.io/pod",
            "{duration: 20s, every: 1m, jitter: 5s, probability: 50%}",
        ),
        (
            "netem.nri-chaos.io/pod",
            "{delay: 100ms, loss: 1%, rate: 1mbit}",
        ),
        (
            "stress.nri-chaos.io/pod",
            "{duration: 1m, cpu: {workers: 2, load: 80}, memory: {size: 256Mi}}",
        ),
        ("kil.nri-chaos.io", "{}"),
    ]);
    assert_eq!(
        p.to_string(),
        "kill(signal=SIGTERM; after=2s count=1) \
         freeze(cgroup; after=0s duration=20s every=1m count=unlimited jitter=5s probability=50%) \
         netem(delay=100ms loss=1% rate=1Mbit; after=0s count=1) \
         stress(cpu=2x80% memory=1x256Mi; after=0s duration=1m count=1); \
         rejected: [kil.nri-chaos.io: unknown fault kind \"kil\" (known: kill, freeze, netem, stress, oom, start, exec, partition, bandwidth)]"
    );
}

#[test]
fn planning_is_fast() {
    // A realistic pod: many foreign annotations, a few of ours.
    let mut pairs: Vec<(String, String)> = (0..50)
        .map(|i| (format!("example.com/annotation-{i}"), "x".repeat(100)))
        .collect();
    pairs.push((
        "kill.nri-chaos.io/container.app".into(),
        "{after: 2s, signal: SIGTERM}".into(),
    ));
    pairs.push((
        "netem.nri-chaos.io/pod".into(),
        "{delay: 100ms, loss: 1%}".into(),
    ));
    let ann: HashMap<String, String> = pairs.into_iter().collect();
    let pod = PodRef {
        namespace: "default",
        name: "p",
        uid: "u",
        annotations: &ann,
        host_network: false,
    };
    let policy = Policy::default();
    let start = std::time::Instant::now();
    for _ in 0..1000 {
        let p = plan_container(&pod, "app", Some(GI), &policy);
        assert_eq!(p.faults.len(), 2);
    }
    // Generous bound for unoptimised test builds on a busy machine: < 1 ms per plan.
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "{:?}",
        start.elapsed()
    );
}

// ---- the field tables (`ctl explain`) ----

#[test]
fn every_example_parses_and_uses_only_listed_fields() {
    for kind in FaultKind::ALL {
        let table = KindFields::of(kind);
        let request = FaultRequest::parse(kind, "k", table.example)
            .unwrap_or_else(|e| panic!("{kind} example {}: {e}", table.example));
        assert_eq!(request.kind, kind);
        let fields = crate::fields::parse_value(table.example).unwrap();
        for (name, _) in fields {
            assert!(
                table
                    .own
                    .iter()
                    .chain(&table.timing)
                    .any(|f| f.name == name),
                "{kind}: example field {name} is not in the table"
            );
        }
    }
}

#[test]
fn the_tables_are_what_the_grammar_accepts() {
    // Every listed field is accepted (the error, if any, is about its value or a
    // combination, never "unknown field"), and a field outside the table is refused with
    // the table's names.
    for kind in FaultKind::ALL {
        let table = KindFields::of(kind);
        for field in table.own.iter().chain(&table.timing) {
            let value = format!("{{{}: x}}", field.name);
            if let Err(e) = FaultRequest::parse(kind, "k", &value) {
                assert!(
                    !e.to_string().contains("unknown field"),
                    "{kind}.{}: {e}",
                    field.name
                );
            }
        }
        let err = FaultRequest::parse(kind, "k", "{nope: 1}")
            .unwrap_err()
            .to_string();
        for field in table.own.iter().chain(&table.timing) {
            assert!(err.contains(field.name), "{kind}: {err}");
        }
    }
    assert!(KindFields::of(FaultKind::Freeze).duration_required);
    assert!(!KindFields::of(FaultKind::Kill)
        .timing
        .iter()
        .any(|f| f.name == "duration"));
}

#[test]
fn each_rejection_carries_the_class_it_was_made_in() {
    let policy = Policy::from_toml_str("max_duration = \"1m\"").expect("policy");
    let p = plan_with(
        &[
            ("kill.nri-chaos.io/container.app", "{after: policy}"),
            ("freeze.nri-chaos.io", "{duration: 1h}"),
            ("zap.nri-chaos.io", "{}"),
        ],
        "default",
        false,
        Some(GI),
        &policy,
    );
    let classes: Vec<(&str, RejectionClass)> = p
        .rejections
        .iter()
        .map(|r| (r.key.as_str(), r.class))
        .collect();
    assert_eq!(
        classes,
        vec![
            ("freeze.nri-chaos.io", RejectionClass::Policy),
            ("kill.nri-chaos.io/container.app", RejectionClass::Parse),
            ("zap.nri-chaos.io", RejectionClass::Parse),
        ]
    );
    let denied = plan_with(
        &[("kill.nri-chaos.io", "{}")],
        "kube-system",
        false,
        None,
        &Policy::default(),
    );
    assert_eq!(denied.rejections[0].class, RejectionClass::Policy);
}
