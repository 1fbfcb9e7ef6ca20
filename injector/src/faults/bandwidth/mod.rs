//! `bandwidth`: limit what the pod sends to chosen peers to a rate, with a token bucket
//! (`tbf`) in a band of the tree of [`crate::faults::net`]; other traffic is not limited.
//!
//! ```yaml
//! bandwidth.nri-chaos.io/pod: "{rate: 1mbit, to: [10.0.5.0/24], duration: 5m}"
//! ```
//!
//! | field | meaning |
//! |---|---|
//! | `rate` | the limit, `tc` style (`1mbit`, `100kbit`, `1mbps` = bytes); required |
//! | `burst` | bucket size in bytes (default: 20 ms of `rate`, at least 16 KiB) |
//! | `limit` | queue in bytes (default: `burst` plus 50 ms of `rate`) |
//! | `to` | the peers (required; see [`crate::faults::net::target`]) |
//! | `direction` | `egress` (default), `ingress` (through an ifb device) or `both` |
//! | `interface` | interface inside the pod netns; default every non-loopback interface |

use std::fmt;

use crate::annotations::FaultKind;
use crate::faults::net::target::{describe, read_direction, read_targets};
use crate::faults::net::{Direction, NetRules, SlotSpec, Target};
use crate::faults::netem::interface;
use crate::fields::{FieldError, FieldSpec, FieldType, Fields};
use crate::seams::netlink::tc::tbf_options;
use crate::units::{format_rate, Size};

/// The smallest default burst: a few full-size frames.
const MIN_BURST: u64 = 16 * 1024;

/// Parameters of a `bandwidth` fault.
#[derive(Debug, Clone, PartialEq)]
pub struct BandwidthFault {
    /// The limit in bytes per second.
    pub rate_bytes_per_sec: u64,
    /// Bucket size in bytes.
    pub burst: u32,
    /// Queue size in bytes.
    pub limit: u32,
    /// The peers.
    pub to: Vec<Target>,
    /// Which way.
    pub direction: Direction,
    /// Interface in the pod netns; `None` = every non-loopback interface.
    pub interface: Option<String>,
}

fn bytes(fields: &mut Fields, name: &str) -> Result<Option<u32>, FieldError> {
    let max = u64::from(u32::MAX);
    let Some(size) = fields.size_at_most(name, max, "4 GiB, tbf's bound")? else {
        return Ok(None);
    };
    match size {
        Size::Bytes(b) if b > 0 => Ok(Some(u32::try_from(b).unwrap_or(u32::MAX))),
        other => Err(FieldError::Invalid {
            field: fields.name(name),
            text: other.to_string(),
            reason: "is not a byte count above zero (write 32k, 64Ki, 100000)".into(),
        }),
    }
}

impl BandwidthFault {
    /// The fields `bandwidth` accepts besides the timing fields.
    pub const FIELDS: &'static [FieldSpec] = &[
        FieldSpec::new("rate", FieldType::Rate, "required", "the rate limit"),
        FieldSpec::new(
            "burst",
            FieldType::Size,
            "20 ms of rate, at least 16Ki",
            "token bucket size in bytes",
        ),
        FieldSpec::new(
            "limit",
            FieldType::Size,
            "burst + 50 ms of rate",
            "queue size in bytes",
        ),
        FieldSpec::new("to", FieldType::Targets, "required", "the peers limited"),
        FieldSpec::new(
            "direction",
            FieldType::Direction,
            "egress",
            "egress (what the pod sends), ingress (what it receives, through an ifb device) or both",
        ),
        FieldSpec::new(
            "interface",
            FieldType::Interface,
            "every non-loopback interface",
            "interface inside the pod's network namespace",
        ),
    ];
    /// An example value (`ctl explain`; a unit test parses it).
    pub const EXAMPLE: &'static str = "{rate: 1mbit, to: [10.0.5.0/24], duration: 5m}";

    /// Reads the `bandwidth` fields.
    pub(crate) fn from_fields(fields: &mut Fields) -> Result<Self, FieldError> {
        let rate =
            match fields.rate("rate")? {
                None => {
                    return Err(FieldError::Refused(
                        "bandwidth needs rate (e.g. 1mbit)".into(),
                    ))
                }
                Some(0) => return Err(FieldError::Refused(
                    "rate: below 8bit (one byte per second); write a larger rate such as 100kbit"
                        .into(),
                )),
                Some(r) => r,
            };
        let default_burst = (rate / 50).max(MIN_BURST);
        let burst = bytes(fields, "burst")?
            .unwrap_or_else(|| u32::try_from(default_burst).unwrap_or(u32::MAX));
        let default_limit = u64::from(burst) + rate / 20;
        let limit = bytes(fields, "limit")?
            .unwrap_or_else(|| u32::try_from(default_limit).unwrap_or(u32::MAX));
        let Some(to) = read_targets(fields)? else {
            return Err(FieldError::Refused(
                "bandwidth needs to: [targets] (the peers to limit)".into(),
            ));
        };
        let direction = read_direction(fields, Direction::Egress)?;
        Ok(BandwidthFault {
            rate_bytes_per_sec: rate,
            burst,
            limit,
            to,
            direction,
            interface: interface(fields)?,
        })
    }
}

impl fmt::Display for BandwidthFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "rate={} burst={} limit={} {}",
            format_rate(self.rate_bytes_per_sec),
            self.burst,
            self.limit,
            describe(&self.to, self.direction)
        )?;
        match &self.interface {
            Some(i) => write!(f, " interface={i}"),
            None => Ok(()),
        }
    }
}

impl NetRules for BandwidthFault {
    const RULES_KIND: FaultKind = FaultKind::Bandwidth;
    const RULES_RECOVERED: &'static str = "bandwidth limit removed";

    fn slot_spec(&self) -> SlotSpec<'_> {
        let options = tbf_options(self.rate_bytes_per_sec, self.burst, self.limit);
        SlotSpec {
            qdisc: ("tbf", options),
            drop: false,
            targets: &self.to,
            direction: self.direction,
        }
    }

    fn interface(&self) -> Option<&str> {
        self.interface.as_deref()
    }
}
