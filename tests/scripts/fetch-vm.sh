#!/usr/bin/env bash
# Fetch the VM test tier's machine, without changing the host: Debian bookworm's cloud kernel
# (the linux-image-6.1.0-*-cloud-amd64 package linux-image-cloud-amd64 depends on; it has
# sch_netem as a module) and qemu-system-x86 7.2 with its firmware and the shared libraries
# this host lacks. Same private apt configuration as fetch-runtime.sh (its lists dir is reused
# when present); the .debs are unpacked with `dpkg -x` under CACHE/vm/root.
#   qemu runs as: LD_LIBRARY_PATH=$(cat CACHE/vm/ld-library-path) \
#       CACHE/vm/root/usr/bin/qemu-system-x86_64 -L CACHE/vm/root/usr/share/qemu \
#       -L CACHE/vm/root/usr/share/seabios ...
# Usage: fetch-vm.sh [CACHE_DIR]   (default: $NRI_CHAOS_CACHE or <repo>/.cache)
# Idempotent: a complete cache (stamp file) is reused. Writes CACHE/vm/vm.env (paths, versions).
set -euo pipefail

repo_root=$(cd "$(dirname "$0")/../.." && pwd)
cache=${1:-${NRI_CHAOS_CACHE:-$repo_root/.cache}}
mkdir -p "$cache"
cache=$(cd "$cache" && pwd)
stamp="$cache/vm/.complete-v1"
if [[ -f "$stamp" ]]; then
    echo "vm cache complete: $cache/vm"
    exit 0
fi

# The same private apt tree as fetch-runtime.sh (same sources, so the lists are shared).
# shellcheck source=private-apt.sh
. "$(dirname "$0")/private-apt.sh"
# Reuse fetch-runtime.sh's lists when present; they are refreshed if a download fails (a
# version that left the mirror).
lists_fresh=0
if ! ls "$apt_dir"/lists/*_dists_bookworm_main_binary-amd64_Packages* >/dev/null 2>&1; then
    update_lists fetch-vm
    lists_fresh=1
fi

root="$cache/vm.partial/root"
rm -rf "$cache/vm.partial"
mkdir -p "$root"
dl="$apt_dir/debs"
mkdir -p "$dl"

fetch() { # PACKAGE (bookworm) -> unpacked into $root; echoes NAME=VERSION
    local pkg=$1 ver deb
    ver=$(version_in bookworm "$pkg")
    [[ -n "$ver" ]] || { echo "fetch-vm: cannot resolve $pkg in bookworm" >&2; exit 1; }
    if ! (cd "$dl" && apt-get "${apt_opts[@]}" -q download "$pkg=$ver" >/dev/null); then
        [[ $lists_fresh == 0 ]] || { echo "fetch-vm: cannot download $pkg=$ver" >&2; exit 1; }
        echo "fetch-vm: download of $pkg=$ver failed: refreshing the lists, retrying" >&2
        update_lists fetch-vm
        ver=$(version_in bookworm "$pkg")
        (cd "$dl" && apt-get "${apt_opts[@]}" -q download "$pkg=$ver" >/dev/null) ||
            { echo "fetch-vm: cannot download $pkg=$ver" >&2; exit 1; }
    fi
    deb=$(ls "$dl"/"${pkg}"_"${ver//:/%3a}"_*.deb 2>/dev/null | head -n1)
    [[ -n "$deb" ]] || { echo "fetch-vm: no .deb for $pkg=$ver" >&2; exit 1; }
    dpkg -x "$deb" "$root"
    echo "  $pkg=$ver" >&2
    echo "$pkg=$ver"
}

# The kernel: the versioned package the metapackage depends on.
meta_v=$(version_in bookworm linux-image-cloud-amd64)
[[ -n "$meta_v" ]] || { echo "fetch-vm: cannot resolve linux-image-cloud-amd64" >&2; exit 1; }
kpkg=$(apt-cache "${apt_opts[@]}" show "linux-image-cloud-amd64=$meta_v" |
    awk '/^Depends:/ {for (i = 2; i <= NF; i++) if ($i ~ /^linux-image-6\./) {print $i; exit}}')
case "$kpkg" in linux-image-6.1.0-*-cloud-amd64) ;; *)
    echo "fetch-vm: linux-image-cloud-amd64 $meta_v depends on '$kpkg', expected linux-image-6.1.0-*-cloud-amd64" >&2
    exit 1 ;;
esac
echo "fetching (bookworm) ..."
kernel=$(fetch "$kpkg")

# qemu 7.2 and its firmware, plus the libraries this host lacks (computed with ldd on the
# unpacked binary on a Debian 12 host; checked again below).
qemu=$(fetch qemu-system-x86)
case "$qemu" in qemu-system-x86=1:7.2*) ;; *) echo "fetch-vm: $qemu is not qemu 7.2" >&2; exit 1 ;; esac
for pkg in qemu-system-common qemu-system-data seabios ipxe-qemu \
    libcapstone4 libfdt1 libibverbs1 librdmacm1 libnl-3-200 libnl-route-3-200 \
    libpmem1 libndctl6 libdaxctl1 libslirp0 libvdeplug2; do
    fetch "$pkg" >/dev/null
done

# Library search path: the unpacked multiarch dirs.
ld_path="$root/usr/lib/x86_64-linux-gnu:$root/lib/x86_64-linux-gnu"
qemu_bin="$root/usr/bin/qemu-system-x86_64"
missing=$(LD_LIBRARY_PATH="$ld_path" ldd "$qemu_bin" | awk '/not found/ {print $1}')
if [[ -n "$missing" ]]; then
    echo "fetch-vm: qemu-system-x86_64 still misses libraries: $missing" >&2
    echo "  add the bookworm packages owning them to the list in $0" >&2
    exit 1
fi
LD_LIBRARY_PATH="$ld_path" "$qemu_bin" --version | head -n1

vmlinuz=$(ls "$root"/boot/vmlinuz-* | head -n1)
kver=${vmlinuz##*/vmlinuz-}
# The package ships no modules.dep (depmod runs at install): the initramfs builder reads each
# module's dependencies from its .modinfo section.
netem_ko=$(find "$root/lib/modules/$kver" -name 'sch_netem.ko*' | head -n1)
[[ -n "$netem_ko" ]] || {
    echo "fetch-vm: kernel $kver has no sch_netem module" >&2
    exit 1
}

cat >"$cache/vm.partial/vm.env" <<VERS
KERNEL_PACKAGE=$kernel
KERNEL_RELEASE=$kver
QEMU_PACKAGE=$qemu
VERS
echo "$ld_path" | sed "s#$cache/vm.partial/#$cache/vm/#g" >"$cache/vm.partial/ld-library-path"

rm -rf "$cache/vm"
mv "$cache/vm.partial" "$cache/vm"
touch "$stamp"
echo "vm cache complete: $cache/vm"
cat "$cache/vm/vm.env"
