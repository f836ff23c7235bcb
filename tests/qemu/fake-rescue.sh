#!/bin/sh
# fake-rescue.sh SOURCE DEST MAPFILE — stand-in rescuer for validating the QEMU harness
# before `salvor rescue` exists. Runs in the guest under busybox sh.
#
# Copies SOURCE to DEST with O_DIRECT reads (busybox dd iflag=direct): 1 MiB chunks; a
# chunk that fails is retried as 32 KiB pieces, a failing piece sector by sector (512 B).
# Failed sectors are left unwritten. Writes a GNU ddrescue-format mapfile: '+' for copied
# areas, '-' for sectors that could not be read. FAKE_MIN_BYTES (default 512) sets the
# smallest piece tried (e.g. 4096 to imitate a rescuer that cannot isolate sectors). Exit 0 even when sectors were bad (like
# ddrescue); non-zero only on usage or environment errors.
set -u
[ $# -eq 3 ] || { echo "usage: $0 SOURCE DEST MAPFILE" >&2; exit 1; }
src=$1 dst=$2 map=$3
size=$(blockdev --getsize64 "$src") || exit 1
recs=/tmp/fake-rescue.$$
: >"$recs" || exit 1

# copy OFFSET LENGTH: one O_DIRECT read of LENGTH bytes at OFFSET, written at OFFSET.
# busybox dd only page-aligns buffers of at least a page (smaller ones get malloc'd, the
# O_DIRECT read fails with EINVAL and dd silently falls back to buffered reads), so the
# buffer is at least 4 KiB and count_bytes limits the read to LENGTH.
copy() {
    dd if="$src" of="$dst" bs=$(( $2 > 4096 ? $2 : 4096 )) count="$2" skip="$1" seek="$1" \
        iflag=direct,skip_bytes,count_bytes oflag=seek_bytes conv=notrunc 2>/dev/null
}
# rescue OFFSET LENGTH [STEP...]: try the whole range; on failure split it into pieces
# of the first STEP and rescue each with the remaining steps; with no step left, record
# the range as bad.
rescue() {
    local off="$1" len="$2" step p end n
    shift 2
    if copy "$off" "$len"; then
        echo "$off $len +" >>"$recs"
        return
    fi
    if [ $# -eq 0 ]; then
        echo "$off $len -" >>"$recs"
        return
    fi
    step=$1
    shift
    p=$off end=$((off + len))
    while [ "$p" -lt "$end" ]; do
        n=$((end - p))
        [ "$n" -gt "$step" ] && n=$step
        rescue "$p" "$n" "$@"
        p=$((p + n))
    done
}

off=0
while [ $off -lt $size ]; do
    len=1048576
    [ $((off + len)) -gt $size ] && len=$((size - off))
    rescue $off $len 32768 ${FAKE_MIN_BYTES:-512}
    off=$((off + len))
done
sync

# Merge adjacent records of equal status and print in ddrescue's mapfile layout.
{
    echo "# Mapfile. Created by fake-rescue.sh (salvor QEMU harness stand-in)"
    echo "# current_pos  current_status  current_pass"
    printf '0x%08X     +               1\n' 0
    echo "#      pos        size  status"
    sort -n "$recs" | awk '
        function flush() { if (have) printf "0x%08X  0x%08X  %s\n", pos, sz, st }
        { if (have && $3 == st && $1 == pos + sz) { sz += $2; next }
          flush(); pos = $1; sz = $2; st = $3; have = 1 }
        END { flush() }'
} >"$map"
rm -f "$recs"
