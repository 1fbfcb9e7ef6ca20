//! One effect per fault kind, each applying one firing through the injector's seams.

pub(super) mod freeze;
pub(super) mod kill;
pub(super) mod netem;
pub(super) mod oom;
pub(super) mod stress;
