#!/usr/bin/env bash
# The demo: builds salvor, makes a "failing disk" (a GPT disk with an ext4 filesystem full of files,
# attached read-only as a loop device, with ddrescue-style test-mode read errors: a dead-head stripe
# pattern plus scattered bad sectors), rescues it with the live progress display, then shows the
# mapfile summary (salvor's and GNU ddrescuelog's) and what survived.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo build --release --target x86_64-unknown-linux-musl
salvor=$PWD/target/x86_64-unknown-linux-musl/release/salvor

work=$(mktemp -d /tmp/salvor-demo.XXXXXX)
loopdev=""
cleanup() {
  [ -n "$loopdev" ] && losetup -d "$loopdev" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

echo "== making a 512 MiB GPT disk with an ext4 filesystem and files"
mkdir -p "$work/files"
for i in $(seq 1 300); do
  head -c $((40000 + i * 1711)) /dev/urandom > "$work/files/photo-$i.jpg"
done
truncate -s 512M "$work/disk.img"
sgdisk -q -n 1:2048:0 -t 1:8300 -c 1:"family photos" "$work/disk.img"
mkfs.ext4 -q -F -E offset=$((2048 * 512)) -d "$work/files" "$work/disk.img" $(( (512 * 1024 * 1024 - 2048 * 512 - 34 * 512) / 1024 ))k
loopdev=$(losetup -f --show -r "$work/disk.img")
echo "   attached read-only as $loopdev"

echo "== simulating a failing drive: 4 MiB dead stripes every 64 MiB and 40 bad sectors"
python3 - "$work/test.map" <<'PY'
import random, sys
size = 512 << 20
bad = [(s, s + (4 << 20)) for s in range(40 << 20, size, 64 << 20)]
rng = random.Random(7)
for _ in range(40):
    p = rng.randrange(2048, size // 512 - 8) * 512
    if not any(a - 4096 <= p < b + 4096 for a, b in bad):
        bad.append((p, p + 512 * rng.randrange(1, 8)))
bad.sort()
with open(sys.argv[1], "w") as f:
    f.write("# demo test map: unreadable areas are '-'\n0 + 1\n")
    pos = 0
    for a, b in bad:
        if a > pos: f.write(f"0x{pos:X} 0x{a-pos:X} +\n")
        f.write(f"0x{a:X} 0x{b-a:X} -\n"); pos = b
    if pos < size: f.write(f"0x{pos:X} 0x{size-pos:X} +\n")
PY

echo "== salvor rescue (read speed capped at 40 MB/s so you can watch it)"
echo "   $salvor rescue -Z 40M -H test.map $loopdev rescued.img rescued.map"
"$salvor" rescue -Z 40M -H "$work/test.map" "$loopdev" "$work/rescued.img" "$work/rescued.map" || true

echo
echo "== salvor map rescued.map"
"$salvor" map "$work/rescued.map"
echo
echo "== GNU ddrescuelog -t rescued.map (the mapfile is ddrescue-compatible)"
ddrescuelog -t "$work/rescued.map"
echo
echo "== the rescued filesystem (fsck reports what the bad areas damaged)"
dd if="$work/rescued.img" of="$work/part.img" bs=1M skip=1 status=none
e2fsck -fn "$work/part.img" 2>&1 | tail -3 || true
