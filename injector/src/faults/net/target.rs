//! The `to` and `direction` fields of the network faults: which peers a fault acts on, and
//! which way.
//!
//! A target is an IPv4 or IPv6 address or CIDR, optionally followed by `:port` or
//! `:low-high`, optionally followed by `/tcp` or `/udp`; an IPv6 address with a port goes in
//! brackets (`[fd00::1]:80`, `[fd00::/64]:8000-8080/tcp`).

use std::fmt;
use std::net::IpAddr;

use crate::fields::{FieldError, Fields};

/// A transport protocol of a target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Proto {
    /// TCP (IP protocol 6).
    Tcp,
    /// UDP (IP protocol 17).
    Udp,
}

impl Proto {
    /// Its IP protocol number.
    pub fn number(self) -> u8 {
        match self {
            Proto::Tcp => 6,
            Proto::Udp => 17,
        }
    }
}

/// One peer (or set of peers) a network fault acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target {
    /// The network address (host bits are zero).
    pub addr: IpAddr,
    /// Its prefix length (32 or 128 for one address).
    pub prefix: u8,
    /// A port range, both ends included.
    pub ports: Option<(u16, u16)>,
    /// The protocol; a port without one means both TCP and UDP.
    pub proto: Option<Proto>,
}

/// Which traffic of the pod a network fault acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Direction {
    /// What the pod sends (to the targets).
    #[default]
    Egress,
    /// What the pod receives (from the targets).
    Ingress,
    /// Both.
    Both,
}

impl Direction {
    /// Includes egress.
    pub fn egress(self) -> bool {
        matches!(self, Direction::Egress | Direction::Both)
    }

    /// Includes ingress.
    pub fn ingress(self) -> bool {
        matches!(self, Direction::Ingress | Direction::Both)
    }

    fn as_str(self) -> &'static str {
        match self {
            Direction::Egress => "egress",
            Direction::Ingress => "ingress",
            Direction::Both => "both",
        }
    }
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

fn parse_port(text: &str) -> Result<u16, String> {
    match text.parse::<u16>() {
        Ok(0) => Err("port 0 is not a port (1 to 65535)".into()),
        Ok(port) => Ok(port),
        Err(_) => Err(format!("'{text}' is not a port (1 to 65535)")),
    }
}

fn parse_ports(text: &str) -> Result<(u16, u16), String> {
    let (low, high) = match text.split_once('-') {
        Some((low, high)) => (parse_port(low)?, parse_port(high)?),
        None => {
            let port = parse_port(text)?;
            (port, port)
        }
    };
    if low > high {
        return Err(format!("port range {low}-{high} runs backwards"));
    }
    Ok((low, high))
}

fn parse_net(text: &str) -> Result<(IpAddr, u8), String> {
    let (addr, prefix) = match text.split_once('/') {
        Some((addr, prefix)) => (addr, Some(prefix)),
        None => (text, None),
    };
    let addr: IpAddr = addr
        .parse()
        .map_err(|_| format!("'{addr}' is not an IPv4 or IPv6 address"))?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let prefix = match prefix {
        None => max,
        Some(p) => match p.parse::<u8>() {
            Ok(p) if p <= max => p,
            _ => return Err(format!("prefix '/{p}' is not 0 to {max}")),
        },
    };
    let bits = match addr {
        IpAddr::V4(a) => u128::from(u32::from(a)) << 96,
        IpAddr::V6(a) => u128::from(a),
    };
    let host = u128::MAX.checked_shr(u32::from(prefix)).unwrap_or(0);
    if bits & host != 0 {
        return Err(format!(
            "host bits set in {addr}/{prefix} (write the network address)"
        ));
    }
    Ok((addr, prefix))
}

impl Target {
    /// Parses one target (see the module doc); the error says why, without the value.
    pub fn parse(text: &str) -> Result<Target, String> {
        let text = text.trim();
        let lower = text.to_ascii_lowercase();
        let (rest, proto) = if let Some(rest) = lower.strip_suffix("/tcp") {
            (&text[..rest.len()], Some(Proto::Tcp))
        } else if let Some(rest) = lower.strip_suffix("/udp") {
            (&text[..rest.len()], Some(Proto::Udp))
        } else {
            (text, None)
        };
        if let Some((_, suffix)) = rest.rsplit_once('/') {
            if suffix.starts_with(|c: char| c.is_ascii_alphabetic()) {
                return Err(format!("protocol '{suffix}' is not tcp or udp"));
            }
        }
        let (net, ports) = if let Some(inner) = rest.strip_prefix('[') {
            let (inner, after) = inner
                .split_once(']')
                .ok_or("'[' without its ']' (write [fd00::1]:80)")?;
            let ports = match after {
                "" => None,
                _ => Some(after.strip_prefix(':').ok_or_else(|| {
                    format!("'{after}' after ']' (expected ':port' or ':low-high')")
                })?),
            };
            (inner, ports)
        } else if rest.matches(':').count() == 1 {
            let (net, ports) = rest.split_once(':').unwrap_or((rest, ""));
            (net, Some(ports))
        } else {
            (rest, None)
        };
        let (addr, prefix) = parse_net(net)?;
        if addr.is_ipv4() && rest.starts_with('[') {
            return Err("brackets are for IPv6 addresses only".into());
        }
        let ports = ports.map(parse_ports).transpose()?;
        Ok(Target {
            addr,
            prefix,
            ports,
            proto,
        })
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let net = format!("{}/{}", self.addr, self.prefix);
        match (self.ports, self.addr.is_ipv6()) {
            (None, _) => f.write_str(&net)?,
            (Some(_), true) => write!(f, "[{net}]")?,
            (Some(_), false) => f.write_str(&net)?,
        }
        match self.ports {
            Some((low, high)) if low == high => write!(f, ":{low}")?,
            Some((low, high)) => write!(f, ":{low}-{high}")?,
            None => {}
        }
        match self.proto {
            Some(Proto::Tcp) => f.write_str("/tcp"),
            Some(Proto::Udp) => f.write_str("/udp"),
            None => Ok(()),
        }
    }
}

/// Reads `to`: `None` when absent; an empty list is refused.
pub(crate) fn read_targets(fields: &mut Fields) -> Result<Option<Vec<Target>>, FieldError> {
    let Some(items) = fields.list("to")? else {
        return Ok(None);
    };
    if items.is_empty() {
        return Err(FieldError::Invalid {
            field: fields.name("to"),
            text: "[]".into(),
            reason: "lists no target (leave `to` out to act on all traffic)".into(),
        });
    }
    let mut targets = Vec::with_capacity(items.len());
    for (i, item) in items.into_iter().enumerate() {
        match Target::parse(&item) {
            Ok(target) => targets.push(target),
            Err(reason) => {
                return Err(FieldError::Invalid {
                    field: format!("{}[{i}]", fields.name("to")),
                    text: item,
                    reason: format!("is not a target: {reason}"),
                })
            }
        }
    }
    Ok(Some(targets))
}

/// Reads `direction`, `default` when absent.
pub(crate) fn read_direction(
    fields: &mut Fields,
    default: Direction,
) -> Result<Direction, FieldError> {
    let Some(text) = fields.text("direction")? else {
        return Ok(default);
    };
    match text.to_ascii_lowercase().as_str() {
        "egress" => Ok(Direction::Egress),
        "ingress" => Ok(Direction::Ingress),
        "both" => Ok(Direction::Both),
        _ => Err(FieldError::Invalid {
            field: fields.name("direction"),
            text,
            reason: "is not a direction (egress, ingress or both)".into(),
        }),
    }
}

/// `to` and `direction` for messages: `to=[a,b] direction=both`.
pub(crate) fn describe(targets: &[Target], direction: Direction) -> String {
    let list: Vec<String> = targets.iter().map(Target::to_string).collect();
    format!("to=[{}] direction={direction}", list.join(","))
}
