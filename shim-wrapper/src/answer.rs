//! The answer a shim's `start` prints: a plain address (1.7), JSON `{"version", "address",
//! "protocol"}` (1.7, 2.0-2.2) or a protobuf `BootstrapResult` (2.3). The wrapper answers in
//! the form the runc shim used, with only the address replaced.

use containerd_shim_protos::bootstrap_api::BootstrapResult;
use protobuf::Message;

use crate::error::ShimError;

#[derive(Debug, Clone, PartialEq)]
enum Form {
    /// The address, with whatever whitespace surrounded it.
    Plain {
        lead: String,
        trail: String,
    },
    Json(serde_json::Map<String, serde_json::Value>),
    Bootstrap(BootstrapResult),
}

/// A parsed start answer.
#[derive(Debug, Clone, PartialEq)]
pub struct StartAnswer {
    form: Form,
    address: String,
}

impl StartAnswer {
    /// Reads an answer in any of the three forms. JSON and plain text are tried first: their
    /// first byte (`{`, a letter or `/`) cannot start a `BootstrapResult` (field 1 or 2).
    pub fn parse(bytes: &[u8]) -> Result<Self, ShimError> {
        if let Ok(serde_json::Value::Object(map)) = serde_json::from_slice(bytes) {
            if let Some(address) = map.get("address").and_then(|a| a.as_str()) {
                return Ok(Self {
                    address: address.to_string(),
                    form: Form::Json(map),
                });
            }
        }
        if let Ok(text) = std::str::from_utf8(bytes) {
            let address = text.trim();
            let plain = !address.is_empty()
                && (address.contains("://") || address.starts_with('/'))
                && !address.chars().any(|c| c.is_whitespace() || c.is_control());
            if plain {
                let start = text.len() - text.trim_start().len();
                return Ok(Self {
                    form: Form::Plain {
                        lead: text[..start].to_string(),
                        trail: text[start + address.len()..].to_string(),
                    },
                    address: address.to_string(),
                });
            }
        }
        match BootstrapResult::parse_from_bytes(bytes) {
            Ok(result) if !result.address.is_empty() => Ok(Self {
                address: result.address.clone(),
                form: Form::Bootstrap(result),
            }),
            _ => Err(ShimError::BadAnswer {
                answer: String::from_utf8_lossy(bytes).into_owned(),
            }),
        }
    }

    /// The address the answering shim listens on.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// The same answer, in the same form, pointing at `address`.
    pub fn encode_with_address(&self, address: &str) -> Result<Vec<u8>, ShimError> {
        match &self.form {
            Form::Plain { lead, trail } => Ok(format!("{lead}{address}{trail}").into_bytes()),
            Form::Json(map) => {
                let mut map = map.clone();
                map.insert("address".into(), serde_json::Value::from(address));
                serde_json::to_vec(&map).map_err(|e| ShimError::Encode {
                    reason: e.to_string(),
                })
            }
            Form::Bootstrap(result) => {
                let mut result = result.clone();
                result.address = address.to_string();
                result.write_to_bytes().map_err(|e| ShimError::Encode {
                    reason: e.to_string(),
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RUNC: &str = "unix:///run/containerd/s/0123abcd";
    const OURS: &str = "unix:///run/containerd/s/0123abcd.nri-chaos";

    #[test]
    fn plain_address_keeps_its_form() {
        let a = StartAnswer::parse(RUNC.as_bytes()).unwrap();
        assert_eq!(a.address(), RUNC);
        assert_eq!(a.encode_with_address(OURS).unwrap(), OURS.as_bytes());
        let a = StartAnswer::parse(format!("{RUNC}\n").as_bytes()).unwrap();
        assert_eq!(
            a.encode_with_address(OURS).unwrap(),
            format!("{OURS}\n").as_bytes()
        );
    }

    #[test]
    fn json_keeps_version_and_protocol() {
        let json = format!(r#"{{"version":3,"address":"{RUNC}","protocol":"ttrpc"}}"#);
        let a = StartAnswer::parse(json.as_bytes()).unwrap();
        assert_eq!(a.address(), RUNC);
        let out: serde_json::Value =
            serde_json::from_slice(&a.encode_with_address(OURS).unwrap()).unwrap();
        assert_eq!(
            out,
            serde_json::json!({"version": 3, "address": OURS, "protocol": "ttrpc"})
        );
    }

    #[test]
    fn bootstrap_result_keeps_every_other_field() {
        let mut r = BootstrapResult::new();
        r.version = 3;
        r.address = RUNC.into();
        r.protocol = "ttrpc".into();
        let bytes = r.write_to_bytes().unwrap();
        let a = StartAnswer::parse(&bytes).unwrap();
        assert_eq!(a.address(), RUNC);
        let back =
            BootstrapResult::parse_from_bytes(&a.encode_with_address(OURS).unwrap()).unwrap();
        assert_eq!(back.version, 3);
        assert_eq!(back.protocol, "ttrpc");
        assert_eq!(back.address, OURS);
    }

    #[test]
    fn garbage_is_refused_with_the_answer() {
        let err = StartAnswer::parse(b"shim exploded").unwrap_err();
        assert!(err.to_string().contains("shim exploded"), "{err}");
        assert!(StartAnswer::parse(b"").is_err());
    }
}
