#!/usr/bin/env bash
# The nri-chaos demo: a private real containerd node (1.7 and 2.x) with nri-chaos registered
# over NRI and a pod whose `app` container asks to be killed 2 s after start.
# Needs root; fetches the runtime into .cache/ on first use; changes nothing else on the host.
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ $(id -u) -ne 0 ]]; then
    echo "demo: needs root (it runs a private containerd, runc and CNI)" >&2
    exit 1
fi
bash tests/scripts/fetch-runtime.sh >/dev/null
PROTOC=$(bash tests/scripts/fetch-protoc.sh)
export PROTOC
cargo build --quiet --locked -p nri-chaos-plugin -p nri-chaos-tests --bins
exec target/debug/nri-chaos-demo "$@"
