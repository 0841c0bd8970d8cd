#!/usr/bin/env bash
# Fetches the real device trees the `hypervisor` crate's tests read (they are not committed):
#
#   qemu-virt-gicv3.dtb   QEMU `virt` with virtualization=on, GICv3, 2 CPUs, 1 GiB (dumpdtb)
#   qemu-virt-gicv2.dtb   the same with GICv2
#   bcm2711-rpi-4-b.dtb   the Raspberry Pi 4 B tree from Debian's arm64 kernel package
#
# Usage: scripts/fetch-dtbs.sh [OUTPUT_DIR]   (default: <repo>/target/dtbs)
#
# Idempotent: existing files are kept. The Debian kernel package is cached in target/debs/ and
# left extracted in target/debs/linux-image/ (its vmlinuz is used later to boot Linux guests).
# Needs qemu-system-aarch64, and for the Raspberry Pi tree an apt that knows the arm64
# architecture (`dpkg --add-architecture arm64 && apt-get update`, done here when run as root).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="${1:-$repo/target/dtbs}"
debs="$repo/target/debs"
mkdir -p "$out"
out="$(cd "$out" && pwd)"

log() { printf 'fetch-dtbs: %s\n' "$*" >&2; }

qemu_dtb() { # <gic-version> <file>
    local gic="$1" file="$out/$2"
    if [[ -s "$file" ]]; then
        log "$2 present"
        return
    fi
    command -v qemu-system-aarch64 >/dev/null || {
        log "qemu-system-aarch64 not found (apt-get install qemu-system-arm)"
        exit 1
    }
    qemu-system-aarch64 -M "virt,virtualization=on,gic-version=$gic,dumpdtb=$file.tmp" \
        -cpu max -smp 2 -m 1G -display none -nographic -monitor none -serial none >/dev/null
    mv "$file.tmp" "$file"
    log "wrote $file"
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

rpi4_dtb() {
    local file="$out/bcm2711-rpi-4-b.dtb" tree="$debs/linux-image"
    if [[ -s "$file" ]]; then
        log "bcm2711-rpi-4-b.dtb present"
        return
    fi
    if ! compgen -G "$tree/usr/lib/linux-image-*/broadcom/bcm2711-rpi-4-b.dtb" >/dev/null; then
        if ! dpkg --print-foreign-architectures | grep -qx arm64 ||
            ! apt-cache show linux-image-arm64:arm64 >/dev/null 2>&1; then
            if [[ "$(id -u)" -ne 0 ]]; then
                log "apt does not know arm64 packages yet; run as root:"
                log "  dpkg --add-architecture arm64 && apt-get update"
                exit 1
            fi
            dpkg --add-architecture arm64
            apt-get update -qq
        fi
        local pkg
        pkg="$(resolve_kernel_package)"
        mkdir -p "$debs"
        local deb
        deb="$(compgen -G "$debs/${pkg}_*_arm64.deb" | head -n1 || true)"
        if [[ -z "$deb" ]]; then
            log "downloading $pkg:arm64"
            if ! (cd "$debs" && apt-get download -q -o APT::Sandbox::User=root "$pkg:arm64"); then
                # Stale package lists name a version the mirror no longer has: refresh once.
                [[ "$(id -u)" -eq 0 ]] || exit 1
                apt-get update -qq
                pkg="$(resolve_kernel_package)"
                (cd "$debs" && apt-get download -q -o APT::Sandbox::User=root "$pkg:arm64")
            fi
            deb="$(compgen -G "$debs/${pkg}_*_arm64.deb" | head -n1)"
        else
            log "using cached $(basename "$deb")"
        fi
        rm -rf "$tree.tmp"
        dpkg -x "$deb" "$tree.tmp"
        rm -rf "$tree"
        mv "$tree.tmp" "$tree"
        log "extracted $(basename "$deb") to $tree"
    fi
    local src
    src="$(compgen -G "$tree/usr/lib/linux-image-*/broadcom/bcm2711-rpi-4-b.dtb" | head -n1)"
    cp "$src" "$file.tmp"
    mv "$file.tmp" "$file"
    log "wrote $file"
}

qemu_dtb 3 qemu-virt-gicv3.dtb
qemu_dtb 2 qemu-virt-gicv2.dtb
rpi4_dtb
