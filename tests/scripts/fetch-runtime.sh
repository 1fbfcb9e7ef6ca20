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

mirror=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
mirror=${mirror:-http://deb.debian.org/debian}
keyring=/usr/share/keyrings/debian-archive-keyring.gpg

apt_dir="$cache/apt"
mkdir -p "$apt_dir"/{lists/partial,cache/archives/partial,etc/preferences.d,etc/apt.conf.d}
sources="$apt_dir/etc/sources.list"
for suite in bookworm trixie sid; do
    echo "deb [signed-by=$keyring] $mirror $suite main"
done >"$sources"
touch "$apt_dir/status"

apt_opts=(
    -o "Dir::Etc::SourceList=$sources"
    -o "Dir::Etc::SourceParts=-"
    -o "Dir::Etc::Preferences=$apt_dir/etc/preferences"
    -o "Dir::Etc::PreferencesParts=$apt_dir/etc/preferences.d"
    -o "Dir::State::Lists=$apt_dir/lists"
    -o "Dir::State::status=$apt_dir/status"
    -o "Dir::Cache=$apt_dir/cache"
    -o "APT::Default-Release="
    -o "Debug::NoLocking=1"
    -o "Acquire::Retries=3"
    # The cache dir is root's; apt's _apt sandbox user cannot write there (and warns).
    -o "APT::Sandbox::User=root"
)

echo "apt-get update (private lists: bookworm, trixie, sid) ..."
apt-get "${apt_opts[@]}" -q update >"$apt_dir/update.log" 2>&1 || {
    cat "$apt_dir/update.log" >&2
    echo "fetch-runtime: apt-get update failed (mirror $mirror)" >&2
    exit 1
}

# version_in SUITE PACKAGE -> the candidate version of PACKAGE in SUITE
version_in() {
    local suite=$1 pkg=$2
    apt-cache "${apt_opts[@]}" madison "$pkg" 2>/dev/null |
        awk -F'|' -v s="$suite" '$3 ~ " "s"/" {gsub(/ /, "", $2); print $2; exit}'
}

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
