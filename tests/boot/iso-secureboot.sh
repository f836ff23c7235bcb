#!/usr/bin/env bash
# iso-secureboot.sh: UEFI Secure Boot. OVMF with Secure Boot enforced and Microsoft's keys
# enrolled (OVMF_CODE_4M.secboot.fd + a copy of OVMF_VARS_4M.ms.fd, q35 with SMM, secure
# pflash) boots work/salvor.iso (Debian's signed shim -> signed GRUB -> signed kernel, signed
# modules):
#   sb-cd    the ISO as a CD (El Torito)
#   sb-usb   the ISO as a USB stick (OVMF takes El Torito on it too)
#   sb-esp   a copy of the ISO without its El Torito boot record, as a USB stick: the
#            firmware must use the MBR EFI system partition (the usual real-PC path)
# Each must show the salvor UI's System info with "Secure Boot on" and "Lockdown integrity" (read
# from efivarfs and securityfs) and show the salvor UI listing the virtio disk (virtio_blk is a
# signed module, so modules load under lockdown).
# Negative control: the same ISO built with EFI_LOADER=unsigned must be refused by the same
# firmware. Environment: MEM (512), BOOT_TIMEOUT (360), KEEP=1.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
need qemu-system-x86_64:qemu-system-x86 /usr/share/OVMF/OVMF_CODE_4M.secboot.fd:ovmf xorriso:xorriso
MEM=${MEM:-512}
BOOT_TIMEOUT=${BOOT_TIMEOUT:-360}
cases=("$@")
[[ ${#cases[@]} -gt 0 ]] || cases=(sb-cd sb-usb sb-esp unsigned-refused)

build_iso
truncate -s 64M "$work/disk0.img"
disk=(-drive "file=$work/disk0.img,format=raw,if=none,id=disk0" -device virtio-blk-pci,drive=disk0,serial=salvor-disk0)
fw() { printf '%s\n' -machine q35,smm=on -global driver=cfi.pflash01,property=secure,value=on \
    -drive "if=pflash,format=raw,unit=0,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.secboot.fd" \
    -drive "if=pflash,format=raw,unit=1,file=$(ovmf_vars "$1" /usr/share/OVMF/OVMF_VARS_4M.ms.fd)"; }
as_usb() { printf '%s\n' -device qemu-xhci,id=xhci -drive "file=$1,format=raw,if=none,id=stick,readonly=on" \
    -device usb-storage,bus=xhci.0,drive=stick,bootindex=0; }

# no_eltorito SRC DST: copy SRC with its El Torito boot record volume descriptor (sector 17)
# defaced, so firmware sees no El Torito at all and must boot from the MBR partitions, like
# PC firmware that ignores El Torito on USB disks. (OVMF would otherwise take the BIOS
# El Torito entry as a partition and never look at the MBR.)
no_eltorito() {
    cp "$1" "$2"
    [[ $(dd if="$2" bs=1 skip=$((17 * 2048 + 7)) count=23 status=none) == 'EL TORITO SPECIFICATION' ]] \
        || die "$1 has no El Torito boot record at sector 17"
    printf 'X' | dd of="$2" bs=1 seek=$((17 * 2048 + 7)) conv=notrunc status=none
}

for c in "${cases[@]}"; do
    case $c in
        sb-cd)  mapfile -t args < <(fw "$c"; printf '%s\n' -drive "file=$ISO,format=raw,if=none,id=iso,media=cdrom,readonly=on" -device ide-cd,drive=iso,bootindex=0) ;;
        sb-usb) mapfile -t args < <(fw "$c"; as_usb "$ISO") ;;
        sb-esp) no_eltorito "$ISO" "$work/esp-only.iso"; mapfile -t args < <(fw "$c"; as_usb "$work/esp-only.iso") ;;
        unsigned-refused)
            OUT="$work/unsigned.iso" EFI_LOADER=unsigned bash "$SALVOR_REPO/scripts/build-iso.sh" >/dev/null
            mapfile -t args < <(fw "$c"; printf '%s\n' -drive "file=$work/unsigned.iso,format=raw,if=none,id=iso,media=cdrom,readonly=on" -device ide-cd,drive=iso,bootindex=0) ;;
        *) die "unknown case $c" ;;
    esac
    log "booting $c"
    t0=$(now)
    qemu_bg "$c" -m "$MEM" "${args[@]}" "${disk[@]}"
    if [[ $c == unsigned-refused ]]; then
        if wait_console "$c" 'Access Denied|Security Violation|No bootable option' "$BOOT_TIMEOUT"; then
            if console_text "$work/$c.console" | grep -Eq 'Welcome to GRUB|Linux version|salvor-init'; then
                fail "$c: the unsigned loader ran under Secure Boot"; show_console "$c"
            else
                echo "$c: refused by the firmware: $(console_text "$work/$c.console" | grep -Eo -m1 'Access Denied|Security Violation|No bootable option')"
            fi
        else
            fail "$c: the Secure Boot firmware did not refuse the unsigned loader"; show_console "$c"
        fi
    elif wait_console "$c" "$BOOT_FIRST_SCREEN_RE" "$BOOT_TIMEOUT"; then
        echo "$c: salvor UI listed the virtio disk after $(secs "$t0" "$(now)") s"
        # The UI's System info screen (7th menu entry) shows the Secure Boot state and the
        # kernel's lockdown mode; ratatui sends only changed cells, so spaces may be missing.
        printf 'jjjjjj\r' >&"$SERIAL_FD"
        if wait_console "$c" 'Secure *Boot *on' 30; then
            echo "$c: System info shows Secure Boot on"
        else
            fail "$c: Secure Boot not reported enabled"; show_console "$c" 20
        fi
        if wait_console "$c" 'Lockdown *(integrity|confidentiality)' 5; then
            echo "$c: System info shows the kernel locked down"
        else
            fail "$c: kernel not locked down"
        fi
        # sb-esp: with El Torito gone, the only \EFI\BOOT\BOOTX64.EFI OVMF can find is in the
        # FAT file system of MBR partition 2, so reaching the UI proves the ESP path.
    else
        fail "$c: no salvor UI with the virtio disk within ${BOOT_TIMEOUT}s"; show_console "$c" 50
    fi
    qemu_stop
done
finish_tests "Secure Boot (${cases[*]})"
