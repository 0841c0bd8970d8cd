#!/usr/bin/env bash
# Fetches a newer QEMU from Debian's bookworm-backports next to the system one, for the harness
# suites that need it (nothing of it is committed, nothing is installed system-wide):
#
#   target/qemu-backports/root/usr/bin/qemu-system-aarch64   the binary (package qemu-system-arm)
#   target/qemu-backports/root/usr/share/qemu/               its data files (qemu-system-data),
#                                                            given to it with -L
#   target/qemu-backports/root/usr/lib/<multiarch>/qemu/     its modules (qemu-system-common),
#                                                            given to it with QEMU_MODULE_DIR
#   target/qemu-backports/VERSION                            the Debian version unpacked
#
# Why: the system QEMU (Debian 12's 7.2, which every other suite and the benchmark figures are
# calibrated on) runs the CPUs of an `-icount` machine unfairly (the first CPU gets the whole
# budget to the next deadline; fixed in QEMU 8.1), so `sched_shares_two_cpus` needs a newer one
# (docs/scheduler.md, "Known limits"). `cargo xtask test` runs this when such a suite will run.
#
# Usage: scripts/fetch-qemu-backports.sh
#
# Idempotent and cached: once VERSION exists nothing is downloaded again (delete
# target/qemu-backports/ to get the version the archive has now). The chain of trust is the
# archive's: InRelease is checked with gpgv against Debian's archive keyring, Packages.xz against
# the SHA256 in InRelease, each .deb against the SHA256 in Packages. Shared libraries the binary
# needs are the Depends of qemu-system-arm, all in bookworm: missing ones are installed with
# apt-get when run as root (otherwise the command is printed).
#
# Environment: DEBIAN_MIRROR (default http://deb.debian.org/debian).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
suite=bookworm-backports
packages=(qemu-system-arm qemu-system-common qemu-system-data)
out="$repo/target/qemu-backports"
root="$out/root"
debs="$out/debs"
keyring=/usr/share/keyrings/debian-archive-keyring.gpg

log() { printf 'fetch-qemu-backports: %s\n' "$*" >&2; }
die() {
    log "$*"
    exit 1
}

binary="$root/usr/bin/qemu-system-aarch64"
if [[ -s "$out/VERSION" && -x "$binary" ]]; then
    log "using cached qemu-system-arm $(cat "$out/VERSION") ($binary)"
    exit 0
fi

arch="$(dpkg --print-architecture)"
mkdir -p "$debs"

fetch() { # <url> <file>
    if ! curl -fsSL --retry 3 --connect-timeout 20 -o "$2.part" "$1"; then
        rm -f "$2.part"
        die "cannot download $1 (is $mirror reachable? set DEBIAN_MIRROR to another Debian mirror, or rerun)"
    fi
    mv "$2.part" "$2"
}

sha256_of() { sha256sum "$1" | cut -d' ' -f1; }

# 1. The release file, signed by the archive, and the package index it vouches for.
release_url="$mirror/dists/$suite/InRelease"
fetch "$release_url" "$out/InRelease"
[[ -r "$keyring" ]] || die "no $keyring to check $release_url with (apt-get install debian-archive-keyring)"
command -v gpgv >/dev/null || die "gpgv not found to check $release_url with (apt-get install gpgv)"
gpgv --keyring "$keyring" "$out/InRelease" 2>"$out/gpgv.log" ||
    die "$release_url: bad signature (gpgv output in $out/gpgv.log)"
index="main/binary-$arch/Packages.xz"
want="$(awk -v f="$index" '/^SHA256:/{s=1; next} /^[^ ]/{s=0} s && $3==f {print $1}' "$out/InRelease")"
[[ -n "$want" ]] || die "$release_url lists no $index"
fetch "$mirror/dists/$suite/$index" "$out/Packages.xz"
[[ "$(sha256_of "$out/Packages.xz")" == "$want" ]] ||
    die "$mirror/dists/$suite/$index does not match its SHA256 in InRelease (a mirror in the middle of an update? rerun)"
xz -dc "$out/Packages.xz" >"$out/Packages"

field() { # <package> <field>: the field of the package's stanza in Packages
    awk -v p="$1" -v f="$2:" '
        $1 == "Package:" { cur = $2 }
        cur == p && $1 == f { sub(/^[^:]*: /, ""); print; exit }' "$out/Packages"
}

# 2. The packages, checked against the index.
rm -rf "$root.tmp"
mkdir -p "$root.tmp"
version="$(field qemu-system-arm Version)"
[[ -n "$version" ]] || die "$suite has no qemu-system-arm for $arch"
for pkg in "${packages[@]}"; do
    file="$(field "$pkg" Filename)"
    sum="$(field "$pkg" SHA256)"
    [[ -n "$file" && -n "$sum" ]] || die "$suite's index has no $pkg"
    [[ "$(field "$pkg" Version)" == "$version" ]] ||
        die "$pkg $(field "$pkg" Version) is not qemu-system-arm's version $version"
    deb="$debs/$(basename "$file")"
    if [[ ! -s "$deb" || "$(sha256_of "$deb")" != "$sum" ]]; then
        log "downloading $mirror/$file"
        fetch "$mirror/$file" "$deb"
    fi
    [[ "$(sha256_of "$deb")" == "$sum" ]] ||
        die "$mirror/$file does not match its SHA256 in Packages (rerun; delete $debs if it persists)"
    dpkg-deb -x "$deb" "$root.tmp"
done

# 3. The shared libraries: qemu-system-arm's Depends, less the packages unpacked above.
missing=()
deps="$(field qemu-system-arm Depends)"
IFS=',' read -ra alternatives <<<"$deps"
for alt in "${alternatives[@]}"; do
    dep="$(sed -E 's/^ *//; s/ *\|.*//; s/ *\(.*//' <<<"$alt")" # the first alternative, unversioned
    [[ " ${packages[*]} " == *" $dep "* ]] && continue
    if ! dpkg-query -W -f='${Status}' "$dep" 2>/dev/null | grep -q 'install ok installed'; then
        missing+=("$dep")
    fi
done
if ((${#missing[@]})); then
    install="apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y ${missing[*]}"
    if [[ "$(id -u)" -ne 0 ]]; then
        die "the backports QEMU needs libraries from bookworm; install them as root: $install"
    fi
    log "installing the libraries it needs: $install"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >&2
fi
if ldd "$root.tmp/usr/bin/qemu-system-aarch64" | grep -q 'not found'; then
    ldd "$root.tmp/usr/bin/qemu-system-aarch64" | grep 'not found' >&2
    die "$root.tmp/usr/bin/qemu-system-aarch64 misses the shared libraries above"
fi
"$root.tmp/usr/bin/qemu-system-aarch64" --version >&2 ||
    die "the unpacked qemu-system-aarch64 does not run"

rm -rf "$root"
mv "$root.tmp" "$root"
printf '%s\n' "$version" >"$out/VERSION"
log "unpacked qemu-system-arm $version into $root"
