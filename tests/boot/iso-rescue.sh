#!/usr/bin/env bash
# iso-rescue.sh: the ISO's kernel + initramfs (work/iso-build/, built first) booted directly
# under QEMU (TCG) with
#   /dev/vda  a 64 MiB source disk behind blkdebug (read errors at BAD_SECTORS)
#   /dev/vdb  an empty destination disk of the same size
#   /dev/vdc  a small ext4 disk, mounted by the init (salvor.mount=) for the mapfile
# and salvor.run="rescue -q -d -f /dev/vda /dev/vdb /mnt/out/rescue.map". The host then reads
# the destination and the mapfile back and checks them (scripts/lib/rescuecheck.sh): every
# rescued byte equals the source, the injected bad sectors are marked bad, nothing else is.
# Then the same boot with salvor.forensic must refuse to write the destination.
# Environment: MEM (guest RAM in MiB, default 256), DISK_MIB (64), BAD_SECTORS,
# BOOT_TIMEOUT (300), SKIP_FORENSIC=1, KEEP=1.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$SALVOR_REPO/scripts/lib/rescuecheck.sh"
need qemu-system-x86_64:qemu-system-x86 mkfs.ext4:e2fsprogs debugfs:e2fsprogs cmp:diffutils
MEM=${MEM:-256}
DISK_MIB=${DISK_MIB:-64}
BOOT_TIMEOUT=${BOOT_TIMEOUT:-300}
BAD_SECTORS=${BAD_SECTORS:-"2051+1 40960+8 81918+3 LAST+1"}
size=$((DISK_MIB * 1048576))
nsect=$((size / 512))

build_iso
rescue_make_source "$work/src.img" "$nsect"
rescue_make_rules "$work" "$nsect" "$BAD_SECTORS"
mapfile -t src_args < <(rescue_blkdebug_args src "$work/src.img" "$work/rules.conf" salvor-src)

# boot NAME EXTRA_CMDLINE: one run; sets RUN_RC (from SALVOR-RUN-END), BOOT_SECS.
boot() {
    local name=$1 extra=$2 t0 end
    rm -f "$work/dst.img" "$work/out.img"
    truncate -s "$size" "$work/dst.img"
    truncate -s 16M "$work/out.img"
    mkfs.ext4 -q -F -L salvor-out "$work/out.img"
    t0=$(now)
    qemu_bg "$name" -m "$MEM" -machine pc -kernel "$VMLINUZ" -initrd "$INITRD" \
        -append "console=ttyS0,115200 panic=-1 quiet $extra salvor.mount=/dev/vdc:/mnt/out salvor.run=\"rescue -q -d -f /dev/vda /dev/vdb /mnt/out/rescue.map\"" \
        "${src_args[@]}" \
        -drive "file=$work/dst.img,format=raw,if=none,id=dst" -device virtio-blk-pci,drive=dst,serial=salvor-dst \
        -drive "file=$work/out.img,format=raw,if=none,id=out" -device virtio-blk-pci,drive=out,serial=salvor-out
    RUN_RC=
    if wait_console "$name" '^SALVOR-RUN-END rc=' "$BOOT_TIMEOUT"; then
        RUN_RC=$(console_text "$work/$name.console" | sed -n 's/^SALVOR-RUN-END rc=\([0-9]*\).*/\1/p' | head -n1)
        # the init unmounts /mnt/out and powers off
        end=$(( $(date +%s) + 60 ))
        while kill -0 "$QPID" 2>/dev/null && (( $(date +%s) < end )); do sleep 0.2; done
        kill -0 "$QPID" 2>/dev/null && fail "$name: the guest did not power off after the command"
    else
        fail "$name: no SALVOR-RUN-END on the console within ${BOOT_TIMEOUT}s"
    fi
    BOOT_SECS=$(secs "$t0" "$(now)")
    qemu_stop
    echo "----- $name console: salvor.run output -----"
    console_text "$work/$name.console" | sed -n '/^SALVOR-RUN-BEGIN/,/^SALVOR-RUN-END/p' | tail -n 20
    echo "$name: boot + rescue + power-off in ${BOOT_SECS}s with -m $MEM, rc=${RUN_RC:-none}"
    rm -f "$work/rescue.map"
    debugfs -R "dump /rescue.map $work/rescue.map" "$work/out.img" >/dev/null 2>&1 || true
}

boot rescue ""
[[ $RUN_RC == 0 ]] || { fail "rescue: salvor exited with ${RUN_RC:-nothing}"; show_console rescue 40; }
rescue_check "$work" "$size" "$work/rescue.map" "$work/src.img" "$work/dst.img" 512
[[ -n $RESCUED ]] && echo "map: rescued $RESCUED of $size bytes; non-finished sectors $N_NOTFIN (injected $N_BAD, allowed $N_EXPECTED)"

if [[ ${SKIP_FORENSIC:-0} != 1 ]]; then
    boot forensic "salvor.forensic"
    if [[ ${RUN_RC:-0} == 0 ]]; then fail "forensic: the rescue onto a read-only disk succeeded"; show_console forensic 40; fi
    if [[ -n $(tr -d '\0' <"$work/dst.img" | head -c 1) ]]; then
        fail "forensic: the destination disk was written although every disk is read-only"
    fi
    console_text "$work/forensic.console" | grep -q 'forensic mode' || fail "forensic: init did not report forensic mode"
fi
finish_tests "rescue in the ISO environment (-m $MEM, blkdebug $BAD_SECTORS)$([[ ${SKIP_FORENSIC:-0} == 1 ]] || echo '; forensic mode refuses writes')"
