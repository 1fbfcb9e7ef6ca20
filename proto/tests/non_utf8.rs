//! How annotations reach nri-chaos: as `map<string, string>` entries of NRI protobuf messages
//! (`PodSandbox.annotations`). Protobuf `string` fields are UTF-8: containerd's Go encoder
//! refuses to marshal anything else (and the kubelet's CRI request, also protobuf, already
//! did), so non-UTF-8 annotation bytes cannot be sent to a plugin. Should such bytes arrive
//! anyway, the decode refuses the message with an error that says so; it does not panic and
//! does not hand a lossy string to the annotation grammar.

use nri_chaos_proto::nri::{Container, CreateContainerRequest, PodSandbox};
use protobuf::Message;

const KEY: &str = "kill.nri-chaos.io/container.app";
const VALUE: &str = "{after: 2s}";

fn encoded() -> Vec<u8> {
    let request = CreateContainerRequest {
        pod: Some(PodSandbox {
            id: "sandbox".into(),
            name: "web".into(),
            namespace: "default".into(),
            annotations: [(KEY.to_string(), VALUE.to_string())].into(),
            ..Default::default()
        })
        .into(),
        container: Some(Container {
            id: "c1".into(),
            name: "app".into(),
            ..Default::default()
        })
        .into(),
        ..Default::default()
    };
    request
        .write_to_bytes()
        .unwrap_or_else(|err| panic!("encode: {err}"))
}

/// `bytes` with the first occurrence of `needle` overwritten by `with` (same length).
fn patched(bytes: &[u8], needle: &[u8], with: &[u8]) -> Vec<u8> {
    assert_eq!(needle.len(), with.len());
    let at = bytes
        .windows(needle.len())
        .position(|w| w == needle)
        .unwrap_or_else(|| panic!("{needle:?} not in the encoded request"));
    let mut out = bytes.to_vec();
    out[at..at + with.len()].copy_from_slice(with);
    out
}

#[test]
fn a_valid_annotation_decodes_as_sent() {
    let back = CreateContainerRequest::parse_from_bytes(&encoded()).unwrap();
    assert_eq!(
        back.pod.annotations.get(KEY).map(String::as_str),
        Some(VALUE)
    );
}

#[test]
fn non_utf8_annotation_values_and_keys_are_refused_at_the_protobuf_layer() {
    let bytes = encoded();
    let cases: [(&str, &[u8], &[u8]); 4] = [
        // A lone continuation byte, an overlong '/', a surrogate half (CESU-8), and 0xff.
        ("value: lone continuation byte", b"2s}", b"2\x80}"),
        ("value: overlong encoding", b"{after", b"\xc0\xaffter"),
        ("value: UTF-16 surrogate", b"{after", b"\xed\xa0\x80ter"),
        ("key: 0xff", b"kill.", b"kil\xff."),
    ];
    for (what, needle, with) in cases {
        let hostile = patched(&bytes, needle, with);
        let err = CreateContainerRequest::parse_from_bytes(&hostile)
            .err()
            .unwrap_or_else(|| panic!("{what}: a non-UTF-8 annotation was accepted"));
        let shown = err.to_string();
        assert!(shown.contains("UTF-8"), "{what}: {shown}");
    }
}
