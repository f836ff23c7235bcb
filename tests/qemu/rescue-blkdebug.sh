#!/usr/bin/env bash
# rescue-blkdebug.sh [SALVOR_BINARY]
#
# Real-kernel fault-injection test: boots Debian's kernel under QEMU (TCG) with a source
# disk whose reads fail at chosen sectors (QEMU's blkdebug driver), runs a rescue in the
# guest, and checks the mapfile and the destination on the host:
#   (a) every byte the mapfile calls rescued ('+') equals the source in the destination;
#   (b) every injected bad sector is not '+';
#   (c) the non-rescued area is exactly the injected sectors (rounded out to BAD_GRANULE);
#   (d) the destination differs from the source at every injected sector (the faults
#       really reached the guest), and the map covers the whole disk without gaps;
#   plus: the rescue command exited 0, and GNU ddrescuelog (if installed) agrees with our
#   parse of the mapfile.
# Prints PASS or FAIL (with reasons) and exits non-zero on failure.
#
# Without SALVOR_BINARY, target/x86_64-unknown-linux-musl/release/salvor is built (or
# brought up to date) with cargo first. The binary must be static. Environment:
#   GUEST_CMD     shell command run in the guest with SRC, DST, MAP set
#                 (default: salvor rescue -d -f "$SRC" "$DST" "$MAP"; -d because blkdebug
#                 fails whole requests, and buffered reads go through 4 KiB pages)
#   FAKE=1        use the stand-in rescuer tests/qemu/fake-rescue.sh (busybox dd) as
#                 GUEST_CMD, and busybox as SALVOR_BINARY if none is given
#   DISK_MIB      source/destination size in MiB (default 64)
#   BAD_SECTORS   injected bad areas, "START+COUNT ..." in 512-byte sectors
#                 (default: "2051+1 40960+8 81918+3 LAST+1"; LAST = the disk's last sector)
#   BAD_GRANULE   bytes the rescuer may widen each bad area to (default 512)
#   QEMU_TIMEOUT  seconds before QEMU is killed (default 300)
#   KEEP=1        keep the work directory (printed) for inspection
#   VERBOSE=1     stream the guest console while it runs
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
source "$repo/scripts/lib/kernel.sh"
source "$repo/scripts/lib/build.sh"

DISK_MIB=${DISK_MIB:-64}
BAD_GRANULE=${BAD_GRANULE:-512}
QEMU_TIMEOUT=${QEMU_TIMEOUT:-300}
STAND_IN_CMD='fake-rescue.sh "$SRC" "$DST" "$MAP"'
if [[ ${FAKE:-0} == 1 ]]; then
    GUEST_CMD=${GUEST_CMD:-$STAND_IN_CMD}
    salvor_bin=${1:-$(command -v busybox || true)}
else
    salvor_bin=${1:-$(build_salvor_musl)}
    GUEST_CMD=${GUEST_CMD:-'salvor rescue -q -d -f "$SRC" "$DST" "$MAP"'}
fi

need qemu-system-x86_64:qemu-system-x86 timeout:coreutils cmp:diffutils tar:tar \
    awk:mawk base64:coreutils ddrescuelog:gddrescue
[[ -f $salvor_bin ]] || die "no salvor binary at $salvor_bin (build it, or FAKE=1)"

work=$(mktemp -d "${TMPDIR:-/tmp}/salvor-qemu.XXXXXX")
qemu_pid=
cleanup() {
    local rc=$?
    if [[ -n $qemu_pid ]] && kill -0 "$qemu_pid" 2>/dev/null; then
        kill "$qemu_pid" 2>/dev/null || true
        wait "$qemu_pid" 2>/dev/null || true
    fi
    if [[ ${KEEP:-0} == 1 ]]; then
        log "work directory kept: $work"
    else
        rm -rf "$work"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

size=$((DISK_MIB * 1048576))
nsect=$((size / 512))
BAD_SECTORS=${BAD_SECTORS:-"2051+1 40960+8 81918+3 LAST+1"}
BAD_SECTORS=${BAD_SECTORS//LAST/$((nsect - 1))}

# --- disks ---------------------------------------------------------------------------
t_start=$(date +%s.%N)
# Source: deterministic, every 32-byte record names its sector, record index and a value
# from a fixed LCG, so misplaced or missing data is never mistaken for correct data.
awk -v n="$nsect" 'BEGIN {
    x = 12345
    for (s = 0; s < n; s++)
        for (r = 0; r < 16; r++) {
            x = (x * 69069 + 1) % 4294967296
            printf "s%09d r%02d x%015.0f\n", s, r, x
        }
}' >"$work/src.img"
[[ $(stat -c %s "$work/src.img") -eq $size ]] || die "source image has the wrong size"
truncate -s "$size" "$work/dst.img"
truncate -s 4M "$work/out.img"

# blkdebug rules: one [inject-error] per bad sector. A rule fails every request whose
# byte range contains sector*512, so each rule covers exactly one sector for 512-byte reads.
: >"$work/rules.conf"
bad_list="$work/bad.sectors"
: >"$bad_list"
for area in $BAD_SECTORS; do
    start=${area%+*} count=${area#*+}
    [[ $start =~ ^[0-9]+$ && $count =~ ^[0-9]+$ && $count -gt 0 ]] || die "bad BAD_SECTORS entry: $area"
    [[ $((start + count)) -le $nsect ]] || die "bad area $area beyond the disk ($nsect sectors)"
    for ((s = start; s < start + count; s++)); do
        printf '[inject-error]\nevent = "read_aio"\nerrno = "5"\nsector = "%d"\nonce = "off"\n\n' "$s" >>"$work/rules.conf"
        echo "$s" >>"$bad_list"
    done
done
sort -n -u -o "$bad_list" "$bad_list"

# --- initramfs + kernel ------------------------------------------------------------------
fetch_kernel
"$repo/scripts/mkinitramfs-test.sh" "$work/initrd.cpio.gz" "$salvor_bin" \
    "$here/guest-rescue.sh" "$here/fake-rescue.sh" >/dev/null
t_prep=$(date +%s.%N)

# --- boot --------------------------------------------------------------------------------
cmd_b64=$(printf '%s' "$GUEST_CMD" | base64 -w0)
append="console=ttyS0 panic=-1 quiet loglevel=4 salvor.cmd_b64=$cmd_b64"
[[ ${#append} -lt 1900 ]] || die "GUEST_CMD too long for the kernel command line"
log "booting $KERNEL_VERSION under TCG (timeout ${QEMU_TIMEOUT}s); guest command: $GUEST_CMD"
timeout --kill-after=10 "$QEMU_TIMEOUT" qemu-system-x86_64 \
    -accel tcg -m 256 -smp 1 -nodefaults -display none -no-reboot \
    -serial "file:$work/console.log" \
    -kernel "$KERNEL_VMLINUZ" -initrd "$work/initrd.cpio.gz" -append "$append" \
    -blockdev "driver=file,node-name=src-file,filename=$work/src.img,read-only=on" \
    -blockdev "driver=blkdebug,node-name=src-dbg,image=src-file,config=$work/rules.conf,read-only=on" \
    -blockdev "driver=raw,node-name=src,file=src-dbg,read-only=on" \
    -device virtio-blk-pci,drive=src,serial=salvor-src \
    -blockdev "driver=file,node-name=dst-file,filename=$work/dst.img" \
    -blockdev "driver=raw,node-name=dst,file=dst-file" \
    -device virtio-blk-pci,drive=dst,serial=salvor-dst \
    -blockdev "driver=file,node-name=out-file,filename=$work/out.img" \
    -blockdev "driver=raw,node-name=out,file=out-file" \
    -device virtio-blk-pci,drive=out,serial=salvor-out \
    </dev/null >"$work/qemu.log" 2>&1 &
qemu_pid=$!
if [[ ${VERBOSE:-0} == 1 ]]; then
    tail -n +1 -f --pid="$qemu_pid" "$work/console.log" 2>/dev/null || true
fi
qemu_rc=0
wait "$qemu_pid" || qemu_rc=$?
qemu_pid=
t_end=$(date +%s.%N)

# --- checks ------------------------------------------------------------------------------
fails=()
fail() { fails+=("$*"); }
# set_minus A B: the first ten lines of file A that are not in file B, space-separated.
set_minus() {
    awk 'FILENAME == ARGV[1] { b[$1]; next } !($1 in b) && n++ < 10 { printf "%s ", $1 }' "$2" "$1"
}

console=$(tr -d '\r' <"$work/console.log")
if [[ ${VERBOSE:-0} != 1 ]]; then
    printf '%s\n' "----- guest console -----" "$console" "-------------------------"
fi
[[ $qemu_rc -eq 0 ]] || fail "QEMU exited with $qemu_rc$( [[ $qemu_rc -eq 124 ]] && echo ' (timeout)'): $(tail -n 5 "$work/qemu.log")"
grep -q '^SALVOR-RUN-BEGIN' <<<"$console" || fail "guest never printed SALVOR-RUN-BEGIN"
end_line=$(grep -m1 '^SALVOR-RUN-END rc=' <<<"$console" || true)
[[ -n $end_line ]] || fail "guest never printed SALVOR-RUN-END"

mkdir -p "$work/res"
if ! tar -xf "$work/out.img" -C "$work/res" 2>"$work/tar.err"; then
    fail "could not read the results from the out disk: $(cat "$work/tar.err")"
fi
map="$work/res/map"
guest_rc=$(cat "$work/res/rc" 2>/dev/null || echo missing)
guest_secs=$(cat "$work/res/seconds" 2>/dev/null || echo '?')
[[ $guest_rc == 0 ]] || fail "rescue command exit code: $guest_rc"

if [[ ! -s $map ]]; then
    fail "no mapfile came back from the guest"
else
    # Parse the mapfile: skip comments, the first data line is the status line
    # (current_pos current_status [current_pass]), then "pos size status" blocks.
    if ! awk -v size="$size" '
        /^[ \t]*#/ || /^[ \t]*$/ { next }
        !seen_status { seen_status = 1; next }
        {
            if (NF < 3) { print "malformed line: " $0 > "/dev/stderr"; bad = 1; next }
            pos = strtonum_($1); sz = strtonum_($2)
            if (pos != expect) { printf "gap or overlap at 0x%X (expected 0x%X)\n", pos, expect > "/dev/stderr"; bad = 1 }
            expect = pos + sz
            printf "%d %d %s\n", pos, sz, $3
        }
        END {
            if (expect != size) { printf "map covers 0x%X bytes, disk is 0x%X\n", expect, size > "/dev/stderr"; bad = 1 }
            exit bad
        }
        function strtonum_(s,   v, i, c, d) {
            if (s ~ /^0[xX]/) {
                v = 0; s = tolower(substr(s, 3))
                for (i = 1; i <= length(s); i++) { c = substr(s, i, 1); d = index("0123456789abcdef", c) - 1
                    if (d < 0) return -1; v = v * 16 + d }
                return v
            }
            return s + 0
        }' "$map" >"$work/blocks" 2>"$work/map.err"; then
        fail "mapfile is inconsistent: $(cat "$work/map.err")"
    fi

    # (a) rescued bytes are identical in source and destination
    while read -r pos sz st; do
        [[ $st == + ]] || continue
        if ! cmp -s -n "$sz" -i "$pos:$pos" "$work/src.img" "$work/dst.img"; then
            fail "(a) rescued area pos=$pos size=$sz differs from the source"
        fi
    done <"$work/blocks"

    # Non-finished sectors according to the map, one per line.
    awk '$3 != "+" { for (s = $1 / 512; s < ($1 + $2) / 512; s++) print s }' "$work/blocks" \
        >"$work/notfinished.sectors"

    # (b) every injected sector is not '+'
    missed=$(set_minus "$bad_list" "$work/notfinished.sectors")
    [[ -z $missed ]] || fail "(b) injected bad sectors marked rescued: $missed"

    # (c) non-finished area == injected sectors widened to BAD_GRANULE
    per=$((BAD_GRANULE / 512))
    awk -v per="$per" '{ b = int($1 / per) * per; for (s = b; s < b + per; s++) print s }' "$bad_list" \
        | sort -n -u >"$work/expected.sectors"
    extra=$(set_minus "$work/notfinished.sectors" "$work/expected.sectors")
    [[ -z $extra ]] || fail "(c) good sectors not rescued (beyond BAD_GRANULE=$BAD_GRANULE): $extra"
    rescued=$(awk '$3 == "+" { t += $2 } END { printf "%d", t }' "$work/blocks")
    n_bad=$(wc -l <"$bad_list")
    n_expected=$(wc -l <"$work/expected.sectors")
    n_notfin=$(wc -l <"$work/notfinished.sectors")

    # GNU ddrescuelog must read the mapfile and agree on the rescued size.
    gnu_sectors=$(ddrescuelog -b 512 -l+ "$map" 2>"$work/ddrescuelog.err" | wc -l) \
        || fail "ddrescuelog could not read the mapfile: $(cat "$work/ddrescuelog.err")"
    [[ $((gnu_sectors * 512)) -eq $rescued ]] \
        || fail "ddrescuelog counts $((gnu_sectors * 512)) rescued bytes, our parse $rescued"
fi

# (d) the faults reached the guest: injected sectors were not copied
while read -r s; do
    if cmp -s -n 512 -i "$((s * 512)):$((s * 512))" "$work/src.img" "$work/dst.img"; then
        fail "(d) injected sector $s has source data in the destination (fault not seen?)"
    fi
done <"$bad_list"

secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }
echo "timing: prepare $(secs "$t_start" "$t_prep")s, boot+run+poweroff $(secs "$t_prep" "$t_end")s, rescue in guest ${guest_secs}s"
if [[ -n ${rescued:-} ]]; then
    echo "map: rescued $rescued of $size bytes; non-finished sectors $n_notfin (injected $n_bad, allowed $n_expected)"
fi
if [[ ${#fails[@]} -eq 0 ]]; then
    echo "PASS: rescue under real kernel with blkdebug faults ($BAD_SECTORS)"
    exit 0
fi
if [[ -f $work/res/log ]]; then
    printf '%s\n' "----- rescue command output (tail) -----"; tail -n 40 "$work/res/log"
fi
echo "FAIL:"
printf '  %s\n' "${fails[@]}"
exit 1
