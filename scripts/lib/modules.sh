# shellcheck shell=bash
# Kernel module dependency resolution and staging into an initramfs tree.
#
# resolve_modules MODDIR NAME...: print the relative paths (as in modules.dep) of the
#   named modules and all their dependencies, dependencies first, each once. Names use
#   either '_' or '-' (virtio_blk == virtio-blk). MODDIR is lib/modules/<version>;
#   modules.dep must exist (see fetch_kernel, or run `depmod -b ROOT VERSION`).
# stage_modules MODDIR DESTROOT NAME...: copy the resolved modules into
#   DESTROOT/lib/modules/<version>/..., decompressed to plain .ko (busybox insmod cannot
#   read .ko.xz/.ko.zst), and write DESTROOT/lib/modules/<version>/load-order listing the
#   .ko paths (relative to that dir) in load order.

# available_modules MODDIR NAME...: print those of NAME... that exist as loadable modules
#   of this kernel, one per line; names that are built in or absent are reported on stderr
#   and left out (for lists of drivers wanted "if present").

if [[ -n "${_SALVOR_MODULES_SH:-}" ]]; then return 0; fi
_SALVOR_MODULES_SH=1
# shellcheck source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

resolve_modules() {
    local moddir=$1; shift
    [[ -s $moddir/modules.dep ]] || die "no modules.dep in $moddir"
    # awk: index modules.dep by normalised module name, then depth-first post-order walk.
    awk -v want="$*" '
        function norm(p,   b) {
            b = p; sub(/.*\//, "", b); sub(/\.ko(\.(xz|zst|gz))?$/, "", b)
            gsub(/-/, "_", b); return b
        }
        function visit(p,   n, i, d) {
            if (p in seen) return
            seen[p] = 1
            n = split(deps[p], d, " ")
            for (i = 1; i <= n; i++) visit(d[i])
            print p
        }
        {
            path = $1; sub(/:$/, "", path)
            byname[norm(path)] = path
            $1 = ""; deps[path] = $0
        }
        END {
            n = split(want, w, " ")
            for (i = 1; i <= n; i++) {
                nm = w[i]; gsub(/-/, "_", nm)
                if (!(nm in byname)) { print "missing module: " w[i] > "/dev/stderr"; bad = 1; continue }
                visit(byname[nm])
            }
            exit bad
        }' "$moddir/modules.dep"
}

stage_modules() {
    local moddir=$1 destroot=$2; shift 2
    local version=${moddir%/}; version=${version##*/}
    local out="$destroot/lib/modules/$version" rel ko list
    list=$(resolve_modules "$moddir" "$@") || die "module resolution failed"
    mkdir -p "$out"
    : >"$out/load-order"
    while IFS= read -r rel; do
        [[ -n $rel ]] || continue
        ko=${rel%.xz}; ko=${ko%.zst}; ko=${ko%.gz}
        mkdir -p "$out/$(dirname "$ko")"
        case $rel in
            *.ko.xz)  need xz:xz-utils; xz -dc "$moddir/$rel" >"$out/$ko" ;;
            *.ko.zst) need zstd:zstd; zstd -qdc "$moddir/$rel" >"$out/$ko" ;;
            *.ko.gz)  gzip -dc "$moddir/$rel" >"$out/$ko" ;;
            *.ko)     cp "$moddir/$rel" "$out/$ko" ;;
            *) die "unexpected module file $rel" ;;
        esac
        printf '%s\n' "$ko" >>"$out/load-order"
    done <<<"$list"
}

available_modules() {
    local moddir=$1; shift
    local name norm
    for name in "$@"; do
        norm=${name//-/_}
        if awk -v n="$norm" '{ b = $1; sub(/.*\//, "", b); sub(/\.ko(\.(xz|zst|gz))?:?$/, "", b)
                gsub(/-/, "_", b); if (b == n) { found = 1; exit } } END { exit !found }' \
                "$moddir/modules.dep"; then
            printf '%s\n' "$norm"
        elif [[ -f $moddir/modules.builtin ]] && awk -v n="$norm" '{ b = $1; sub(/.*\//, "", b)
                sub(/\.ko$/, "", b); gsub(/-/, "_", b); if (b == n) { found = 1; exit } }
                END { exit !found }' "$moddir/modules.builtin"; then
            log "module $name: built into the kernel"
        else
            log "module $name: not in this kernel, left out"
        fi
    done
}
