//! One module per fault: its parameters, how they are read from the annotation value, and (for
//! the faults that already have one) how it is executed through a kernel seam.
//!
//! The timing fields shared by every fault (`after`, `duration`, `every`, `count`, `jitter`,
//! `probability`) are read by [`crate::plan`]; the modules here read only their own fields.

pub mod exec;
pub mod freeze;
pub mod kill;
pub mod netem;
pub mod oom;
pub mod start;
pub mod stress;
