#!/usr/bin/env bash
# protoc for the build, without changing the host: the k8s-cri crate (the e2e harness's CRI
# client) generates its code with protoc at build time. The crate protoc-bin-vendored ships
# Google's release protoc binaries on crates.io; `cargo install` builds its `protoc-bin-which`
# in a scratch root, and the protoc it names (with its well-known-types include dir) is copied
# into <repo>/.cache/protoc, where `.cargo/config.toml` points PROTOC for every cargo command.
# Usage: fetch-protoc.sh [CACHE_DIR]   (default: <repo>/.cache; prints the protoc path on stdout)
# Idempotent: a complete install (stamp file) is reused.
set -euo pipefail

repo_root=$(cd "$(dirname "$0")/../.." && pwd)
cache=${1:-$repo_root/.cache}
# The protoc-bin-vendored release; it pins its per-platform crates (and so the protoc inside).
vendored=3.3.0
mkdir -p "$cache"
cache=$(cd "$cache" && pwd)
dest="$cache/protoc"
stamp="$dest/.complete-$vendored"

if [[ ! -f "$stamp" ]]; then
    part="$dest.partial"
    rm -rf "$part"
    mkdir -p "$part/bin"
    echo "fetch-protoc: cargo install protoc-bin-vendored $vendored (scratch root) ..." >&2
    cargo install --quiet --locked --version "=$vendored" --root "$part/tool" protoc-bin-vendored >&2
    bin=$("$part/tool/bin/protoc-bin-which")
    [[ -x "$bin" ]] || { echo "fetch-protoc: protoc-bin-which named no executable ($bin)" >&2; exit 1; }
    cp "$bin" "$part/bin/protoc"
    # protoc finds the well-known types in ../include next to its binary.
    cp -r "$(dirname "$bin")/../include" "$part/include"
    rm -rf "$part/tool"
    "$part/bin/protoc" --version >&2 || { echo "fetch-protoc: $part/bin/protoc does not run" >&2; exit 1; }
    rm -rf "$dest"
    mv "$part" "$dest"
    touch "$stamp"
fi
echo "$dest/bin/protoc"
