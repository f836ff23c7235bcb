#!/usr/bin/env bash
# demo-iso.sh: build the salvor ISO and boot it under QEMU in this terminal, with
#   - a failing source disk: a small GPT disk with an ext4 file system full of files, whose
#     reads fail at a few places (QEMU blkdebug), serial salvor-failing;
#   - an empty destination disk of the same size, serial salvor-empty.
# The salvor UI runs on the serial console, i.e. in this terminal. Rescue the failing disk onto
# the empty one from the UI (or with `salvor rescue` from its shell).
# Quit QEMU: Ctrl-A then X. (Ctrl-A C toggles the QEMU monitor.)
# Environment: MEM (default 512), ACCEL (default tcg; kvm if you have it), KEEP=1.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$here/lib/common.sh"
source "$here/lib/rescuecheck.sh"
need qemu-system-x86_64:qemu-system-x86 mkfs.ext4:e2fsprogs sfdisk:fdisk

iso=$(bash "$here/build-iso.sh" | tail -n 1)
work=$(mktemp -d "${TMPDIR:-/tmp}/salvor-demo-iso.XXXXXX")
trap '[[ ${KEEP:-0} == 1 ]] && echo "kept $work" || rm -rf "$work"' EXIT

log "making a 128 MiB GPT disk with an ext4 file system and files"
disk="$work/failing.img"
truncate -s 128M "$disk"
printf 'label: gpt\nstart=2048, size=253952, type=linux, name="family photos"\n' | sfdisk -q "$disk"
mkdir -p "$work/files/photos" "$work/files/documents"
for i in $(seq 1 120); do head -c $((100000 + i * 997)) /dev/urandom >"$work/files/photos/img_$i.jpg"; done
for i in $(seq 1 40); do seq 1 $((i * 500)) >"$work/files/documents/letter_$i.txt"; done
mkfs.ext4 -q -F -L photos -E offset=$((2048 * 512)) -d "$work/files" "$disk" 124M
# Read errors: a few single sectors, a small cluster, a 64-sector stripe (in the data area).
rescue_make_rules "$work" $((128 * 2048)) "4100+1 30001+1 60000+8 90000+64 150001+3 200000+1"
truncate -s 128M "$work/empty.img"
mapfile -t src_args < <(rescue_blkdebug_args failing "$disk" "$work/rules.conf" salvor-failing)

cat <<MSG

  Booting $iso
  Disks: /dev/vda = failing disk (read errors at $(wc -l <"$work/bad.sectors") sectors), /dev/vdb = empty disk.
  The salvor UI appears on this terminal after the boot menu (about 15-30 s under TCG).
  Quit QEMU at any time: Ctrl-A, then X.

MSG
sleep 2
qemu-system-x86_64 -accel "${ACCEL:-tcg}" -m "${MEM:-512}" -nographic -no-reboot \
    -cdrom "$iso" -boot d \
    "${src_args[@]}" \
    -drive "file=$work/empty.img,format=raw,if=none,id=empty" -device virtio-blk-pci,drive=empty,serial=salvor-empty
