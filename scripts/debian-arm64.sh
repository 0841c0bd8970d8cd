# shellcheck shell=bash
# Shared by fetch-dtbs.sh and fetch-guest-images.sh (sourced, not run): downloading Debian arm64
# packages through apt and unpacking them under <repo>/target/debs/, cached.
#
#   fetch_arm64_deb PACKAGE DIR   download PACKAGE:arm64 (once) into target/debs/ and unpack it
#                                 with `dpkg -x` into target/debs/DIR (once)
#   resolve_kernel_package        the linux-image-<version>-arm64 package behind linux-image-arm64
#
# apt must know the arm64 architecture: `dpkg --add-architecture arm64 && apt-get update`, which
# is done here when run as root (otherwise the commands are printed and the script stops).
# Expects `repo` and a `log` function from the caller.

# shellcheck disable=SC2154 # repo: set by the sourcing script
debs="$repo/target/debs"

ensure_arm64_apt() { # <a package name that must be known as :arm64>
    if dpkg --print-foreign-architectures | grep -qx arm64 &&
        apt-cache show "$1:arm64" >/dev/null 2>&1; then
        return
    fi
    if [[ "$(id -u)" -ne 0 ]]; then
        log "apt does not know arm64 packages yet; run as root:"
        log "  dpkg --add-architecture arm64 && apt-get update"
        exit 1
    fi
    log "enabling arm64 packages: dpkg --add-architecture arm64 && apt-get update"
    dpkg --add-architecture arm64
    apt-get update -qq
}

# linux-image-arm64 is a metapackage: the real kernel is its linux-image-* dependency.
resolve_kernel_package() {
    local pkg
    pkg="$(apt-cache depends linux-image-arm64:arm64 |
        sed -n 's/^ *Depends: \(linux-image-[0-9][^:]*\)\(:arm64\)\?$/\1/p' | head -n1)"
    if [[ -z "$pkg" ]]; then
        log "cannot resolve the kernel package behind linux-image-arm64:arm64"
        exit 1
    fi
    printf '%s\n' "$pkg"
}

# Prints the path of the cached .deb of PACKAGE (epochs are not part of apt's file names).
cached_deb() {
    compgen -G "$debs/${1}_*_arm64.deb" | head -n1 || true
}

download_deb() { # <package> [--kernel]
    local pkg="$1" deb
    deb="$(cached_deb "$pkg")"
    if [[ -n "$deb" ]]; then
        log "using cached $(basename "$deb")"
        printf '%s\n' "$deb"
        return
    fi
    log "downloading $pkg:arm64 (apt-get download)"
    if ! (cd "$debs" && apt-get download -q -o APT::Sandbox::User=root "$pkg:arm64" >&2); then
        # Stale package lists name a version the mirror no longer has: refresh once.
        if [[ "$(id -u)" -ne 0 ]]; then
            log "apt-get download failed; refresh the package lists as root: apt-get update"
            exit 1
        fi
        apt-get update -qq
        if [[ "${2:-}" == --kernel ]]; then
            pkg="$(resolve_kernel_package)"
        fi
        (cd "$debs" && apt-get download -q -o APT::Sandbox::User=root "$pkg:arm64" >&2)
    fi
    deb="$(cached_deb "$pkg")"
    [[ -n "$deb" ]] || {
        log "apt-get download left no ${pkg}_*_arm64.deb in $debs"
        exit 1
    }
    printf '%s\n' "$deb"
}

# Unpacks PACKAGE:arm64 into target/debs/DIR unless DIR already holds FILE_GLOB.
fetch_arm64_deb() { # <package|--kernel> <dir> <file glob inside dir>
    local pkg="$1" tree="$debs/$2" glob="$3" kind=""
    if compgen -G "$tree/$glob" >/dev/null; then
        return
    fi
    mkdir -p "$debs"
    if [[ "$pkg" == --kernel ]]; then
        kind=--kernel
        ensure_arm64_apt linux-image-arm64
        pkg="$(resolve_kernel_package)"
    else
        ensure_arm64_apt "$pkg"
    fi
    local deb
    deb="$(download_deb "$pkg" $kind)"
    rm -rf "$tree.tmp"
    dpkg -x "$deb" "$tree.tmp"
    rm -rf "$tree"
    mv "$tree.tmp" "$tree"
    log "extracted $(basename "$deb") to $tree"
    compgen -G "$tree/$glob" >/dev/null || {
        log "$(basename "$deb") holds no $glob"
        exit 1
    }
}
