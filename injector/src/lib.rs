//! nri-chaos fault engine: the pure fault-planning core.
//!
//! - [`annotations`]: annotation keys (`<fault>.<domain>/container.<name>`, `/pod`, bare),
//!   [`FaultKind`] and [`Rejection`].
//! - [`fields`] and [`units`]: the value grammar (a YAML mapping; durations, sizes,
//!   probabilities, rates).
//! - [`timing`]: the timing fields every fault shares.
//! - [`faults`]: one module per fault with its own fields.
//! - [`policy`]: the admin policy (TOML).
//! - [`plan`]: [`plan_container`], from a pod's annotations to one container's faults.
//! - [`schedule`]: when each firing happens ([`Schedule`]) and how many happened across
//!   container restarts ([`FiringLedger`]).
//! - [`seams`]: kernel seams behind narrow traits, with recording fakes (signals, cgroups and
//!   the freezer, procfs).
//! - [`journal`]: the journal entries of active faults and the recovery each describes.
//! - [`store`]: the one durable store (one log) of the journal and the firing ledger.
//! - [`hookplan`]: the plan the OCI hook `nri-chaos-hook` executes (OCI annotation
//!   `nri-chaos.io/plan`) and the hook points.

pub mod annotations;
pub mod exec_inject;
pub mod faults;
pub mod fields;
pub mod hookplan;
pub mod journal;
pub mod plan;
pub mod policy;
pub mod schedule;
pub mod scope;
pub mod seams;
pub mod store;
pub mod stressor;
pub mod timing;
pub mod units;

pub use annotations::{FaultKind, Rejection, RejectionClass};
pub use journal::{JournalEntry, ProcessId, Recovery};
pub use plan::{
    plan_container, ContainerPlan, FaultRequest, FaultSpec, KindFields, PodRef, Timing,
};
pub use policy::Policy;
pub use schedule::{Firing, FiringLedger, LedgerChange, LedgerKey, Rng, Schedule, SplitMix64};
pub use scope::{FaultKey, Scope};
pub use units::Size;
