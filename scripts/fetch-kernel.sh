#!/usr/bin/env bash
# Fetch Debian's linux-image-amd64 kernel + modules into the cache (idempotent) and
# print the vmlinuz path and the modules directory, one per line:
#   VMLINUZ=/.../boot/vmlinuz-6.1.0-56-amd64
#   MODULES=/.../lib/modules/6.1.0-56-amd64
# Cache root: ${SALVOR_CACHE:-<repo>/work/cache}. Needs root (apt-get) on Debian 12.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/kernel.sh"
fetch_kernel
printf 'VMLINUZ=%s\nMODULES=%s\nVERSION=%s\n' "$KERNEL_VMLINUZ" "$KERNEL_MODULES" "$KERNEL_VERSION"
