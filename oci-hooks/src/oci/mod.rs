//! The OCI documents a runtime hands to a hook (and to a shim): the container state on stdin
//! ([`state`]) and the bundle's `config.json` ([`bundle`]), read into the `oci-spec` crate's
//! runtime types with nri-chaos's bounds and errors. This is the one place that parses them;
//! the shim wrapper reuses it.
//!
//! `oci-spec` defines the documents; what stays ours is what it does not do: bounded reads
//! (size and time), the fields the runtime-spec requires but `oci-spec` defaults, and error
//! text that names the file, the field and the reason.

pub mod bundle;
pub mod network;
pub mod state;

pub use bundle::{BundleConfig, BundleError};
pub use network::{host_network, HOST_NETNS};
pub use state::{live_pid, read_state, StateError};

/// Deserialises `bytes` as one JSON document of type `T`; the error names the field path
/// (`process.capabilities.bounding[0]: unknown variant ...`).
fn from_json<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        if path == "." {
            inner.to_string()
        } else {
            format!("{path}: {inner}")
        }
    })?;
    de.end().map_err(|err| err.to_string())?;
    Ok(value)
}
