#!/usr/bin/env bash
# power-cut.sh [SALVOR_BINARY]
#
# Power-cut test: boots the test kernel under QEMU (TCG) with a blkdebug-faulty source, a raw
# destination disk and the mapfile on an ext4 filesystem on a third guest disk, starts
# `salvor rescue` and kills QEMU itself (kill -9: the guest's page cache is lost like RAM at a
# power cut) at CUTS random moments, booting again to resume after each. The guest holds dirty
# data in its page cache until something syncs it, so a missing fsync loses data at the cut.
# After every cut the host replays the map filesystem's journal (e2fsck) and checks:
#   - the mapfile exists once the rescue printed progress (it is written before the first
#     read), and GNU `ddrescuelog -t` reads it;
#   - every byte it calls rescued ('+') equals the source in the destination; no injected
#     bad sector is '+';
#   - rescued bytes never shrink from one cut to the next.
# The first cut is early (within the first seconds of the rescue, with the default 30 s save
# interval); then a run without a cut finishes, and the full checks of rescue-blkdebug.sh run.
# Prints PASS or FAIL and exits non-zero on failure.
#
# Environment:
#   SEED          seed of the cut moments (default: from the clock; printed)
#   CUTS          number of power cuts (default 5, at least 5)
#   DISK_MIB      source/destination size (default 64)
#   RATE          salvor's --max-read-rate, so that cuts land mid-run (default 2MiB)
#   BAD_SECTORS   injected bad areas (default "2051+1 40960+8 81918+3 LAST+1")
#   KEEP=1        keep the work directory
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
source "$repo/scripts/lib/build.sh"
source "$repo/scripts/lib/rescuecheck.sh"
source "$repo/scripts/lib/qemuvm.sh"

CUTS=${CUTS:-5}
DISK_MIB=${DISK_MIB:-64}
RATE=${RATE:-2MiB}
SEED=${SEED:-$(($(date +%s%N) % 1000000))}
BAD_SECTORS=${BAD_SECTORS:-"2051+1 40960+8 81918+3 LAST+1"}
[[ $CUTS -ge 5 ]] || die "CUTS must be at least 5"
salvor_bin=${1:-$(build_salvor_musl)}
[[ -f $salvor_bin ]] || die "no salvor binary at $salvor_bin"
need qemu-system-x86_64:qemu-system-x86 mkfs.ext4:e2fsprogs e2fsck:e2fsprogs debugfs:e2fsprogs \
    cmp:diffutils awk:mawk base64:coreutils ddrescuelog:gddrescue

vm_test_setup powercut
# Failures (`fail`, scripts/lib/qemuvm.sh) name the cut (or the final run) they were found after.

size=$((DISK_MIB * 1048576))
nsect=$((size / 512))
t_start=$(now)
rescue_make_source "$work/src.img" "$nsect"
rescue_make_rules "$work" "$nsect" "$BAD_SECTORS"
truncate -s "$size" "$work/dst.img"
truncate -s 16M "$work/map.img"
mkfs.ext4 -q -F -L salvor-map -E lazy_itable_init=0,lazy_journal_init=0 "$work/map.img"
fetch_kernel
INITRAMFS_MODULES="ext4 crc32c_generic" "$repo/scripts/mkinitramfs-test.sh" \
    "$work/initrd.cpio.gz" "$salvor_bin" "$here/guest-powercut.sh" "$here/guest-lib.sh" >/dev/null
t_prep=$(now)

mapfile -t disks < <(
    rescue_blkdebug_args src "$work/src.img" "$work/rules.conf" salvor-src
    vm_disk_args dst "$work/dst.img" salvor-dst
    vm_disk_args map "$work/map.img" salvor-map
)

# boot INTERVAL: start the guest running the rescue with that --mapfile-interval.
boot() {
    local cmd="salvor rescue -d -f --json -Z $RATE --mapfile-interval $1 \"\$SRC\" \"\$DST\" \"\$MAP\""
    vm_start "$work" "console=ttyS0 panic=-1 quiet loglevel=4 salvor.cmd_b64=$(printf '%s' "$cmd" | base64 -w0)" \
        "${disks[@]}"
}

# host_map N: replay the map filesystem's journal like the next mount would, and copy the
# mapfile out to $work/cutN.map (absent if the guest never wrote one).
host_map() {
    local n=$1 rc=0
    e2fsck -fy "$work/map.img" >"$work/fsck$n.log" 2>&1 || rc=$?
    # 0: clean, 1: errors corrected (journal replayed); anything else is a broken filesystem.
    [[ $rc -le 1 ]] || fail "e2fsck of the map filesystem exited $rc: $(tail -n 3 "$work/fsck$n.log")"
    rm -f "$work/cut$n.map"
    debugfs -R "dump /rescue.map $work/cut$n.map" "$work/map.img" >/dev/null 2>&1 || true
    [[ -s $work/cut$n.map ]] || rm -f "$work/cut$n.map"
}

RANDOM=$SEED
echo "power cuts: $CUTS, seed $SEED (SEED=$SEED reproduces the cut moments), rate $RATE"
prev_rescued=0
cut_log=()
for ((n = 1; n <= CUTS; n++)); do
    # The first cut comes early, with the default save interval: only the save at the start
    # can have written a mapfile by then.
    if [[ $n -eq 1 ]]; then interval=30 delay_ms=$((200 + RANDOM % 1300)); else interval=1 delay_ms=$((1500 + RANDOM % 5500)); fi
    ctx=
    boot "$interval"
    t_boot=$(now)
    vm_wait_line '^POWERCUT-START' 300 || { fail "cut $n: the guest never started the rescue"; break; }
    start_line=$VM_LINENO
    # Cut relative to the first progress line: salvor is reading by then.
    vm_wait_line '"type":"progress"' 300 "$start_line" || { fail "cut $n: no progress from salvor"; break; }
    sleep "$(awk -v ms="$delay_ms" 'BEGIN { printf "%.3f", ms / 1000 }')" # the random moment itself
    if ! kill -0 "$VM_PID" 2>/dev/null; then
        fail "cut $n: the rescue ended before the cut ($delay_ms ms after its first progress line); slow it down (RATE)"
        vm_wait_exit 5 || true
        break
    fi
    vm_kill9
    t_cut=$(now)
    last_progress=$(tr -d '\r' <"$work/console.log" | grep -o '"finished":[0-9]*' | tail -n 1 | cut -d: -f2 || true)
    cp "$work/console.log" "$work/console$n.log"
    ctx="cut $n"
    host_map "$n"
    map="$work/cut$n.map"
    if [[ ! -f $map ]]; then
        fail "no mapfile after the cut, though salvor had printed progress (rescued ${last_progress:-0} bytes): the save before the first read is missing or was not durable"
        rescued=0
    else
        rescue_ddrescuelog "$map"
        RESCUED=0
        rescue_parse_map "$work" "$size" "$map"
        rescue_check_claims "$work" "$work/src.img" "$work/dst.img"
        rescued=$RESCUED
        [[ $rescued -ge $prev_rescued ]] || fail "the mapfile claims $rescued bytes, fewer than $prev_rescued after the cut before"
        prev_rescued=$rescued
    fi
    cut_log+=("cut $n: ${delay_ms} ms after the first progress line (interval ${interval}s; boot to cut $(secs "$t_boot" "$t_cut")s); salvor had printed ${last_progress:-0} bytes rescued, the mapfile claims $rescued")
    echo "${cut_log[-1]}"
done

# --- the run that finishes ----------------------------------------------------------------
if [[ ${#fails[@]} -eq 0 ]]; then
    boot 1
    t_final=$(now)
    vm_wait_exit 600 || fail "final run: QEMU exited with $VM_RC"
    console=$(tr -d '\r' <"$work/console.log")
    end_line=$(grep -m1 '^POWERCUT-END rc=' <<<"$console" || true)
    [[ $end_line == 'POWERCUT-END rc=0' ]] || fail "final run: rescue ended with '${end_line:-nothing}'"
    ctx="final run"
    host_map final
    rescue_check "$work" "$size" "$work/cutfinal.map" "$work/src.img" "$work/dst.img" 512
    echo "final run: $(secs "$t_final" "$(now)")s; map: rescued ${RESCUED:-?} of $size bytes, non-finished sectors ${N_NOTFIN:-?} (injected ${N_BAD:-?})"
fi
t_end=$(now)
echo "timing: prepare $(secs "$t_start" "$t_prep")s, cuts and final run $(secs "$t_prep" "$t_end")s, total $(secs "$t_start" "$t_end")s"
if [[ ${#fails[@]} -eq 0 ]]; then
    echo "PASS: $CUTS power cuts (seed $SEED) and a final run; every mapfile parsed and claimed only source data"
    exit 0
fi
printf '%s\n' "----- guest console (last run, tail) -----"
tr -d '\r' <"$work/console.log" | grep -v '"type":"progress"' | tail -n 40
[[ -s $work/qemu.log ]] && { echo "----- qemu.log (tail) -----"; tail -n 5 "$work/qemu.log"; }
echo "FAIL (seed $SEED):"
printf '  %s\n' "${fails[@]}"
exit 1
