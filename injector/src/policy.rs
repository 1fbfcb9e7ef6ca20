//! The admin policy: what the node operator allows pods to ask for.
//!
//! Read from TOML (`/etc/nri-chaos/config.toml`); every field is optional and unknown keys are
//! errors naming the key.
//!
//! ```toml
//! strict = false                  # true: a refused annotation fails the container start
//! domain = "nri-chaos.io"         # annotation domain
//! allowed_faults = ["kill", "freeze", "netem", "stress", "oom", "start", "exec", "partition", "bandwidth"]
//! max_duration = "10m"            # longest `duration` a fault may ask for (default: no limit)
//! allow_netem_host_network = false      # netem on hostNetwork pods shapes the node itself
//! allow_oom_kill_without_limit = false  # oom kill without memory limit exhausts the node
//! state_dir = "/run/nri-chaos"
//! control_socket = "/run/nri-chaos/control.sock"
//! metrics_address = "127.0.0.1:9464"
//! hook_path = "/usr/local/bin/nri-chaos-hook"
//!
//! [namespaces]
//! allow = ["*"]                   # globs with `*` and `?`
//! deny = ["kube-system"]          # deny wins over allow
//!
//! [stress]
//! max_cpu_workers = 4
//! max_memory = "1Gi"              # or a percentage of the container limit, "50%"
//! ```

use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use crate::annotations::{quote, FaultKind};
use crate::faults::oom::OomFault;
use crate::faults::stress::StressFault;
use crate::plan::{FaultRequest, FaultSpec};
use crate::units::{self, format_duration, Size};

/// Errors loading the admin policy.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// Not valid TOML, a wrong type, or an unknown key (the message names it).
    #[error("admin policy: {0}")]
    Toml(#[from] toml::de::Error),
    /// A value that does not make sense.
    #[error("admin policy: {field} = {}: {reason}", quote(.value))]
    Invalid {
        /// The TOML key.
        field: &'static str,
        /// The offending value.
        value: String,
        /// Why.
        reason: String,
    },
    /// The file could not be read.
    #[error("admin policy {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The error.
        source: std::io::Error,
    },
}

/// Namespace globs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamespacePolicy {
    /// Namespaces that may ask for faults (globs, default `["*"]`).
    pub allow: Vec<String>,
    /// Namespaces that may not (globs, default `["kube-system"]`); deny wins.
    pub deny: Vec<String>,
}

impl Default for NamespacePolicy {
    fn default() -> Self {
        NamespacePolicy {
            allow: vec!["*".to_string()],
            deny: vec!["kube-system".to_string()],
        }
    }
}

/// Caps on `stress`.
#[derive(Debug, Clone, PartialEq)]
pub struct StressPolicy {
    /// Most CPU workers one stress fault may run (default 4).
    pub max_cpu_workers: u32,
    /// Most memory one stress fault may hold (default: no cap beyond the container limit).
    pub max_memory: Option<Size>,
}

impl Default for StressPolicy {
    fn default() -> Self {
        StressPolicy {
            max_cpu_workers: 4,
            max_memory: None,
        }
    }
}

/// The admin policy. See the module documentation for the TOML form.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    /// Reject the container (CreateContainerError) when one of its annotations is refused.
    pub strict: bool,
    /// Annotation domain (default `nri-chaos.io`).
    pub domain: String,
    /// Namespace allow/deny globs.
    pub namespaces: NamespacePolicy,
    /// Fault kinds pods may ask for (default: all).
    pub allowed_faults: Vec<FaultKind>,
    /// Longest `duration` a fault may ask for.
    pub max_duration: Option<Duration>,
    /// Caps on `stress`.
    pub stress: StressPolicy,
    /// Allow `netem` on hostNetwork pods.
    pub allow_netem_host_network: bool,
    /// Allow `oom` `kill: true` on containers without a memory limit.
    pub allow_oom_kill_without_limit: bool,
    /// Journal / state directory (carried for the plugin).
    pub state_dir: Option<String>,
    /// Control socket path (carried for the plugin).
    pub control_socket: Option<String>,
    /// Metrics listen address (carried for the plugin).
    pub metrics_address: Option<String>,
    /// Path of the OCI hook binary (carried for the plugin).
    pub hook_path: Option<String>,
}

/// The default annotation domain.
pub const DEFAULT_DOMAIN: &str = "nri-chaos.io";

impl Default for Policy {
    fn default() -> Self {
        Policy {
            strict: false,
            domain: DEFAULT_DOMAIN.to_string(),
            namespaces: NamespacePolicy::default(),
            allowed_faults: FaultKind::ALL.to_vec(),
            max_duration: None,
            stress: StressPolicy::default(),
            allow_netem_host_network: false,
            allow_oom_kill_without_limit: false,
            state_dir: None,
            control_socket: None,
            metrics_address: None,
            hook_path: None,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    strict: Option<bool>,
    domain: Option<String>,
    namespaces: Option<RawNamespaces>,
    allowed_faults: Option<Vec<String>>,
    max_duration: Option<String>,
    stress: Option<RawStress>,
    allow_netem_host_network: Option<bool>,
    allow_oom_kill_without_limit: Option<bool>,
    state_dir: Option<String>,
    control_socket: Option<String>,
    metrics_address: Option<String>,
    hook_path: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNamespaces {
    allow: Option<Vec<String>>,
    deny: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStress {
    max_cpu_workers: Option<u32>,
    max_memory: Option<String>,
}

fn valid_domain(d: &str) -> bool {
    !d.is_empty()
        && d.len() <= 253
        && !d.starts_with(['.', '-'])
        && !d.ends_with(['.', '-'])
        && !d.contains("..")
        && d.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
}

/// Matches `text` against a glob where `*` is any run of characters and `?` any one character.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

impl Policy {
    /// Parses the policy from TOML text.
    pub fn from_toml_str(text: &str) -> Result<Policy, PolicyError> {
        let raw: RawPolicy = toml::from_str(text)?;
        let mut policy = Policy::default();
        if let Some(v) = raw.strict {
            policy.strict = v;
        }
        if let Some(d) = raw.domain {
            if !valid_domain(&d) {
                return Err(PolicyError::Invalid {
                    field: "domain",
                    value: d,
                    reason: "is not a DNS domain (lowercase letters, digits, '-' and '.')"
                        .to_string(),
                });
            }
            policy.domain = d;
        }
        if let Some(ns) = raw.namespaces {
            if let Some(allow) = ns.allow {
                policy.namespaces.allow = allow;
            }
            if let Some(deny) = ns.deny {
                policy.namespaces.deny = deny;
            }
        }
        if let Some(kinds) = raw.allowed_faults {
            let mut parsed = Vec::with_capacity(kinds.len());
            for k in kinds {
                match k.parse::<FaultKind>() {
                    Ok(kind) => parsed.push(kind),
                    Err(e) => {
                        return Err(PolicyError::Invalid {
                            field: "allowed_faults",
                            value: k,
                            reason: e.to_string(),
                        })
                    }
                }
            }
            policy.allowed_faults = parsed;
        }
        if let Some(text) = raw.max_duration {
            match units::parse_duration(&text) {
                Ok(d) if !d.is_zero() => policy.max_duration = Some(d),
                Ok(_) => {
                    return Err(PolicyError::Invalid {
                        field: "max_duration",
                        value: text,
                        reason: "is zero; omit max_duration for no limit".to_string(),
                    })
                }
                Err(e) => {
                    return Err(PolicyError::Invalid {
                        field: "max_duration",
                        value: text,
                        reason: e.to_string(),
                    })
                }
            }
        }
        if let Some(stress) = raw.stress {
            if let Some(w) = stress.max_cpu_workers {
                policy.stress.max_cpu_workers = w;
            }
            if let Some(text) = stress.max_memory {
                match units::parse_size(&text) {
                    Ok(s) => policy.stress.max_memory = Some(s),
                    Err(e) => {
                        return Err(PolicyError::Invalid {
                            field: "stress.max_memory",
                            value: text,
                            reason: e.to_string(),
                        })
                    }
                }
            }
        }
        if let Some(v) = raw.allow_netem_host_network {
            policy.allow_netem_host_network = v;
        }
        if let Some(v) = raw.allow_oom_kill_without_limit {
            policy.allow_oom_kill_without_limit = v;
        }
        policy.state_dir = raw.state_dir;
        policy.control_socket = raw.control_socket;
        policy.metrics_address = raw.metrics_address;
        policy.hook_path = raw.hook_path;
        Ok(policy)
    }

    /// Reads and parses the policy file at `path`.
    pub fn load(path: &Path) -> Result<Policy, PolicyError> {
        let text = std::fs::read_to_string(path).map_err(|source| PolicyError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Policy::from_toml_str(&text)
    }

    /// Whether pods of `namespace` may ask for faults; the refusal reason otherwise.
    pub fn check_namespace(&self, namespace: &str) -> Result<(), String> {
        if self
            .namespaces
            .deny
            .iter()
            .any(|g| glob_match(g, namespace))
        {
            return Err(format!(
                "namespace {} is denied by policy (deny = {:?})",
                quote(namespace),
                self.namespaces.deny
            ));
        }
        if !self
            .namespaces
            .allow
            .iter()
            .any(|g| glob_match(g, namespace))
        {
            return Err(format!(
                "namespace {} is not allowed by policy (allow = {:?})",
                quote(namespace),
                self.namespaces.allow
            ));
        }
        Ok(())
    }

    /// Whether fault `kind` is allowed; the refusal reason otherwise.
    pub fn check_kind(&self, kind: FaultKind) -> Result<(), String> {
        if self.allowed_faults.contains(&kind) {
            return Ok(());
        }
        let names: Vec<&str> = self.allowed_faults.iter().map(|k| k.as_str()).collect();
        Err(format!(
            "fault kind {kind:?} is not allowed by policy (allowed_faults = {names:?})",
            kind = kind.as_str()
        ))
    }

    /// The policy checks on a parsed request: `max_duration`, stress caps, netem on
    /// hostNetwork pods, OOM kill without a memory limit.
    pub fn check_request(
        &self,
        request: &FaultRequest,
        host_network: bool,
        memory_limit_bytes: Option<u64>,
    ) -> Result<(), String> {
        if let (Some(max), Some(d)) = (self.max_duration, request.timing.duration) {
            if d > max {
                return Err(format!(
                    "duration {} exceeds the policy maximum (max_duration = {:?})",
                    format_duration(d),
                    format_duration(max)
                ));
            }
        }
        match &request.spec {
            FaultSpec::Netem(_) if host_network && !self.allow_netem_host_network => Err(
                "netem on a hostNetwork pod would shape the node's own network; refused by policy (allow_netem_host_network = false)"
                    .to_string(),
            ),
            FaultSpec::Partition(_) | FaultSpec::Bandwidth(_)
                if host_network && !self.allow_netem_host_network =>
            {
                Err(format!(
                    "{} on a hostNetwork pod would act on the node's own network; refused by policy (allow_netem_host_network = false)",
                    request.spec.kind().as_str()
                ))
            }
            FaultSpec::Stress(s) => self.check_stress(s, memory_limit_bytes),
            FaultSpec::Oom(o) => self.check_oom(o, memory_limit_bytes),
            _ => Ok(()),
        }
    }

    fn check_oom(&self, oom: &OomFault, memory_limit_bytes: Option<u64>) -> Result<(), String> {
        if oom.kill && memory_limit_bytes.is_none() && !self.allow_oom_kill_without_limit {
            return Err("oom kill: true on a container without a memory limit would exhaust the node's memory; refused by policy (allow_oom_kill_without_limit = false)".to_string());
        }
        Ok(())
    }

    fn check_stress(&self, stress: &StressFault, limit: Option<u64>) -> Result<(), String> {
        if let Some(cpu) = stress.cpu {
            if cpu.workers > self.stress.max_cpu_workers {
                return Err(format!(
                    "cpu.workers {} exceeds the policy maximum (stress.max_cpu_workers = {})",
                    cpu.workers, self.stress.max_cpu_workers
                ));
            }
        }
        let Some(memory) = stress.memory else {
            return Ok(());
        };
        let Some(bytes) = memory.size.resolve(limit) else {
            return Err(format!(
                "memory.size {} is a percentage of the memory limit, and this container has no memory limit",
                memory.size
            ));
        };
        if let Some(max) = self.stress.max_memory {
            match max.resolve(limit) {
                Some(max_bytes) if bytes > max_bytes => {
                    return Err(format!(
                        "memory.size {} exceeds the policy maximum (stress.max_memory = {:?})",
                        memory.size,
                        max.to_string()
                    ))
                }
                Some(_) => {}
                None => {
                    return Err(format!(
                        "memory.size {} cannot be checked against stress.max_memory = {:?} because this container has no memory limit",
                        memory.size,
                        max.to_string()
                    ))
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
