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
source "$repo/scripts/lib/rescuecheck.sh"
source "$repo/scripts/lib/qemuvm.sh"

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
cleanup() {
    local rc=$?
    vm_stop
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

# --- disks ---------------------------------------------------------------------------
t_start=$(date +%s.%N)
rescue_make_source "$work/src.img" "$nsect"
truncate -s "$size" "$work/dst.img"
truncate -s 4M "$work/out.img"
# blkdebug rules: one [inject-error] per bad sector (see scripts/lib/rescuecheck.sh).
rescue_make_rules "$work" "$nsect" "$BAD_SECTORS"
bad_list="$work/bad.sectors"

# --- initramfs + kernel ------------------------------------------------------------------
fetch_kernel
"$repo/scripts/mkinitramfs-test.sh" "$work/initrd.cpio.gz" "$salvor_bin" \
    "$here/guest-rescue.sh" "$here/fake-rescue.sh" >/dev/null
t_prep=$(date +%s.%N)

# --- boot --------------------------------------------------------------------------------
cmd_b64=$(printf '%s' "$GUEST_CMD" | base64 -w0)
append="console=ttyS0 panic=-1 quiet loglevel=4 salvor.cmd_b64=$cmd_b64"
[[ ${#append} -lt 1900 ]] || die "GUEST_CMD too long for the kernel command line"
mapfile -t disks < <(
    rescue_blkdebug_args src "$work/src.img" "$work/rules.conf" salvor-src
    vm_disk_args dst "$work/dst.img" salvor-dst
    vm_disk_args out "$work/out.img" salvor-out
)
log "booting $KERNEL_VERSION under TCG (timeout ${QEMU_TIMEOUT}s); guest command: $GUEST_CMD"
vm_start "$work" "$append" "${disks[@]}"
if [[ ${VERBOSE:-0} == 1 ]]; then
    tail -n +1 -f --pid="$VM_PID" "$work/console.log" 2>/dev/null &
fi
vm_wait_exit "$QEMU_TIMEOUT" || true
qemu_rc=$VM_RC
t_end=$(date +%s.%N)

# --- checks ------------------------------------------------------------------------------
fails=()
fail() { fails+=("$*"); }
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

rescue_check "$work" "$size" "$map" "$work/src.img" "$work/dst.img" "$BAD_GRANULE"
rescued=$RESCUED n_bad=$N_BAD n_expected=$N_EXPECTED n_notfin=$N_NOTFIN

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
