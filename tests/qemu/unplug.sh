#!/usr/bin/env bash
# unplug.sh [SALVOR_BINARY]
#
# Unplug test: boots the test kernel under QEMU (TCG) with a blkdebug-faulty source and two
# destination disks, and removes the source through QEMU's monitor (QMP `device_del`) while
# `salvor rescue` reads it, then adds it back with the same serial (`device_add`; the kernel
# may give it another name). Two phases in one boot (see guest-unplug.sh):
#   A  with --wait-device: salvor must report the device gone, find it again by identity and
#      finish (exit 0) with a complete, correct result;
#   B  without: salvor must exit 1 with the map saved (parses with ddrescuelog, claims only
#      source data, marks nothing bad but the injected sectors, still has non-tried areas),
#      and a re-run on the device's new name must finish with a complete, correct result.
# The host acts on the guest's console: unplug once salvor's progress shows 10^7 bytes
# rescued, replug once the guest says salvor noticed (A) or stopped (B).
# Prints PASS or FAIL and exits non-zero on failure.
#
# Environment: DISK_MIB (default 32), RATE (salvor -Z, default 4MiB), BAD_SECTORS (default
# "2051+1 40000+8 LAST+1"), KEEP=1 keeps the work directory.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
source "$repo/scripts/lib/build.sh"
source "$repo/scripts/lib/rescuecheck.sh"
source "$repo/scripts/lib/qemuvm.sh"

DISK_MIB=${DISK_MIB:-32}
RATE=${RATE:-4MiB}
BAD_SECTORS=${BAD_SECTORS:-"2051+1 40000+8 LAST+1"}
salvor_bin=${1:-$(build_salvor_musl)}
[[ -f $salvor_bin ]] || die "no salvor binary at $salvor_bin"
need qemu-system-x86_64:qemu-system-x86 python3:python3 cmp:diffutils tar:tar awk:mawk \
    base64:coreutils ddrescuelog:gddrescue

vm_test_setup unplug
# Failures (`fail`, scripts/lib/qemuvm.sh) of the shared map checks name the map they were found in.
# Stop at the first broken step: the later ones would only wait for their timeouts.
step() { "$@" || { fail "step failed: $*"; finish; }; }

size=$((DISK_MIB * 1048576))
nsect=$((size / 512))
t_start=$(now)
rescue_make_source "$work/src.img" "$nsect"
rescue_make_rules "$work" "$nsect" "$BAD_SECTORS"
truncate -s "$size" "$work/dst-a.img" "$work/dst-b.img"
truncate -s 4M "$work/out.img"
fetch_kernel
"$repo/scripts/mkinitramfs-test.sh" "$work/initrd.cpio.gz" "$salvor_bin" \
    "$here/guest-unplug.sh" "$here/guest-lib.sh" >/dev/null
t_prep=$(now)

unplug='{"execute":"device_del","arguments":{"id":"src-dev"}}'
replug='{"execute":"device_add","arguments":{"driver":"virtio-blk-pci","id":"src-dev","drive":"src","serial":"salvor-src"}}'
finish() {
    local t_end
    t_end=$(now)
    vm_stop
    echo "timing: prepare $(secs "$t_start" "$t_prep")s, boot and both phases $(secs "$t_prep" "$t_end")s"
    if [[ ${#fails[@]} -eq 0 ]]; then
        echo "PASS: source unplugged and replugged twice; --wait-device resumed by identity, without it exit 1 and a re-run finished; nothing marked bad but the injected sectors"
        exit 0
    fi
    printf '%s\n' "----- guest console (without progress lines, tail) -----"
    tr -d '\r' <"$work/console.log" | grep -v '"type":"progress"' | tail -n 60
    [[ -s $work/qemu.log ]] && { echo "----- qemu.log (tail) -----"; tail -n 5 "$work/qemu.log"; }
    echo "FAIL:"
    printf '  %s\n' "${fails[@]}"
    exit 1
}

opts="-d -f --json -Z $RATE --mapfile-interval 1"
mapfile -t disks < <(
    rescue_blkdebug_args src "$work/src.img" "$work/rules.conf" salvor-src
    vm_disk_args dst-a "$work/dst-a.img" salvor-dst-a
    vm_disk_args dst-b "$work/dst-b.img" salvor-dst-b
    vm_disk_args out "$work/out.img" salvor-out
)
vm_start "$work" "console=ttyS0 panic=-1 quiet loglevel=3 salvor.cmd_b64=$(printf '%s' "$opts" | base64 -w0)" \
    "${disks[@]}"

# --- phase A: --wait-device ---------------------------------------------------------------
step vm_wait_line '^UNPLUG-A-START' 300
a_start=$VM_LINENO
step vm_wait_line '"finished":[1-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9]' 300 "$a_start"
t_a=$(now)
step vm_qmp "$unplug" event:DEVICE_DELETED
# Salvor must notice the removal and wait; the end of the run instead is a failure.
step vm_wait_line '"event":"device_gone"|^UNPLUG-A-END' 300 "$a_start"
[[ $VM_LINE != UNPLUG-A-END* ]] || { fail "phase A: salvor ended ($VM_LINE) instead of waiting for the device"; finish; }
step vm_qmp "$replug"
step vm_wait_line '^UNPLUG-A-END rc=' 300 "$a_start"
a_end=$VM_LINENO
echo "phase A: $VM_LINE, $(secs "$t_a" "$(now)")s after the unplug"
[[ $VM_LINE == 'UNPLUG-A-END rc=0' ]] || fail "phase A (--wait-device): $VM_LINE, expected rc=0"

# --- phase B: no --wait-device, then a re-run -----------------------------------------------
step vm_wait_line '^UNPLUG-B-START' 300 "$a_end"
b_start=$VM_LINENO
echo "phase B: $VM_LINE"
step vm_wait_line '"finished":[1-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9]' 300 "$b_start"
step vm_qmp "$unplug" event:DEVICE_DELETED
step vm_wait_line '^UNPLUG-B-STOPPED rc=' 300 "$b_start"
[[ $VM_LINE == 'UNPLUG-B-STOPPED rc=1' ]] || fail "phase B (no --wait-device): $VM_LINE, expected rc=1"
step vm_qmp "$replug"
step vm_wait_line '^UNPLUG-B-END rc=' 300 "$b_start"
[[ $VM_LINE == 'UNPLUG-B-END rc=0' ]] || fail "phase B re-run: $VM_LINE, expected rc=0"
vm_wait_line '^SALVOR-RUN-END' 300 "$b_start" || fail "the guest did not finish"
vm_wait_exit 120 || fail "QEMU exited with $VM_RC"

# --- checks on the host ------------------------------------------------------------------------
mkdir -p "$work/res"
tar -xf "$work/out.img" -C "$work/res" 2>"$work/tar.err" \
    || fail "could not read the results from the out disk: $(cat "$work/tar.err")"
res=$work/res
# From salvor's own output (the guest's a.log), not the console: there the kernel's messages
# can land in the middle of a line (a CI run lost this line that way).
grep -q '"event":"device_back"' "$res/a.log" || fail "phase A: salvor never reported the device back"
ctx="phase A map"
rescue_check "$work" "$size" "$res/a.map" "$work/src.img" "$work/dst-a.img" 512
echo "phase A map: rescued ${RESCUED:-?} of $size bytes, non-finished sectors ${N_NOTFIN:-?} (injected ${N_BAD:-?})"
ctx="phase B stopped map"
if rescue_parse_map "$work" "$size" "$res/b1.map"; then
    rescue_ddrescuelog "$res/b1.map"
    rescue_check_claims "$work" "$work/src.img" "$work/dst-b.img"
    rescue_check_no_false_bad "$work" 512
    b1_rescued=$RESCUED
    awk '$3 == "?" { found = 1 } END { exit !found }' "$work/blocks" \
        || fail "the stopped run's map has no non-tried area left (the unplug came too late)"
    grep -qi 'gone' "$res/b1.log" || fail "salvor's output does not say the device is gone"
    echo "phase B stopped map: rescued $b1_rescued bytes; salvor said: $(grep -i -m1 gone "$res/b1.log" | cut -c1-200 || true)"
else
    fail "no mapfile after the stopped run"
fi
ctx="phase B final map"
rescue_check "$work" "$size" "$res/b.map" "$work/src.img" "$work/dst-b.img" 512
echo "phase B final map: rescued ${RESCUED:-?} of $size bytes, non-finished sectors ${N_NOTFIN:-?} (injected ${N_BAD:-?})"
ctx=
finish
