#!/usr/bin/env bash
# iso-mount.sh: `salvor mount` in the rescue environment. On the host, a GPT disk with ext4,
# FAT32 and NTFS partitions holding the same files is imaged with `salvor image`; the image and a small script go on an
# ext4 data disk. The ISO's kernel + initramfs boot under QEMU (TCG) with
# salvor.run="--version && sh /mnt/dst/check.sh" (init evaluates it as a shell line): the
# script mounts each partition of the image with `salvor mount` — through the kernel's NBD
# client (nbd.ko is in the initramfs; a socket pair, no network) and the kernel's ext4, vfat and
# ntfs3 drivers — waits for its readiness line, prints the SHA-256 of the files and unmounts with
# `salvor umount`. The host compares the digests with
# its own and checks that the NBD device, not FUSE, carried the mount. Environment: MEM (256), BOOT_TIMEOUT (300), KEEP=1.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$SALVOR_REPO/scripts/lib/build.sh"
need qemu-system-x86_64:qemu-system-x86 mkfs.ext4:e2fsprogs sfdisk:fdisk sha256sum:coreutils \
    mkfs.vfat:dosfstools mcopy:mtools mkntfs:ntfs-3g ntfs-3g:ntfs-3g
MEM=${MEM:-256}
BOOT_TIMEOUT=${BOOT_TIMEOUT:-300}

build_iso
salvor=${SALVOR_BIN:-$(build_salvor_musl)}

src="$work/src.img"
truncate -s 112M "$src"
printf 'label: gpt\nstart=2048, size=61440, type=linux, name="linux"\nstart=63488, size=81920, type=ebd0a0a2-b9e5-4433-87c0-68b6b72699c7, name="fat"\nstart=145408, size=81920, type=ebd0a0a2-b9e5-4433-87c0-68b6b72699c7, name="ntfs"\n' \
    | sfdisk -q "$src"
mkdir -p "$work/files/dir"
head -c 3000000 /dev/urandom >"$work/files/random.bin"
seq 1 200000 >"$work/files/dir/numbers.txt"
mkfs.ext4 -q -F -L source -E offset=$((2048 * 512)) -d "$work/files" "$src" 30M
# FAT32 and NTFS made in their own files, filled (mtools; ntfs-3g through FUSE), then placed.
truncate -s 40M "$work/fat.img"
mkfs.vfat -F 32 -n FATPART "$work/fat.img" >/dev/null
MTOOLS_SKIP_CHECK=1 mcopy -s -i "$work/fat.img" "$work/files/random.bin" "$work/files/dir" ::/
truncate -s 40M "$work/ntfs.img"
mkntfs -q -F -f -L ntfspart "$work/ntfs.img" >/dev/null
mkdir -p "$work/ntfs.mnt"
ntfs-3g "$work/ntfs.img" "$work/ntfs.mnt"
cp -r "$work/files/." "$work/ntfs.mnt/"
umount "$work/ntfs.mnt"
dd if="$work/fat.img" of="$src" bs=512 seek=63488 conv=notrunc status=none
dd if="$work/ntfs.img" of="$src" bs=512 seek=145408 conv=notrunc status=none
mkdir -p "$work/data"
"$salvor" image "$src" "$work/data/disk.img.zst" 2>"$work/image.log" \
    || { cat "$work/image.log"; die "salvor image failed"; }
cat >"$work/data/check.sh" <<'SCRIPT'
for n in 1 2 3; do
    mkdir -p /mnt/x$n
    salvor mount /mnt/dst/disk.img.zst /mnt/x$n --partition $n >/run/mount$n.out 2>/run/mount$n.err &
    pid=$!
    i=0
    while ! grep -qx /mnt/x$n /run/mount$n.out 2>/dev/null && [ $i -lt 600 ]; do
        kill -0 $pid 2>/dev/null || break
        sleep 0.1; i=$((i + 1))
    done
    cat /run/mount$n.err
    (cd /mnt/x$n && sha256sum random.bin dir/numbers.txt | sed "s/^/DIGEST$n /")
    salvor umount /mnt/x$n
    wait $pid
    echo "MOUNT-EXIT$n $?"
done
SCRIPT
truncate -s 128M "$work/dst.img"
mkfs.ext4 -q -F -L salvor-dst -d "$work/data" "$work/dst.img"

t0=$(now)
qemu_bg mount -m "$MEM" -machine pc -kernel "$VMLINUZ" -initrd "$INITRD" \
    -append "console=ttyS0,115200 panic=-1 quiet salvor.mount=/dev/vda:/mnt/dst salvor.run=\"--version && sh /mnt/dst/check.sh\"" \
    -drive "file=$work/dst.img,format=raw,if=none,id=dst" -device virtio-blk-pci,drive=dst,serial=salvor-dst
if ! wait_console mount '^SALVOR-RUN-END rc=' "$BOOT_TIMEOUT"; then
    fail "no SALVOR-RUN-END on the console within ${BOOT_TIMEOUT}s"
fi
qemu_stop
echo "mount: boot + mount + read + power-off in $(secs "$t0" "$(now)")s"
out=$(console_text "$work/mount.console" | sed -n '/^SALVOR-RUN-BEGIN/,/^SALVOR-RUN-END/p')
printf '%s\n' "$out" | tail -n 20
digests=$(cd "$work/files" && sha256sum random.bin dir/numbers.txt)
for n in 1 2 3; do
    want=$(printf '%s\n' "$digests" | sed "s/^/DIGEST$n /")
    got=$(printf '%s\n' "$out" | grep "^DIGEST$n " || true)
    [[ $got == "$want" ]] || fail "partition $n: the files read through salvor mount in the guest differ: got '$got', want '$want'"
    printf '%s\n' "$out" | grep -q "^MOUNT-EXIT$n 0$" || fail "partition $n: salvor mount did not end cleanly after salvor umount"
    printf '%s\n' "$out" | grep -q "^mounted /dev/nbd[0-9]*p$n " || fail "partition $n: the mount did not go through the kernel's NBD client"
done
for fs in ext4 vfat ntfs; do
    printf '%s\n' "$out" | grep -q "^mounted .*($fs, read-only)" || fail "no read-only $fs mount"
done
finish_tests "salvor mount of an image in the rescue environment"
