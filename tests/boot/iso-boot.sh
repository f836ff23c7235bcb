#!/usr/bin/env bash
# iso-boot.sh [CASE...]: boot work/salvor.iso (built or brought up to date first) under QEMU
# (TCG) with a small virtio disk attached (serial salvor-disk0), serial console on stdio, and
# wait for the salvor UI's first screen listing that disk ($BOOT_FIRST_SCREEN_RE, lib.sh).
# Cases (default: all):
#   bios-cd    SeaBIOS, the ISO as an IDE CD-ROM (El Torito, GRUB i386-pc); then a USB disk
#              is hot-plugged (QEMU monitor) and must appear in the list after Enter
#   bios-usb   SeaBIOS, the ISO as a USB stick (hybrid MBR -> GRUB i386-pc)
#   uefi-cd    OVMF (OVMF_CODE_4M.fd + a copy of OVMF_VARS_4M.fd), the ISO as a CD-ROM
#   uefi-usb   OVMF, the ISO as a USB stick
# Prints the boot-to-first-screen time of each case. Environment: MEM (default 256; BIOS
# cases), MEM_UEFI (default 512: GRUB 2.06's EFI loader runs out of memory loading the kernel
# under OVMF with 256 MiB), BOOT_TIMEOUT (seconds per boot, default 360), KEEP=1.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
need qemu-system-x86_64:qemu-system-x86 /usr/share/OVMF/OVMF_CODE_4M.fd:ovmf
MEM=${MEM:-256}
# Generous: a wait that succeeds costs nothing, and TCG under a loaded 2-core machine was seen
# to take 95 s to a first screen that takes 30 s idle.
BOOT_TIMEOUT=${BOOT_TIMEOUT:-360}
MEM_UEFI=${MEM_UEFI:-512}
cases=("$@")
[[ ${#cases[@]} -gt 0 ]] || cases=(bios-cd bios-usb uefi-cd uefi-usb)

build_iso
truncate -s 64M "$work/disk0.img"
disk=(-drive "file=$work/disk0.img,format=raw,if=none,id=disk0" -device virtio-blk-pci,drive=disk0,serial=salvor-disk0)
as_cd=(-drive "file=$ISO,format=raw,if=none,id=iso,media=cdrom,readonly=on")
usb_stick=(-device qemu-xhci,id=xhci -drive "file=$ISO,format=raw,if=none,id=stick,readonly=on"
    -device usb-storage,bus=xhci.0,drive=stick,bootindex=0)
ovmf=(-drive "if=pflash,format=raw,unit=0,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.fd")

results=()
for c in "${cases[@]}"; do
    case $c in
        bios-cd)  args=(-machine pc "${as_cd[@]}" -device ide-cd,drive=iso,bootindex=0 -device qemu-xhci,id=xhci
                      -monitor "unix:$work/mon.sock,server=on,wait=off") ;;
        bios-usb) args=(-machine pc "${usb_stick[@]}") ;;
        uefi-cd)  args=(-machine q35 "${ovmf[@]}" -drive "if=pflash,format=raw,unit=1,file=$(ovmf_vars "$c" /usr/share/OVMF/OVMF_VARS_4M.fd)"
                      "${as_cd[@]}" -device ide-cd,drive=iso,bootindex=0) ;;
        uefi-usb) args=(-machine q35 "${ovmf[@]}" -drive "if=pflash,format=raw,unit=1,file=$(ovmf_vars "$c" /usr/share/OVMF/OVMF_VARS_4M.fd)"
                      "${usb_stick[@]}") ;;
        *) die "unknown case $c" ;;
    esac
    mem=$MEM; [[ $c == uefi-* ]] && mem=$MEM_UEFI
    log "booting $c (-m $mem)"
    t0=$(now)
    qemu_bg "$c" -m "$mem" "${args[@]}" "${disk[@]}"
    if wait_console "$c" "$BOOT_FIRST_SCREEN_RE" "$BOOT_TIMEOUT"; then
        t1=$(now)
        results+=("$c (-m $mem): first screen after $(secs "$t0" "$t1") s")
        echo "$c: salvor UI listed the virtio disk after $(secs "$t0" "$t1") s"
        if [[ $c == bios-cd ]]; then
            # Hot-plug: a USB disk plugged in now must show up (modalias -> usb_storage, sd_mod).
            truncate -s 32M "$work/hot.img"
            need socat:socat
            printf '%s\n' "drive_add 0 if=none,id=hot,format=raw,file=$work/hot.img" \
                "device_add usb-storage,bus=xhci.0,drive=hot,id=hotdev,serial=salvor-hotplug" \
                | socat - "UNIX-CONNECT:$work/mon.sock" >"$work/mon.log" 2>&1 || true
            found=0
            # The first screen refreshes itself when the set of disks changes: no key needed.
            if wait_console "$c" 'sd[a-z] .*usb.*salvor-hotplug' 60; then found=1; fi
            if [[ $found == 1 ]]; then
                echo "$c: hot-plugged USB disk listed after $(secs "$t1" "$(now)") s"
            else
                fail "$c: the hot-plugged USB disk never appeared in the list"; show_console "$c" 30
                cat "$work/mon.log"
            fi
        fi
    else
        fail "$c: the salvor UI with the virtio disk did not appear within ${BOOT_TIMEOUT}s"
        show_console "$c" 60
    fi
    qemu_stop
done
printf '%s\n' "${results[@]}"
finish_tests "ISO boots (${cases[*]})"
