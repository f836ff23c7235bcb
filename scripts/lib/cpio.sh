# shellcheck shell=bash
# make_cpio DIR OUT: pack DIR as a gzip-compressed newc cpio archive (initramfs format).
# Reproducible: sorted names, fixed mtimes, root ownership.

if [[ -n "${_SALVOR_CPIO_SH:-}" ]]; then return 0; fi
_SALVOR_CPIO_SH=1
# shellcheck source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

make_cpio() {
    local dir=$1 out=$2 tmp
    need cpio:cpio gzip:gzip
    tmp="$out.tmp.$$"
    find "$dir" -exec touch -h -d @0 {} +
    (cd "$dir" && find . -mindepth 1 -print | LC_ALL=C sort \
        | cpio --quiet -o -H newc -R 0:0 --reproducible) | gzip -n -6 >"$tmp"
    mv -f "$tmp" "$out"
}
