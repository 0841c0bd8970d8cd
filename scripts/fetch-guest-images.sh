#!/usr/bin/env bash
# Fetches what the Linux guests are made of (nothing of it is committed):
#
#   target/debs/linux-image/boot/vmlinuz-*-arm64   Debian's arm64 kernel (package linux-image-*-arm64,
#                                                  the one behind linux-image-arm64)
#   target/debs/busybox-static/bin/busybox         Debian's static arm64 busybox (busybox-static)
#
# `cargo xtask run` and `cargo xtask test` run this, then turn them into target/images/linux-Image
# (decompressed if the package ships it gzipped) and target/images/initramfs.cpio.gz (built in
# Rust by xtask: busybox and xtask/src/init.sh); see docs/linux-guests.md.
#
# Usage: scripts/fetch-guest-images.sh
#
# Idempotent and cached: a package is downloaded once into target/debs/ (`apt-get download
# PACKAGE:arm64`) and unpacked once (`dpkg -x`). The kernel package is shared with
# fetch-dtbs.sh. apt must know arm64 packages (`dpkg --add-architecture arm64 && apt-get
# update`), which is done here when run as root; otherwise the commands are printed.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

log() { printf 'fetch-guest-images: %s\n' "$*" >&2; }
# shellcheck source=scripts/debian-arm64.sh
source "$repo/scripts/debian-arm64.sh"

fetch_arm64_deb --kernel linux-image "boot/vmlinuz-*"
fetch_arm64_deb busybox-static busybox-static "bin/busybox"
log "kernel:  $(compgen -G "$debs/linux-image/boot/vmlinuz-*" | head -n1)"
log "busybox: $debs/busybox-static/bin/busybox"
