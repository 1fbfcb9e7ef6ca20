//! NRI transport: the multiplexed ttrpc connection to containerd, registration and reconnect.

pub mod frame;
pub mod mux;
pub mod sched;
pub mod session;
