#!/usr/bin/env bash
# Benchmarks salvor's imaging engine against stock zstd.
#
#   scripts/bench-image.sh [ROUNDS]
#   BENCH_ONLY=restore scripts/bench-image.sh [ROUNDS]   # only the restore comparisons
#   BENCH_ONLY=used scripts/bench-image.sh [ROUNDS]      # only the used-disk comparisons (root)
#
# Data sets (made once in $BENCH_DIR, default /tmp/salvor-bench):
#   mixed.disk  2 GiB: a 1 GiB ext4 filesystem populated from /usr/share, then 1 GiB of zeros
#   random.disk 1 GiB from /dev/urandom (incompressible)
#   used.disk   2 GiB GPT, old random data everywhere first, then ext4 1 GiB, FAT32 400 MiB, NTFS
#               500 MiB (mkfs without discard), each holding the same ~73 MiB of files from
#               /usr/share (~220 MiB in all): the free space keeps the old random data
# Comparisons, each run ROUNDS times alternating the two commands (hyperfine --runs 1 per round,
# so neither side always runs on a warmer machine), reporting medians and their ratio:
#   salvor image (level 3) vs zstd -T0 -3 < disk > out, reading the disk file (page cache)
#   the same reading the disk as a device (read-only loop device with direct I/O; root only)
#   salvor restore --yes vs zstd -d -T0 < image > target && sync (target: a loop device when root)
#   salvor image vs salvor image --no-hash (cost of the default per-chunk SHA-256 digests), also
#   reading the device throttled to 300 MB/s (blkio cgroup; root only)
#   salvor image --sha256 vs salvor image --no-hash (cost of the optional flat SHA-256)
#   compressed sizes: salvor image vs zstd -T0 -3
# These use --all-blocks (bit for bit, what zstd stores). On used.disk (root only; every run
# starts with the page cache dropped):
#   salvor image (used blocks, the default) vs Clonezilla's way: partclone.{ext4,fat,ntfs} -c of
#   each partition piped into zstd -T0 -3, plus the partition table (sgdisk --backup), sizes too
#   salvor restore vs zstd -d | partclone.restore per partition plus sgdisk --load-backup
# SALVOR_HASH_IN_READER=1 makes salvor compute the flat SHA-256 in the reader thread instead of a
# thread of its own.
# zstd's output goes to the page cache (salvor's too, except restore onto a block device, which
# it writes with O_DIRECT); both sides then `sync`, since salvor fsyncs before it reports success
# and zstd does not.
# Restore targets are loop devices attached with `losetup --direct-io=on`: without it the loop
# driver writes through the backing file's page cache, so every byte is cached twice (once for
# the loop device, once for the backing file) and written back twice, which no real disk does.
# Each restore run starts from a target overwritten with zeros (see make_target).
# BENCH_ONLY=restore runs only the restore comparisons (image and hash are skipped; the images
# to restore are still made once per data set).
#
# Needs: hyperfine, zstd, e2fsprogs, python3; root for loop-device restore targets.
set -euo pipefail

ROUNDS=${1:-5}
BENCH_DIR=${BENCH_DIR:-/tmp/salvor-bench}
BENCH_ONLY=${BENCH_ONLY:-}
case "$BENCH_ONLY" in
    "" | restore | used) ;;
    *) echo "bench-image: BENCH_ONLY must be empty, 'restore' or 'used', not '$BENCH_ONLY'" >&2; exit 1 ;;
esac
ROOT=$(cd "$(dirname "$0")/.." && pwd)
bash "$ROOT/scripts/setup.sh" >&2

for t in hyperfine zstd mkfs.ext4 python3; do
    command -v "$t" >/dev/null || { echo "bench-image: '$t' is missing" >&2; exit 1; }
done

cd "$ROOT"
# SALVOR=path/to/salvor uses that binary; otherwise the release build.
if [ -z "${SALVOR:-}" ]; then
    cargo build --release >&2
    SALVOR="$ROOT/target/release/salvor"
fi

mkdir -p "$BENCH_DIR"
cd "$BENCH_DIR"

if [ "$BENCH_ONLY" != used ] && [ ! -f mixed.disk ]; then
    echo "making mixed.disk (ext4 from /usr/share + 1 GiB empty)" >&2
    rm -f fs.part
    truncate -s 1G fs.part
    mkfs.ext4 -q -F -d /usr/share fs.part
    truncate -s 2G mixed.disk.tmp
    dd if=fs.part of=mixed.disk.tmp bs=4M conv=notrunc,sparse status=none
    rm -f fs.part
    mv mixed.disk.tmp mixed.disk
fi
if [ "$BENCH_ONLY" != used ] && [ ! -f random.disk ]; then
    echo "making random.disk (1 GiB of /dev/urandom)" >&2
    head -c 1G /dev/urandom > random.disk.tmp
    mv random.disk.tmp random.disk
fi

LOOPS=()
CGROUP=
cleanup() {
    for l in "${LOOPS[@]}"; do [ -n "$l" ] && losetup -d "$l" 2>/dev/null || true; done
    if [ -n "$CGROUP" ]; then rmdir "$CGROUP" 2>/dev/null || true; fi
}
trap cleanup EXIT

# Sets TARGET to a restore target as big as file $2: a loop device when root, else a file;
# and TARGET_PREP to the command run before each restore. A loop device is first overwritten
# with zeros (through the device, O_DIRECT) so that every run starts from the same fully written
# "used disk": otherwise each run would inherit the previous run's backing-file layout (a
# BLKZEROOUT leaves unwritten extents, which the next writer must convert) and the order of the
# runs would decide the times. Files are truncated by both sides anyway.
# (Not a $(function): the loop device must be recorded in this shell for the cleanup trap.)
make_target() {
    local name=$1 size
    size=$(stat -c %s "$2")
    truncate -s "$size" "$name.target"
    TARGET="$BENCH_DIR/$name.target"
    TARGET_PREP="sync"
    if [ "$(id -u)" = 0 ]; then
        TARGET=$(losetup --find --show --direct-io=on "$name.target")
        LOOPS+=("$TARGET")
        [ "$(losetup --noheadings --raw --output DIO "$TARGET")" = 1 ] ||
            echo "bench-image: warning: $TARGET did not get direct I/O; results are not comparable" >&2
        TARGET_PREP="dd if=/dev/zero of=$TARGET bs=1M count=$((size >> 20)) oflag=direct status=none && sync"
    fi
}

RESULTS=$BENCH_DIR/results.tsv
: > "$RESULTS"
: > "$BENCH_DIR/sizes.tsv"

# compare LABEL NAME_A CMD_A NAME_B CMD_B PREPARE
compare() {
    local label=$1 na=$2 ca=$3 nb=$4 cb=$5 prep=$6
    echo "== $label" >&2
    for ((r = 1; r <= ROUNDS; r++)); do
        hyperfine --style none --runs 1 --prepare "$prep" \
            --export-json "round.json" -n "$na" "$ca" -n "$nb" "$cb" >/dev/null 2>&1 ||
            { echo "hyperfine failed for $label; running once to show the error:" >&2; bash -c "$prep"; bash -c "$ca"; bash -c "$cb"; exit 1; }
        python3 - "$label" "round.json" >> "$RESULTS" <<'EOF'
import json, sys
label, path = sys.argv[1], sys.argv[2]
for r in json.load(open(path))["results"]:
    print(f"{label}\t{r['command']}\t{r['mean']:.4f}")
EOF
    done
}

DATASETS="mixed random"
[ "$BENCH_ONLY" = used ] && DATASETS=
for d in $DATASETS; do
    disk=$d.disk
    if [ "$BENCH_ONLY" != restore ]; then
        compare "image $d" \
            salvor "$SALVOR image $disk out.img.zst --level 3 --all-blocks" \
            zstd "zstd -q -T0 -3 < $disk > out.zst && sync" \
            "rm -f out.img.zst out.zst; sync"
        if [ "$(id -u)" = 0 ]; then
            # The issue's anchor reads the device directly: the same disk as a read-only loop
            # device with direct I/O (reads go to the backing store, as with a real disk).
            srcdev=$(losetup --find --show --read-only --direct-io=on "$disk")
            LOOPS+=("$srcdev")
            # zstd's buffered reads fill the device's page cache: flush it before every run, or
            # every zstd run after the first would read from memory and salvor (O_DIRECT) not.
            compare "image $d dev" \
                salvor "$SALVOR image $srcdev out.img.zst --level 3 --all-blocks" \
                zstd "zstd -q -T0 -3 < $srcdev > out.zst && sync" \
                "rm -f out.img.zst out.zst; sync; blockdev --flushbufs $srcdev"
            # The same device throttled to 300 MB/s (a SATA SSD or USB 3 disk) with the blkio
            # cgroup: what hashing costs when the disk, not the CPU, sets the pace.
            if [ "$d" = mixed ] && [ -d /sys/fs/cgroup/blkio ]; then
                CGROUP=/sys/fs/cgroup/blkio/salvor-bench
                mkdir -p "$CGROUP"
                echo "$(lsblk -dno MAJ:MIN "$srcdev" | tr -d ' ') 300000000" \
                    > "$CGROUP/blkio.throttle.read_bps_device"
                printf 'echo $$ > %s/cgroup.procs\nexec "$@"\n' "$CGROUP" > throttled.sh
                compare "hash $d 300MB/s" \
                    "salvor" "bash throttled.sh $SALVOR image $srcdev out.img.zst --level 3 --all-blocks" \
                    "salvor-no-hash" "bash throttled.sh $SALVOR image $srcdev out.img.zst --level 3 --all-blocks --no-hash" \
                    "rm -f out.img.zst; sync"
            elif [ "$d" = mixed ]; then
                echo "bench-image: NOT MEASURED: no blkio cgroup (v1) to throttle the device" >&2
            fi
            losetup -d "$srcdev"
            LOOPS=()
        fi
        compare "hash $d" \
            "salvor" "$SALVOR image $disk out.img.zst --level 3 --all-blocks" \
            "salvor-no-hash" "$SALVOR image $disk out.img.zst --level 3 --all-blocks --no-hash" \
            "rm -f out.img.zst; sync"
        compare "flat-sha256 $d" \
            "salvor-sha256" "$SALVOR image $disk out.img.zst --level 3 --all-blocks --sha256" \
            "salvor-no-hash" "$SALVOR image $disk out.img.zst --level 3 --all-blocks --no-hash" \
            "rm -f out.img.zst; sync"
        rm -f out.img.zst out.zst
    fi
    "$SALVOR" image "$disk" "$d.img.zst" --level 3 --all-blocks >/dev/null 2>&1 || { rm -f "$d.img.zst"; "$SALVOR" image "$disk" "$d.img.zst" --level 3 --all-blocks; }
    zstd -q -f -T0 -3 < "$disk" > "$d.zst"
    printf 'size %s\t%s\t%s\n' "$d" "$(stat -c %s "$d.img.zst")" "$(stat -c %s "$d.zst")" >> "$BENCH_DIR/sizes.tsv"
    make_target "$d" "$disk"
    tgt=$TARGET
    compare "restore $d" \
        salvor "$SALVOR restore $d.img.zst $tgt --yes" \
        zstd "zstd -q -d -T0 < $d.zst > $tgt && sync" \
        "$TARGET_PREP"
    rm -f "$d.img.zst" "$d.zst"
    if [ "$(id -u)" = 0 ]; then losetup -d "$tgt"; LOOPS=(); fi
    rm -f "$d.target"
done

# ---------------------------------------------------------------- the used disk (root)
MIB=$((1 << 20))
P1_OFF=$((1 * MIB)); P1_LEN=$((1024 * MIB))
P2_OFF=$((P1_OFF + P1_LEN)); P2_LEN=$((400 * MIB))
P3_OFF=$((P2_OFF + P2_LEN)); P3_LEN=$((500 * MIB))
drop_caches() { sync; echo 3 > /proc/sys/vm/drop_caches; }
# Loop devices (direct I/O) over a byte range of a file: a partition without partition scanning.
part_loop() { losetup --find --show --direct-io=on -o "$2" --sizelimit "$3" "$1"; }
if [ "$(id -u)" = 0 ] && { [ -z "$BENCH_ONLY" ] || [ "$BENCH_ONLY" = used ]; }; then
    for t in partclone.ext4 partclone.fat partclone.ntfs partclone.restore sgdisk mkntfs ntfs-3g mcopy mkfs.fat; do
        command -v "$t" >/dev/null || { echo "bench-image: '$t' is missing" >&2; exit 1; }
    done
    if [ ! -f used.disk ]; then
        echo "making used.disk (2 GiB GPT: ext4, FAT32, NTFS over old random data)" >&2
        rm -rf tree && mkdir tree
        # ~73 MiB of real files (text, images, binaries) from /usr/share.
        python3 - tree <<'TREE'
import os, shutil, sys
out, total, limit = sys.argv[1], 0, 73 << 20
for root, dirs, files in os.walk("/usr/share"):
    dirs.sort()
    for f in sorted(files):
        p = os.path.join(root, f)
        if not os.path.isfile(p) or os.path.islink(p):
            continue
        n = os.path.getsize(p)
        if total + n > limit or n > 8 << 20:
            continue
        d = os.path.join(out, os.path.relpath(root, "/usr/share"))
        os.makedirs(d, exist_ok=True)
        shutil.copyfile(p, os.path.join(d, f))
        total += n
    if total >= limit - (1 << 20):
        break
TREE
        head -c 2G /dev/urandom > used.disk.tmp
        sgdisk -n "1:2048:+1024M" -t 1:8300 -n 2:0:+400M -t 2:0700 -n 3:0:+500M -t 3:0700 used.disk.tmp >/dev/null
        l1=$(part_loop used.disk.tmp $P1_OFF $P1_LEN); LOOPS+=("$l1")
        mkfs.ext4 -q -F -E nodiscard -d tree "$l1"
        # mtools wants a file (it asks a device for its geometry): build FAT32 in a copy of the
        # partition's old data, then put it back.
        dd if=used.disk.tmp of=fat.part bs=1M skip=$((P2_OFF / MIB)) count=$((P2_LEN / MIB)) status=none
        mkfs.fat -F 32 fat.part >/dev/null
        MTOOLS_SKIP_CHECK=1 mcopy -s -D oO -i fat.part tree/* ::/ </dev/null  # (8.3 name clashes: overwrite)
        dd if=fat.part of=used.disk.tmp bs=1M seek=$((P2_OFF / MIB)) conv=notrunc status=none
        rm -f fat.part
        l3=$(part_loop used.disk.tmp $P3_OFF $P3_LEN); LOOPS+=("$l3")
        mkntfs -q -F -f "$l3"
        mkdir -p mnt && ntfs-3g "$l3" mnt && cp -r tree/. mnt/ && umount mnt
        sync
        losetup -d "$l1" "$l3"; LOOPS=()
        mv used.disk.tmp used.disk
    fi
    disk=$(losetup --find --show --read-only --direct-io=on used.disk); LOOPS+=("$disk")
    u1=$(part_loop used.disk $P1_OFF $P1_LEN); u2=$(part_loop used.disk $P2_OFF $P2_LEN)
    u3=$(part_loop used.disk $P3_OFF $P3_LEN); LOOPS+=("$u1" "$u2" "$u3")
    cat > partclone-image.sh <<PCI
set -e -o pipefail
sgdisk --backup=pc.table $disk >/dev/null
partclone.ext4 -q -c -s $u1 -o - 2>/dev/null | zstd -q -T0 -3 > pc1.zst
partclone.fat -q -c -s $u2 -o - 2>/dev/null | zstd -q -T0 -3 > pc2.zst
partclone.ntfs -q -c -s $u3 -o - 2>/dev/null | zstd -q -T0 -3 > pc3.zst
sync
PCI
    compare "image used" \
        salvor "$SALVOR image $disk used.img.zst --level 3" \
        partclone "bash partclone-image.sh" \
        "rm -f used.img.zst pc?.zst pc.table; sync; echo 3 > /proc/sys/vm/drop_caches"
    # (Each run's preparation removed the other side's output: make both once more.)
    rm -f used.img.zst pc?.zst pc.table
    "$SALVOR" image "$disk" used.img.zst --level 3 2> used.image.log
    bash partclone-image.sh
    grep -E "^(whole device|partition)" used.image.log >&2 || true
    printf 'size used\t%s\t%s\n' "$(stat -c %s used.img.zst)" \
        "$(cat pc.table pc1.zst pc2.zst pc3.zst | wc -c)" >> "$BENCH_DIR/sizes.tsv"
    make_target used used.disk
    tgt=$TARGET
    t1=$(part_loop used.target $P1_OFF $P1_LEN); t2=$(part_loop used.target $P2_OFF $P2_LEN)
    t3=$(part_loop used.target $P3_OFF $P3_LEN); LOOPS+=("$t1" "$t2" "$t3")
    cat > partclone-restore.sh <<PCR
set -e -o pipefail
sgdisk --load-backup=pc.table $tgt >/dev/null
zstd -q -d -T0 < pc1.zst | partclone.restore -q -s - -o $t1 2>/dev/null
zstd -q -d -T0 < pc2.zst | partclone.restore -q -s - -o $t2 2>/dev/null
zstd -q -d -T0 < pc3.zst | partclone.restore -q -s - -o $t3 2>/dev/null
sync
PCR
    compare "restore used" \
        salvor "$SALVOR restore used.img.zst $tgt --yes" \
        partclone "bash partclone-restore.sh" \
        "$TARGET_PREP; echo 3 > /proc/sys/vm/drop_caches"
    rm -f used.img.zst pc?.zst pc.table partclone-image.sh partclone-restore.sh used.target
    for l in "${LOOPS[@]}"; do losetup -d "$l" 2>/dev/null || true; done; LOOPS=()
elif [ "$BENCH_ONLY" = used ]; then
    echo "bench-image: the used-disk comparisons need root (loop devices, FUSE)" >&2; exit 1
fi

python3 - "$RESULTS" <<'EOF'
import sys, statistics, collections
rows = collections.defaultdict(lambda: collections.defaultdict(list))
order = []
for line in open(sys.argv[1]):
    label, cmd, t = line.rstrip("\n").split("\t")
    if label not in order:
        order.append(label)
    rows[label][cmd].append(float(t))
print(f"{'comparison':<16} {'A':<16} {'median A':>9} {'B':<16} {'median B':>9} {'A/B':>6}")
for label in order:
    (a, ta), (b, tb) = list(rows[label].items())[:2]
    ma, mb = statistics.median(ta), statistics.median(tb)
    print(f"{label:<16} {a:<16} {ma:9.3f} {b:<16} {mb:9.3f} {ma/mb:6.2f}")
EOF
python3 - "$BENCH_DIR/sizes.tsv" <<'SIZES'
import sys
for line in open(sys.argv[1]):
    label, a, b = line.rstrip("\n").split("\t")
    other = "partclone+zstd" if label == "size used" else "zstd -3"
    print(f"{label:<16} salvor image {int(a):>12} B  {other} {int(b):>12} B  ratio {int(a)/int(b):.4f}")
SIZES
