#!/usr/bin/env bash
# Benchmarks for issue 15 (salvor serve / salvor export), ratios printed at the end:
#  1. nbdcopy throughput: salvor serve of a compressed image vs qemu-nbd serving the raw file
#     (goal >= 0.8x), with and without extents (--no-extents reads the zero areas too);
#  2. 4 KiB random reads, one at a time: p50/p99 latency vs qemu-nbd;
#  3. export speed: salvor export IMAGE OUT.qcow2 vs qemu-img convert -O qcow2 from the raw disk
#     (goal >= 1.0x).
# Runs alternate between the two sides; medians of RUNS runs. Everything is read from the page
# cache (both inputs are warmed first), so this measures the servers, not the disk; except the
# "disk" copy (as root), where the page cache is dropped before each run of either server.
#
# ONLY=export runs the export comparison alone; ONLY=mount the time from `salvor mount` to the
# first file read.
# Usage: bash scripts/bench-serve.sh [SIZE_MIB (default 1024)]  (RUNS=3, COUNT=20000, COLD_COUNT=300
# in the environment)
set -euo pipefail
cd "$(dirname "$0")/.."
size_mib=${1:-1024}
runs=${RUNS:-3}
count=${COUNT:-20000}
for t in nbdcopy qemu-nbd qemu-img python3; do
  command -v "$t" >/dev/null || { echo "missing $t: run scripts/setup.sh" >&2; exit 1; }
done
cargo build --release --quiet
cargo build --release --quiet --example nbd_randread
salvor=$PWD/target/release/salvor
randread=$PWD/target/release/examples/nbd_randread
work=$(mktemp -d /var/tmp/bench-serve.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

# A disk like a used one: 1/3 text-like compressible data, 1/3 random (incompressible), 1/3 zeros,
# interleaved in 1 MiB pieces; the raw file is sparse where it is zero (as qemu-nbd would see
# a sparse raw image).
python3 - "$work/disk.raw" "$size_mib" <<'PY'
import os, random, sys
path, mib = sys.argv[1], int(sys.argv[2])
rnd = random.Random(15)
words = [bytes(rnd.choice(b"abcdefghijklmnopqrstuvwxyz") for _ in range(rnd.randint(2, 9))) for _ in range(4000)]
texts = []
for _ in range(32):
    out = b" ".join(rnd.choices(words, k=200000))
    while len(out) < 1 << 20:
        out += out
    texts.append(out[:1 << 20])
with open(path, "wb") as f:
    for i in range(mib):
        kind = i % 3
        if kind == 0:
            f.write(texts[(i // 3) % len(texts)])
        elif kind == 1:
            f.write(os.urandom(1 << 20))
        else:
            f.seek(1 << 20, 1)
    f.truncate(mib << 20)
PY
"$salvor" image "$work/disk.raw" "$work/disk.img.zst" 2>/dev/null
echo "disk: ${size_mib} MiB raw, $(du -m "$work/disk.raw" | cut -f1) MiB allocated, image $(du -m "$work/disk.img.zst" | cut -f1) MiB"
cat "$work/disk.raw" "$work/disk.img.zst" > /dev/null

big_cache="--cache $((size_mib + 256))MiB"
start_salvor() {  # [CACHE_OPTION]: default, the whole image fits the chunk cache (as a page cache
                  # holds the whole raw file); "" = salvor's default cache
  if [ -n "${spid:-}" ]; then kill "$spid" 2>/dev/null || true; wait "$spid" 2>/dev/null || true; fi
  rm -f "$work/s.sock" "$work/s.uri"
  # shellcheck disable=SC2086 # the option is two words on purpose
  "$salvor" serve "$work/disk.img.zst" --unix "$work/s.sock" ${1-$big_cache} \
    > "$work/s.uri" 2>/dev/null &
  spid=$!
  pids+=($spid)
  for _ in $(seq 100); do [ -s "$work/s.uri" ] && return; sleep 0.1; done
  echo "salvor serve did not start" >&2; exit 1
}
start_qemu() {
  if [ -n "${qpid:-}" ]; then kill "$qpid" 2>/dev/null || true; wait "$qpid" 2>/dev/null || true; fi
  rm -f "$work/q.sock"
  qemu-nbd -r -f raw -t --shared=16 --cache=writeback --aio=threads -k "$work/q.sock" "$work/disk.raw" &
  qpid=$!
  pids+=($qpid)
  for _ in $(seq 100); do nbdinfo --size "nbd+unix:///?socket=$work/q.sock" >/dev/null 2>&1 && return; sleep 0.1; done
  echo "qemu-nbd did not start" >&2; exit 1
}
start_salvor
start_qemu
S="nbd+unix:///?socket=$work/s.sock"
Q="nbd+unix:///?socket=$work/q.sock"

now() { date +%s.%N; }
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
secs() { local t0; t0=$(now); "$@" >/dev/null 2>&1; echo "$(now) - $t0" | bc -l; }

drop_caches() { sync; echo 3 > /proc/sys/vm/drop_caches; }
copy_bench() {  # $1: cold|warm|disk, $2: extra nbdcopy flags, $3: salvor's cache option
  local s=() q=() cache=${3-$big_cache}
  for _ in $(seq "$runs"); do
    # cold: a fresh server, every chunk decoded during the copy, the raw file in the page cache;
    # warm: decoded chunks cached; disk: both read from the disk (page cache dropped, fresh
    # servers), as when an image or disk file is opened for the first time.
    [ "$1" = cold ] && start_salvor "$cache"
    if [ "$1" = disk ]; then start_salvor "$cache"; drop_caches; fi
    s+=("$(secs nbdcopy $2 "$S" null:)")
    if [ "$1" = disk ]; then start_qemu; drop_caches; fi
    q+=("$(secs nbdcopy $2 "$Q" null:)")
  done
  local sm qm
  sm=$(printf '%s\n' "${s[@]}" | median); qm=$(printf '%s\n' "${q[@]}" | median)
  printf 'nbdcopy %-4s %-14s %-13s salvor %6.0f MiB/s  qemu-nbd %6.0f MiB/s  ratio %.2f\n' \
    "$1" "${2:-(extents)}" "${cache:---cache default}" "$(echo "$size_mib / $sm" | bc -l)" "$(echo "$size_mib / $qm" | bc -l)" \
    "$(echo "$qm / $sm" | bc -l)"
}
if [ "${ONLY:-}" = mount ]; then
  # Time from `salvor mount` to the first file read: an ext4 filesystem of /usr/share/doc.
  mkdir -p "$work/mnt"
  mkfs.ext4 -q -F -d /usr/share/doc "$work/fs.raw" 512M >/dev/null
  "$salvor" image "$work/fs.raw" "$work/fs.img.zst" 2>/dev/null
  first=$(cd /usr/share/doc && find . -type f -size +1k -print -quit)
  m=()
  for _ in $(seq "$runs"); do
    t0=$(now)
    coproc MNT { "$salvor" mount "$work/fs.img.zst" "$work/mnt" 2>/dev/null; }
    read -r _ <&"${MNT[0]}"
    cat "$work/mnt/$first" > /dev/null
    m+=("$(echo "$(now) - $t0" | bc -l)")
    "$salvor" umount "$work/mnt"
    wait "$MNT_PID" || true
  done
  printf 'salvor mount to the first file read (ext4, 512 MiB): %.3f s (median of %s)\n' \
    "$(printf '%s\n' "${m[@]}" | median)" "$runs"
  exit 0
fi
if [ "${ONLY:-}" != export ]; then
# cold with salvor's default cache (128 MiB: once full, evicted chunks' buffers are reused), and
# with a cache that holds the image (every chunk needs fresh memory, which the kernel clears).
copy_bench cold "" ""
copy_bench cold "--no-extents" ""
copy_bench cold ""
copy_bench warm ""
copy_bench warm "--no-extents"
if [ "$(id -u)" = 0 ]; then
  copy_bench disk "" ""
  start_salvor
  # Back to the state the rows below expect: inputs in the page cache, salvor's cache full.
  cat "$work/disk.raw" "$work/disk.img.zst" > /dev/null
  nbdcopy "$S" null:
else
  echo "nbdcopy disk: skipped (dropping the page cache needs root)"
fi

# Random reads with every chunk cached (after the copies above), then on a fresh server where
# nearly every read decodes its chunk first (COLD_COUNT reads).
for i in $(seq "$runs"); do
  "$randread" "$work/s.sock" "$count" "$i" | sed 's/^/salvor   /'
  "$randread" "$work/q.sock" "$count" "$i" | sed 's/^/qemu-nbd /'
done > "$work/lat"
p() { grep "^$1" "$work/lat" | sed -n "s/.*$2_us=\([0-9.]*\).*/\1/p" | median; }
printf '4K random reads, warm (qd 1, %s reads): salvor p50 %.1f us p99 %.1f us; qemu-nbd p50 %.1f us p99 %.1f us; p50 ratio %.2f, p99 ratio %.2f\n' \
  "$count" "$(p salvor p50)" "$(p salvor p99)" "$(p qemu-nbd p50)" "$(p qemu-nbd p99)" \
  "$(echo "$(p salvor p50) / $(p qemu-nbd p50)" | bc -l)" "$(echo "$(p salvor p99) / $(p qemu-nbd p99)" | bc -l)"
start_salvor
cold=$("$randread" "$work/s.sock" "${COLD_COUNT:-300}" 99)
echo "4K random reads, cold salvor (fresh server, ${COLD_COUNT:-300} reads): $cold"
fi

s=() q=()
for _ in $(seq "$runs"); do
  rm -f "$work/s.qcow2" "$work/q.qcow2"
  s+=("$(secs "$salvor" export "$work/disk.img.zst" "$work/s.qcow2")")
  # salvor export syncs its output before it reports success; qemu-img is given the same.
  q+=("$(secs sh -c "qemu-img convert -O qcow2 '$work/disk.raw' '$work/q.qcow2' && sync '$work/q.qcow2'")")
done
sm=$(printf '%s\n' "${s[@]}" | median); qm=$(printf '%s\n' "${q[@]}" | median)
# Without the raw disk (only the image kept), the stock route decompresses first.
z=()
for _ in $(seq "$runs"); do
  rm -f "$work/z.raw" "$work/z.qcow2"
  z+=("$(secs sh -c "zstd -q -d '$work/disk.img.zst' -o '$work/z.raw' && qemu-img convert -O qcow2 '$work/z.raw' '$work/z.qcow2' && sync '$work/z.qcow2'")")
done
zm=$(printf '%s\n' "${z[@]}" | median)
rm -f "$work/z.raw"
qemu-img compare -q -f qcow2 -F qcow2 "$work/s.qcow2" "$work/q.qcow2"
printf 'export to qcow2: salvor %.2f s (from the image)  qemu-img convert + sync %.2f s (from raw)  speed ratio %.2f\n' \
  "$sm" "$qm" "$(echo "$qm / $sm" | bc -l)"
printf 'export to qcow2 from the image only: salvor %.2f s  zstd -d + qemu-img convert + sync %.2f s  speed ratio %.2f\n' \
  "$sm" "$zm" "$(echo "$zm / $sm" | bc -l)"
