//! One record of the store log and its line: `<crc32 of the JSON, 8 hex digits> <JSON>\n`.
//!
//! The checksum tells a record cut short by a crash, or damaged on disk, from a good one; the
//! JSON keeps the file readable with `cat` and `jq` (`cut -d' ' -f2- store.log | jq`).

use serde::{Deserialize, Serialize};

use crate::annotations::FaultKind;
use crate::journal::JournalEntry;
use crate::scope::{FaultKey, Scope};

/// The format version written in the header record.
pub const FORMAT_VERSION: u32 = 1;

/// One change of the durable state, in the order it happened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
pub enum Record {
    /// The first record of a compacted log.
    Header {
        /// [`FORMAT_VERSION`].
        version: u32,
    },
    /// A fault key has taken `count` firings in all (0: forget the key).
    Fired {
        /// The fault key.
        key: KeyRecord,
        /// Firings taken so far.
        count: u32,
    },
    /// Every firing count of a pod is forgotten (the pod was removed).
    ForgetPod {
        /// The pod UID.
        pod_uid: String,
    },
    /// A fault that holds, and how to undo it (written before its side effect; a later
    /// record with the same id replaces it).
    Journal {
        /// The entry.
        entry: JournalEntry,
    },
    /// The fault `id` was recovered.
    Clear {
        /// The fault id.
        id: String,
    },
}

/// A [`FaultKey`] as written: `{"pod_uid": .., "container": .. (container scope only),
/// "kind": ..}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRecord {
    /// The pod UID.
    pub pod_uid: String,
    /// The container name; absent for a pod-scoped fault.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    /// The fault kind, by name.
    #[serde(with = "crate::journal::kind_name")]
    pub kind: FaultKind,
}

impl From<&FaultKey> for KeyRecord {
    fn from(key: &FaultKey) -> Self {
        KeyRecord {
            pod_uid: key.scope.pod_uid().to_string(),
            container: key.scope.container().map(str::to_string),
            kind: key.kind,
        }
    }
}

impl From<KeyRecord> for FaultKey {
    fn from(key: KeyRecord) -> Self {
        let scope = match key.container {
            None => Scope::Pod {
                pod_uid: key.pod_uid,
            },
            Some(container) => Scope::Container {
                pod_uid: key.pod_uid,
                container,
            },
        };
        FaultKey {
            scope,
            kind: key.kind,
        }
    }
}

/// Appends the line of `record` to `out`.
pub fn encode_line(record: &Record, out: &mut Vec<u8>) -> Result<(), serde_json::Error> {
    let json = serde_json::to_vec(record)?;
    let crc = crc32fast::hash(&json);
    out.extend_from_slice(format!("{crc:08x} ").as_bytes());
    out.extend_from_slice(&json);
    out.push(b'\n');
    Ok(())
}

/// Decodes one line (without its `\n`); the error says why it is not a record.
pub fn decode_line(line: &[u8]) -> Result<Record, String> {
    let (crc, json) = match line.split_first_chunk::<9>() {
        Some((head, json)) if head[8] == b' ' => (&head[..8], json),
        _ => return Err("no checksum (expected 8 hex digits and a space)".to_string()),
    };
    let crc = std::str::from_utf8(crc)
        .ok()
        .and_then(|hex| u32::from_str_radix(hex, 16).ok())
        .ok_or_else(|| "the checksum is not 8 hex digits".to_string())?;
    let actual = crc32fast::hash(json);
    if actual != crc {
        return Err(format!(
            "checksum mismatch (written {crc:08x}, content {actual:08x})"
        ));
    }
    serde_json::from_slice(json).map_err(|err| format!("not a store record: {err}"))
}
