# shellcheck shell=bash
# Building blocks for initramfs trees (used by the test initramfs and, later, the ISO).
#
# busybox_static_path: make sure Debian's busybox-static is installed; print its path.
# initramfs_skeleton DIR: create the usual directories and put a static busybox at
#   DIR/bin/busybox (applet symlinks are created at boot by `busybox --install -s`).
# initramfs_add_modules DIR NAME...: stage kernel modules NAME... and their
#   dependencies (see modules.sh) for the kernel chosen by fetch_kernel.

if [[ -n "${_SALVOR_INITRAMFS_SH:-}" ]]; then return 0; fi
_SALVOR_INITRAMFS_SH=1
_salvor_lib="$(dirname "${BASH_SOURCE[0]}")"
# shellcheck source=common.sh
source "$_salvor_lib/common.sh"
# shellcheck source=kernel.sh
source "$_salvor_lib/kernel.sh"
# shellcheck source=modules.sh
source "$_salvor_lib/modules.sh"
# shellcheck source=cpio.sh
source "$_salvor_lib/cpio.sh"

busybox_static_path() {
    # The plain `busybox` package is dynamically linked; only busybox-static works in an
    # initramfs without a libc. The two packages conflict, so check the package itself.
    if ! dpkg-query -W -f='${Status}' busybox-static 2>/dev/null | grep -q 'ok installed'; then
        apt_install busybox-static
    fi
    local p
    for p in /bin/busybox /usr/bin/busybox; do
        [[ -x $p ]] && { printf '%s\n' "$p"; return 0; }
    done
    die "busybox-static installed but no busybox binary found"
}

initramfs_skeleton() {
    local dir=$1 bb
    bb=$(busybox_static_path)
    mkdir -p "$dir"/{bin,sbin,usr/bin,usr/sbin,dev,proc,sys,tmp,run,etc,lib/modules,root}
    chmod 1777 "$dir/tmp"
    cp "$bb" "$dir/bin/busybox"
    chmod 0755 "$dir/bin/busybox"
    ln -sf busybox "$dir/bin/sh"
}

initramfs_add_modules() {
    local dir=$1; shift
    [[ -n ${KERNEL_MODULES:-} ]] || fetch_kernel
    stage_modules "$KERNEL_MODULES" "$dir" "$@"
}
