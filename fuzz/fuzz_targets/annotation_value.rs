//! One annotation value for one fault kind (`FaultRequest::parse`, what the hook and the shim
//! also use). Input: the kind on the first line, the value after it. Checks: no panic, an
//! error of bounded length, the same verdict through `plan_container` under the default
//! policy, a deterministic parse, and the same fields from the flow-map reader (when it
//! takes the value) as from the YAML parser.
#![no_main]

use std::collections::HashMap;

use injector::{FaultKind, FaultRequest, Policy};
use libfuzzer_sys::fuzz_target;
use nri_chaos_fuzz::{plan_and_check, MAX_REASON_BYTES};

fuzz_target!(|text: &str| {
    let (kind, value) = text.split_once('\n').unwrap_or(("kill", text));
    let Ok(kind) = kind.parse::<FaultKind>() else {
        return;
    };
    assert!(
        injector::fields::fast_path_agrees(value),
        "the flow-map reader and the YAML parser disagree"
    );
    let key = format!("{kind}.nri-chaos.io/container.app");
    let parsed = FaultRequest::parse(kind, &key, value);
    assert_eq!(
        parsed,
        FaultRequest::parse(kind, &key, value),
        "not deterministic"
    );
    if let Err(err) = &parsed {
        let reason = err.to_string();
        assert!(!reason.is_empty());
        assert!(
            reason.len() <= MAX_REASON_BYTES,
            "reason of {} bytes",
            reason.len()
        );
    }
    let annotations = HashMap::from([(key.clone(), value.to_string())]);
    let plan = plan_and_check(
        "default",
        &annotations,
        "app",
        Some(1 << 30),
        false,
        &Policy::default(),
    );
    match parsed {
        Ok(req) => {
            // Accepted by the grammar: the plan has it, or the policy refused it.
            if let Some(planned) = plan.get(kind) {
                assert_eq!(planned, &req);
            } else {
                assert_eq!(plan.rejections.len(), 1, "{plan}");
            }
        }
        Err(err) => {
            assert!(plan.faults.is_empty());
            assert_eq!(plan.rejections.len(), 1);
            assert_eq!(plan.rejections[0].reason, err.to_string());
        }
    }
});
