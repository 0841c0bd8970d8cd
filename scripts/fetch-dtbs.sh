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
# left extracted in target/debs/linux-image/ (fetch-guest-images.sh uses the same copy: its
# vmlinuz boots the Linux guests). Needs qemu-system-aarch64, and for the Raspberry Pi tree an apt
# that knows the arm64 architecture (`dpkg --add-architecture arm64 && apt-get update`, done here
# when run as root); see scripts/debian-arm64.sh.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="${1:-$repo/target/dtbs}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"

log() { printf 'fetch-dtbs: %s\n' "$*" >&2; }
# shellcheck source=scripts/debian-arm64.sh
source "$repo/scripts/debian-arm64.sh"

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

rpi4_dtb() {
    local file="$out/bcm2711-rpi-4-b.dtb" glob="usr/lib/linux-image-*/broadcom/bcm2711-rpi-4-b.dtb"
    if [[ -s "$file" ]]; then
        log "bcm2711-rpi-4-b.dtb present"
        return
    fi
    fetch_arm64_deb --kernel linux-image "$glob"
    local src
    src="$(compgen -G "$debs/linux-image/$glob" | head -n1)"
    cp "$src" "$file.tmp"
    mv "$file.tmp" "$file"
    log "wrote $file"
}

qemu_dtb 3 qemu-virt-gicv3.dtb
qemu_dtb 2 qemu-virt-gicv2.dtb
rpi4_dtb
