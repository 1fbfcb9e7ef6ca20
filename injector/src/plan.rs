//! Planning: from a pod's annotations to the faults one container gets.
//!
//! [`plan_container`] is pure and fast (no I/O, no clock, no regex): it picks, for each fault
//! kind, the most specific annotation that applies to the container (`container.<name>` >
//! `pod` > bare), parses its value, applies the admin [`Policy`], and returns the accepted
//! [`FaultRequest`]s together with a [`Rejection`] for every annotation of our domain that was
//! refused. It never panics and never fails as a whole: a bad annotation only rejects itself.

use std::collections::HashMap;
use std::fmt;

use crate::annotations::{classify_key, FaultKind, KeyMatch, Rejection, RejectionClass, Scope};
use crate::faults::bandwidth::BandwidthFault;
use crate::faults::exec::ExecFault;
use crate::faults::freeze::FreezeFault;
use crate::faults::kill::KillFault;
use crate::faults::netem::NetemFault;
use crate::faults::oom::OomFault;
use crate::faults::partition::PartitionFault;
use crate::faults::start::StartFault;
use crate::faults::stress::StressFault;
use crate::fields::{parse_value, FieldError, FieldSpec, Fields};
use crate::policy::Policy;
use crate::timing::{check_refused_timing, duration_required, timing_fields};

pub use crate::timing::Timing;

/// The pod, as the NRI plugin sees it.
#[derive(Debug, Clone, Copy)]
pub struct PodRef<'a> {
    /// Pod namespace.
    pub namespace: &'a str,
    /// Pod name.
    pub name: &'a str,
    /// Pod UID (keys the firing ledger across container restarts).
    pub uid: &'a str,
    /// Pod sandbox annotations.
    pub annotations: &'a HashMap<String, String>,
    /// Whether the pod uses the node's network namespace.
    pub host_network: bool,
}

/// The parameters of one fault, by kind.
#[derive(Debug, Clone, PartialEq)]
pub enum FaultSpec {
    /// See [`crate::faults::kill`].
    Kill(KillFault),
    /// See [`crate::faults::freeze`].
    Freeze(FreezeFault),
    /// See [`crate::faults::netem`].
    Netem(NetemFault),
    /// See [`crate::faults::stress`].
    Stress(StressFault),
    /// See [`crate::faults::oom`].
    Oom(OomFault),
    /// See [`crate::faults::start`].
    Start(StartFault),
    /// See [`crate::faults::exec`].
    Exec(ExecFault),
    /// See [`crate::faults::partition`].
    Partition(PartitionFault),
    /// See [`crate::faults::bandwidth`].
    Bandwidth(BandwidthFault),
}

impl FaultSpec {
    /// The kind of this fault.
    pub fn kind(&self) -> FaultKind {
        match self {
            FaultSpec::Kill(_) => FaultKind::Kill,
            FaultSpec::Freeze(_) => FaultKind::Freeze,
            FaultSpec::Netem(_) => FaultKind::Netem,
            FaultSpec::Stress(_) => FaultKind::Stress,
            FaultSpec::Oom(_) => FaultKind::Oom,
            FaultSpec::Start(_) => FaultKind::Start,
            FaultSpec::Exec(_) => FaultKind::Exec,
            FaultSpec::Partition(_) => FaultKind::Partition,
            FaultSpec::Bandwidth(_) => FaultKind::Bandwidth,
        }
    }

    /// The fields `kind` accepts besides the timing fields.
    pub fn fields(kind: FaultKind) -> &'static [FieldSpec] {
        match kind {
            FaultKind::Kill => KillFault::FIELDS,
            FaultKind::Freeze => FreezeFault::FIELDS,
            FaultKind::Netem => NetemFault::FIELDS,
            FaultKind::Stress => StressFault::FIELDS,
            FaultKind::Oom => OomFault::FIELDS,
            FaultKind::Start => StartFault::FIELDS,
            FaultKind::Exec => ExecFault::FIELDS,
            FaultKind::Partition => PartitionFault::FIELDS,
            FaultKind::Bandwidth => BandwidthFault::FIELDS,
        }
    }

    /// An example value for `kind` (`ctl explain`).
    pub fn example(kind: FaultKind) -> &'static str {
        match kind {
            FaultKind::Kill => KillFault::EXAMPLE,
            FaultKind::Freeze => FreezeFault::EXAMPLE,
            FaultKind::Netem => NetemFault::EXAMPLE,
            FaultKind::Stress => StressFault::EXAMPLE,
            FaultKind::Oom => OomFault::EXAMPLE,
            FaultKind::Start => StartFault::EXAMPLE,
            FaultKind::Exec => ExecFault::EXAMPLE,
            FaultKind::Partition => PartitionFault::EXAMPLE,
            FaultKind::Bandwidth => BandwidthFault::EXAMPLE,
        }
    }

    fn from_fields(kind: FaultKind, fields: &mut Fields) -> Result<FaultSpec, FieldError> {
        Ok(match kind {
            FaultKind::Kill => FaultSpec::Kill(KillFault::from_fields(fields)?),
            FaultKind::Freeze => FaultSpec::Freeze(FreezeFault::from_fields(fields)?),
            FaultKind::Netem => FaultSpec::Netem(NetemFault::from_fields(fields)?),
            FaultKind::Stress => FaultSpec::Stress(StressFault::from_fields(fields)?),
            FaultKind::Oom => FaultSpec::Oom(OomFault::from_fields(fields)?),
            FaultKind::Start => FaultSpec::Start(StartFault::from_fields(fields)?),
            FaultKind::Exec => FaultSpec::Exec(ExecFault::from_fields(fields)?),
            FaultKind::Partition => FaultSpec::Partition(PartitionFault::from_fields(fields)?),
            FaultKind::Bandwidth => FaultSpec::Bandwidth(BandwidthFault::from_fields(fields)?),
        })
    }
}

impl fmt::Display for FaultSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FaultSpec::Kill(x) => x.fmt(f),
            FaultSpec::Freeze(x) => x.fmt(f),
            FaultSpec::Netem(x) => x.fmt(f),
            FaultSpec::Stress(x) => x.fmt(f),
            FaultSpec::Oom(x) => x.fmt(f),
            FaultSpec::Start(x) => x.fmt(f),
            FaultSpec::Exec(x) => x.fmt(f),
            FaultSpec::Partition(x) => x.fmt(f),
            FaultSpec::Bandwidth(x) => x.fmt(f),
        }
    }
}

/// What a fault kind accepts, from the tables the grammar reads (`nri-chaos ctl explain`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KindFields {
    /// The kind.
    pub kind: FaultKind,
    /// Its own fields.
    pub own: &'static [FieldSpec],
    /// The timing fields it accepts.
    pub timing: Vec<FieldSpec>,
    /// `duration` is required.
    pub duration_required: bool,
    /// An example value.
    pub example: &'static str,
}

impl KindFields {
    /// The table of `kind`.
    pub fn of(kind: FaultKind) -> KindFields {
        KindFields {
            kind,
            own: FaultSpec::fields(kind),
            timing: timing_fields(kind),
            duration_required: duration_required(kind),
            example: FaultSpec::example(kind),
        }
    }
}

/// One accepted fault for one container.
#[derive(Debug, Clone, PartialEq)]
pub struct FaultRequest {
    /// The fault kind.
    pub kind: FaultKind,
    /// The annotation key it came from.
    pub key: String,
    /// The fault parameters.
    pub spec: FaultSpec,
    /// When and how often it fires.
    pub timing: Timing,
}

impl FaultRequest {
    /// Parses one annotation value for fault `kind` (no policy applied). The hook and the shim
    /// use this to read back a plan the plugin wrote into OCI annotations.
    pub fn parse(kind: FaultKind, key: &str, value: &str) -> Result<FaultRequest, FieldError> {
        let mut fields = Fields::new("", parse_value(value)?);
        let mut accepted: Vec<FieldSpec> = timing_fields(kind);
        accepted.extend_from_slice(FaultSpec::fields(kind));
        // Timing fields that do not apply to `kind` are refused with a specific reason first.
        check_refused_timing(kind, &fields)?;
        fields.only_specs(&accepted)?;
        let timing = Timing::from_fields(kind, &mut fields)?;
        let spec = FaultSpec::from_fields(kind, &mut fields)?;
        if kind == FaultKind::Exec {
            crate::faults::exec::check_timing(&timing)?;
        }
        Ok(FaultRequest {
            kind,
            key: key.to_string(),
            spec,
            timing,
        })
    }
}

impl fmt::Display for FaultRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}({}; {})", self.kind, self.spec, self.timing)
    }
}

/// What one container gets: accepted faults (at most one per kind, in [`FaultKind::ALL`]
/// order) and rejected annotations (sorted by key).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ContainerPlan {
    /// Accepted faults.
    pub faults: Vec<FaultRequest>,
    /// Refused annotations, with reasons.
    pub rejections: Vec<Rejection>,
}

impl ContainerPlan {
    /// True when there is nothing to inject and nothing to report.
    pub fn is_empty(&self) -> bool {
        self.faults.is_empty() && self.rejections.is_empty()
    }

    /// The accepted fault of `kind`, if any.
    pub fn get(&self, kind: FaultKind) -> Option<&FaultRequest> {
        self.faults.iter().find(|f| f.kind == kind)
    }
}

/// Compact, single-line rendering for logs:
/// `kill(signal=SIGTERM; after=2s count=1); rejected: kil.nri-chaos.io: unknown fault kind ...`.
impl fmt::Display for ContainerPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return f.write_str("no faults");
        }
        let mut sep = "";
        for fault in &self.faults {
            write!(f, "{sep}{fault}")?;
            sep = " ";
        }
        if !self.rejections.is_empty() {
            if !self.faults.is_empty() {
                f.write_str("; ")?;
            }
            f.write_str("rejected:")?;
            for r in &self.rejections {
                write!(f, " [{}: {}]", r.key, r.reason)?;
            }
        }
        Ok(())
    }
}

/// Plans the faults of container `container_name` of `pod`.
///
/// `memory_limit_bytes` is the container memory limit (resolves `50%` sizes and gates
/// `oom kill`). Rejections cover: malformed keys of our domain, invalid values, and policy
/// refusals (namespace, allowed faults, `max_duration`, stress caps, netem on hostNetwork,
/// OOM kill without limit). Malformed keys are reported in the plan of every container of the
/// pod.
pub fn plan_container(
    pod: &PodRef<'_>,
    container_name: &str,
    memory_limit_bytes: Option<u64>,
    policy: &Policy,
) -> ContainerPlan {
    let mut plan = ContainerPlan::default();
    let mut best: [Option<(Scope, &str, &str)>; FaultKind::ALL.len()] =
        [None; FaultKind::ALL.len()];
    for (key, value) in pod.annotations {
        match classify_key(key, &policy.domain, container_name) {
            KeyMatch::Foreign | KeyMatch::OtherContainer => {}
            KeyMatch::Invalid(reason) => {
                plan.rejections
                    .push(Rejection::new(RejectionClass::Parse, key, value, reason))
            }
            KeyMatch::Applies(kind, scope) => {
                let slot = &mut best[kind as usize];
                if slot.is_none_or(|(s, _, _)| scope > s) {
                    *slot = Some((scope, key, value));
                }
            }
        }
    }
    let namespace = policy.check_namespace(pod.namespace);
    for kind in FaultKind::ALL {
        let Some((_, key, value)) = best[kind as usize] else {
            continue;
        };
        let refused = |reason: String| (RejectionClass::Policy, reason);
        let checked = namespace
            .clone()
            .and_then(|()| policy.check_kind(kind))
            .map_err(refused)
            .and_then(|()| {
                FaultRequest::parse(kind, key, value)
                    .map_err(|e| (RejectionClass::Parse, e.to_string()))
            })
            .and_then(|req| {
                policy
                    .check_request(&req, pod.host_network, memory_limit_bytes)
                    .map(|()| req)
                    .map_err(refused)
            });
        match checked {
            Ok(req) => plan.faults.push(req),
            Err((class, reason)) => plan
                .rejections
                .push(Rejection::new(class, key, value, reason)),
        }
    }
    plan.rejections.sort_by(|a, b| a.key.cmp(&b.key));
    plan
}

#[cfg(test)]
mod tests;
