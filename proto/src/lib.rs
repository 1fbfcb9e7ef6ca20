//! Wire definitions written for nri-chaos.
//!
//! `nri`: the NRI v1alpha1 messages nri-chaos reads and writes; `nri_ttrpc`: the async ttrpc
//! `Plugin` service (served by nri-chaos) and `Runtime` client (called by nri-chaos), both
//! generated at build time from `protos/nri.proto`.

#[allow(
    clippy::all,
    clippy::unwrap_used,
    missing_docs,
    missing_debug_implementations,
    non_camel_case_types,
    non_snake_case,
    non_upper_case_globals,
    dead_code,
    unused_imports,
    unused_results,
    unused_mut,
    trivial_casts
)]
pub mod nri {
    include!(concat!(env!("OUT_DIR"), "/nri.rs"));
}

#[allow(
    clippy::all,
    clippy::unwrap_used,
    missing_docs,
    missing_debug_implementations,
    non_camel_case_types,
    non_snake_case,
    dead_code,
    unused_imports,
    unused_results,
    unused_mut,
    trivial_casts
)]
pub mod nri_ttrpc {
    include!(concat!(env!("OUT_DIR"), "/nri_ttrpc.rs"));
}

/// `control`: the messages of nri-chaos's own node-local control API
/// (`nri_chaos.control.v1`); `control_ttrpc`: its async `Control` service and client.
#[allow(
    clippy::all,
    clippy::unwrap_used,
    missing_docs,
    missing_debug_implementations,
    non_camel_case_types,
    non_snake_case,
    non_upper_case_globals,
    dead_code,
    unused_imports,
    unused_results,
    unused_mut,
    trivial_casts
)]
pub mod control {
    include!(concat!(env!("OUT_DIR"), "/control.rs"));
}

#[allow(
    clippy::all,
    clippy::unwrap_used,
    missing_docs,
    missing_debug_implementations,
    non_camel_case_types,
    non_snake_case,
    dead_code,
    unused_imports,
    unused_results,
    unused_mut,
    trivial_casts
)]
pub mod control_ttrpc {
    include!(concat!(env!("OUT_DIR"), "/control_ttrpc.rs"));
}
