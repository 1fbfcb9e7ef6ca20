#!/usr/bin/env bash
# Fetch the tools the `net` VM suite's figures compare netlink against, without changing the
# host: bookworm's iptables (xtables-legacy-multi) and ipset with the libraries they link,
# unpacked with `dpkg -x` under CACHE/iptables/root (same private apt configuration as
# fetch-runtime.sh). They only run inside the VM, where the initramfs builder copies them
# with their libraries (`ldd` with LD_LIBRARY_PATH=CACHE/iptables/root/usr/lib/x86_64-linux-gnu)
# and the xtables extensions.
# Usage: fetch-iptables.sh [CACHE_DIR]   (default: $NRI_CHAOS_CACHE or <repo>/.cache)
# Idempotent: a complete cache (stamp file) is reused. Writes CACHE/iptables/versions.env.
set -euo pipefail

repo_root=$(cd "$(dirname "$0")/../.." && pwd)
cache=${1:-${NRI_CHAOS_CACHE:-$repo_root/.cache}}
mkdir -p "$cache"
cache=$(cd "$cache" && pwd)
stamp="$cache/iptables/.complete-v1"
if [[ -f "$stamp" ]]; then
    echo "iptables cache complete: $cache/iptables"
    exit 0
fi

# shellcheck source=private-apt.sh
. "$(dirname "$0")/private-apt.sh"
if ! ls "$apt_dir"/lists/*_dists_bookworm_main_binary-amd64_Packages* >/dev/null 2>&1; then
    update_lists fetch-iptables
fi

part="$cache/iptables.partial"
rm -rf "$part"
mkdir -p "$part/root"
echo "fetching iptables and ipset (bookworm) ..." >&2
: >"$part/versions.env"
for pkg in iptables libip4tc2 libip6tc2 libxtables12 libnftnl11 libnetfilter-conntrack3 \
    libnfnetlink0 libmnl0 ipset libipset13; do
    unpack_bookworm "$pkg" "$part/root" fetch-iptables >>"$part/versions.env"
done

libs="$part/root/usr/lib/x86_64-linux-gnu"
for bin in usr/sbin/xtables-legacy-multi usr/sbin/ipset; do
    [[ -x "$part/root/$bin" ]] || { echo "fetch-iptables: no $bin in the packages" >&2; exit 1; }
    missing=$(LD_LIBRARY_PATH="$libs" ldd "$part/root/$bin" | awk '/not found/ {print $1}')
    [[ -z "$missing" ]] || { echo "fetch-iptables: $bin misses $missing" >&2; exit 1; }
done
[[ -f "$libs/xtables/libxt_set.so" ]] || { echo "fetch-iptables: no xtables set match" >&2; exit 1; }

rm -rf "$cache/iptables"
mv "$part" "$cache/iptables"
touch "$stamp"
echo "iptables cache complete: $cache/iptables"
cat "$cache/iptables/versions.env"
