#!/usr/bin/env bash
# nri-chaos benchmark on a private real containerd node (release build of the plugin).
# Usage: bash tests/bench.sh [N] [1.7|2]   (root)
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ $(id -u) -ne 0 ]]; then
    echo "bench: needs root (it runs a private containerd, runc and CNI)" >&2
    exit 1
fi
bash tests/scripts/fetch-runtime.sh >/dev/null
PROTOC=$(bash tests/scripts/fetch-protoc.sh)
export PROTOC
cargo build --quiet --locked --release -p nri-chaos-plugin -p nri-chaos-oci-hooks -p nri-chaos-shim-wrapper -p nri-chaos-tests --bins
export NRI_CHAOS_BIN="$PWD/target/release/nri-chaos"
export NRI_CHAOS_SHIM_BIN="$PWD/target/release/containerd-shim-nri-chaos-v2"
target/release/nri-chaos-bench "$@"
target/release/nri-chaos-bench-faults "${2:-2}"
target/release/nri-chaos-bench-shim "${2:-2}"
target/release/nri-chaos-bench-effect 30 "${2:-2}"
# Resource bounds under load with the release plugin: 110 pods + 100 faults, the connection
# flood, Synchronize of 1,000 containers, the malformed catalogue (tests/tests/e2e_load.rs).
echo
echo "resource bounds under load (release plugin; tests/tests/e2e_load.rs):"
cargo test --quiet --locked -p nri-chaos-tests --test e2e_load -- --test-threads=1 --nocapture 2>&1 |
    grep -E '^load:|^test result:' | sed 's/^load: /  /'
