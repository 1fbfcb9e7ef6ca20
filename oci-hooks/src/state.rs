//! The OCI state the runtime writes on the hook's stdin:
//! `{ociVersion, id, status, pid, bundle, annotations}` (runtime-spec "State").
//!
//! The read is bounded in size ([`MAX_STATE_BYTES`]) and in time: a runtime that never closes
//! stdin, or writes garbage, gets a clear error, never a hung hook.

use std::collections::HashMap;
use std::io::Read;
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::Duration;

use serde::Deserialize;

/// Largest state accepted on stdin.
pub const MAX_STATE_BYTES: u64 = 1 << 20;

/// How long the hook waits for the runtime to write the state and close stdin.
pub const STATE_READ_TIMEOUT: Duration = Duration::from_secs(2);

/// Errors reading the state.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// stdin was not closed in time.
    #[error("the OCI state was not received on stdin within {}s (the runtime writes it and closes stdin; run nri-chaos-hook as an OCI hook, or pipe the state JSON into it)", .0.as_secs())]
    Timeout(Duration),
    /// More than [`MAX_STATE_BYTES`].
    #[error("the OCI state on stdin is larger than {MAX_STATE_BYTES} bytes")]
    TooLarge,
    /// Reading stdin failed.
    #[error("reading the OCI state from stdin: {0}")]
    Io(#[from] std::io::Error),
    /// Empty stdin.
    #[error("stdin is empty: expected the OCI state JSON {{ociVersion, id, status, pid, bundle, annotations}}")]
    Empty,
    /// Not the expected JSON.
    #[error("the OCI state on stdin is not valid: {reason} (input starts with {head:?})")]
    Malformed {
        /// The JSON error.
        reason: String,
        /// The first bytes of the input.
        head: String,
    },
    /// `bundle` is not an absolute path.
    #[error("the OCI state names bundle {0:?}, which is not an absolute path")]
    BadBundle(String),
}

/// The OCI state of the container the hook runs for.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct State {
    /// Runtime-spec version.
    pub oci_version: String,
    /// Container id.
    pub id: String,
    /// `creating`, `created`, `running`, `stopped`.
    #[serde(default)]
    pub status: String,
    /// Host PID of the container's init process (absent or 0 once it is gone).
    #[serde(default)]
    pub pid: Option<u32>,
    /// Absolute path of the bundle (holds `config.json`).
    pub bundle: PathBuf,
    /// The container's OCI annotations.
    #[serde(default)]
    pub annotations: HashMap<String, String>,
}

impl State {
    /// The init PID, when there is one.
    pub fn live_pid(&self) -> Option<u32> {
        self.pid.filter(|pid| *pid > 0)
    }
}

/// Parses the state JSON.
pub fn parse_state(bytes: &[u8]) -> Result<State, StateError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(StateError::Empty);
    }
    let state: State = serde_json::from_slice(bytes).map_err(|err| StateError::Malformed {
        reason: err.to_string(),
        head: String::from_utf8_lossy(&bytes[..bytes.len().min(80)]).into_owned(),
    })?;
    if !state.bundle.is_absolute() {
        return Err(StateError::BadBundle(state.bundle.display().to_string()));
    }
    Ok(state)
}

/// Reads all of `input` (at most [`MAX_STATE_BYTES`]) on a helper thread, waiting at most
/// `timeout`. On timeout the helper thread is left blocked; the hook exits anyway.
pub fn read_bounded<R: Read + Send + 'static>(
    input: R,
    timeout: Duration,
) -> Result<Vec<u8>, StateError> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let result = input
            .take(MAX_STATE_BYTES + 1)
            .read_to_end(&mut buf)
            .map(|_| buf);
        let _ = tx.send(result);
    });
    match rx.recv_timeout(timeout) {
        Ok(Ok(buf)) if buf.len() as u64 > MAX_STATE_BYTES => Err(StateError::TooLarge),
        Ok(Ok(buf)) => Ok(buf),
        Ok(Err(err)) => Err(StateError::Io(err)),
        Err(_) => Err(StateError::Timeout(timeout)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_runc_state() {
        let text = br#"{"ociVersion":"1.0.2-dev","id":"c1","status":"creating","pid":4242,"bundle":"/run/b/c1","annotations":{"start.nri-chaos.io":"{delay: 1s}"}}"#;
        let state = parse_state(text).unwrap();
        assert_eq!(state.id, "c1");
        assert_eq!(state.status, "creating");
        assert_eq!(state.live_pid(), Some(4242));
        assert_eq!(state.bundle, PathBuf::from("/run/b/c1"));
        assert_eq!(
            state
                .annotations
                .get("start.nri-chaos.io")
                .map(String::as_str),
            Some("{delay: 1s}")
        );
    }

    #[test]
    fn optional_fields_and_poststop() {
        let state =
            parse_state(br#"{"ociVersion":"1.0.2","id":"c1","status":"stopped","bundle":"/b"}"#)
                .unwrap();
        assert_eq!(state.live_pid(), None);
        assert!(state.annotations.is_empty());
        let zero =
            parse_state(br#"{"ociVersion":"1.0.2","id":"c","pid":0,"bundle":"/b"}"#).unwrap();
        assert_eq!(zero.live_pid(), None);
    }

    #[test]
    fn malformed_states_are_clear() {
        assert!(matches!(parse_state(b""), Err(StateError::Empty)));
        assert!(matches!(parse_state(b" \n"), Err(StateError::Empty)));
        let err = parse_state(b"not json").unwrap_err().to_string();
        assert!(
            err.starts_with("the OCI state on stdin is not valid: expected"),
            "{err}"
        );
        assert!(err.contains("\"not json\""), "{err}");
        let err = parse_state(br#"{"ociVersion":"1","id":"c"}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("missing field `bundle`"), "{err}");
        let err = parse_state(br#"{"ociVersion":"1","id":"c","bundle":"rel/dir"}"#)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("\"rel/dir\", which is not an absolute path"),
            "{err}"
        );
        let err = parse_state(br#"{"ociVersion":"1","id":"c","bundle":"/b","pid":-3}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("pid"), "{err}");
    }

    #[test]
    fn bounded_read_limits_size_and_time() {
        let big = vec![b' '; (MAX_STATE_BYTES + 10) as usize];
        assert!(matches!(
            read_bounded(std::io::Cursor::new(big), Duration::from_secs(5)),
            Err(StateError::TooLarge)
        ));
        let ok = read_bounded(std::io::Cursor::new(b"{}".to_vec()), Duration::from_secs(5));
        assert_eq!(ok.unwrap(), b"{}");

        // A reader that never ends (a runtime that keeps stdin open).
        struct Never;
        impl Read for Never {
            fn read(&mut self, _buf: &mut [u8]) -> std::io::Result<usize> {
                std::thread::sleep(Duration::from_secs(3600));
                Ok(0)
            }
        }
        let started = std::time::Instant::now();
        let err = read_bounded(Never, Duration::from_millis(100)).unwrap_err();
        assert!(matches!(err, StateError::Timeout(_)));
        assert!(started.elapsed() < Duration::from_secs(2));
    }
}
