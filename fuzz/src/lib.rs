//! What the fuzz targets share: the input formats of the structured targets, the NRI
//! transport compiled from the plugin's own files, the ttrpc frame decode, and the
//! properties every plan must have.

use std::collections::HashMap;
use std::sync::LazyLock;

use injector::hookplan::{hook_point, HookPlan};
use injector::{plan_container, ContainerPlan, PodRef, Policy};
use protobuf::Message;
use ttrpc::proto::{GenMessage, GenMessageError, MESSAGE_TYPE_REQUEST};

// The plugin's NRI transport, compiled from nri-plugin's own source files: nri-plugin is a
// binary crate, and these two files need nothing of the rest of it (`mux.rs` reaches
// `super::frame`, hence both at the crate root).
/// The NRI multiplexer's frame (`nri-plugin/src/transport/frame.rs`).
#[path = "../../nri-plugin/src/transport/frame.rs"]
#[allow(dead_code, missing_debug_implementations)]
pub mod frame;
/// The NRI multiplexer (`nri-plugin/src/transport/mux.rs`).
#[path = "../../nri-plugin/src/transport/mux.rs"]
#[allow(dead_code, missing_debug_implementations)]
pub mod mux;

/// Longest reason a rejection may carry: it quotes offending text cut at 64 characters,
/// never the whole value (a 16 KiB value must not make a 16 KiB log line).
pub const MAX_REASON_BYTES: usize = 1024;

/// One tokio runtime for the whole fuzzing process (the mux and ttrpc decode are async).
pub fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap_or_else(|err| panic!("tokio runtime: {err}"))
    });
    &RT
}

/// Reads the readable annotation format of the `plan` corpus:
///
/// ```text
/// app                                   <- the container name (first line)
/// @ kill.nri-chaos.io/container.app     <- a key
/// {after: 2s}                           <- its value, up to the next "\n@ "
/// ```
pub fn parse_annotations(text: &str) -> (String, HashMap<String, String>) {
    let (container, rest) = text.split_once('\n').unwrap_or((text, ""));
    let mut annotations = HashMap::new();
    let rest = rest.strip_prefix("@ ").unwrap_or(rest);
    for record in rest.split("\n@ ").filter(|r| !r.is_empty()) {
        let (key, value) = record.split_once('\n').unwrap_or((record, ""));
        annotations.insert(key.to_string(), value.to_string());
    }
    (container.to_string(), annotations)
}

/// A few admin policies the plan is checked under: the default, and a restrictive one.
pub fn policies() -> &'static [Policy] {
    static POLICIES: LazyLock<Vec<Policy>> = LazyLock::new(|| {
        let strict = Policy::from_toml_str(
            "strict = true\nallowed_faults = [\"kill\", \"freeze\", \"stress\"]\nmax_duration = \"1m\"\n[namespaces]\nallow = [\"team-*\", \"default\"]\ndeny = [\"kube-*\"]\n[stress]\nmax_cpu_workers = 2\nmax_memory = \"50%\"\n",
        )
        .unwrap_or_else(|err| panic!("the fuzz policy does not parse: {err}"));
        vec![Policy::default(), strict]
    });
    &POLICIES
}

/// Plans `container` of a pod with `annotations` and checks what every plan must hold:
/// no panic, each accepted fault from an annotation that exists (one per kind), each
/// rejection naming its key and a reason of bounded length, rejections sorted by key, and
/// the hook's plan annotation round trip (the plugin writes it, the hook reads it back).
pub fn plan_and_check(
    namespace: &str,
    annotations: &HashMap<String, String>,
    container: &str,
    memory_limit: Option<u64>,
    host_network: bool,
    policy: &Policy,
) -> ContainerPlan {
    let pod = PodRef {
        namespace,
        name: "pod",
        uid: "uid",
        annotations,
        host_network,
    };
    let plan = plan_container(&pod, container, memory_limit, policy);
    let mut kinds = Vec::new();
    for fault in &plan.faults {
        assert!(
            annotations.contains_key(&fault.key),
            "fault from a key that is not there: {}",
            fault.key
        );
        assert!(!kinds.contains(&fault.kind), "two faults of {}", fault.kind);
        kinds.push(fault.kind);
        let _ = fault.to_string();
    }
    for rejection in &plan.rejections {
        let shown = rejection.to_string();
        assert!(
            shown.starts_with(&format!("annotation {}: ", rejection.key)),
            "a rejection that does not name its key: {shown}"
        );
        assert!(!rejection.reason.is_empty(), "a rejection without reason");
        assert!(
            rejection.reason.len() <= MAX_REASON_BYTES,
            "a reason of {} bytes for key {}: {}",
            rejection.reason.len(),
            rejection.key,
            &rejection.reason[..rejection.reason.floor_char_boundary(200)]
        );
    }
    assert!(plan.rejections.is_sorted_by(|a, b| a.key <= b.key));
    let _ = plan.to_string();

    // The plugin writes the hook's faults into the plan annotation; the hook must read back
    // exactly what the plugin planned.
    let hooked: Vec<_> = plan
        .faults
        .iter()
        .filter(|f| hook_point(f).is_some())
        .collect();
    if !hooked.is_empty() {
        let value_of = |key: &str| annotations.get(key).cloned().unwrap_or_default();
        let encoded = HookPlan::new(hooked.iter().copied(), value_of).encode();
        let decoded = HookPlan::decode(&encoded)
            .unwrap_or_else(|err| panic!("the hook cannot read the plugin's plan: {err}"));
        let back: Vec<_> = decoded.iter().map(|(req, _)| req).collect();
        assert_eq!(back, hooked, "plan annotation round trip");
    }
    plan
}

/// One ttrpc request read off a byte stream.
#[derive(Debug)]
pub struct TtrpcRequest {
    /// `service` of the request (`nri.pkg.api.v1alpha1.Plugin`, ...).
    pub service: String,
    /// `method`.
    pub method: String,
    /// The method's message, still encoded.
    pub payload: Vec<u8>,
}

/// Reads ttrpc frames off `data` the way the ttrpc server does (`GenMessage::read_from`,
/// then the `Request` envelope), until the stream ends or a frame is refused. Frames the
/// server would answer with an error (oversized, not a request, not a `Request`) are skipped.
pub fn ttrpc_requests(data: &[u8]) -> Vec<TtrpcRequest> {
    runtime().block_on(async {
        let mut reader = data;
        let mut out = Vec::new();
        loop {
            let message = match GenMessage::read_from(&mut reader).await {
                Ok(message) => message,
                Err(GenMessageError::ReturnError(header, err)) => {
                    let _ = (header, err.to_string());
                    continue;
                }
                Err(GenMessageError::InternalError(_)) => break,
            };
            if message.header.type_ != MESSAGE_TYPE_REQUEST || message.check().is_err() {
                continue;
            }
            match ttrpc::Request::parse_from_bytes(&message.payload) {
                Ok(request) => out.push(TtrpcRequest {
                    service: request.service,
                    method: request.method,
                    payload: request.payload,
                }),
                Err(err) => {
                    let _ = err.to_string();
                }
            }
        }
        out
    })
}

/// Decodes `payload` as `M`; a decode error must be displayable.
pub fn decode<M: Message>(payload: &[u8]) -> Option<M> {
    match M::parse_from_bytes(payload) {
        Ok(message) => Some(message),
        Err(err) => {
            assert!(!err.to_string().is_empty());
            None
        }
    }
}
