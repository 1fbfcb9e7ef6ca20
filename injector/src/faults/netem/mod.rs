//! `netem`: shape the pod's network with a netem qdisc, installed by netlink inside the pod's
//! network namespace. Pod scoped: the namespace is shared by every container of the pod.
//!
//! ```yaml
//! netem.nri-chaos.io/pod: "{delay: 100ms, jitter: 10ms, loss: 1%, duration: 5m}"
//! ```
//!
//! | field | meaning |
//! |---|---|
//! | `delay` | added latency (`100ms`) |
//! | `jitter` | netem delay jitter (`10ms`); needs `delay` |
//! | `correlation` | correlation of each random parameter with the previous packet (`25%`) |
//! | `loss` | packet loss probability (`1%` or `0.01`) |
//! | `duplicate` | packet duplication probability |
//! | `corrupt` | packet corruption probability |
//! | `reorder` | probability a packet is sent immediately, the rest being delayed; needs `delay` |
//! | `rate` | bandwidth limit, `tc` style (`1mbit`, `100kbit`, `1mbps` = bytes) |
//! | `limit` | queue limit in packets (1 to 4294967295) |
//! | `interface` | interface inside the pod netns; default every non-loopback interface |
//! | `to` | only towards these peers ([`crate::faults::net::target`]); default all traffic |
//! | `direction` | with `to`: `egress` (default), `ingress` (through an ifb device) or `both` |
//!
//! Without `to`, netem is the root qdisc of each interface, as below. With `to`, it is the
//! qdisc of a band of the shared tree of [`crate::faults::net`] that u32 filters send the
//! targets' packets to ([`TargetedNetem`]).
//!
//! At least one of `delay`, `loss`, `duplicate`, `corrupt`, `reorder`, `rate` is required.
//!
//! **Note:** for `netem`, `jitter` is the netem delay jitter, not the schedule jitter; schedule
//! jitter is not available for `netem`. The other timing fields (`after`, `duration`, `every`,
//! `count`, `probability`) apply. Without `duration`, the qdisc stays until the pod stops.
//! netem on a `hostNetwork` pod is refused unless the admin policy sets
//! `allow_netem_host_network` (it would shape the node's own network).
//!
//! Execution (`apply.rs`, over the [`crate::seams::netlink::Netlink`] seam): the
//! target interfaces and their root qdiscs are read first, a foreign root qdisc is saved (its
//! options byte for byte), that recovery is journaled, and only then is netem installed as
//! the root qdisc of each. If an install fails halfway, the interfaces already shaped are put
//! back; if that fails too, the entry stays journaled and the error says so. The recovery
//! puts the saved qdisc back (or deletes ours so the kernel default returns) on each
//! interface whose root is still ours, tries every interface, and reports every failure.

use std::fmt;
use std::time::Duration;

use crate::faults::net::target::{describe, read_direction, read_targets};
use crate::faults::net::{Direction, Target};
use crate::fields::{FieldError, FieldSpec, FieldType, Fields};
use crate::units::{format_duration, format_rate};

/// Longest Linux interface name (IFNAMSIZ - 1).
const MAX_IFNAME: usize = 15;

/// Parameters of a `netem` fault. Probabilities are fractions in 0..=1.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NetemFault {
    /// Added latency.
    pub delay: Option<Duration>,
    /// Delay jitter (needs `delay`).
    pub jitter: Option<Duration>,
    /// Correlation applied to each random parameter.
    pub correlation: Option<f64>,
    /// Loss probability.
    pub loss: Option<f64>,
    /// Duplication probability.
    pub duplicate: Option<f64>,
    /// Corruption probability.
    pub corrupt: Option<f64>,
    /// Reordering probability (needs `delay`).
    pub reorder: Option<f64>,
    /// Rate limit in bytes per second.
    pub rate_bytes_per_sec: Option<u64>,
    /// Queue limit in packets.
    pub limit: Option<u32>,
    /// Interface in the pod netns; `None` = every non-loopback interface.
    pub interface: Option<String>,
    /// Only towards these peers; `None` = all traffic.
    pub to: Option<Vec<Target>>,
    /// Which way (with `to`).
    pub direction: Direction,
}

pub(crate) fn interface(fields: &mut Fields) -> Result<Option<String>, FieldError> {
    let Some(name) = fields.text("interface")? else {
        return Ok(None);
    };
    let ok = !name.is_empty()
        && name.len() <= MAX_IFNAME
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'/' && b != b':');
    if ok {
        Ok(Some(name))
    } else {
        Err(FieldError::Invalid {
            field: fields.name("interface"),
            text: name,
            reason: format!(
                "is not an interface name (1 to {MAX_IFNAME} visible ASCII characters, no '/' or ':')"
            ),
        })
    }
}

impl NetemFault {
    /// The fields `netem` accepts besides the timing fields (`jitter` is listed among them:
    /// for netem it is the delay jitter).
    pub const FIELDS: &'static [FieldSpec] = &[
        FieldSpec::new("delay", FieldType::Duration, "-", "added latency"),
        FieldSpec::new(
            "jitter",
            FieldType::Duration,
            "-",
            "netem delay jitter (not the schedule jitter); needs delay",
        ),
        FieldSpec::new(
            "correlation",
            FieldType::Probability,
            "-",
            "correlation of each random parameter with the previous packet",
        ),
        FieldSpec::new("loss", FieldType::Probability, "-", "packet loss"),
        FieldSpec::new(
            "duplicate",
            FieldType::Probability,
            "-",
            "packet duplication",
        ),
        FieldSpec::new("corrupt", FieldType::Probability, "-", "packet corruption"),
        FieldSpec::new(
            "reorder",
            FieldType::Probability,
            "-",
            "share of packets sent at once, the rest delayed; needs delay",
        ),
        FieldSpec::new("rate", FieldType::Rate, "-", "bandwidth limit"),
        FieldSpec::new(
            "limit",
            FieldType::Integer {
                min: 1,
                max: u32::MAX as u64,
            },
            "netem's own (1000)",
            "queue limit in packets",
        ),
        FieldSpec::new(
            "interface",
            FieldType::Interface,
            "every non-loopback interface",
            "interface inside the pod's network namespace",
        ),
        FieldSpec::new(
            "to",
            FieldType::Targets,
            "all traffic",
            "only towards these peers",
        ),
        FieldSpec::new(
            "direction",
            FieldType::Direction,
            "egress",
            "with to: egress (what the pod sends), ingress (what it receives, through an ifb device) or both",
        ),
    ];
    /// An example value (`ctl explain`; a unit test parses it).
    pub const EXAMPLE: &'static str = "{delay: 100ms, jitter: 10ms, loss: 1%, duration: 5m}";

    /// Reads the `netem` fields.
    pub(crate) fn from_fields(fields: &mut Fields) -> Result<Self, FieldError> {
        let rate_bytes_per_sec = fields.rate("rate")?;
        if rate_bytes_per_sec == Some(0) {
            return Err(FieldError::Refused(
                "rate: below 8bit (one byte per second); write a larger rate such as 100kbit"
                    .to_string(),
            ));
        }
        let fault = NetemFault {
            delay: fields.duration("delay")?,
            jitter: fields.duration("jitter")?,
            correlation: fields.probability("correlation")?,
            loss: fields.probability("loss")?,
            duplicate: fields.probability("duplicate")?,
            corrupt: fields.probability("corrupt")?,
            reorder: fields.probability("reorder")?,
            rate_bytes_per_sec,
            limit: fields
                .integer("limit", 1, u64::from(u32::MAX))?
                .and_then(|l| u32::try_from(l).ok()),
            interface: interface(fields)?,
            to: read_targets(fields)?,
            direction: Direction::Egress,
        };
        let direction_given = fields.has("direction");
        let direction = read_direction(fields, Direction::Egress)?;
        let fault = NetemFault { direction, ..fault };
        if direction_given && fault.to.is_none() {
            return Err(FieldError::Refused(
                "direction needs to: [targets] (without to, netem shapes what the pod sends)"
                    .to_string(),
            ));
        }
        if fault.delay.is_none()
            && fault.loss.is_none()
            && fault.duplicate.is_none()
            && fault.corrupt.is_none()
            && fault.reorder.is_none()
            && fault.rate_bytes_per_sec.is_none()
        {
            return Err(FieldError::Refused(
                "netem needs at least one of: delay, loss, duplicate, corrupt, reorder, rate"
                    .to_string(),
            ));
        }
        if fault.jitter.is_some() && fault.delay.is_none() {
            return Err(FieldError::Refused(
                "jitter needs delay (for netem, jitter is the delay jitter)".to_string(),
            ));
        }
        if fault.reorder.is_some() && fault.delay.is_none() {
            return Err(FieldError::Refused(
                "reorder needs delay (as in tc: reordered packets skip the delay)".to_string(),
            ));
        }
        Ok(fault)
    }
}

impl fmt::Display for NetemFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts: Vec<String> = Vec::new();
        if let Some(d) = self.delay {
            parts.push(format!("delay={}", format_duration(d)));
        }
        if let Some(j) = self.jitter {
            parts.push(format!("jitter={}", format_duration(j)));
        }
        let pct = |name: &str, v: Option<f64>, parts: &mut Vec<String>| {
            if let Some(v) = v {
                parts.push(format!("{name}={}%", v * 100.0));
            }
        };
        pct("correlation", self.correlation, &mut parts);
        pct("loss", self.loss, &mut parts);
        pct("duplicate", self.duplicate, &mut parts);
        pct("corrupt", self.corrupt, &mut parts);
        pct("reorder", self.reorder, &mut parts);
        if let Some(r) = self.rate_bytes_per_sec {
            parts.push(format!("rate={}", format_rate(r)));
        }
        if let Some(l) = self.limit {
            parts.push(format!("limit={l}"));
        }
        if let Some(i) = &self.interface {
            parts.push(format!("interface={i}"));
        }
        if let Some(to) = &self.to {
            parts.push(describe(to, self.direction));
        }
        f.write_str(&parts.join(" "))
    }
}

mod apply;
mod targeted;
#[cfg(test)]
mod tests;

pub use apply::{NetemError, NetemUndo};
pub use targeted::TargetedNetem;
