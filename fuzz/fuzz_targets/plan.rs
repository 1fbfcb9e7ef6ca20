//! A pod's annotations, planned for one container (`injector::plan_container`: keys, values,
//! policy). Input format: see `nri_chaos_fuzz::parse_annotations`. Checks: see
//! `nri_chaos_fuzz::plan_and_check` (keys named, bounded reasons, hook plan round trip),
//! under two policies, with and without a memory limit and host network.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nri_chaos_fuzz::{parse_annotations, plan_and_check, policies};

fuzz_target!(|text: &str| {
    let (container, annotations) = parse_annotations(text);
    for policy in policies() {
        for (limit, host_network) in [(Some(256 << 20), false), (None, true)] {
            plan_and_check(
                "default",
                &annotations,
                &container,
                limit,
                host_network,
                policy,
            );
        }
    }
});
