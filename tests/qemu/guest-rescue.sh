#!/bin/sh
# Guest side of rescue-blkdebug.sh; runs inside the test initramfs as the guest script.
#
# Finds the disks by their virtio serial numbers (salvor-src, salvor-dst, salvor-out),
# runs the rescue command with SRC, DST and MAP in its environment, and writes the results
# as a tar archive onto the raw salvor-out disk for the host:
#   map      the mapfile (if the command wrote one)
#   log      the command's stdout+stderr
#   rc       its exit code
#   seconds  its wall time inside the guest
# The command comes base64-encoded from the kernel command line (salvor.cmd_b64=...);
# default: salvor rescue -f "$SRC" "$DST" "$MAP".
for b in /sys/block/vd*; do
    case $(cat "$b/serial" 2>/dev/null) in
        salvor-src) SRC=/dev/${b##*/} ;;
        salvor-dst) DST=/dev/${b##*/} ;;
        salvor-out) OUT=/dev/${b##*/} ;;
    esac
done
if [ -z "${SRC:-}" ] || [ -z "${DST:-}" ] || [ -z "${OUT:-}" ]; then
    echo "guest: disks not found (src=${SRC:-} dst=${DST:-} out=${OUT:-})"
    ls -l /sys/block
    exit 99
fi
MAP=/tmp/out/map
export SRC DST MAP
mkdir -p /tmp/out

cmd='salvor rescue -f "$SRC" "$DST" "$MAP"'
for arg in $(cat /proc/cmdline); do
    case $arg in
        salvor.cmd_b64=*) cmd=$(echo "${arg#salvor.cmd_b64=}" | base64 -d) ;;
    esac
done
echo "guest: SRC=$SRC DST=$DST MAP=$MAP"
echo "guest: running: $cmd"

t0=$(cut -d' ' -f1 /proc/uptime)
sh -c "$cmd" >/tmp/out/log 2>&1
rc=$?
t1=$(cut -d' ' -f1 /proc/uptime)
sync
echo "$rc" >/tmp/out/rc
awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f\n", b - a }' >/tmp/out/seconds
echo "guest: command exited rc=$rc after $(cat /tmp/out/seconds)s; last lines of its output:"
tail -n 30 /tmp/out/log

# The out disk is zero-filled by the host; tar stops at the zero blocks after the archive.
(cd /tmp/out && tar -cf "$OUT" .) || { echo "guest: writing results failed"; exit 98; }
sync
exit "$rc"
