//! The plan annotation `nri-chaos.io/plan` that the hook (and the shim) read back
//! (`HookPlan::decode`). Checks: no panic; errors name the annotation; an accepted plan,
//! encoded again, decodes to the same faults.
#![no_main]

use injector::hookplan::{HookPlan, PLAN_ANNOTATION};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    match HookPlan::decode(text) {
        Ok(faults) => {
            let requests: Vec<_> = faults.iter().map(|(req, _)| req).collect();
            let values: std::collections::HashMap<_, _> = faults
                .iter()
                .map(|(req, value)| (req.key.clone(), value.clone()))
                .collect();
            let encoded =
                HookPlan::new(requests.iter().copied(), |key| values[key].clone()).encode();
            let again = HookPlan::decode(&encoded)
                .unwrap_or_else(|err| panic!("re-encoded plan refused: {err}"));
            // Keys may repeat in a plan; compare the faults in order.
            let again: Vec<_> = again.iter().map(|(req, _)| req.kind).collect();
            let first: Vec<_> = faults.iter().map(|(req, _)| req.kind).collect();
            assert_eq!(first, again);
        }
        Err(err) => {
            let shown = err.to_string();
            assert!(
                shown.starts_with(&format!("annotation {PLAN_ANNOTATION}: ")),
                "{shown}"
            );
        }
    }
});
