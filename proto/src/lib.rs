//! Wire definitions written for nri-chaos.
//!
//! `nri`: the NRI v1alpha1 messages nri-chaos reads and writes; `nri_ttrpc`: the async ttrpc
//! `Plugin` service (served by nri-chaos) and `Runtime` client (called by nri-chaos), both
//! generated at build time from `protos/nri.proto`.
//!
//! `control`: the messages of nri-chaos's own node-local control API
//! (`nri_chaos.control.v1`); `control_ttrpc`: its async `Control` service and client.

/// One module around a file generated into OUT_DIR, with the allowances generated code needs
/// (build.rs strips the generator's own inner attributes, which `include!` cannot take).
macro_rules! generated {
    ($(#[$doc:meta])* $name:ident, $file:literal) => {
        $(#[$doc])*
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
        pub mod $name {
            include!(concat!(env!("OUT_DIR"), "/", $file));
        }
    };
}

generated!(nri, "nri.rs");
generated!(nri_ttrpc, "nri_ttrpc.rs");
generated!(control, "control.rs");
generated!(control_ttrpc, "control_ttrpc.rs");
