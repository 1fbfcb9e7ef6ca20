#!/usr/bin/env bash
# Runs every fuzz target of fuzz/ (cargo-fuzz, libFuzzer) for a bounded time and counts each
# target as one test: it fails on any crash, panic, timeout (an input that takes > 10 s) or
# out-of-memory. The closing `test result:` line is read by tests/run-all.sh.
#
# Usage: tests/scripts/fuzz.sh [--long] [--seconds N] [TARGET...]
#   default  every target for 8 s, one per CPU at a time (CI: tests/run-all.sh)
#   --long   every target for 600 s (or --seconds N), for a long run before a release
#   TARGET   only these targets (names: the files in fuzz/fuzz_targets/)
#
# cargo-fuzz is installed once into <repo>/.cache/cargo-fuzz (`cargo install --locked`, a
# pinned version; the host is not changed). libFuzzer comes with the libfuzzer-sys crate and is
# built by cargo. The seeds in fuzz/corpus/<target> are read; what libFuzzer learns goes to
# .cache/fuzz/corpus/<target> (kept between runs), crashes to fuzz/artifacts/<target>/.
set -euo pipefail
shopt -s inherit_errexit 2>/dev/null || true

repo_root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$repo_root"
seconds=8
targets=()
while [[ $# -gt 0 ]]; do
    case "$1" in
        --long) seconds=600 ;;
        --seconds) seconds=$2; shift ;;
        -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
        -*) echo "fuzz.sh: unknown option $1" >&2; exit 2 ;;
        *) targets+=("$1") ;;
    esac
    shift
done
if [[ ${#targets[@]} -eq 0 ]]; then
    for f in fuzz/fuzz_targets/*.rs; do targets+=("$(basename "$f" .rs)"); done
fi

started=$(date +%s)
cache="$repo_root/.cache"
version=0.13.2
tool="$cache/cargo-fuzz"
if [[ ! -f "$tool/.complete-$version" ]]; then
    echo "fuzz.sh: cargo install cargo-fuzz $version into $tool ..." >&2
    rm -rf "$tool.partial"
    cargo install --quiet --locked --version "=$version" --root "$tool.partial" cargo-fuzz >&2
    rm -rf "$tool"
    mv "$tool.partial" "$tool"
    touch "$tool/.complete-$version"
fi
export PATH="$tool/bin:$PATH"

# Safe Rust: no sanitizer (a panic is the crash), but debug assertions and overflow checks on.
# The fuzz package has its own Cargo.lock: refuse to build if it is not up to date (cargo fuzz
# has no --locked of its own).
cargo metadata --locked --format-version 1 --manifest-path fuzz/Cargo.toml >/dev/null
echo "fuzz.sh: building ${#targets[@]} target(s) ..." >&2
cargo fuzz build --fuzz-dir fuzz -s none -a >&2
built=$(( $(date +%s) - started ))
bin_dir=fuzz/target/x86_64-unknown-linux-gnu/release

# One target per CPU at a time (each is one single-threaded libFuzzer process).
parallel=$(nproc 2>/dev/null || echo 1)
run_target() {
    local target=$1
    local corpus="$cache/fuzz/corpus/$target"
    local artifacts="fuzz/artifacts/$target"
    mkdir -p "$corpus" "$artifacts"
    local status=0
    "$bin_dir/$target" "$corpus" "fuzz/corpus/$target" \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=8192 \
        -artifact_prefix="$artifacts/" -print_final_stats=1 >"$cache/fuzz/$target.log" 2>&1 || status=$?
    echo "$status" >"$cache/fuzz/$target.status"
}
mkdir -p "$cache/fuzz"
running=0
for target in "${targets[@]}"; do
    rm -f "$cache/fuzz/$target.status"
    run_target "$target" &
    running=$(( running + 1 ))
    if [[ $running -ge $parallel ]]; then
        wait -n || true
        running=$(( running - 1 ))
    fi
done
wait

passed=0
failed=0
total_runs=0
failures=()
for target in "${targets[@]}"; do
    log="$cache/fuzz/$target.log"
    status=$(cat "$cache/fuzz/$target.status" 2>/dev/null || echo "none (the run did not finish)")
    runs=$(awk '/^stat::number_of_executed_units:/ { print $NF }' "$log" 2>/dev/null | tail -1)
    runs=${runs:-0}
    total_runs=$(( total_runs + runs ))
    if [[ $status == 0 ]]; then
        passed=$(( passed + 1 ))
        printf 'fuzz %-18s ok      %10d runs in %ss\n' "$target" "$runs" "$seconds"
    else
        failed=$(( failed + 1 ))
        failures+=("$target")
        printf 'fuzz %-18s FAILED  %10d runs (exit %s); log %s\n' "$target" "$runs" "$status" "$log"
        grep -E "panicked at|ERROR: libFuzzer|SUMMARY|Test unit written to|^(thread|assertion)" "$log" | head -20 | sed 's/^/    /' || true
    fi
done
took=$(( $(date +%s) - started ))
echo "fuzz: ${#targets[@]} target(s), $parallel at a time, $total_runs executions, ${#failures[@]} crashed${failures[*]:+ (${failures[*]})}; build ${built}s, total ${took}s"
result=ok
[[ $failed -eq 0 ]] || result=FAILED
echo "test result: $result. $passed passed; $failed failed; 0 ignored; 0 measured; 0 filtered out; finished in ${took}s"
[[ $failed -eq 0 ]]
