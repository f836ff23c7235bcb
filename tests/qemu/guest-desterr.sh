#!/bin/sh
# Guest side of dest-errors.sh (busybox ash, in the test initramfs).
#
# Disks by virtio serial: salvor-src (source), salvor-dst-w (its writes fail at one sector),
# salvor-dst-f (its flushes fail from the second on), salvor-out (results, a tar written raw).
# Runs the rescue (options from salvor.cmd_b64) onto each destination with the mapfile on
# /tmp (a filesystem that works), announcing DESTERR-W-END rc=N and DESTERR-F-END rc=N.
# Results: w.map w.log w.rc f.map f.log f.rc dst-w dst-f (the device names).
. /usr/local/bin/guest-lib.sh
SRC=$(guest_disk salvor-src) DSTW=$(guest_disk salvor-dst-w) DSTF=$(guest_disk salvor-dst-f)
OUT=$(guest_disk salvor-out)
if [ -z "$SRC" ] || [ -z "$DSTW" ] || [ -z "$DSTF" ] || [ -z "$OUT" ]; then
    echo "guest: disks not found (src=$SRC dst-w=$DSTW dst-f=$DSTF out=$OUT)"
    exit 99
fi
opts=$(guest_cmd) || { echo "guest: no salvor.cmd_b64"; exit 96; }
# Writeback only when salvor syncs: the write error then surfaces in salvor's fsync, as it
# does on a busy machine whose page cache holds the destination's data.
guest_hold_dirty
R=/tmp/out
mkdir -p "$R"
echo "$DSTW" >"$R/dst-w"
echo "$DSTF" >"$R/dst-f"
for t in w f; do
    if [ $t = w ]; then DST=$DSTW; else DST=$DSTF; fi
    { eval "salvor rescue $opts \"\$SRC\" \"\$DST\" \"$R/$t.map\""; echo $? >"$R/$t.rc"; } 2>&1 | tee "$R/$t.log"
    echo "DESTERR-$(echo $t | tr wf WF)-END rc=$(cat "$R/$t.rc")"
done
(cd "$R" && tar -cf "$OUT" .) || { echo "guest: writing results failed"; exit 98; }
sync
