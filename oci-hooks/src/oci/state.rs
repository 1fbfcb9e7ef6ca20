//! The OCI state the runtime writes on the hook's stdin:
//! `{ociVersion, id, status, pid, bundle, annotations}` (runtime-spec "State"), as
//! `oci-spec`'s [`State`].
//!
//! The read is bounded in size ([`MAX_STATE_BYTES`]) and in time: a runtime that never closes
//! stdin, or writes garbage, gets a clear error, never a hung hook.

use std::io::Read;
use std::sync::mpsc;
use std::time::Duration;

pub use oci_spec::runtime::State;

use super::from_json;

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

/// Reads the state from `input` (bounded by [`MAX_STATE_BYTES`] and `timeout`, see
/// [`read_bounded`]) and parses it ([`parse_state`]).
pub fn read_state<R: Read + Send + 'static>(
    input: R,
    timeout: Duration,
) -> Result<State, StateError> {
    parse_state(&read_bounded(input, timeout)?)
}

/// The init PID, when there is one (absent or 0 once it is gone).
pub fn live_pid(state: &State) -> Option<u32> {
    state
        .pid()
        .and_then(|pid| u32::try_from(pid).ok())
        .filter(|pid| *pid > 0)
}

/// Parses the state JSON into `oci-spec`'s [`State`], which defaults every field: the fields
/// the runtime-spec requires (`ociVersion`, `id`, `bundle`) are checked here, as are a
/// negative `pid` and a relative `bundle`.
pub fn parse_state(bytes: &[u8]) -> Result<State, StateError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(StateError::Empty);
    }
    let malformed = |reason: String| StateError::Malformed {
        reason,
        head: String::from_utf8_lossy(&bytes[..bytes.len().min(80)]).into_owned(),
    };
    let state: State = from_json(bytes).map_err(malformed)?;
    let missing = [
        ("ociVersion", state.version().is_empty()),
        ("id", state.id().is_empty()),
        ("bundle", state.bundle().as_os_str().is_empty()),
    ];
    if let Some((field, _)) = missing.iter().find(|(_, empty)| *empty) {
        return Err(malformed(format!("missing field `{field}`")));
    }
    if let Some(pid) = state.pid().filter(|pid| *pid < 0) {
        return Err(malformed(format!("pid: {pid} is not a process id")));
    }
    if !state.bundle().is_absolute() {
        return Err(StateError::BadBundle(state.bundle().display().to_string()));
    }
    Ok(state)
}

// Ours: oci-spec reads a state only from a file path, with no size or time bound.
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
    use std::path::PathBuf;

    use super::*;

    #[test]
    fn parses_runc_state() {
        let text = br#"{"ociVersion":"1.0.2-dev","id":"c1","status":"creating","pid":4242,"bundle":"/run/b/c1","annotations":{"start.nri-chaos.io":"{delay: 1s}"}}"#;
        let state = parse_state(text).unwrap();
        assert_eq!(state.id(), "c1");
        assert_eq!(state.status().to_string(), "creating");
        assert_eq!(live_pid(&state), Some(4242));
        assert_eq!(state.bundle(), &PathBuf::from("/run/b/c1"));
        assert_eq!(
            state
                .annotations()
                .as_ref()
                .and_then(|a| a.get("start.nri-chaos.io"))
                .map(String::as_str),
            Some("{delay: 1s}")
        );
    }

    #[test]
    fn optional_fields_and_poststop() {
        let state =
            parse_state(br#"{"ociVersion":"1.0.2","id":"c1","status":"stopped","bundle":"/b"}"#)
                .unwrap();
        assert_eq!(live_pid(&state), None);
        assert!(state.annotations().as_ref().is_none_or(|a| a.is_empty()));
        let zero =
            parse_state(br#"{"ociVersion":"1.0.2","id":"c","pid":0,"bundle":"/b"}"#).unwrap();
        assert_eq!(live_pid(&zero), None);
    }

    /// Found by the fuzz target `hook_state`: the JSON error quoted a long string of the
    /// input whole (a 2.6 KB state gave a 2.8 KB error; a 1 MiB state, a 1 MiB line).
    #[test]
    fn a_long_string_in_a_malformed_state_does_not_flood_the_error() {
        let input =
            include_bytes!("../../../fuzz/corpus/hook_state/regression-long-string-in-error");
        let err = parse_state(input).unwrap_err().to_string();
        assert!(err.len() <= 1024, "an error of {} bytes: {err}", err.len());
        assert!(
            err.starts_with("the OCI state on stdin is not valid: "),
            "{err}"
        );
        let huge = format!("{{\"ociVersion\": \"{}\"", "a".repeat(1 << 20));
        let err = parse_state(huge.as_bytes()).unwrap_err().to_string();
        assert!(err.len() <= 1024, "an error of {} bytes", err.len());
        let typed = format!(
            "{{\"ociVersion\":\"1.0.2\",\"id\":\"x\",\"bundle\":\"/b\",\"pid\":\"{}\"}}",
            "9".repeat(1 << 20)
        );
        let err = parse_state(typed.as_bytes()).unwrap_err().to_string();
        assert!(err.len() <= 1024, "an error of {} bytes", err.len());
        assert!(err.contains("pid"), "{err}");
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
        assert!(err.contains("pid: -3 is not a process id"), "{err}");
        for field in ["ociVersion", "id"] {
            let text = r#"{"ociVersion":"1","id":"c","bundle":"/b"}"#
                .replace(&format!("\"{field}\":"), "\"other\":");
            let err = parse_state(text.as_bytes()).unwrap_err().to_string();
            assert!(err.contains(&format!("missing field `{field}`")), "{err}");
        }
        let err = parse_state(br#"{"ociVersion":"1","id":"c","bundle":"/b","status":"paused"}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("status: unknown variant `paused`"), "{err}");
        let err = parse_state(br#"{"ociVersion":"1","id":"c","bundle":"/b"} trailing"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("trailing characters"), "{err}");
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
