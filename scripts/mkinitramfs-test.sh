#!/usr/bin/env bash
# mkinitramfs-test.sh OUT.cpio.gz SALVOR_BINARY [GUEST_SCRIPT [EXTRA_FILE...]]
#
# Build a minimal test initramfs for Debian's kernel (see fetch-kernel.sh):
#   /bin/busybox          static busybox (applets installed at boot)
#   /bin/salvor           SALVOR_BINARY (must be static)
#   /guest.sh             GUEST_SCRIPT, if given
#   /usr/local/bin/NAME   each EXTRA_FILE (executable helpers for the guest script)
#   /lib/modules/<ver>/   virtio_pci, virtio_blk and their dependencies (+ $INITRAMFS_MODULES)
#   /init                 mounts proc/sys/devtmpfs, loads the modules, waits for /dev/vda,
#                         runs the guest script, prints SALVOR-RUN-BEGIN and
#                         SALVOR-RUN-END rc=N on the console and powers off.
#
# Guest script selection at boot (first that applies):
#   salvor.script_b64=BASE64   on the kernel command line: decoded and run with sh
#   /guest.sh                  baked in
#   otherwise an interactive shell on the console.
# The guest script runs with /bin/sh (busybox ash); the console is ttyS0.
#
# Results are cached by input hash under $SALVOR_CACHE/initramfs/.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$here/lib/initramfs.sh"

[[ $# -ge 2 ]] || die "usage: $0 OUT.cpio.gz SALVOR_BINARY [GUEST_SCRIPT [EXTRA_FILE...]]"
out=$1 salvor=$2 guest=${3:-}
shift 2; [[ $# -gt 0 ]] && shift
extras=("$@")
[[ -f $salvor ]] || die "no such salvor binary: $salvor"
[[ -z $guest || -f $guest ]] || die "no such guest script: $guest"
for f in "${extras[@]}"; do [[ -f $f ]] || die "no such file: $f"; done

read -r -a extra_modules <<<"${INITRAMFS_MODULES:-}"
modules=(virtio_pci virtio_blk "${extra_modules[@]}")

# The /init program. Kept here (not in a separate file) so that the hash below covers it.
read -r -d '' INIT_SCRIPT <<'INIT' || true
#!/bin/busybox sh
/bin/busybox --install -s
export PATH=/usr/local/bin:/bin:/sbin:/usr/bin:/usr/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mount -t tmpfs -o mode=1777 tmpfs /tmp
kver=$(uname -r)
if [ -f /lib/modules/$kver/load-order ]; then
    while read -r m; do
        insmod /lib/modules/$kver/$m 2>/dev/null || echo "init: insmod $m failed"
    done </lib/modules/$kver/load-order
fi
i=0
while [ ! -b /dev/vda ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
[ -b /dev/vda ] || echo "init: /dev/vda did not appear"
script=
for arg in $(cat /proc/cmdline); do
    case $arg in
        salvor.script_b64=*) echo "${arg#salvor.script_b64=}" | base64 -d >/tmp/guest.sh && script=/tmp/guest.sh ;;
    esac
done
[ -z "$script" ] && [ -f /guest.sh ] && script=/guest.sh
if [ -n "$script" ]; then
    echo "SALVOR-RUN-BEGIN"
    sh "$script"
    rc=$?
    sync
    echo "SALVOR-RUN-END rc=$rc"
else
    echo "init: no guest script; starting a shell"
    setsid cttyhack sh
fi
sync
poweroff -f
INIT

fetch_kernel
bb=$(busybox_static_path)
key=$(hash_inputs "$0" "$here/lib/initramfs.sh" "$here/lib/modules.sh" "$here/lib/cpio.sh" \
    "$INIT_SCRIPT" "$KERNEL_PKG" "$KERNEL_VERSION" "${modules[*]}" "$bb" "$salvor" \
    "guest:" ${guest:+"$guest"} "extras:" "${extras[@]}" "${extras[@]##*/}")
cache="$SALVOR_CACHE/initramfs/$key.cpio.gz"
if [[ -s $cache ]]; then
    log "cached: $cache"
else
    tree=$(mktemp -d "${TMPDIR:-/tmp}/salvor-initramfs.XXXXXX")
    trap 'rm -rf "$tree"' EXIT
    initramfs_skeleton "$tree"
    initramfs_add_modules "$tree" "${modules[@]}"
    printf '%s\n' "$INIT_SCRIPT" >"$tree/init"
    chmod 0755 "$tree/init"
    install -m 0755 "$salvor" "$tree/bin/salvor"
    [[ -n $guest ]] && install -m 0755 "$guest" "$tree/guest.sh"
    if [[ ${#extras[@]} -gt 0 ]]; then
        mkdir -p "$tree/usr/local/bin"
        for f in "${extras[@]}"; do install -m 0755 "$f" "$tree/usr/local/bin/${f##*/}"; done
    fi
    mkdir -p "${cache%/*}"
    make_cpio "$tree" "$cache"
    log "built $cache ($(du -h "$cache" | cut -f1))"
    # Every new salvor build makes a new entry: keep only the 8 most recent.
    find "${cache%/*}" -maxdepth 1 -name '*.cpio.gz' -printf '%T@ %p\n' | sort -rn \
        | tail -n +9 | cut -d' ' -f2- | xargs -r rm -f
fi
mkdir -p "$(dirname "$out")"
cp -f "$cache" "$out"
printf '%s\n' "$out"
