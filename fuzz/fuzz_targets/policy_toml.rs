//! The admin policy TOML (`Policy::from_toml_str`). Checks: no panic; an error names the
//! policy and, for a value the policy refuses, the key; an accepted policy checks
//! namespaces and kinds without panicking.
#![no_main]

use injector::policy::PolicyError;
use injector::{FaultKind, Policy};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    match Policy::from_toml_str(text) {
        Ok(policy) => {
            assert!(!policy.domain.is_empty());
            for namespace in [
                "default",
                "kube-system",
                "",
                "team-a-very-long-namespace-name",
            ] {
                let _ = policy.check_namespace(namespace);
            }
            for kind in FaultKind::ALL {
                let _ = policy.check_kind(kind);
            }
        }
        Err(err) => {
            let shown = err.to_string();
            assert!(shown.starts_with("admin policy"), "{shown}");
            if let PolicyError::Invalid { field, .. } = &err {
                assert!(shown.contains(field), "{shown}");
            }
        }
    }
});
