#!/usr/bin/env bash
# iso-copytoram.sh: the ISO's kernel + initramfs booted with `copytoram` and the ISO attached as
# a CD. The init must find the medium by its volume ID, copy its files to RAM, release it (no
# mount left on it), and record it so that salvor never offers it as a target; salvor.run then
# shows the disk list, where the CD must be flagged as the boot medium.
# Environment: MEM (default 256), BOOT_TIMEOUT (300), KEEP=1.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
need qemu-system-x86_64:qemu-system-x86
MEM=${MEM:-256}
BOOT_TIMEOUT=${BOOT_TIMEOUT:-300}

build_iso
truncate -s 32M "$work/disk.img"
qemu_bg copytoram -m "$MEM" -machine pc -kernel "$VMLINUZ" -initrd "$INITRD" \
    -append "console=ttyS0,115200 panic=-1 quiet copytoram salvor.run=\"list\"" \
    -cdrom "$ISO" \
    -drive "file=$work/disk.img,format=raw,if=none,id=d0" -device virtio-blk-pci,drive=d0,serial=salvor-disk0
if wait_console copytoram '^SALVOR-RUN-END rc=' "$BOOT_TIMEOUT"; then
    text=$(console_text "$work/copytoram.console")
    grep -q 'copytoram: /dev/sr0 copied to RAM' <<<"$text" ||
        fail "the init did not report copying /dev/sr0 to RAM"
    run=$(sed -n '/^SALVOR-RUN-BEGIN/,/^SALVOR-RUN-END/p' <<<"$text")
    echo "$run"
    grep -q '^SALVOR-RUN-END rc=0' <<<"$run" || fail "salvor list failed"
    grep -Eq 'sr0 .*BOOT' <<<"$run" || fail "the boot CD is not flagged BOOT in salvor list"
    grep -Eq 'vda .*virtio' <<<"$run" || fail "the virtio disk is not listed"
    grep -q '/run/salvor/medium' <<<"$run" && fail "the medium is still mounted"
else
    fail "no SALVOR-RUN-END on the console within ${BOOT_TIMEOUT}s"
fi
qemu_stop
finish_tests "copytoram: medium copied to RAM, released and flagged as the boot disk"
