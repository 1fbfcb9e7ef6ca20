#!/usr/bin/env python3
"""Writes the binary seeds of the wire targets (nri_mux, nri_ttrpc, control_request): the
messages containerd and `nri-chaos ctl` send, encoded as protobuf with the field numbers of
proto/protos/*.proto, wrapped in ttrpc's Request and frame header, and for the NRI socket in
the multiplexer's frame. Run from the repository root: python3 fuzz/seeds/make_frames.py"""
import os
import struct

OUT = os.path.join(os.path.dirname(__file__), "..", "corpus")


def varint(n):
    out = b""
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out += bytes([b | 0x80])
        else:
            return out + bytes([b])


def field_bytes(num, data):
    if isinstance(data, str):
        data = data.encode()
    return varint(num << 3 | 2) + varint(len(data)) + data


def field_varint(num, n):
    return varint(num << 3) + varint(n)


def string_map(num, entries):
    return b"".join(field_bytes(num, field_bytes(1, k) + field_bytes(2, v)) for k, v in entries.items())


def pod(uid, name, annotations, netns="/var/run/netns/cni-1234"):
    linux = field_bytes(3, "/kubepods/besteffort/pod" + uid) + field_bytes(
        5, field_bytes(1, "network") + field_bytes(2, netns)
    ) + field_bytes(5, field_bytes(1, "ipc"))
    return (
        field_bytes(1, "sandbox-" + uid)
        + field_bytes(2, name)
        + field_bytes(3, uid)
        + field_bytes(4, "default")
        + string_map(5, {"app": name})
        + string_map(6, annotations)
        + field_bytes(7, "runc")
        + field_bytes(8, linux)
        + field_varint(9, 4242)
    )


def container(uid, name, limit=268435456, state=1):
    memory = field_bytes(1, field_bytes(1, field_varint(1, limit)))
    linux = field_bytes(3, memory) + field_bytes(5, "/kubepods/besteffort/pod%s/%s" % (uid, name))
    return (
        field_bytes(1, "ctr-" + name)
        + field_bytes(2, "sandbox-" + uid)
        + field_bytes(3, name)
        + field_varint(4, state)
        + field_bytes(7, "sleep")
        + field_bytes(7, "3600")
        + field_bytes(8, "PATH=/bin")
        + field_bytes(11, linux)
        + field_varint(12, 4343)
    )


def request(service, method, payload, timeout=2_000_000_000):
    return (
        field_bytes(1, service)
        + field_bytes(2, method)
        + field_bytes(3, payload)
        + field_varint(4, timeout)
    )


def ttrpc(stream_id, payload, type_=1, flags=0):
    return struct.pack(">IIBB", len(payload), stream_id, type_, flags) + payload


def mux(conn, payload):
    return struct.pack(">II", conn, len(payload)) + payload


def write(target, name, data):
    os.makedirs(os.path.join(OUT, target), exist_ok=True)
    with open(os.path.join(OUT, target, name), "wb") as f:
        f.write(data)


PLUGIN = "nri.pkg.api.v1alpha1.Plugin"
CONTROL = "nri_chaos.control.v1.Control"
README_POD = {
    "kill.nri-chaos.io/container.app": "{after: 2s}",
    "kill.nri-chaos.io/pod": "{after: 1s, every: 2s, count: 3, signal: SIGTERM}",
    "start.nri-chaos.io/container.app": "{delay: 3s}",
    "io.kubernetes.cri.sandbox-name": "web",
}
BAD_POD = {
    "kill.nri-chaos.io/container.app": "{after: 2x}",
    "stress.nri-chaos.io": "{memory: {size: 1Ei}, duration: 1m}",
    "kil.nri-chaos.io": "{}",
}

configure = field_bytes(2, "containerd") + field_bytes(3, "v2.1.9") + field_varint(4, 5_000_000_000) + field_varint(5, 2_000_000_000)
synchronize = (
    field_bytes(1, pod("u1", "web", README_POD))
    + field_bytes(1, pod("u2", "bad", BAD_POD))
    + field_bytes(2, container("u1", "app", state=3))
    + field_bytes(2, container("u2", "app", state=3))
)
create = field_bytes(1, pod("u1", "web", README_POD)) + field_bytes(2, container("u1", "app"))
create_bad = field_bytes(1, pod("u2", "bad", BAD_POD)) + field_bytes(2, container("u2", "app", limit=0))
stop = field_bytes(1, pod("u1", "web", {})) + field_bytes(2, container("u1", "app", state=4))
state_change = field_varint(1, 11) + field_bytes(2, pod("u1", "web", {})) + field_bytes(3, container("u1", "app", state=4))

session = (
    ttrpc(1, request(PLUGIN, "Configure", configure))
    + ttrpc(3, request(PLUGIN, "Synchronize", synchronize))
    + ttrpc(5, request(PLUGIN, "CreateContainer", create))
    + ttrpc(7, request(PLUGIN, "CreateContainer", create_bad))
    + ttrpc(9, request(PLUGIN, "StopContainer", stop))
    + ttrpc(11, request(PLUGIN, "StateChange", state_change))
    + ttrpc(13, request(PLUGIN, "Shutdown", b""))
)
write("nri_ttrpc", "session", session)
write("nri_ttrpc", "create-container", ttrpc(5, request(PLUGIN, "CreateContainer", create)))
write("nri_ttrpc", "create-container-bad-annotations", ttrpc(7, request(PLUGIN, "CreateContainer", create_bad)))
write("nri_ttrpc", "synchronize", ttrpc(3, request(PLUGIN, "Synchronize", synchronize)))

# The NRI socket: the plugin's service on connection 1 (containerd calls), the runtime's on
# connection 2 (the RegisterPlugin answer), split across frames as the mux may see them.
register_answer = ttrpc(1, field_bytes(1, b"") + field_bytes(2, b""), type_=2)
calls = ttrpc(1, request(PLUGIN, "Configure", configure)) + ttrpc(3, request(PLUGIN, "CreateContainer", create))
write("nri_mux", "session", mux(2, register_answer) + mux(1, calls[:40]) + mux(1, calls[40:]) + mux(7, b"nobody"))
write("nri_mux", "one-frame", mux(1, ttrpc(1, request(PLUGIN, "Configure", configure))))
write("nri_mux", "oversized", mux(1, b"") + struct.pack(">II", 1, (1 << 24) + 1))
write("nri_mux", "truncated", mux(2, register_answer)[:-3])

inject = field_bytes(1, "default/web/app") + field_bytes(2, "kill") + field_bytes(3, "{after: 5s}")
inject_bad = field_bytes(1, "default/web") + field_bytes(2, "stress") + field_bytes(3, "{cpu: {workers: 9999}, duration: 1m}")
write("control_request", "inject", ttrpc(1, request(CONTROL, "Inject", inject, timeout=30_000_000_000)))
write("control_request", "inject-refused", ttrpc(1, request(CONTROL, "Inject", inject_bad)))
write(
    "control_request",
    "ctl-session",
    ttrpc(1, request(CONTROL, "Status", b""))
    + ttrpc(3, request(CONTROL, "List", b""))
    + ttrpc(5, request(CONTROL, "Recover", field_varint(1, 7)))
    + ttrpc(7, request(CONTROL, "Recover", field_varint(2, 1)))
    + ttrpc(9, request(CONTROL, "Events", field_varint(1, 0) + field_varint(2, 10000))),
)
