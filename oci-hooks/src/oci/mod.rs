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

/// Longest JSON error kept, in bytes: serde_json quotes the offending string whole, and a
/// 1 MiB state (or a 16 MiB config.json) must not become a 1 MiB line on the runtime's stderr.
const MAX_REASON_BYTES: usize = 512;

/// Deserialises `bytes` as one JSON document of type `T`; the error names the field path
/// (`process.capabilities.bounding[0]: unknown variant ...`), cut at [`MAX_REASON_BYTES`].
fn from_json<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        cut(if path == "." {
            inner.to_string()
        } else {
            format!("{path}: {inner}")
        })
    })?;
    de.end().map_err(|err| cut(err.to_string()))?;
    Ok(value)
}

/// `reason` cut at [`MAX_REASON_BYTES`] (on a character boundary, `…` marks the cut).
fn cut(mut reason: String) -> String {
    if reason.len() > MAX_REASON_BYTES {
        reason.truncate(reason.floor_char_boundary(MAX_REASON_BYTES));
        reason.push('…');
    }
    reason
}
