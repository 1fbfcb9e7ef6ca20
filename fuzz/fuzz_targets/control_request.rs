//! What a client sends on the control socket: ttrpc frames, the `Request` envelope, the
//! `nri_chaos.control.v1` messages, and for `Inject` what the daemon does with them: the
//! fault kind, and the value through the annotation grammar and the policy on a synthetic
//! pod annotation (as `Engine::inject` does). Checks: no panic; errors displayable and
//! bounded; the plan properties of `nri_chaos_fuzz::plan_and_check`.
#![no_main]

use std::collections::HashMap;

use injector::{FaultKind, Policy};
use libfuzzer_sys::fuzz_target;
use nri_chaos_fuzz::{decode, plan_and_check, ttrpc_requests};
use nri_chaos_proto::control::{
    EventsRequest, InjectRequest, ListRequest, RecoverRequest, StatusRequest,
};

fuzz_target!(|data: &[u8]| {
    for request in ttrpc_requests(data) {
        if request.service != "nri_chaos.control.v1.Control" {
            continue;
        }
        match request.method.as_str() {
            "List" => {
                let _ = decode::<ListRequest>(&request.payload);
            }
            "Recover" => {
                let _ = decode::<RecoverRequest>(&request.payload);
            }
            "Status" => {
                let _ = decode::<StatusRequest>(&request.payload);
            }
            "Events" => {
                let _ = decode::<EventsRequest>(&request.payload);
            }
            "Inject" => {
                let Some(req) = decode::<InjectRequest>(&request.payload) else {
                    continue;
                };
                let kind = match req.kind.parse::<FaultKind>() {
                    Ok(kind) => kind,
                    Err(err) => {
                        assert!(err.to_string().starts_with("unknown fault kind"));
                        continue;
                    }
                };
                let container = req.target.rsplit('/').next().unwrap_or_default();
                let key = format!("{kind}.nri-chaos.io/container.{container}");
                let annotations = HashMap::from([(key, req.value.clone())]);
                plan_and_check(
                    "default",
                    &annotations,
                    container,
                    None,
                    false,
                    &Policy::default(),
                );
            }
            _ => {}
        }
    }
});
