#!/usr/bin/env bash
# Runs every check and test of nri-chaos: format, lints, the fuzz targets for a bounded time
# (tests/scripts/fuzz.sh), the unit tests and the end-to-end suite
# against real containerd 1.7 and 2.x nodes (runtime fetched into .cache/ on first use).
# Needs root (the e2e suite runs a private containerd, runc and CNI) and the Debian mirror.
# protoc (k8s-cri generates the CRI client at build time) comes from tests/scripts/fetch-protoc.sh.
set -euo pipefail
shopt -s inherit_errexit 2>/dev/null || true
cd "$(dirname "$0")/.."
started=$(date +%s)
step() { printf '\n=== %s (t+%ss)\n' "$*" "$(( $(date +%s) - started ))"; }

if [[ $(id -u) -ne 0 ]]; then
    echo "run-all: the end-to-end suite needs root (private containerd, runc, CNI, cgroups)" >&2
    exit 1
fi

step "fetch the runtime (containerd 1.7 + 2.x, runc, CNI, busybox) into .cache/"
bash tests/scripts/fetch-runtime.sh

step "protoc for the build (k8s-cri generates the CRI client with it) into .cache/protoc"
PROTOC=$(bash tests/scripts/fetch-protoc.sh)
export PROTOC

# The VM tier's machine (kernel, qemu; iptables for the `net` suite) is fetched while the
# workspace compiles, instead of inside the first VM test (minutes of download and unpacking).
# Its output goes to a log printed before the tests; a failed fetch is retried, and reported, by
# the VM tests themselves.
prefetch_log=$(mktemp)
( bash tests/scripts/fetch-vm.sh && bash tests/scripts/fetch-iptables.sh ) >"$prefetch_log" 2>&1 &
prefetch_pid=$!

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "build"
cargo build --workspace --locked --all-targets

results=$(mktemp)
# A failing test's own message goes last, so the tail of the output names what failed (a
# test's anyhow error carries no backtrace here; a panic keeps RUST_BACKTRACE's).
export RUST_LIB_BACKTRACE=0
on_exit() {
    local rc=$?
    if [[ $rc -ne 0 && -s "$results" ]]; then
        printf '\n=== run-all failed (exit %s); what the failing tests said:\n' "$rc"
        grep -E -A6 '^Error: |panicked at' "$results" | cut -c1-400 | tail -n 60 || true
    fi
    rm -f "$results"
}
trap on_exit EXIT

step "fuzz: every parser of outside input for a bounded time (tests/scripts/fuzz.sh)"
# Each target counts as one test in the closing line; a crash fails it.
bash tests/scripts/fuzz.sh 2>&1 | tee -a "$results"

step "the VM machine fetched in the background (tests/scripts/fetch-vm.sh, fetch-iptables.sh)"
prefetch_rc=0
wait "$prefetch_pid" || prefetch_rc=$?
tail -n 5 "$prefetch_log"
rm -f "$prefetch_log"
if [[ $prefetch_rc -ne 0 ]]; then
    echo "run-all: fetching the VM machine failed (exit $prefetch_rc); the VM tests fetch it again"
fi

step "tests: unit, then end-to-end (real containerd 1.7, 2.x and 2.3.4)"
# One cargo invocation over the same packages as the build above, so nothing is compiled again
# (a narrower package selection resolves other dependency features and rebuilds them).
# Timing-sensitive e2e tests share 2 cores; two at a time keeps their clocks honest.
cargo test --workspace --locked --lib --bins --tests --no-fail-fast -- --test-threads=2 --nocapture 2>&1 | tee -a "$results"

step "done"
# One closing line over every test binary above; tests that could not run here (containerd
# 2.3.4 absent; the host-tier netem scenario that needs sch_netem on a kernel without it, or
# the one that needs it missing on a kernel with it) print
# "[nri-chaos-tests] SKIPPED <name>: <why>", are counted as skipped by name, and not as passed.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     match($0, /\[nri-chaos-tests\] SKIPPED [^ ]+:/) { s++; names = names (s > 1 ? ", " : "") substr($0, RSTART + 26, RLENGTH - 27) }
     END { printf "%d passed, %d failed, %d skipped%s\n", p - s, f, s, (s ? " (" names ")" : "") }' "$results"
