# shellcheck shell=bash
# make_cpio DIR OUT [COMPRESSION]: pack DIR as a compressed newc cpio archive (initramfs
# format). COMPRESSION: gzip (default), zstd or xz (Debian's kernel unpacks all three).
# Reproducible: sorted names, fixed mtimes, root ownership.

if [[ -n "${_SALVOR_CPIO_SH:-}" ]]; then return 0; fi
_SALVOR_CPIO_SH=1
# shellcheck source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

make_cpio() {
    local dir=$1 out=$2 comp=${3:-gzip} tmp
    local -a zip
    case $comp in
        gzip) need gzip:gzip; zip=(gzip -n -6) ;;
        zstd) need zstd:zstd; zip=(zstd -q -19 -T0 --stdout) ;;
        # the kernel's xz unpacker only knows the crc32 check and the x86 BCJ filter
        xz)   need xz:xz-utils; zip=(xz --check=crc32 --x86 --lzma2=preset=9e --stdout) ;;
        *) die "make_cpio: unknown compression $comp" ;;
    esac
    need cpio:cpio
    tmp="$out.tmp.$$"
    find "$dir" -exec touch -h -d @0 {} +
    (cd "$dir" && find . -mindepth 1 -print | LC_ALL=C sort \
        | cpio --quiet -o -H newc -R 0:0 --reproducible) | "${zip[@]}" >"$tmp"
    mv -f "$tmp" "$out"
}
