#!/usr/bin/env bash
# iso-mount.sh: `salvor mount` in the rescue environment. On the host, a GPT disk with an ext4
# partition full of files is imaged with `salvor image`; the image and a small script go on an
# ext4 data disk. The ISO's kernel + initramfs boot under QEMU (TCG) with
# salvor.run="--version && sh /mnt/dst/check.sh" (init evaluates it as a shell line): the
# script mounts partition 1 of the image with `salvor mount` — through the kernel's NBD client
# (nbd.ko is in the initramfs; a socket pair, no network) — waits for its readiness line, prints
# the SHA-256 of the files and unmounts with `salvor umount`. The host compares the digests with
# its own and checks that the NBD device, not FUSE, carried the mount. Environment: MEM (256), BOOT_TIMEOUT (300), KEEP=1.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$SALVOR_REPO/scripts/lib/build.sh"
need qemu-system-x86_64:qemu-system-x86 mkfs.ext4:e2fsprogs sfdisk:fdisk sha256sum:coreutils
MEM=${MEM:-256}
BOOT_TIMEOUT=${BOOT_TIMEOUT:-300}

build_iso
salvor=${SALVOR_BIN:-$(build_salvor_musl)}

src="$work/src.img"
truncate -s 64M "$src"
printf 'label: gpt\nstart=2048, size=120832, type=linux, name="data"\n' | sfdisk -q "$src"
mkdir -p "$work/files/dir"
head -c 3000000 /dev/urandom >"$work/files/random.bin"
seq 1 200000 >"$work/files/dir/numbers.txt"
mkfs.ext4 -q -F -L source -E offset=$((2048 * 512)) -d "$work/files" "$src" 59M
mkdir -p "$work/data"
"$salvor" image "$src" "$work/data/disk.img.zst" 2>"$work/image.log" \
    || { cat "$work/image.log"; die "salvor image failed"; }
cat >"$work/data/check.sh" <<'SCRIPT'
mkdir -p /mnt/x
salvor mount /mnt/dst/disk.img.zst /mnt/x --partition 1 >/run/mount.out 2>/run/mount.err &
i=0
while ! grep -qx /mnt/x /run/mount.out 2>/dev/null && [ $i -lt 600 ]; do
    kill -0 $! 2>/dev/null || break
    sleep 0.1; i=$((i + 1))
done
cat /run/mount.err
(cd /mnt/x && sha256sum random.bin dir/numbers.txt | sed 's/^/DIGEST /')
salvor umount /mnt/x
wait
echo "MOUNT-EXIT $?"
SCRIPT
truncate -s 64M "$work/dst.img"
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
want=$(cd "$work/files" && sha256sum random.bin dir/numbers.txt | sed 's/^/DIGEST /')
got=$(printf '%s\n' "$out" | grep '^DIGEST ' || true)
[[ $got == "$want" ]] || fail "the files read through salvor mount in the guest differ: got '$got', want '$want'"
printf '%s\n' "$out" | grep -q '^MOUNT-EXIT 0$' || fail "salvor mount did not end cleanly after salvor umount"
printf '%s\n' "$out" | grep -q '^mounted /dev/nbd[0-9]*p1 ' || fail "the mount did not go through the kernel's NBD client"
finish_tests "salvor mount of an image in the rescue environment"
