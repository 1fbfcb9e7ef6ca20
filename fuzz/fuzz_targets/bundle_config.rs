//! The bundle's `config.json` the hook reads (`oci::BundleConfig::parse`), then what the
//! hook does with it: its own hook timeout at each point, and the faults it finds in the
//! annotations (`resolve::resolve`: the plan annotation, or our annotations standalone).
//! Checks: no panic; errors name the file or the plan annotation.
#![no_main]

use std::path::Path;

use injector::hookplan::HookPoint;
use libfuzzer_sys::fuzz_target;
use oci_hooks::oci::BundleConfig;
use oci_hooks::resolve::resolve;

fuzz_target!(|data: &[u8]| {
    let path = Path::new("/run/bundle/config.json");
    let config = match BundleConfig::parse(path, data) {
        Ok(config) => config,
        Err(err) => {
            let shown = err.to_string();
            assert!(
                shown.starts_with("bundle config /run/bundle/config.json: "),
                "{shown}"
            );
            assert!(shown.len() <= 2048, "an error of {} bytes", shown.len());
            return;
        }
    };
    for point in HookPoint::ALL {
        let _ = config.own_timeout(point);
    }
    // Standalone resolution differs on the host network (netem refused); try both.
    for host_network in [false, true] {
        match resolve(&config.annotations(), host_network) {
            Ok(resolved) => {
                let _ = format!("{resolved:?}");
            }
            Err(err) => {
                let shown = err.to_string();
                assert!(
                    shown.starts_with("annotation nri-chaos.io/plan: "),
                    "{shown}"
                );
            }
        }
    }
});
