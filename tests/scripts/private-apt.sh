# Sourced by fetch-runtime.sh and fetch-vm.sh: a private apt configuration under
# "$cache/apt" (its own sources list naming bookworm, trixie and sid on the machine's mirror,
# its own lists, cache and empty dpkg status), so that packages of any suite can be
# downloaded and unpacked with `dpkg -x` without touching the host's apt or dpkg state.
# Needs: $cache. Defines: mirror, apt_dir, apt_opts, update_lists NAME, version_in SUITE PKG.

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

# update_lists NAME: apt-get update with the private configuration; NAME prefixes errors.
update_lists() {
    echo "apt-get update (private lists: bookworm, trixie, sid) ..." >&2
    apt-get "${apt_opts[@]}" -q update >"$apt_dir/update.log" 2>&1 || {
        cat "$apt_dir/update.log" >&2
        echo "$1: apt-get update failed (mirror $mirror)" >&2
        exit 1
    }
}

# version_in SUITE PACKAGE -> the candidate version of PACKAGE in SUITE
version_in() {
    local suite=$1 pkg=$2
    apt-cache "${apt_opts[@]}" madison "$pkg" 2>/dev/null |
        awk -F'|' -v s="$suite" '$3 ~ " "s"/" {gsub(/ /, "", $2); print $2; exit}'
}

# unpack_bookworm PACKAGE ROOT [NAME]: downloads bookworm's PACKAGE into "$apt_dir/debs" and
# unpacks it under ROOT with `dpkg -x`; a failed download refreshes the lists once (a version
# that left the mirror). NAME prefixes errors. Prints PACKAGE=VERSION.
unpack_bookworm() {
    local pkg=$1 root=$2 name=${3:-private-apt} ver deb dl="$apt_dir/debs"
    mkdir -p "$dl" "$root"
    ver=$(version_in bookworm "$pkg")
    if [[ -z "$ver" ]] || ! (cd "$dl" && apt-get "${apt_opts[@]}" -q download "$pkg=$ver" >/dev/null 2>&1); then
        echo "$name: $pkg (bookworm) not in the lists or not downloadable: refreshing the lists" >&2
        update_lists "$name"
        ver=$(version_in bookworm "$pkg")
        [[ -n "$ver" ]] || { echo "$name: cannot resolve $pkg in bookworm" >&2; exit 1; }
        (cd "$dl" && apt-get "${apt_opts[@]}" -q download "$pkg=$ver" >/dev/null) ||
            { echo "$name: cannot download $pkg=$ver" >&2; exit 1; }
    fi
    deb=$(ls "$dl"/"${pkg}"_"${ver//:/%3a}"_*.deb 2>/dev/null | head -n1)
    [[ -n "$deb" ]] || { echo "$name: no .deb for $pkg=$ver" >&2; exit 1; }
    dpkg -x "$deb" "$root"
    echo "$pkg=$ver"
}
