# shellcheck shell=bash
# Fetch and unpack Debian's stock amd64 kernel (vmlinuz + modules) into a cache dir.
#
# fetch_kernel: sets
#   KERNEL_PKG      e.g. linux-image-6.1.0-56-amd64
#   KERNEL_VERSION  e.g. 6.1.0-56-amd64 (the modules dir name / uname -r)
#   KERNEL_ROOT     extracted package root ($SALVOR_CACHE/kernel/<pkg-version>/root)
#   KERNEL_VMLINUZ  path to the kernel image
#   KERNEL_MODULES  path to lib/modules/<version> (with modules.dep generated)
# Idempotent: an existing complete extraction is reused.

if [[ -n "${_SALVOR_KERNEL_SH:-}" ]]; then return 0; fi
_SALVOR_KERNEL_SH=1
# shellcheck source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

# resolve_kernel_pkg: print the concrete image package the linux-image-amd64 metapackage
# depends on (e.g. linux-image-6.1.0-56-amd64).
resolve_kernel_pkg() {
    local meta=${SALVOR_KERNEL_META:-linux-image-amd64} pkg
    pkg=$(apt-cache depends "$meta" 2>/dev/null \
        | awk '/^ *Depends: linux-image-[0-9]/ {print $2; exit}')
    if [[ -z $pkg ]]; then
        apt_update_once
        pkg=$(apt-cache depends "$meta" 2>/dev/null \
            | awk '/^ *Depends: linux-image-[0-9]/ {print $2; exit}')
    fi
    [[ -n $pkg ]] || die "cannot resolve the kernel package behind $meta"
    printf '%s\n' "$pkg"
}

fetch_kernel() {
    need apt-get:apt dpkg-deb:dpkg depmod:kmod
    KERNEL_PKG=$(resolve_kernel_pkg)
    local pkgver
    pkgver=$(apt-cache policy "$KERNEL_PKG" | awk '/Candidate:/ {print $2; exit}')
    [[ -n $pkgver && $pkgver != "(none)" ]] || die "no candidate version for $KERNEL_PKG"
    local dir="$SALVOR_CACHE/kernel/${KERNEL_PKG}_${pkgver}"
    KERNEL_ROOT="$dir/root"

    if [[ ! -f $dir/.complete ]]; then
        log "fetching $KERNEL_PKG $pkgver into $dir"
        rm -rf "$dir"
        mkdir -p "$dir/deb"
        # apt-get download writes into the current directory and, as root, drops
        # privileges to _apt: make the directory writable for it.
        chmod 0777 "$dir/deb"
        if ! (cd "$dir/deb" && apt-get download -q "$KERNEL_PKG=$pkgver" >&2); then
            apt_update_once
            (cd "$dir/deb" && apt-get download -q "$KERNEL_PKG=$pkgver" >&2) \
                || die "apt-get download $KERNEL_PKG failed"
        fi
        local deb
        deb=$(ls "$dir"/deb/*.deb)
        mkdir -p "$KERNEL_ROOT"
        dpkg-deb -x "$deb" "$KERNEL_ROOT"
        rm -rf "$dir/deb"
        touch "$dir/.complete"
    fi

    local vml
    vml=$(ls "$KERNEL_ROOT"/boot/vmlinuz-* 2>/dev/null | head -n1)
    [[ -n $vml ]] || die "no vmlinuz in $KERNEL_ROOT/boot"
    KERNEL_VMLINUZ=$vml
    KERNEL_VERSION=${vml##*/vmlinuz-}
    KERNEL_MODULES="$KERNEL_ROOT/lib/modules/$KERNEL_VERSION"
    [[ -d $KERNEL_MODULES ]] || die "no modules dir $KERNEL_MODULES"
    # Debian's package does not ship modules.dep (postinst runs depmod); make it here.
    if [[ ! -s $KERNEL_MODULES/modules.dep ]]; then
        depmod -b "$KERNEL_ROOT" "$KERNEL_VERSION"
    fi
    export KERNEL_PKG KERNEL_VERSION KERNEL_ROOT KERNEL_VMLINUZ KERNEL_MODULES
}
