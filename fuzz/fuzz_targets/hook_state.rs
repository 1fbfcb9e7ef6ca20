//! The OCI state the runtime writes on the hook's stdin (`oci::state::parse_state`).
//! Checks: no panic; an error says it is the OCI state and is bounded (it quotes at most the
//! first 80 bytes of the input); an accepted state has the required fields.
#![no_main]

use libfuzzer_sys::fuzz_target;
use oci_hooks::oci::live_pid;
use oci_hooks::oci::state::parse_state;

fuzz_target!(|data: &[u8]| {
    match parse_state(data) {
        Ok(state) => {
            assert!(!state.id().is_empty() && !state.version().is_empty());
            assert!(state.bundle().is_absolute());
            let _ = live_pid(&state);
            let _ = state.annotations();
        }
        Err(err) => {
            let shown = err.to_string();
            assert!(
                shown.contains("OCI state") || shown.contains("stdin"),
                "{shown}"
            );
            assert!(shown.len() <= 2048, "an error of {} bytes", shown.len());
        }
    }
});
