//! Malformed annotation values the tests send to the plugin.

/// The billion laughs in YAML flow style, one line (the plain log prints a value as
/// written): nine levels of anchors, each a list of ten aliases of the one before.
pub fn billion_laughs() -> String {
    let mut laughs = String::from("{a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]");
    for i in 1..9 {
        let refs = vec![format!("*a{}", i - 1); 10].join(", ");
        laughs.push_str(&format!(", a{i}: &a{i} [{refs}]"));
    }
    laughs.push('}');
    laughs
}

/// A malformed annotation catalogue: bad units, huge and negative numbers, unknown fields,
/// absurd but well-formed values, deep YAML, an alias bomb, a 250 KiB value (Kubernetes caps
/// a pod's annotations at 256 KiB), on every kind.
pub fn catalogue() -> Vec<(&'static str, String)> {
    vec![
        ("kill.nri-chaos.io/container.app", "{after: 10xs}".into()),
        ("kill.nri-chaos.io/container.b", "{after: -5s}".into()),
        ("kill.nri-chaos.io/container.c", "{signal: SIGNOPE}".into()),
        (
            "kill.nri-chaos.io/container.d",
            "{count: 99999999999999999999999}".into(),
        ),
        ("kill.nri-chaos.io/container.e", "{bogus: 1}".into()),
        ("kill.nri-chaos.io/container.f", "a".repeat(250 * 1024)),
        (
            "freeze.nri-chaos.io/container.app",
            "{duration: 1ns, every: 2ns}".into(),
        ),
        ("freeze.nri-chaos.io/container.b", "{}".into()),
        (
            "stress.nri-chaos.io/container.app",
            "{memory: {size: 1Ei}, duration: 1m}".into(),
        ),
        (
            "stress.nri-chaos.io/container.b",
            "{cpu: {workers: -1}}".into(),
        ),
        (
            "stress.nri-chaos.io/container.c",
            "{cpu: {load: 250%}}".into(),
        ),
        ("netem.nri-chaos.io/pod", "[".repeat(4096)),
        ("oom.nri-chaos.io/container.app", billion_laughs()),
        ("oom.nri-chaos.io/container.b", "{score: 5000}".into()),
        ("start.nri-chaos.io/container.app", "{delay: 1e400s}".into()),
        ("exec.nri-chaos.io/container.app", "{hang: true}".into()),
        (
            "partition.nri-chaos.io/pod",
            "{to: [not-an-address]}".into(),
        ),
        ("kil.nri-chaos.io", "{}".into()),
        (
            "kill.nri-chaos.io/container.g",
            "{after: 1s, after: 2s}".into(),
        ),
        ("kill.nri-chaos.io/container.h", "!!binary aGVsbG8=".into()),
    ]
}
