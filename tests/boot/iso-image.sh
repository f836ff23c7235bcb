#!/usr/bin/env bash
# iso-image.sh: imaging in the ISO environment. Boots the ISO's kernel + initramfs directly
# under QEMU (TCG) with
#   /dev/vda  a 64 MiB GPT disk with an ext4 file system full of files (the source)
#   /dev/vdb  an ext4-formatted destination disk, mounted by the init at /mnt/dst
# and salvor.run="image /dev/vda /mnt/dst/disk.salvor"; then restores that image on the host
# with the same salvor binary (`salvor restore IMAGE TARGET`) and compares with the source.
# Needs the `image` and `restore` subcommands: with a salvor that lacks them it FAILS
# (loudly, before booting). Environment: MEM (256), BOOT_TIMEOUT (300), KEEP=1.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$SALVOR_REPO/scripts/lib/build.sh"
need qemu-system-x86_64:qemu-system-x86 mkfs.ext4:e2fsprogs debugfs:e2fsprogs sfdisk:fdisk cmp:diffutils
MEM=${MEM:-256}
BOOT_TIMEOUT=${BOOT_TIMEOUT:-300}

build_iso
salvor=${SALVOR_BIN:-$(build_salvor_musl)}
for sub in image restore; do
    if ! "$salvor" "$sub" --help >/dev/null 2>&1; then
        fail "this salvor build has no '$sub' subcommand ($salvor): imaging cannot be tested until it is merged"
    fi
done
[[ ${#fails[@]} -eq 0 ]] || finish_tests "image/restore in the ISO environment"

# Source: GPT, one Linux partition from 1 MiB, ext4 with files of several kinds.
src="$work/src.img"
truncate -s 64M "$src"
printf 'label: gpt\nstart=2048, size=120832, type=linux, name="data"\n' | sfdisk -q "$src"
mkdir -p "$work/files/dir/sub"
head -c 3000000 /dev/urandom >"$work/files/random.bin"
seq 1 200000 >"$work/files/dir/numbers.txt"
for i in $(seq 1 50); do echo "file $i" >"$work/files/dir/sub/f$i"; done
mkfs.ext4 -q -F -L source -E offset=$((2048 * 512)) -d "$work/files" "$src" 59M
truncate -s 256M "$work/dst.img"
mkfs.ext4 -q -F -L salvor-dst "$work/dst.img"

t0=$(now)
qemu_bg image -m "$MEM" -machine pc -kernel "$VMLINUZ" -initrd "$INITRD" \
    -append "console=ttyS0,115200 panic=-1 quiet salvor.mount=/dev/vdb:/mnt/dst salvor.run=\"image /dev/vda /mnt/dst/disk.salvor\"" \
    -drive "file=$src,format=raw,if=none,id=src,readonly=on" -device virtio-blk-pci,drive=src,serial=salvor-src \
    -drive "file=$work/dst.img,format=raw,if=none,id=dst" -device virtio-blk-pci,drive=dst,serial=salvor-dst
rc=
if wait_console image '^SALVOR-RUN-END rc=' "$BOOT_TIMEOUT"; then
    rc=$(console_text "$work/image.console" | sed -n 's/^SALVOR-RUN-END rc=\([0-9]*\).*/\1/p' | head -n1)
    end=$(( $(date +%s) + 60 ))
    while kill -0 "$QPID" 2>/dev/null && (( $(date +%s) < end )); do sleep 0.2; done
else
    fail "no SALVOR-RUN-END on the console within ${BOOT_TIMEOUT}s"
fi
qemu_stop
echo "image: boot + image + power-off in $(secs "$t0" "$(now)")s, rc=${rc:-none}"
console_text "$work/image.console" | sed -n '/^SALVOR-RUN-BEGIN/,/^SALVOR-RUN-END/p' | tail -n 20
[[ $rc == 0 ]] || fail "salvor image exited with ${rc:-nothing}"

debugfs -R "dump /disk.salvor $work/disk.salvor" "$work/dst.img" >/dev/null 2>&1 || true
if [[ ! -s $work/disk.salvor ]]; then
    fail "no image file /disk.salvor on the destination disk"
else
    echo "image file: $(stat -c %s "$work/disk.salvor") bytes for a $(stat -c %s "$src")-byte disk"
    truncate -s "$(stat -c %s "$src")" "$work/restored.img"
    if "$salvor" restore --yes "$work/disk.salvor" "$work/restored.img" >"$work/restore.log" 2>&1; then
        cmp "$src" "$work/restored.img" || fail "the restored disk differs from the source"
    else
        fail "salvor restore failed: $(tail -n 5 "$work/restore.log")"
    fi
fi
finish_tests "image in the ISO environment, restored on the host, identical"
