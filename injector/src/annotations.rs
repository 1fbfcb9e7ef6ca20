//! Annotation keys: which fault a key asks for, and for which containers.
//!
//! A pod asks for a fault with an annotation on the pod. The key names the fault kind, the
//! annotation domain (default `nri-chaos.io`, configurable in the admin policy) and the scope:
//!
//! | key | applies to |
//! |---|---|
//! | `kill.nri-chaos.io/container.app` | the container named `app` only |
//! | `kill.nri-chaos.io/pod` | every container of the pod |
//! | `kill.nri-chaos.io` | every container of the pod |
//!
//! For each fault kind, the most specific key wins: `container.<name>` beats `pod` beats the bare
//! key, so each container gets at most one request per fault kind. A winning key whose value is
//! invalid is rejected; it does not fall back to a less specific key.
//!
//! Fault kinds are `kill`, `freeze`, `netem`, `stress`, `oom`, `start` and `exec`. A key in our
//! domain with an unknown fault kind (`kil.nri-chaos.io`) or an unknown scope
//! (`kill.nri-chaos.io/contianer.app`) is rejected with a reason; keys of any other domain are
//! ignored.

use std::fmt;
use std::str::FromStr;

/// The kinds of fault nri-chaos can inject.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FaultKind {
    /// Send a signal to the container's init process.
    Kill,
    /// Freeze the container's cgroup for a while.
    Freeze,
    /// Shape the pod's network with a netem qdisc (pod scoped: the netns is shared).
    Netem,
    /// Run CPU and/or memory stressors inside the container's cgroup.
    Stress,
    /// Raise the container's OOM score and/or provoke a genuine OOM kill.
    Oom,
    /// Delay or fail the container start (OCI hook).
    Start,
    /// Fail or delay exec processes (probes, `kubectl exec`) through the shim.
    Exec,
    /// Drop what the pod exchanges with chosen peers (pod scoped).
    Partition,
    /// Limit the rate towards chosen peers (pod scoped).
    Bandwidth,
}

impl FaultKind {
    /// Every fault kind, in a stable order.
    pub const ALL: [FaultKind; 9] = [
        FaultKind::Kill,
        FaultKind::Freeze,
        FaultKind::Netem,
        FaultKind::Stress,
        FaultKind::Oom,
        FaultKind::Start,
        FaultKind::Exec,
        FaultKind::Partition,
        FaultKind::Bandwidth,
    ];

    /// The name used in annotation keys and in the policy (`kill`, `freeze`, ...).
    pub const fn as_str(self) -> &'static str {
        match self {
            FaultKind::Kill => "kill",
            FaultKind::Freeze => "freeze",
            FaultKind::Netem => "netem",
            FaultKind::Stress => "stress",
            FaultKind::Oom => "oom",
            FaultKind::Start => "start",
            FaultKind::Exec => "exec",
            FaultKind::Partition => "partition",
            FaultKind::Bandwidth => "bandwidth",
        }
    }

    /// Whether the fault acts on the whole pod (netem: the network namespace is the pod's);
    /// it is armed once per pod, and its natural key is `<kind>.<domain>/pod`.
    pub const fn is_pod_scoped(self) -> bool {
        matches!(
            self,
            FaultKind::Netem | FaultKind::Partition | FaultKind::Bandwidth
        )
    }

    /// The names of every kind, comma separated, for messages.
    pub fn all_names() -> String {
        let names: Vec<&str> = FaultKind::ALL.iter().map(|k| k.as_str()).collect();
        names.join(", ")
    }
}

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Error of [`FaultKind::from_str`]: the text is not a fault kind.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown fault kind {} (known: {})", quote(.0), FaultKind::all_names())]
pub struct UnknownFaultKind(pub String);

impl FromStr for FaultKind {
    type Err = UnknownFaultKind;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        FaultKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| UnknownFaultKind(s.to_string()))
    }
}

/// Why an annotation was rejected, in three classes (the `reason` label of the rejection
/// metric, the `class` of `ctl list`). Set where the rejection is made, never guessed from
/// its text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RejectionClass {
    /// The key or value does not parse.
    Parse,
    /// The admin policy refused it.
    Policy,
    /// Valid, but this node does not execute it (the fault kind, or the OCI hook it needs).
    Unsupported,
}

impl RejectionClass {
    /// Every class, for metrics families that list zeroes.
    pub const ALL: [RejectionClass; 3] = [
        RejectionClass::Parse,
        RejectionClass::Policy,
        RejectionClass::Unsupported,
    ];

    /// Lower-case name.
    pub const fn as_str(self) -> &'static str {
        match self {
            RejectionClass::Parse => "parse",
            RejectionClass::Policy => "policy",
            RejectionClass::Unsupported => "unsupported",
        }
    }
}

/// An annotation that was not turned into a fault, and why.
///
/// Displays as `annotation <key>: "<value>": <reason>`, for example
/// `annotation kill.nri-chaos.io/container.app: "{after: 2x}": after: "2x" is not a duration
/// (examples: 250ms, 30s, 1h30m)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// The annotation key, exactly as written.
    pub key: String,
    /// The annotation value, exactly as written; one longer than [`MAX_REJECTED_VALUE_BYTES`]
    /// is kept cut there (with `… (N bytes)`), so rejected values held for `ctl list`, the
    /// events and the logs stay small whatever a pod sends.
    pub value: String,
    /// Why it was rejected; names the field and the offending text.
    pub reason: String,
    /// The class of the reason.
    pub class: RejectionClass,
}

/// Longest rejected value a [`Rejection`] keeps, in bytes.
pub const MAX_REJECTED_VALUE_BYTES: usize = 1024;

impl Rejection {
    /// A rejection of class `class`; a value over [`MAX_REJECTED_VALUE_BYTES`] is cut.
    pub fn new(
        class: RejectionClass,
        key: impl Into<String>,
        value: impl Into<String>,
        reason: impl Into<String>,
    ) -> Self {
        let mut value = value.into();
        if value.len() > MAX_REJECTED_VALUE_BYTES {
            let total = value.len();
            value.truncate(value.floor_char_boundary(MAX_REJECTED_VALUE_BYTES));
            value.push_str(&format!("… ({total} bytes)"));
        }
        Rejection {
            key: key.into(),
            value,
            reason: reason.into(),
            class,
        }
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&rejection_text(&self.key, &self.value, &self.reason))
    }
}

/// How a rejected annotation is worded: `annotation <key>: "<value>": <reason>` (the value
/// quoted and cut), for the plugin's logs and `nri-chaos validate` alike.
pub fn rejection_text(key: &str, value: &str, reason: &str) -> String {
    format!("annotation {key}: {}: {reason}", Quoted(value, 200))
}

impl std::error::Error for Rejection {}

/// Text shown in double quotes with escapes, cut at `max` characters (`…` marks the cut), so a
/// huge or hostile value never floods a log line.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Quoted<'a>(pub &'a str, pub usize);

impl fmt::Display for Quoted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.char_indices().nth(self.1) {
            Some((cut, _)) => write!(f, "{:?}…", &self.0[..cut]),
            None => write!(f, "{:?}", self.0),
        }
    }
}

/// Quotes offending text for a reason (at most 64 characters).
pub(crate) fn quote(text: &str) -> String {
    Quoted(text, 64).to_string()
}

/// How specific a key is; higher wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Scope {
    /// `<fault>.<domain>`
    Bare,
    /// `<fault>.<domain>/pod`
    Pod,
    /// `<fault>.<domain>/container.<name>`
    Container,
}

/// What one annotation key means for one container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum KeyMatch {
    /// Not our domain: ignore.
    Foreign,
    /// Our domain, for another container: ignore.
    OtherContainer,
    /// Our domain, applies to this container.
    Applies(FaultKind, Scope),
    /// Our domain, but malformed: the reason.
    Invalid(String),
}

/// The container a well-formed `<fault>.<domain>/container.<name>` key names, if `key` is one
/// (`nri-chaos validate` warns when the pod has no such container).
pub fn named_container<'k>(key: &'k str, domain: &str) -> Option<&'k str> {
    let (prefix, suffix) = key.split_once('/')?;
    let fault = prefix.strip_suffix(domain)?.strip_suffix('.')?;
    FaultKind::from_str(fault).ok()?;
    suffix
        .strip_prefix("container.")
        .filter(|name| !name.is_empty())
}

/// Classifies `key` for the container `container` under annotation `domain`.
pub(crate) fn classify_key(key: &str, domain: &str, container: &str) -> KeyMatch {
    let (prefix, suffix) = match key.split_once('/') {
        Some((p, s)) => (p, Some(s)),
        None => (key, None),
    };
    let fault = if prefix == domain {
        ""
    } else {
        match prefix
            .strip_suffix(domain)
            .and_then(|p| p.strip_suffix('.'))
        {
            Some(f) => f,
            None => return KeyMatch::Foreign,
        }
    };
    if fault.is_empty() {
        return KeyMatch::Invalid(format!(
            "missing fault kind: write <fault>.{domain} with a fault among {}",
            FaultKind::all_names()
        ));
    }
    let kind = match FaultKind::from_str(fault) {
        Ok(k) => k,
        Err(e) => return KeyMatch::Invalid(e.to_string()),
    };
    match suffix {
        None => KeyMatch::Applies(kind, Scope::Bare),
        Some("pod") => KeyMatch::Applies(kind, Scope::Pod),
        Some(s) => match s.strip_prefix("container.") {
            Some("") => KeyMatch::Invalid(
                "missing container name after \"container.\" (expected \"container.<name>\")"
                    .to_string(),
            ),
            Some(name) if name == container => KeyMatch::Applies(kind, Scope::Container),
            Some(_) => KeyMatch::OtherContainer,
            None => KeyMatch::Invalid(format!(
                "unknown key suffix {} (expected \"container.<name>\" or \"pod\")",
                quote(s)
            )),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "nri-chaos.io";

    #[test]
    fn named_container_of_a_key() {
        assert_eq!(
            named_container("kill.nri-chaos.io/container.app", D),
            Some("app")
        );
        assert_eq!(named_container("kill.nri-chaos.io/pod", D), None);
        assert_eq!(named_container("kill.nri-chaos.io", D), None);
        assert_eq!(named_container("kil.nri-chaos.io/container.app", D), None);
        assert_eq!(named_container("kill.example.com/container.app", D), None);
        assert_eq!(named_container("kill.nri-chaos.io/container.", D), None);
    }

    #[test]
    fn kinds_round_trip() {
        for k in FaultKind::ALL {
            assert_eq!(k.as_str().parse::<FaultKind>(), Ok(k));
            assert_eq!(k.to_string(), k.as_str());
        }
        let err = "kil".parse::<FaultKind>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown fault kind \"kil\" (known: kill, freeze, netem, stress, oom, start, exec, partition, bandwidth)"
        );
        assert!("Kill".parse::<FaultKind>().is_err());
    }

    #[test]
    fn key_scopes() {
        use KeyMatch::*;
        assert_eq!(
            classify_key("kill.nri-chaos.io", D, "app"),
            Applies(FaultKind::Kill, Scope::Bare)
        );
        assert_eq!(
            classify_key("freeze.nri-chaos.io/pod", D, "app"),
            Applies(FaultKind::Freeze, Scope::Pod)
        );
        assert_eq!(
            classify_key("netem.nri-chaos.io/container.app", D, "app"),
            Applies(FaultKind::Netem, Scope::Container)
        );
        assert_eq!(
            classify_key("netem.nri-chaos.io/container.db", D, "app"),
            OtherContainer
        );
        assert_eq!(classify_key("kill.example.com/pod", D, "app"), Foreign);
        assert_eq!(classify_key("kubernetes.io/config.seen", D, "app"), Foreign);
        assert_eq!(classify_key("nri-chaos.io.evil.com/pod", D, "app"), Foreign);
        assert_eq!(classify_key("killnri-chaos.io", D, "app"), Foreign);
        assert_eq!(classify_key("", D, "app"), Foreign);
        assert_eq!(
            classify_key("kill.chaos.example/pod", "chaos.example", "app"),
            Applies(FaultKind::Kill, Scope::Pod)
        );
    }

    #[test]
    fn malformed_keys_in_our_domain() {
        let reason = |k| match classify_key(k, D, "app") {
            KeyMatch::Invalid(r) => r,
            other => panic!("{k}: {other:?}"),
        };
        assert!(reason("kil.nri-chaos.io").contains("unknown fault kind \"kil\""));
        assert!(reason("kill.nri-chaos.io/contianer.app")
            .contains("unknown key suffix \"contianer.app\""));
        assert!(reason("kill.nri-chaos.io/container.").contains("missing container name"));
        assert!(reason("nri-chaos.io/pod").contains("missing fault kind"));
        assert!(reason(".nri-chaos.io").contains("missing fault kind"));
        assert!(reason("kill.nri-chaos.io/").contains("unknown key suffix \"\""));
        assert!(reason("kill.nri-chaos.io/Pod").contains("unknown key suffix"));
        assert!(reason("KILL.nri-chaos.io").contains("unknown fault kind"));
    }

    #[test]
    fn rejection_display_quotes_and_truncates() {
        let r = Rejection::new(
            RejectionClass::Parse,
            "kill.nri-chaos.io/container.app",
            "{after: 2x}",
            "after: \"2x\" is not a duration (examples: 250ms, 30s, 1h30m)",
        );
        assert_eq!(
            r.to_string(),
            "annotation kill.nri-chaos.io/container.app: \"{after: 2x}\": after: \"2x\" is not a duration (examples: 250ms, 30s, 1h30m)"
        );
        let long = "x".repeat(1000);
        let shown = Rejection::new(RejectionClass::Parse, "k", long, "r").to_string();
        assert!(shown.len() < 260, "{shown}");
        assert!(shown.contains('…'));
        // What is kept of a huge value is bounded too (held for ctl list and the events).
        let huge = Rejection::new(RejectionClass::Parse, "k", "é".repeat(1 << 20), "r");
        assert!(
            huge.value.len() <= MAX_REJECTED_VALUE_BYTES + 32,
            "{}",
            huge.value.len()
        );
        assert!(
            huge.value.ends_with("… (2097152 bytes)"),
            "{}",
            &huge.value[1000..]
        );
        assert_eq!(
            Rejection::new(RejectionClass::Parse, "k", "{after: 2x}", "r").value,
            "{after: 2x}"
        );
        let multi = Rejection::new(RejectionClass::Parse, "k", "a: 1\nb: 2", "r").to_string();
        assert!(multi.contains("a: 1\\nb: 2"));
    }
}
