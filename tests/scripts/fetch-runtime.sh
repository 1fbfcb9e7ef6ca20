#!/usr/bin/env bash
# Fetch the real runtime the end-to-end suite runs against, without changing the host:
# a private apt configuration downloads the .debs, `dpkg -x` unpacks them into the cache dir.
#   containerd 1.7.24 (trixie), containerd 2.x (sid, resolved now), runc 1.1.5 (bookworm),
#   CNI plugins (trixie), busybox-static (bookworm).
# Usage: fetch-runtime.sh [CACHE_DIR]   (default: $NRI_CHAOS_CACHE or <repo>/.cache)
# Idempotent: a complete cache (stamp file) is reused.
set -euo pipefail

repo_root=$(cd "$(dirname "$0")/../.." && pwd)
cache=${1:-${NRI_CHAOS_CACHE:-$repo_root/.cache}}
mkdir -p "$cache"
cache=$(cd "$cache" && pwd)
stamp="$cache/runtime/.complete-v1"
if [[ -f "$stamp" ]]; then
    echo "runtime cache complete: $cache/runtime"
    exit 0
fi

# shellcheck source=private-apt.sh
. "$(dirname "$0")/private-apt.sh"
update_lists fetch-runtime

download() { # NAME=VERSION into DEST dir, unpack into UNPACK dir
    local spec=$1 unpack=$2 dl="$apt_dir/debs"
    mkdir -p "$dl" "$unpack"
    (cd "$dl" && apt-get "${apt_opts[@]}" -q download "$spec" >/dev/null)
    local name=${spec%%=*} ver=${spec#*=}
    local deb
    deb=$(ls "$dl"/"${name}"_"${ver//:/%3a}"_*.deb 2>/dev/null | head -n1)
    [[ -n "$deb" ]] || { echo "fetch-runtime: no .deb for $spec" >&2; exit 1; }
    dpkg -x "$deb" "$unpack"
    echo "  $spec -> $unpack"
}

rt="$cache/runtime.partial"
rm -rf "$rt"
mkdir -p "$rt"

c17=$(version_in trixie containerd)
c2=$(version_in sid containerd)
runc_v=$(version_in bookworm runc)
cni_v=$(version_in trixie containernetworking-plugins)
bb_v=$(version_in bookworm busybox-static)
for pair in "containerd(trixie):$c17" "containerd(sid):$c2" "runc(bookworm):$runc_v" \
    "containernetworking-plugins(trixie):$cni_v" "busybox-static(bookworm):$bb_v"; do
    [[ -n "${pair#*:}" ]] || { echo "fetch-runtime: cannot resolve ${pair%%:*}" >&2; exit 1; }
done
case "$c17" in 1.7.*) ;; *) echo "fetch-runtime: trixie containerd is $c17, expected 1.7.x" >&2; exit 1 ;; esac
case "$c2" in 2.*) ;; *) echo "fetch-runtime: sid containerd is $c2, expected 2.x" >&2; exit 1 ;; esac

download "containerd=$c17" "$rt/containerd-1.7"
download "containerd=$c2" "$rt/containerd-2"
download "runc=$runc_v" "$rt/runc"
download "containernetworking-plugins=$cni_v" "$rt/cni"
download "busybox-static=$bb_v" "$rt/busybox"

cat >"$rt/versions.env" <<VERS
CONTAINERD_17_VERSION=$c17
CONTAINERD_2_VERSION=$c2
RUNC_VERSION=$runc_v
CNI_VERSION=$cni_v
BUSYBOX_VERSION=$bb_v
VERS

rm -rf "$cache/runtime"
mv "$rt" "$cache/runtime"
touch "$stamp"
echo "runtime cache complete: $cache/runtime"
cat "$cache/runtime/versions.env"
